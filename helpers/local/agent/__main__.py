"""`python -m helpers.local.agent --config-dir D --model-dir M --triton-url URL --status-file F`.

S3 settings come from the environment, as KServe's credential builder injects them into the
agent container: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, S3_ENDPOINT (host:port; a scheme
is accepted), S3_USE_HTTPS ("0"/"1", default 1 as in KServe), AWS_REGION (default us-east-1).
Stops on SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Mapping, Optional

from ...storage import S3Settings
from . import Settings, run
from .log import Logger


def s3_settings_from_env(env: Mapping[str, str]) -> S3Settings:
    """S3Settings from KServe's agent environment variables."""
    endpoint = env.get("S3_ENDPOINT", "").strip() or "s3.amazonaws.com"
    secure = env.get("S3_USE_HTTPS", "1").strip().lower() not in ("0", "false", "no")
    for scheme, is_secure in (("https://", True), ("http://", False)):
        if endpoint.startswith(scheme):
            endpoint, secure = endpoint[len(scheme):], is_secure
    return S3Settings(endpoint=endpoint.rstrip("/"), access_key=env.get("AWS_ACCESS_KEY_ID", ""),
                      secret_key=env.get("AWS_SECRET_ACCESS_KEY", ""), secure=secure,
                      region=env.get("AWS_REGION", "").strip() or "us-east-1")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.local.agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-dir", type=Path, required=True, help="folder holding models.json")
    parser.add_argument("--model-dir", type=Path, required=True, help="Triton's model repository")
    parser.add_argument("--triton-url", required=True, help="Triton's HTTP endpoint, e.g. http://127.0.0.1:8000")
    parser.add_argument("--status-file", type=Path, required=True, help="per-model status, JSON")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    settings = Settings(args.config_dir, args.model_dir, args.triton_url, args.status_file,
                        s3_settings_from_env(os.environ))
    run(settings, stop, Logger("modelAgent"))
    return 0


if __name__ == "__main__":
    code = main()
    # A download thread may be inside one large object; its marker is not written yet, so the
    # next start cleans that folder up. Exit now rather than wait for it (SIGTERM -> gone in ~2 s).
    sys.stdout.flush()
    os._exit(code)
