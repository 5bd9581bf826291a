"""The embedded local stack, composed: S3 server, etcd, kube-apiserver, controller manager, controller.

`up` starts what is not running (in that order) and rolls back what it started if a later
part fails; `down` stops, in reverse order, only the processes the stack started, by PID, and
keeps the data. The controller then starts one Triton + agent per InferenceService itself.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import requests

from ..config import env_port, state_dir
from ..errors import SetupError
from . import controlplane, gateway, process, profiles, s3server, tritonserver

ORDER = ("s3", "etcd", "kube-apiserver", "kube-controller-manager", "controller")
PORT_SETTINGS = {"s3": "MMS_S3_PORT", "kube-apiserver": "MMS_APISERVER_PORT"}


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    healthy: bool
    pid: Optional[int]
    address: str
    detail: str = ""


class Stack:
    """The local stack rooted at a state folder (MMS_STATE_DIR by default)."""

    def __init__(self, root: Optional[Path] = None) -> None:
        self.root = Path(root) if root else state_dir()
        self.cp = controlplane.Paths(self.root)

    # --- files -----------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def s3_data(self) -> Path:
        return self.root / "data" / "s3"

    @property
    def s3_credentials_file(self) -> Path:
        return self.root / "credentials" / "s3.json"

    @property
    def servers_dir(self) -> Path:
        """One folder per InferenceService: its model repository, agent state and process records."""
        return self.root / "servers"

    @property
    def backends_dir(self) -> Path:
        return self.root / "triton" / "backends"

    @property
    def kubeconfig(self) -> Path:
        return self.cp.kubeconfig

    def _load(self) -> dict:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())
        return {"processes": {}, "ports": {}}

    def _save(self, state: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def records(self) -> dict[str, process.ProcessRecord]:
        """Records of the stack's own processes, by component name."""
        return {name: process.ProcessRecord.from_json(data) for name, data in self._load()["processes"].items()}

    def server_records(self) -> dict[str, process.ProcessRecord]:
        """Records of the Triton and agent processes the controller started, by `<ns>/<isvc>/<role>`."""
        found = {}
        for path in sorted(self.servers_dir.glob("*/processes.json")):
            for role, data in json.loads(path.read_text()).items():
                if not isinstance(data, dict):
                    continue  # not a process (e.g. the hash of the agent's S3 settings)
                found[f"{path.parent.name.replace('.', '/', 1)}/{role}"] = process.ProcessRecord.from_json(data)
        return found

    def profile(self) -> profiles.Profile:
        """The profile this state folder was created with (the default before the first `up`)."""
        return profiles.get(self._load().get("profile"))

    def _choose_profile(self, state: dict, wanted: Optional[str]) -> profiles.Profile:
        """The profile for `up`: a state folder keeps its first one; another is refused, never mixed."""
        chosen = profiles.get(wanted)
        held = state.get("profile")
        if held is None:
            # A state folder from before profiles served both groups; its objects are kfserving-0.5's.
            held = profiles.DEFAULT_PROFILE if self.kubeconfig.exists() else chosen.name
        if held != chosen.name:
            raise SetupError(
                f"this state folder ({self.root}) holds a {held!r} stack, and {chosen.name!r} was asked for; "
                "a cluster serves one version, and switching would strand its objects",
                f"run with --profile {held} (or {profiles.PROFILE_ENV}={held}), or give the other profile its own "
                f"folder: MMS_STATE_DIR=<new folder> python -m helpers.local up --profile {chosen.name}")
        state["profile"] = chosen.name
        return chosen

    def s3_credentials(self) -> s3server.S3Credentials:
        return s3server.load_or_create_credentials(self.s3_credentials_file)

    def _port(self, state: dict, name: str, key: str) -> int:
        """Port precedence: the env setting > the port used last time, if free > a free one."""
        setting = PORT_SETTINGS.get(name)
        wanted = env_port(setting) if setting else None
        if wanted:
            return process.require_port(wanted, name, setting)
        last = state["ports"].get(f"{name}.{key}")
        if last and process.port_free(last):
            return last
        return process.free_port()

    # --- lifecycle -------------------------------------------------------------------------
    def up(self, say: Callable[[str], None] = print,
           profile: Optional[str] = None) -> dict[str, process.ProcessRecord]:
        """Start every component that is not running. A running stack is left as it is."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        state = self._load()
        self._choose_profile(state, profile)
        self._save(state)
        started: list[process.ProcessRecord] = []
        try:
            for name in ORDER:
                if name == "controller" and started:
                    self._seed(say)  # the controller needs the CRDs; S3's address may have changed
                record = self.records().get(name)
                if record and record.alive():
                    continue
                say(f"starting {name} ...")
                record = self._start(name, state)
                started.append(record)
                state["processes"][name] = record.to_json()
                for key, port in record.ports.items():
                    state["ports"][f"{name}.{key}"] = port
                self._save(state)
        except BaseException:
            for record in reversed(started):
                process.stop(record)
                state["processes"].pop(record.name, None)
            self._save(state)
            raise
        return self.records()

    def _start(self, name: str, state: dict) -> process.ProcessRecord:
        log = self.logs / f"{name}.log"
        if name == "s3":
            return s3server.start(self.s3_data, self._port(state, name, "s3"), self.s3_credentials(), log)
        if name == "etcd":
            client = self._port(state, name, "client")
            peer = self._port(state, name, "peer")
            return controlplane.start_etcd(self.cp, client, peer, log)
        if name == "kube-apiserver":
            token = controlplane.ensure_credentials(self.cp)
            port = self._port(state, name, "https")
            etcd_port = state["ports"]["etcd.client"]
            record = controlplane.start_apiserver(self.cp, port, etcd_port, token, log)
            controlplane.write_kubeconfig(self.cp, port, token)
            return record
        if name == "kube-controller-manager":
            return controlplane.start_controller_manager(self.cp, self._port(state, name, "https"), log)
        if name == "controller":
            return self._start_controller(log)
        raise ValueError(name)

    def _seed(self, say: Callable[[str], None]) -> None:
        """Install the CRDs and the Kubeflow-shaped objects the guide reads (idempotent)."""
        from .. import k8s_apply
        from .crds import crd_manifests
        from .seed import seed_manifests

        profile = self.profile()
        say(f"installing {profile.group} CRDs and seeding as {profile.name} ...")
        client = controlplane.api_client(self.kubeconfig)
        creds = self.s3_credentials()
        s3_port = self._load()["ports"]["s3.s3"]
        k8s_apply.apply_all(client, crd_manifests(profile))
        k8s_apply.apply_all(client, seed_manifests(profile, creds.access_key, creds.secret_key,
                                                   f"127.0.0.1:{s3_port}"))

    def _start_controller(self, log: Path) -> process.ProcessRecord:
        ready = self.root / "controller.ready"
        ready.unlink(missing_ok=True)
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "MMS_STATE_DIR": str(self.root)}
        argv = process.python_argv("helpers.local.controller", "--state-dir", str(self.root),
                                   "--profile", self.profile().name)
        return process.start("controller", argv, log, ready.exists, env=env, timeout=60)

    def down(self, say: Callable[[str], None] = print) -> list[str]:
        """Stop the stack's processes in reverse order, by PID; data, manifests and objects stay."""
        stopped = []
        records = self.records()
        for name in reversed(ORDER):
            record = records.get(name)
            if record and process.stop(record):
                stopped.append(name)
                say(f"stopped {name} (pid {record.pid})")
            if name == "controller":
                # The controller stops its servers; this catches any it could not (it was killed).
                for server, rec in self.server_records().items():
                    if process.stop(rec):
                        stopped.append(server)
                        say(f"stopped {server} (pid {rec.pid})")
        state = self._load()
        state["processes"] = {}
        self._save(state)
        return stopped

    # --- inspection ------------------------------------------------------------------------
    def status(self) -> list[ComponentStatus]:
        """What runs, where, and whether it answers its health check."""
        rows = []
        records = self.records()
        for name in ORDER:
            record = records.get(name)
            running = bool(record and record.alive())
            address = ", ".join(f"127.0.0.1:{p}" for p in record.ports.values()) if record else ""
            healthy = running and self._healthy(name, record)
            detail = "" if running or not record else f"not running (was pid {record.pid}); `python -m helpers.local up` restarts it"
            rows.append(ComponentStatus(name, running, healthy, record.pid if record else None, address, detail))
        for name, record in self.server_records().items():
            running = record.alive()
            http = record.ports.get("http")
            healthy = running and (self._healthy("triton", record) if http else True)
            detail = "" if running else f"not running (was pid {record.pid}); the controller restarts it"
            address = ", ".join(f"{k}=127.0.0.1:{p}" for k, p in record.ports.items())
            rows.append(ComponentStatus(name, running, healthy, record.pid, address, detail))
        return rows

    def _healthy(self, name: str, record: process.ProcessRecord) -> bool:
        """The same check `up` waited on when it started the component."""
        ports = record.ports
        checks = {
            "s3": lambda: s3server.healthy(ports["s3"]),
            "etcd": lambda: controlplane.etcd_healthy(ports["client"]),
            "kube-apiserver": lambda: controlplane.apiserver_ready(
                self.cp, ports["https"], controlplane.ensure_credentials(self.cp)),
            "kube-controller-manager": lambda: controlplane.controller_manager_healthy(self.cp, ports["https"]),
            "triton": lambda: tritonserver.ready(ports["http"]),
        }
        check = checks.get(name)
        try:
            return check() if check else True
        except (requests.RequestException, ValueError):
            return False

    def env(self) -> dict[str, str]:
        """Environment for shells and clients: endpoints and file paths, never secret values."""
        ports = self._load()["ports"]
        values = {"MMS_TARGET": "local", "MMS_STATE_DIR": str(self.root), "MMS_PROFILE": self.profile().name,
                  "KUBECONFIG": str(self.kubeconfig),
                  "MMS_S3_CREDENTIALS_FILE": str(self.s3_credentials_file)}
        if "s3.s3" in ports:
            values["MMS_S3_ENDPOINT"] = f"127.0.0.1:{ports['s3.s3']}"
            values["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{ports['s3.s3']}"
            values["RCLONE_CONFIG"] = str(self.write_rclone_config(f"http://127.0.0.1:{ports['s3.s3']}"))
        ingress = gateway.address(self.root)
        if ingress:
            values["MMS_INGRESS_URL"] = ingress
        return values

    @property
    def rclone_config(self) -> Path:
        return self.root / "credentials" / "rclone.conf"

    def write_rclone_config(self, endpoint: str) -> Path:
        """rclone's config with the remote `myminio` (the guide's `mc` alias) for the local S3, mode 0600.

        The keys stay in this file: `rclone tree myminio:triton` works with RCLONE_CONFIG set to it.
        """
        creds = self.s3_credentials()
        text = ("# The guide's `mc config host add myminio ...`, for rclone (written by `python -m helpers.local env`)\n"
                "[myminio]\ntype = s3\nprovider = Minio\n"
                f"endpoint = {endpoint}\naccess_key_id = {creds.access_key}\n"
                f"secret_access_key = {creds.secret_key}\nregion = us-east-1\n"
                # rclone serve s3 answers an existing bucket with 409 BucketAlreadyExists: do not create.
                "no_check_bucket = true\n")
        path = self.rclone_config
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
            path.with_suffix(".tmp").replace(path)
        os.chmod(path, 0o600)
        return path

    def require_running(self) -> None:
        """Raise a SetupError naming the fix unless the stack's own processes all run."""
        down = [r.name for r in self.status()[:len(ORDER)] if not r.running]
        if down:
            raise SetupError(f"the local stack is not running ({', '.join(down)} down)",
                             "start it with `python -m helpers.local up` (or `make up`)")
