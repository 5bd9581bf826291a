"""The embedded local stack, composed: S3 server, etcd, kube-apiserver, controller manager, gateway, controller.

A supervisor process (`helpers.local.stack.supervisor`) starts the components in that order, as its
children, and restarts any that dies with a CrashLoop back-off, as a kubelet restarts
containers; the controller does the same for each server's Triton and agent. `up` starts the
supervisor (or asks a running one to start what is down, at once) and waits for its report;
a failed start rolls back what it started. `down` stops the supervisor first, so nothing is
restarted while stopping, then, in reverse order, only the processes the stack started, by
PID, and keeps the data. Adding a component is one entry in COMPONENTS. Parts that run inside the
controller (kubelet endpoint, admission webhooks, gateway authorizer, gateway routes) are listed
by `status` too, with their health (`parts`).
"""
from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import requests

from helpers.core.config import env_port, state_dir
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.wait import WaitTimeout, poll_until
from helpers.local.cluster import cgroups, gateway, identity, node, projection
from helpers.local.stack import controlplane, gateway_process, leftovers, parts, process, s3server, seaweedfs, tritonserver
from helpers.local.stack import releases as profiles
from helpers.local.stack.report import read_report


@dataclass(frozen=True)
class Component:
    """One process of the stack: how to start it (given the stack, its saved state and its log)
    and the health check both `up` and `status` use."""

    name: str
    start: Callable[["Stack", dict, Path], process.ProcessRecord]
    healthy: Callable[["Stack", process.ProcessRecord], bool]
    port_setting: str = ""  # the environment variable that fixes its main port
    installed: Callable[[], bool] = lambda: True  # False: its program is missing, the stack runs without it


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    healthy: bool
    pid: Optional[int]
    address: str
    detail: str = ""
    restarts: int = 0
    last_exit: str = ""
    inside: str = ""  # the process it lives in, for a part that is not a process of its own


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

    def configmap_delay(self) -> float:
        """Seconds a changed model-config ConfigMap takes to reach the agent's folder (0: at once)."""
        return projection.read_delay(self.root)

    def _choose_profile(self, state: dict, wanted: Optional[str]) -> profiles.Profile:
        """The profile for `up`: a state folder keeps its first one; another is refused, never mixed.

        Nothing asked (no `--profile`, no MMS_PROFILE): the folder's own, so a plain `up` repairs a
        stack of any profile."""
        held = state.get("profile")
        if wanted is None and not os.environ.get(profiles.PROFILE_ENV) and held in profiles.PROFILES:
            return profiles.get(held)
        chosen = profiles.get(wanted)
        if held is None:
            # A state folder from before profiles served both groups; its objects are kfserving-0.5's.
            held = profiles.DEFAULT_PROFILE if self.kubeconfig.exists() else chosen.name
        if held != chosen.name:
            raise SetupError(
                _("this state folder ({root}) holds a {held!r} stack, and {name!r} was asked for; a cluster serves one "
                  "version, and switching would strand its objects").format(root=self.root, held=held, name=chosen.name),
                _("run with --profile {held} (or {profile_env}={held}), or give the other profile its own folder: "
                  "MMS_STATE_DIR=<new folder> python -m helpers.local up --profile {name}").format(
                    held=held, profile_env=profiles.PROFILE_ENV, name=chosen.name))
        state["profile"] = chosen.name
        return chosen

    def s3_credentials(self) -> s3server.S3Credentials:
        return s3server.load_or_create_credentials(self.s3_credentials_file)

    def _port(self, state: dict, name: str, key: str) -> int:
        """Port precedence: the env setting > the port used last time > a free one.

        The last port is waited for (bounded) when a restarted process's predecessor still holds
        it, so clients that know the address (kubeconfig, the seeded Service) keep working.
        """
        setting = COMPONENTS_BY_NAME[name].port_setting if name in COMPONENTS_BY_NAME else ""
        fixed = env_port(setting) if setting else None
        wanted = fixed or state["ports"].get(f"{name}.{key}")
        if wanted and name in state["processes"]:  # a restart: its predecessor may still hold the port
            try:
                poll_until(lambda: process.port_free(wanted), f"port {wanted} to be released", timeout=10, interval=0.1)
            except WaitTimeout:
                pass
        if fixed:
            return process.require_port(fixed, name, setting)
        if wanted and process.port_free(wanted):
            return wanted
        return process.free_port()

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def supervisor_report(self) -> Path:
        return self.root / "supervisor.json"

    @property
    def supervisor_file(self) -> Path:
        """The supervisor's process record (its own file: the supervisor rewrites stack.json)."""
        return self.root / "supervisor.process.json"

    def supervisor_record(self) -> Optional[process.ProcessRecord]:
        try:
            return process.ProcessRecord.from_json(json.loads(self.supervisor_file.read_text()))
        except (OSError, ValueError):
            return None

    def up(self, say: Callable[[str], None] = print, timeout: float = 600.0,
           profile: Optional[str] = None, node_cpu: Optional[str] = None, node_memory: Optional[str] = None,
           configmap_delay: Optional[float] = None) -> dict[str, process.ProcessRecord]:
        """Start every component that is not running, through the supervisor; a running stack is left as it is.

        Without a running supervisor one is started, and it starts the components; with one, it
        is asked (SIGUSR1) to start what is down now, skipping its back-off. Either way this
        waits for its report and raises its SetupError if a start failed. `profile` is the version
        profile of a new state folder; an existing one keeps its own (another is refused).
        `node_cpu`, `node_memory` size the node (`helpers.local.cluster.node`); a running stack's
        controller resizes it on its next pass.
        `configmap_delay` (else MMS_CONFIGMAP_DELAY, else the folder's, else 0) is how long a changed
        model-config ConfigMap takes to reach the agent (`controller.projection`): kept by the folder,
        and taken by a running controller at its next change.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        state = self._load()
        first = "profile" not in state
        chosen = self._choose_profile(state, profile)
        node.choose(self.root, chosen, node_cpu, node_memory)
        delay = projection.chosen_delay(configmap_delay)
        if delay is not None:
            projection.write_delay(self.root, delay)
        if first:  # else the supervisor owns stack.json: never write over its records
            self._save(state)
        sup = self.supervisor_record()
        before = read_report(self.supervisor_report).get("round", 0) if sup and sup.alive() else -1
        if sup and sup.alive():
            os.kill(sup.pid, signal.SIGUSR1)
        else:
            self.supervisor_report.unlink(missing_ok=True)
            argv = process.python_argv("helpers.local.stack.supervisor", "--state-dir", str(self.root))
            env = {**os.environ, "MMS_STATE_DIR": str(self.root)}
            sup = process.start("supervisor", argv, self.logs / "supervisor.log", self.supervisor_report.exists,
                                env=env, timeout=30)
            self.supervisor_file.write_text(json.dumps(sup.to_json(), indent=2))
        shown = 0

        def finished() -> Optional[dict]:
            nonlocal shown
            report = read_report(self.supervisor_report)
            if report.get("progress_for", 0) > before:
                for line in report.get("progress", [])[shown:]:
                    say(line)
                shown = len(report.get("progress", []))
            done = report.get("round", 0) > before and report.get("state") in ("running", "failed")
            return report if done else None

        def gone() -> Optional[str]:
            return None if sup.alive() else _("the supervisor exited (its log: {log})").format(
                log=self.logs / "supervisor.log")

        try:
            report = poll_until(finished, "the local stack to start", timeout=timeout, interval=0.05, give_up=gone)
        except WaitTimeout as exc:
            report = read_report(self.supervisor_report)  # a failed start is reported just before exiting
            if report.get("state") != "failed":
                raise SetupError(_("the local stack did not start: {exc}\n{log_tail}").format(
                                     exc=exc, log_tail=process.log_tail(self.logs / 'supervisor.log')),
                                 _("read the logs: `python -m helpers.local logs`")) from None
        if report.get("state") == "failed":
            error = report.get("error") or {}
            raise SetupError(error.get("cause", _("the local stack did not start")), error.get("fix", ""))
        return self.records()

    def start_all(self, say: Callable[[str], None] = print) -> dict[str, process.ProcessRecord]:
        """Start, in order, every component that is not running (the supervisor calls this).

        A component that runs but is not healthy may be starting or shutting down (SIGTERM
        sent): it is given a moment to become healthy or exit, then stopped by PID and started
        anew. A failure stops what this call started, in reverse order.
        """
        state = self._load()
        started: list[process.ProcessRecord] = []
        try:
            for component in COMPONENTS:
                name = component.name
                if not component.installed():
                    continue
                if name == "controller" and started:
                    self._seed(say)  # the controller needs the CRDs; S3's address may have changed
                record = self.records().get(name)
                if record and record.alive() and self._settled(component, record):
                    continue
                if record:
                    leftovers.clean(record.pid, name)  # e.g. nginx's worker, still holding the port
                say(_("starting {name} ...").format(name=name))
                new = component.start(self, state, self.logs / f"{name}.log")
                if record:  # it died (`down` forgets its records): a restart, as the supervisor counts them
                    new.restarts, new.last_exit = record.restarts + 1, process.exit_reason(record) or record.last_exit
                started.append(new)
                self._remember(state, new)
        except BaseException:
            for record in reversed(started):
                process.stop(record)
                state["processes"].pop(record.name, None)
            self._save(state)
            raise
        return self.records()

    def _settled(self, component: Component, record: process.ProcessRecord) -> bool:
        """True if a running component is healthy; waits out one that is starting or stopping."""
        def decided() -> Optional[str]:
            if not record.alive():
                return "exited"
            try:
                return "healthy" if component.healthy(self, record) else None
            except (requests.RequestException, ValueError, KeyError):
                return None

        try:
            outcome = poll_until(decided, f"{component.name} (pid {record.pid}) to become healthy or exit",
                                 timeout=30, interval=0.1)
        except WaitTimeout:
            process.stop(record)  # ours, hung: stop it by PID and start a new one
            return False
        if outcome == "exited":
            process.stop(record)  # reaps it if it is our child
        return outcome == "healthy"

    def _remember(self, state: dict, record: process.ProcessRecord) -> None:
        state["processes"][record.name] = record.to_json()
        for key, port in record.ports.items():
            state["ports"][f"{record.name}.{key}"] = port
        self._save(state)

    def restart(self, name: str, reason: str) -> tuple[process.ProcessRecord, bool]:
        """Start a component that died again, on its old ports if they free up; counts the restart.

        Returns the new record and whether its ports moved (then what points at it must follow:
        the seeded minio-service for S3, the controller's kubeconfig for the apiserver).
        """
        state = self._load()
        old = self.records().get(name)
        if old:
            leftovers.clean(old.pid, name)
        new = COMPONENTS_BY_NAME[name].start(self, state, self.logs / f"{name}.log")
        new.restarts, new.last_exit = (old.restarts + 1 if old else 1), reason
        self._remember(state, new)
        return new, old is not None and old.ports != new.ports

    def _start_s3(self, state: dict, log: Path) -> process.ProcessRecord:
        if self.profile().seaweedfs:  # Kubeflow 1.11: SeaweedFS behind minio-service
            ports = seaweedfs.free_ports({**{k.split(".", 1)[1]: v for k, v in state["ports"].items()
                                             if k.startswith("s3.")}, "s3": self._port(state, "s3", "s3")})
            return seaweedfs.start(self.root / "data" / "seaweedfs", ports, self.s3_credentials(), log)
        return s3server.start(self.s3_data, self._port(state, "s3", "s3"), self.s3_credentials(), log)

    def _start_etcd(self, state: dict, log: Path) -> process.ProcessRecord:
        client = self._port(state, "etcd", "client")
        peer = self._port(state, "etcd", "peer")
        return controlplane.start_etcd(self.cp, client, peer, log)

    def _start_apiserver(self, state: dict, log: Path) -> process.ProcessRecord:
        token = controlplane.ensure_credentials(self.cp)
        port = self._port(state, "kube-apiserver", "https")
        record = controlplane.start_apiserver(self.cp, port, state["ports"]["etcd.client"], token, log)
        controlplane.write_kubeconfig(self.cp, port, token)
        identity.publish_admin(self.root, token, self.profile())
        return record

    def _start_controller_manager(self, state: dict, log: Path) -> process.ProcessRecord:
        return controlplane.start_controller_manager(self.cp, self._port(state, "kube-controller-manager", "https"), log)

    def _start_gateway(self, state: dict, log: Path) -> process.ProcessRecord:
        return gateway_process.start(self.root, log, state["ports"].get("gateway.http"),
                                     restarting="gateway" in state["processes"])

    def _seed(self, say: Callable[[str], None]) -> None:
        """Install the CRDs and the Kubeflow-shaped objects the guide reads (idempotent)."""
        from helpers.clients import k8s
        from helpers.local.crds import crd_manifests
        from helpers.local.stack.seed import seed_manifests

        profile = self.profile()
        say(_("installing {group} CRDs and seeding as {name} ...").format(group=profile.group, name=profile.name))
        client = controlplane.api_client(self.kubeconfig)
        creds = self.s3_credentials()
        s3_port = self._load()["ports"]["s3.s3"]
        k8s.apply_all(client, crd_manifests(profile))
        k8s.apply_all(client, seed_manifests(profile, creds.access_key, creds.secret_key,
                                                   f"127.0.0.1:{s3_port}"))

    def _start_controller(self, state: dict, log: Path) -> process.ProcessRecord:
        ready = self.root / "controller.ready"
        ready.unlink(missing_ok=True)
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "MMS_STATE_DIR": str(self.root)}
        argv = process.python_argv("helpers.local.controller", "--state-dir", str(self.root),
                                   "--profile", self.profile().name)
        return process.start("controller", argv, log, ready.exists, env=env, timeout=60)

    def down(self, say: Callable[[str], None] = print) -> list[str]:
        """Stop the supervisor, then the stack's processes in reverse order, by PID; data, manifests and objects stay."""
        stopped = []
        sup = self.supervisor_record()
        if sup and process.stop(sup):
            stopped.append("supervisor")
            say(_("stopped supervisor (pid {pid})").format(pid=sup.pid))
        records = self.records()
        for name in reversed(ORDER):
            record = records.get(name)
            if record and process.stop(record, timeout=self._grace(name)):
                stopped.append(name)
                say(_("stopped {name} (pid {pid})").format(name=name, pid=record.pid))
            if record and leftovers.clean(record.pid, name):
                say(_("stopped what {name} (pid {pid}) had left running").format(name=name, pid=record.pid))
            if name == "controller":
                # The controller stops its servers; this catches any it could not (it was killed).
                for server, rec in self.server_records().items():
                    if process.stop(rec):
                        stopped.append(server)
                        say(_("stopped {server} (pid {pid})").format(server=server, pid=rec.pid))
        earlier = gateway_process.published(self.root)  # an nginx a controller started before it was supervised
        if earlier and "gateway" not in records and process.stop(earlier):
            stopped.append("gateway")
            say(_("stopped gateway (pid {pid})").format(pid=earlier.pid))
        state = self._load()
        state["processes"] = {}
        self._save(state)
        self.supervisor_file.unlink(missing_ok=True)
        for busy in cgroups.remove_all(self.root):  # the servers' memory cgroups, once their processes are gone
            say(_("could not remove memory cgroup {group} (a process is still in it)").format(group=busy))
        return stopped

    def node_size(self) -> node.NodeSize:
        """The node's allocatable cpu and memory (kept by the state folder, else the release's default)."""
        return node.current(self.root, self.profile())

    def memory_limits_line(self) -> str:
        """Whether Triton runs under its container's memory limit here: the controller's finding, else a probe now
        (in the reader's language; a controller of an older version published only its own line)."""
        found = cgroups.published_probe(self.root)
        return found.line() if found else cgroups.published(self.root).get("line") or cgroups.probe().line()

    def _grace(self, name: str) -> float:
        """Seconds between SIGTERM and SIGKILL when `down` stops `name` (a pod's termination grace)."""
        if name == "s3" and self.profile().seaweedfs:
            return seaweedfs.STOP_GRACE
        return process.STOP_GRACE

    # --- inspection ------------------------------------------------------------------------
    def status(self) -> list[ComponentStatus]:
        """What runs, where, whether it answers its health check, and how often it was restarted.

        Rows: the components in ORDER, then the supervisor, then the parts inside the controller, then each
        server's Triton and agent.
        """
        rows = []
        records = self.records()
        waiting = read_report(self.supervisor_report).get("backoff", {})
        sup = self.supervisor_record()
        supervised = bool(sup and sup.alive())
        for name in ORDER:
            record = records.get(name)
            if record is None and not COMPONENTS_BY_NAME[name].installed():
                rows.append(ComponentStatus(name, False, False, None, "", _("not installed: the stack runs without "
                                                                            "it (`make setup` installs it)")))
                continue
            running = bool(record and record.alive())
            address = ", ".join(f"127.0.0.1:{p}" for p in record.ports.values()) if record else ""
            healthy = running and self._healthy(name, record)
            detail = ""
            if record and not running:
                detail = (_("CrashLoopBackOff: the supervisor restarts it in {seconds}s").format(
                              seconds=f"{max(waiting[name] - time.time(), 0):.0f}")
                          if supervised and name in waiting else
                          _("not running (was pid {pid}); the supervisor restarts it").format(pid=record.pid)
                          if supervised else
                          _("not running (was pid {pid}); `python -m helpers.local up` restarts it").format(
                              pid=record.pid))
            rows.append(ComponentStatus(name, running, healthy, record.pid if record else None, address, detail,
                                        record.restarts if record else 0, record.last_exit if record else ""))
        if sup:
            rows.append(ComponentStatus("supervisor", supervised, supervised, sup.pid, "", "" if supervised else
                                        _("not running: nothing restarts a component that dies; "
                                          "`python -m helpers.local up` starts it again")))
        for part in parts.read(self.root, records.get("controller")):
            rows.append(ComponentStatus(part.name, part.running, part.healthy, part.pid, part.address, part.detail,
                                        inside=part.inside))
        for name, record in self.server_records().items():
            running = record.alive()
            http = record.ports.get("http")
            healthy = running and (self._healthy("triton", record) if http else True)
            detail = "" if running else _("not running (was pid {pid}); the controller restarts it").format(
                pid=record.pid)
            address = ", ".join(f"{k}=127.0.0.1:{p}" for k, p in record.ports.items())
            rows.append(ComponentStatus(name, running, healthy, record.pid, address, detail,
                                        record.restarts, record.last_exit))
        return rows

    def _healthy(self, name: str, record: process.ProcessRecord) -> bool:
        """The same check `up` waited on when it started the component."""
        check = COMPONENTS_BY_NAME[name].healthy if name in COMPONENTS_BY_NAME else None
        if name == "triton":
            check = lambda _stack, rec: tritonserver.ready(rec.ports["http"])
        try:
            return check(self, record) if check else True
        except (requests.RequestException, ValueError, KeyError):
            return False

    def env(self, identity_name: str = "admin", namespace: str = "") -> dict[str, str]:
        """Environment for shells and clients: endpoints and file paths, never secret values.

        `identity_name` `learner` points KUBECONFIG at the `default-editor` of Profile `namespace`."""
        ports = self._load()["ports"]
        kubeconfig = self.kubeconfig
        if identity_name != "admin":
            kubeconfig = identity.require(self.root, identity_name, namespace) / "kubeconfig"
        values = {"MMS_TARGET": "local", "MMS_STATE_DIR": str(self.root), "MMS_PROFILE": self.profile().name,
                  "KUBECONFIG": str(kubeconfig),
                  "MMS_S3_CREDENTIALS_FILE": str(self.s3_credentials_file)}
        if "s3.s3" in ports:
            values["MMS_S3_ENDPOINT"] = f"127.0.0.1:{ports['s3.s3']}"
            values["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{ports['s3.s3']}"
            values["RCLONE_CONFIG"] = str(self.write_rclone_config(f"http://127.0.0.1:{ports['s3.s3']}"))
        ingress = gateway.address(self.root)
        if ingress:
            values["MMS_INGRESS_URL"] = ingress
        return values

    def credential_files(self, identity_name: str = "admin", namespace: str = "") -> dict[str, Path]:
        """The file holding an identity's gateway session, by the variable that takes it
        (MMS_INGRESS_COOKIE): `env` prints `$(cat FILE)`, never the value. Only the session, as a
        signed-in browser has it: a Kubeflow gateway refuses a service account's token unless an
        AuthorizationPolicy names it (`helpers.local.cluster.authz`)."""
        folder = identity.require(self.root, identity_name, namespace)
        return {"MMS_INGRESS_COOKIE": folder / "cookie"} if (folder / "cookie").exists() else {}

    def gateway_headers(self, identity_name: str = "admin", namespace: str = "") -> dict[str, str]:
        """The headers that get an identity through a guarded gateway (tests, benchmarks): its session."""
        sessions = [path.read_text().strip() for path in self.credential_files(identity_name, namespace).values()]
        return {"Cookie": "; ".join(sessions)} if sessions else {}

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



COMPONENTS: tuple[Component, ...] = (
    Component("s3", Stack._start_s3, lambda st, r: s3server.healthy(r.ports["s3"]), "MMS_S3_PORT"),
    Component("etcd", Stack._start_etcd, lambda st, r: controlplane.etcd_healthy(r.ports["client"])),
    Component("kube-apiserver", Stack._start_apiserver, lambda st, r: controlplane.apiserver_ready(
        st.cp, r.ports["https"], controlplane.ensure_credentials(st.cp)), "MMS_APISERVER_PORT"),
    Component("kube-controller-manager", Stack._start_controller_manager,
              lambda st, r: controlplane.controller_manager_healthy(st.cp, r.ports["https"])),
    Component("gateway", Stack._start_gateway, lambda st, r: gateway_process.healthy(r),
              installed=gateway_process.installed),
    Component("controller", Stack._start_controller, lambda st, r: True),
)
COMPONENTS_BY_NAME = {c.name: c for c in COMPONENTS}
ORDER = tuple(c.name for c in COMPONENTS)
