"""Parts of the local stack started one at a time for a test, and always stopped (envtest's shape).

controller-runtime's envtest starts just the pieces a test needs (an etcd and an apiserver) behind
one `Environment` and stops them whatever happens. `Parts` does the same here:

    with Parts(root) as parts:
        s3 = parts.s3()
        server = parts.triton(root / "models")
        ...

Each start registers its stop; leaving the block stops every part in reverse order (and reaps it),
so a failing fixture never leaves a process behind. A test that needs the whole stack asks for the
session's `stack` fixture instead (tests/conftest.py).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Mapping, Optional, Sequence

import pytest
from kubernetes.client import ApiClient

from helpers.clients import triton
from helpers.clients.storage import S3Settings
from helpers.core.config import project_root
from helpers.core.errors import SetupError
from helpers.local.stack import controlplane, process, s3server, tritonserver


@dataclass
class S3Part:
    settings: S3Settings
    record: process.ProcessRecord


@dataclass
class TritonPart:
    record: process.ProcessRecord
    repository: Path
    backends: Path

    @property
    def url(self) -> str:
        return tritonserver.http_url(self.record)

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.record.ports['grpc']}"


@dataclass
class ControlPlanePart:
    paths: controlplane.Paths
    api: ApiClient

    @property
    def kubeconfig(self) -> Path:
        return self.paths.kubeconfig

    def kubectl(self, *args: str) -> str:
        done = subprocess.run(["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout


def ports(*kinds: str) -> dict[str, int]:
    """A free port for each kind, all different."""
    chosen: dict[str, int] = {}
    while len(chosen) < len(kinds):
        port = process.free_port()
        if port not in chosen.values():
            chosen[kinds[len(chosen)]] = port
    return chosen


class Parts:
    """The parts one test module starts, stopped in reverse order when the `with` block ends."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._stops = contextlib.ExitStack()

    def __enter__(self) -> "Parts":
        return self

    def __exit__(self, kind: Optional[type], error: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self._stops.close()

    def adopt(self, record: process.ProcessRecord) -> process.ProcessRecord:
        """Stop (and reap) `record`'s process when the block ends; a restarted part is adopted again."""
        self._stops.callback(process.stop, record)
        return record

    def s3(self) -> S3Part:
        """The S3 server (rclone) on a free loopback port, with credentials of its own."""
        creds = s3server.load_or_create_credentials(self.root / "credentials" / "s3.json")
        port = process.free_port()
        record = self.adopt(s3server.start(self.root / "s3data", port, creds, self.root / "s3.log"))
        return S3Part(S3Settings(f"127.0.0.1:{port}", creds.access_key, creds.secret_key), record)

    def triton(self, repository: Path, *, name: str = "triton", on: Optional[Mapping[str, int]] = None,
               timeout: float = 120.0) -> TritonPart:
        """tritonserver in explicit model control over `repository`, with the backends `make setup` chose
        (`on`: the ports of an earlier run, to come back where clients expect it)."""
        Path(repository).mkdir(parents=True, exist_ok=True)
        backends = tritonserver.prepare_backends(self.root / "backends")
        record = tritonserver.start(name, Path(repository), backends, dict(on or ports("http", "grpc", "metrics")),
                                    self.root / f"{name}.log", timeout=timeout)
        self.adopt(record)
        # Registered after its stop, so it runs before it: Triton's shutdown waits out its exit timeout
        # (5 s) for a kept-alive connection.
        self._stops.callback(triton.forget_clients)
        return TritonPart(record, Path(repository), backends)

    def agent(self, *, config_dir: Path, model_dir: Path, triton_url: str, status_file: Path, log: Path,
              env: Mapping[str, str], options: Sequence[str] = ()) -> process.ProcessRecord:
        """The local model agent (`python -m helpers.local.agent`), ready once it wrote its status file."""
        argv = process.python_argv("helpers.local.agent", "--config-dir", str(config_dir), "--model-dir",
                                   str(model_dir), "--triton-url", triton_url, "--status-file", str(status_file),
                                   *options)
        return self.adopt(process.start("agent", argv, log, status_file.exists, env={**os.environ, **env},
                                        cwd=project_root(), timeout=60))

    def controlplane(self) -> ControlPlanePart:
        """etcd, kube-apiserver and kube-controller-manager as the stack runs them (skips the test where the
        binaries or kubectl are missing: `make setup` builds them)."""
        try:
            for env_var, binary in (("ETCD", "etcd"), ("KUBE_APISERVER", "kube-apiserver"),
                                    ("KUBE_CONTROLLER_MANAGER", "kube-controller-manager")):
                controlplane.find_binary(env_var, binary)
        except SetupError as exc:
            pytest.skip(f"control plane binaries missing: {exc.cause}")
        if not shutil.which("kubectl"):
            pytest.skip("kubectl is not installed")
        paths = controlplane.Paths(self.root / "controlplane")
        token = controlplane.ensure_credentials(paths)
        chosen = ports("client", "peer", "https", "manager")
        logs = self.root / "logs"
        self.adopt(controlplane.start_etcd(paths, chosen["client"], chosen["peer"], logs / "etcd.log"))
        self.adopt(controlplane.start_apiserver(paths, chosen["https"], chosen["client"], token, logs / "apiserver.log"))
        controlplane.write_kubeconfig(paths, chosen["https"], token)
        self.adopt(controlplane.start_controller_manager(paths, chosen["manager"], logs / "manager.log"))
        return ControlPlanePart(paths, controlplane.api_client(paths.kubeconfig))
