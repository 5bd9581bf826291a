"""`python -m helpers.local.initializer SRC_URI DEST [--mount /mnt/models] [--release TAG]`.

The storage-initializer init container of a local server pod (see the package's docstring): copies
SRC_URI into DEST, the folder that stands for the pod's `--mount`, with the S3 settings of its env
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, the release's region variable,
S3_USE_HTTPS, S3_USER_VIRTUAL_BUCKET), as the credential builder wrote them. Host names resolve
through the Service objects, as cluster DNS resolves them for a pod. Exit code 0, or 1 on failure.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from helpers.core import i18n
from helpers.core.constants import MODEL_DIR
from helpers.local.agent import s3config
from helpers.local.initializer import Release, run


def main(argv: Optional[list[str]] = None) -> int:
    i18n.set_language(i18n.SOURCE_LANGUAGE)  # a log line is English whatever the learner's language, as upstream's
    parser = argparse.ArgumentParser(prog="python -m helpers.local.initializer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src_uri", help="the InferenceService's storageUri")
    parser.add_argument("dest", type=Path, help="the folder that stands for the pod's --mount")
    parser.add_argument("--mount", default=MODEL_DIR, help="the path the pod sees (default %(default)s)")
    parser.add_argument("--release", default="v0.15.2", help="the KServe/KFServing tag whose initializer to behave as")
    args = parser.parse_args(argv)
    return run(Release(args.release), args.src_uri, args.dest, os.environ, s3config.service_resolver(), args.mount)


if __name__ == "__main__":
    sys.exit(main())
