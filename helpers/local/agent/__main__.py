"""`python -m helpers.local.agent --config-dir D --model-dir M --triton-url URL --status-file F`.

S3 settings come from the environment, as KServe's credential builder injects them into the
agent container, and are read as KServe's agent reads them (see `s3config`): AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, the region under the release's name (`--region-env`:
AWS_REGION in KFServing 0.5.1, AWS_DEFAULT_REGION in KServe 0.14+; no default: MissingRegion without it),
S3_USER_VIRTUAL_BUCKET ("false" for path-style addressing; virtual-host otherwise).
Stops on SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

from helpers.core import i18n
from helpers.local.agent import Settings, release, run, s3config
from helpers.local.agent.log import Logger


def main(argv: Optional[list[str]] = None) -> int:
    i18n.set_language(i18n.SOURCE_LANGUAGE)  # a log line is English whatever the learner's language, as upstream's
    parser = argparse.ArgumentParser(prog="python -m helpers.local.agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-dir", type=Path, required=True, help="folder holding models.json")
    parser.add_argument("--model-dir", type=Path, required=True, help="Triton's model repository")
    parser.add_argument("--triton-url", required=True, help="Triton's HTTP endpoint, e.g. http://127.0.0.1:8000")
    parser.add_argument("--status-file", type=Path, required=True, help="per-model status, JSON")
    parser.add_argument("--region-env", default=s3config.REGION_ENV,
                        help="the env variable the release's agent reads the region from (default %(default)s)")
    parser.add_argument("--reload-lost-models", action="store_true",
                        help="load again what a restarted Triton lost (no release's agent does; for benchmarks)")
    parser.add_argument("--release", default="v0.15.2",
                        help="the KServe/KFServing tag whose agent to behave as (default %(default)s; "
                             f"known: {', '.join(release.RELEASES)})")
    parser.add_argument("--friendly", action="store_true",
                        help="retry, list every page, read the prefix as a folder, skip directory markers, "
                             "report a missing S3 endpoint as an error (no release's agent does all; for benchmarks)")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    s3 = s3config.from_env(os.environ, s3config.service_resolver(), region_env=args.region_env,
                           cluster_address=s3config.cluster_address_resolver())
    threading.Thread(target=s3.warm_up, name="s3-warm-up", daemon=True).start()
    settings = Settings(args.config_dir, args.model_dir, args.triton_url, args.status_file, s3,
                        reload_lost=args.reload_lost_models,
                        behaviour=release.for_release(args.release, args.friendly))
    run(settings, stop, Logger("modelAgent"))
    return 0


if __name__ == "__main__":
    code = main()
    # A download thread may be inside one large object; its marker is not written yet, so the
    # next start cleans that folder up. Exit now rather than wait for it (SIGTERM -> gone in ~2 s).
    sys.stdout.flush()
    os._exit(code)
