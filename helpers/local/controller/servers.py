"""A Triton InferenceService -> its processes (KServe's controller + kubelet).

Two kinds, as KServe tells them apart (`IsMMSPredictor`: the predictor has no storageUri):
- without storageUri, the multi-model server: a Triton in explicit model-control mode and the model
  agent beside it, which TrainedModels feed through the model-config ConfigMap;
- with storageUri, a server whose storageUri holds a whole Triton model repository: the storage
  initializer (`helpers.local.initializer`, the pod's init container) copies it, then Triton starts
  on the copy in its default mode and loads every model in it (`ensure_repository`). No agent, no
  model config: TrainedModels cannot be added (IsMMSPredictor False on KServe).

Per InferenceService the controller keeps a folder `servers/<ns>.<name>/` in the stack's state:
the model repository (`models/`, the pod's `/mnt/models`), the projected model config
(`configs/models.json`, as the kubelet mounts the ConfigMap), the agent's status file and the
records of the processes.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import requests
from kubernetes import client

from helpers.clients.k8s import resolve_address, triton_predictor
from helpers.clients.storage import S3Settings, StorageError, connect, s3_errors
from helpers.core.constants import (
    INFERENCESERVICE_CONFIG,
    KFSERVING_GROUP,
    LOCAL_ADDRESS_ANNOTATION,
    ApiGroup,
    api_group,
    model_config_map_name,
)
from helpers.core.errors import SetupError
from helpers.core.wait import WaitTimeout, poll_until
from helpers.local.agent.s3config import OUTBOUND_REFUSED_ENV
from helpers.local.cluster import cgroups
from helpers.local.controller.conditions import condition, merge_times, ready_from, strip_times
from helpers.local.controller.kube import Kube, owner_reference
from helpers.local.stack import process, tritonserver
from helpers.local.stack.releases import Profile

log = logging.getLogger("controller")
INITIALIZER = "initializer"  # the storage initializer's role: its process record and log file
PROXY_READY_AT = "proxy-ready-at"  # in the records: when a racing pod's Istio proxy listens (epoch seconds)
GRPC_ADDRESS_ANNOTATION = LOCAL_ADDRESS_ANNOTATION.replace("address", "grpc-address")
# The pod's own port, where the Service's address leads to the mesh's guard instead (kubectl port-forward
# reaches the container, not its sidecar).
POD_ADDRESS_ANNOTATION = LOCAL_ADDRESS_ANNOTATION.replace("address", "pod-address")


@dataclass(frozen=True)
class AgentEnv:
    """The agent container's env as KServe's credential builder writes it into the pod spec.

    Values are plain; the keys are references (`secret`, `key`) resolved when the container
    starts, as the kubelet resolves `valueFrom.secretKeyRef`. Taken once, when the server's pod
    is made: fixing the Secret's annotations later needs a new server, as on a cluster.
    """

    entries: tuple[tuple[str, str, str], ...]  # (name, value, "") or (name, secret, key)
    warnings: tuple[str, ...] = ()

    def spec(self) -> list[dict]:
        """As a container's `env` (secret values as valueFrom, never inline)."""
        return [{"name": n, "valueFrom": {"secretKeyRef": {"name": a, "key": b}}} if b else {"name": n, "value": a}
                for n, a, b in self.entries]

    def to_json(self) -> dict:
        return {"entries": [list(e) for e in self.entries], "warnings": list(self.warnings)}

    @classmethod
    def from_json(cls, data: dict) -> "AgentEnv":
        return cls(tuple(tuple(e) for e in data.get("entries", [])), tuple(data.get("warnings", [])))


class CheckFailed(Exception):
    """An InferenceService cannot be served; carries the condition reason and a message with the fix.

    `unknown`: not a verdict, the server is still on its way (PredictorReady Unknown, as Knative says
    while a revision's pod starts). `model_state`/`failure`: KServe's modelStatus for it
    (`PropagateModelStatus`: Pending, Loading, FailedToLoad and the storage initializer's exit).
    """

    def __init__(self, reason: str, message: str, unknown: bool = False, model_state: str = "",
                 failure: Optional[dict] = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.unknown = unknown
        self.model_state = model_state
        self.failure = failure


def storage_uri(isvc: Optional[dict]) -> str:
    """The Triton predictor's storageUri ("" for the multi-model server)."""
    return str((triton_predictor(isvc) or {}).get("storageUri") or "")


def configuration_name(group: ApiGroup, isvc: str) -> str:
    """The predictor's Knative Configuration (and Service): `<isvc>-predictor-default` on KFServing 0.5,
    `<isvc>-predictor` on KServe."""
    return f"{isvc}-predictor-default" if group.group == KFSERVING_GROUP else f"{isvc}-predictor"


def waiting_for_revision(group: ApiGroup, isvc: str, model_state: str = "Loading",
                         failure: Optional[dict] = None) -> CheckFailed:
    """What the predictor says while its pod is not ready yet: Knative's route condition, which the
    Knative Service's Ready (and the InferenceService's PredictorReady) carries while the first
    revision is not ready (knative/serving `route_lifecycle.go` `MarkConfigurationNotReady`, v0.19 and
    knative-v1.16). Init containers do not change it: the revision reconciler reads only the pod's
    regular containers (`reconcile_resources.go`)."""
    name = configuration_name(group, isvc)
    return CheckFailed("RevisionMissing", f'Configuration "{name}" is waiting for a Revision to become ready.',
                       unknown=True, model_state=model_state, failure=failure)


@dataclass(frozen=True)
class ServerDir:
    root: Path

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def config_file(self) -> Path:
        return self.root / "configs" / "models.json"

    @property
    def agent_status(self) -> Path:
        return self.root / "agent-status.json"

    @property
    def records(self) -> Path:
        return self.root / "processes.json"


def status_url(name: str, namespace: str) -> str:
    """The external URL KServe writes to `status.url` (Knative's default domain, example.com)."""
    return f"http://{name}.{namespace}.example.com"


def server_key(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


class Servers:
    """Runs, checks and stops the Triton + agent pair of every multi-model InferenceService."""

    def __init__(self, kube: Kube, state_root: Path, logs: Path, backends: Path, profile: Profile,
                 hierarchy: Optional[cgroups.Hierarchy] = None) -> None:
        self.kube = kube
        self.cgroups = hierarchy  # where containers' memory cgroups go; None: limits are not enforced
        self.profile = profile
        self.state_root = state_root
        self.logs = logs
        self.backends = backends
        self.backoff = process.CrashLoopBackOff()
        self._crashed: dict[str, tuple[float, str]] = {}  # "<key>/<role>" -> (restart not before, exit reason)

    def _restart_due(self, key: str, role: str, record: Optional[process.ProcessRecord]) -> tuple[int, str]:
        """For a dead process: (its restart count, why it ended) once its back-off has passed.

        Raises CheckFailed (reason CrashLoopBackOff, shown in the InferenceService's status)
        while it waits, as a pod's container waits in CrashLoopBackOff.
        """
        if record is None:
            return 0, ""
        name = f"{key}/{role}"
        if name not in self._crashed:
            reason = process.exit_reason(record) or "exited"
            delay = self.backoff.delay(name, time.time() - record.started)
            self._crashed[name] = (time.time() + delay, reason)
            log.warning("%s for %s (pid %s) ended: %s; restarting it in %.1fs (restart %d)",
                        role, key, record.pid, reason, delay, record.restarts + 1)
        not_before, reason = self._crashed[name]
        if time.time() < not_before:
            raise CheckFailed("CrashLoopBackOff", f"{role} exited ({reason}); restarting it in "
                                                  f"{not_before - time.time():.0f}s: see `python -m helpers.local logs`")
        del self._crashed[name]
        return record.restarts + 1, reason

    def dir(self, namespace: str, name: str) -> ServerDir:
        return ServerDir(self.state_root / "servers" / server_key(namespace, name))

    # --- checks ------------------------------------------------------------------------
    def check(self, group: ApiGroup, isvc: dict) -> None:
        """Is this a server KServe would run? Raises CheckFailed naming the fix.

        With a storageUri it is a server of its own models (KFServing 0.5.1's IsMMSPredictor is false
        for it whatever `multiModelServer` says), so only the multi-model server needs that switch.
        """
        triton = triton_predictor(isvc)
        if triton is None:
            raise CheckFailed("PredictorNotSupported",
                              "the local stack serves Triton predictors only: give spec.predictor.triton")
        self._check_config(group, multi_model=not triton.get("storageUri"))

    def _check_config(self, group: ApiGroup, multi_model: bool) -> None:
        ns = self.profile.config_namespace
        cm = self.kube.read(self.kube.core.read_namespaced_config_map, INFERENCESERVICE_CONFIG, ns)
        where = f"ConfigMap {INFERENCESERVICE_CONFIG} in namespace {ns}"
        if cm is None:
            raise CheckFailed("ConfigMissing", f"{where} not found: is {group.group} installed?")
        if not multi_model or not self.profile.multi_model_key:
            return  # KServe 0.10+: a predictor without storageUri is multi-model, nothing to switch on
        predictors = json.loads((cm.data or {}).get("predictors", "{}"))
        if not (predictors.get("triton") or {}).get("multiModelServer"):
            raise CheckFailed("MultiModelServerDisabled",
                              f"{where} has predictors.triton.multiModelServer false; set it to true "
                              f"(kubectl edit cm {INFERENCESERVICE_CONFIG} -n {ns}), then re-create this InferenceService")

    def agent_env(self, group: ApiGroup, isvc: dict) -> AgentEnv:
        """The agent's env from the service account's secrets, as KServe's credential builder makes it
        when the server's pod is created (`ensure_running` asks for it only then). A storageUri
        server's storage initializer gets the same env from the same builder
        (`CreateSecretVolumeAndEnv`, storage_initializer_injector.go at kf v0.5.1 and ks v0.15.2).

        Only a missing service account stops the server (the pod cannot be created). Anything
        else, as on a cluster, gives a server whose agent (or storage initializer) fails at download
        time; the local stack says why in Events on the InferenceService (`warnings`).
        """
        who = "the storage initializer" if storage_uri(isvc) else "the agent"
        namespace = isvc["metadata"]["namespace"]
        sa_name = ((isvc.get("spec") or {}).get("predictor") or {}).get("serviceAccountName") or "default"
        sa = self.kube.read(self.kube.core.read_namespaced_service_account, sa_name, namespace)
        if sa is None:
            raise CheckFailed("ServiceAccountNotFound",
                              f"service account {sa_name!r} not found in {namespace}: apply s3_secret.yaml "
                              f"(notebook 01_minio) or fix spec.predictor.serviceAccountName")
        other = api_group(KFSERVING_GROUP if group.group != KFSERVING_GROUP else "serving.kserve.io")
        warnings: list[str] = []
        for ref in sa.secrets or []:
            secret = self.kube.read(self.kube.core.read_namespaced_secret, ref.name, namespace)
            if secret is None:
                warnings.append(f"service account {sa_name!r} names secret {ref.name!r}, which does not exist in "
                                f"{namespace}: {who} gets no S3 credentials from it (apply s3_secret.yaml)")
                continue
            notes = secret.metadata.annotations or {}
            if group.s3_endpoint not in notes:
                if other.s3_endpoint in notes:
                    warnings.append(f"secret {ref.name!r} is annotated {other.s3_endpoint}, but this server is "
                                    f"{group.group}: {who} ignores it (annotate it {group.s3_endpoint})")
                continue
            return self._env_from(group, secret, notes, namespace, tuple(warnings))
        warnings.append(f"no secret of service account {sa_name!r} has the {group.s3_endpoint} annotation, so "
                        f"{who} gets no S3 endpoint: apply s3_secret.yaml and list the secret under the "
                        "service account's `secrets`")
        return AgentEnv((), tuple(warnings))

    def _env_from(self, group: ApiGroup, secret: client.V1Secret, notes: dict, namespace: str,
                  warnings: tuple[str, ...]) -> AgentEnv:
        name = secret.metadata.name
        keys = self._credential_keys()
        entries = [("AWS_ACCESS_KEY_ID", name, keys[0]), ("AWS_SECRET_ACCESS_KEY", name, keys[1])]
        endpoint = notes[group.s3_endpoint]
        scheme = "https://"
        if group.s3_usehttps in notes:
            scheme = "http://" if notes[group.s3_usehttps] == "0" else scheme
            entries.append(("S3_USE_HTTPS", notes[group.s3_usehttps], ""))
        entries += [("S3_ENDPOINT", endpoint, ""), ("AWS_ENDPOINT_URL", scheme + endpoint, "")]
        for annotation, env in ((group.s3_region, self.profile.region_env), (group.s3_verifyssl, "S3_VERIFY_SSL"),
                                (group.s3_usevirtualbucket, "S3_USER_VIRTUAL_BUCKET")):
            if annotation in notes:
                entries.append((env, notes[annotation], ""))
        problem = self._s3_problem(secret, keys, scheme + endpoint, namespace)
        if problem:
            warnings = (*warnings, f"secret {name!r}: {problem}")
        return AgentEnv(tuple(entries), warnings)

    def _credential_keys(self) -> tuple[str, str]:
        """The Secret keys the builder reads: inferenceservice-config's credentials.s3, else KServe's defaults."""
        cm = self.kube.read(self.kube.core.read_namespaced_config_map, INFERENCESERVICE_CONFIG,
                            self.profile.config_namespace)
        s3 = json.loads(((cm.data or {}) if cm else {}).get("credentials", "{}")).get("s3") or {}
        return s3.get("s3AccessKeyIDName") or "awsAccessKeyID", s3.get("s3SecretAccessKeyName") or "awsSecretAccessKey"

    def resolve_env(self, env: AgentEnv, namespace: str) -> dict[str, str]:
        """The env values at container start: secret references read now (a missing key is left out)."""
        values = {}
        for name, a, b in env.entries:
            if not b:
                values[name] = a
                continue
            secret = self.kube.read(self.kube.core.read_namespaced_secret, a, namespace)
            raw = ((secret.data or {}) if secret else {}).get(b)
            if raw is not None:
                values[name] = base64.b64decode(raw).decode()
        return values

    def _s3_problem(self, secret: client.V1Secret, keys: tuple[str, str], url: str, namespace: str) -> Optional[str]:
        """Try the credentials as the new pod's agent will: an Event if they fail, not a verdict."""
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        problem = None
        if not data.get(keys[0]) or not data.get(keys[1]):
            problem = f"has no {keys[0]} or {keys[1]}, the keys the credential builder reads: see s3_secret.yaml"
        else:
            endpoint = resolve_address(self.kube.api, url.split("://", 1)[1], namespace)
            settings = S3Settings(endpoint, data[keys[0]], data[keys[1]], url.startswith("https://"))
            try:
                s3 = connect(settings, retries=0)
                with s3_errors(s3):
                    s3.list_buckets()
            except StorageError as exc:
                problem = str(exc).replace("\n ", "")
        return problem

    # --- processes -----------------------------------------------------------------------
    def prepare(self, namespace: str, name: str, generation: int, make_env: Callable[[], AgentEnv],
                model_config: bool = True) -> AgentEnv:
        """The folder and the pod's agent env (a storageUri server's: its storage initializer's) for this
        generation of the InferenceService; `model_config` (the multi-model server) also the agent's
        config file.

        `make_env` is called once a generation (a new pod); a changed InferenceService stops the
        processes of the old one first. The env is kept while the pod lives (a restarted agent
        gets the same env, with the Secret's values read again, as a restarted container does).
        """
        where = self.dir(namespace, name)
        for path in (where.models, *((where.config_file.parent,) if model_config else ())):
            path.mkdir(parents=True, exist_ok=True)
        if model_config and not where.config_file.exists():
            where.config_file.write_text("[]")
        records = self._records(where)
        if records.get("generation") != generation or "agent-env" not in records:
            if records.get("generation") is not None:
                log.info("inferenceservice %s/%s changed: starting its server again", namespace, name)
                for role in ("agent", INITIALIZER, "triton"):
                    if isinstance(records.get(role), process.ProcessRecord):
                        process.stop(records.pop(role))
                records.pop("initialized", None)  # a new pod: its storage initializer runs again
                records.pop(PROXY_READY_AT, None)
                if model_config:  # a new pod: its model-dir emptyDir starts empty, the agent downloads again
                    shutil.rmtree(where.models, ignore_errors=True)
                    where.models.mkdir(parents=True, exist_ok=True)
            # A string, not an object: process records are the only objects in that file.
            records.update({"generation": generation, "agent-env": json.dumps(make_env().to_json())})
            self._save(where, records)
        return AgentEnv.from_json(json.loads(records["agent-env"]))

    def ensure_running(self, namespace: str, name: str, generation: int, make_env: Callable[[], AgentEnv],
                       memory_limit: Optional[int] = None,
                       outbound_delay: Optional[float] = None) -> dict[str, process.ProcessRecord]:
        """Start (or restart) the server's Triton and agent (see `prepare` for the agent's env).

        Where memory cgroups are usable (`cgroups`), Triton runs in its container's group with
        `memory_limit` bytes (the server container's limits.memory; None: no limit). `outbound_delay`:
        the pod's Istio proxy starts with the agent and listens that many seconds later; until then the
        agent's outbound connections are refused, as iptables sends them to a port where Envoy does not
        listen yet (`s3config.OUTBOUND_REFUSED_ENV`).
        """
        self.prepare(namespace, name, generation, make_env)
        where = self.dir(namespace, name)
        records = self._records(where)
        key = server_key(namespace, name)
        triton = self._ensure_triton(namespace, name, where, records, memory_limit)
        agent = records.get("agent")
        if not (agent and agent.alive()):
            restarts, reason = self._restart_due(key, "agent", agent)
            pod_env = AgentEnv.from_json(json.loads(records["agent-env"]))
            env = self.resolve_env(pod_env, namespace)
            if outbound_delay:
                env[OUTBOUND_REFUSED_ENV] = f"{outbound_delay:g}"
                log.info("agent for %s starts before its pod's Istio proxy: outbound refused for %.1fs",
                         key, outbound_delay)
            records["agent"] = self._start_agent(namespace, name, where, triton, env)
            if outbound_delay:  # the agent counts from its start, which its status file marks: the proxy is
                # ready no sooner than that (`pods.Pods._start_sidecar` reads it; a string, as the other notes)
                records[PROXY_READY_AT] = f"{time.time() + outbound_delay:.3f}"
            records["agent"].restarts, records["agent"].last_exit = restarts, reason
            self._save(where, records)
        return records

    def ensure_repository(self, namespace: str, name: str, generation: int, make_env: Callable[[], AgentEnv],
                          uri: str, memory_limit: Optional[int] = None) -> dict[str, process.ProcessRecord]:
        """Run a storageUri server's pod as a kubelet does: its storage initializer to completion, then
        Triton on the copy, loading every model in it; returns the records once Triton is ready.

        A new pod's `/mnt/models` (`models/`) starts empty, as an emptyDir does. Raises CheckFailed
        while it is on its way: the initializer running, failing (exit code, back-off before the next
        run, as Init:Error and Init:CrashLoopBackOff), Triton loading (Unknown, Knative's
        RevisionMissing), or Triton ended (CrashLoopBackOff, as for the multi-model server).
        """
        self.prepare(namespace, name, generation, make_env, model_config=False)
        where = self.dir(namespace, name)
        records = self._records(where)
        group = api_group(self.profile.group)
        if not records.get("initialized"):
            self._run_initializer(namespace, name, uri, where, records)
        triton = self._ensure_triton(namespace, name, where, records, memory_limit, load_all=True)
        if not _answers(triton):  # KServe: the initializer is done, the server container not ready: Pending
            raise waiting_for_revision(group, name, "Pending")
        return records

    def _ensure_triton(self, namespace: str, name: str, where: ServerDir, records: dict,
                       memory_limit: Optional[int], load_all: bool = False) -> process.ProcessRecord:
        """The server's Triton, started again (same ports where free, in its container's memory group) when
        it is not running; `load_all`: a storageUri predictor's Triton, returned before it is ready."""
        key = server_key(namespace, name)
        triton = records.get("triton")
        if triton and triton.alive():
            return triton
        restarts, reason = self._restart_due(key, "triton", triton)
        old = triton.ports if triton else {}
        ports = {k: self._same_port(old.get(k)) or process.free_port() for k in ("http", "grpc", "metrics")}
        tritonserver.prepare_backends(self.backends)
        cgroup, on_spawn = self._container_group(key, memory_limit)
        triton = tritonserver.start(f"triton-{namespace}.{name}", where.models, self.backends, ports,
                                    self.logs / f"triton-{key}.log", on_spawn=on_spawn, load_all=load_all,
                                    wait=not load_all)
        triton.restarts, triton.last_exit = restarts, reason
        records["triton"] = triton
        if cgroup is not None:  # a string: how the pod tells an OOM kill of this run (pods.Pods._finish)
            records["triton-cgroup"] = json.dumps({"path": str(cgroup), "pid": triton.pid,
                                                   "oomKills": cgroups.oom_kills(cgroup), "limit": memory_limit})
        self._save(where, records)
        return triton

    def _run_initializer(self, namespace: str, name: str, uri: str, where: ServerDir, records: dict) -> None:
        """Start, watch or restart the storage initializer; returns once it has succeeded (records say so)."""
        key = server_key(namespace, name)
        group = api_group(self.profile.group)
        init = records.get(INITIALIZER)
        if init is not None and init.alive():
            # KServe keeps FailedToLoad while a failed initializer runs again (PropagateModelStatus requeues)
            raise waiting_for_revision(group, name, "FailedToLoad" if init.restarts else "Loading")
        ended = process.exit_reason(init) if init is not None else None
        if init is not None and ended is None:  # ending this very moment: its status comes next pass
            raise waiting_for_revision(group, name)
        if ended == "exit code 0":
            log.info("storage initializer for %s copied %s", key, uri)
            # Done for the pod's life: its record goes (the pod's state keeps the run, `status` lists no
            # process to restart).
            del records[INITIALIZER]
            records["initialized"] = True
            self.backoff.reset(f"{key}/{INITIALIZER}")
            self._save(where, records)
            return
        restarts, reason = 0, ""
        if init is None:  # a new pod: its emptyDir starts empty
            shutil.rmtree(where.models, ignore_errors=True)
            where.models.mkdir(parents=True, exist_ok=True)
        else:
            failure = {"reason": "ModelLoadFailed", "exitCode": process.exit_code(init.pid) or 1,
                       "message": termination_message(Path(init.log))}
            try:
                restarts, reason = self._restart_due(key, INITIALIZER, init)
            except CheckFailed:
                raise waiting_for_revision(group, name, "FailedToLoad", failure) from None
        argv = process.python_argv("helpers.local.initializer", uri, str(where.models), "--release", self.profile.release)
        env = self.resolve_env(AgentEnv.from_json(json.loads(records["agent-env"])), namespace)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        started = process.start(f"storage-initializer-{key}", argv, self.logs / f"{INITIALIZER}-{key}.log",
                                lambda: True, env={**inherited, **env})
        started.restarts, started.last_exit = restarts, reason
        records[INITIALIZER] = started
        self._save(where, records)
        raise waiting_for_revision(group, name)

    @staticmethod
    def _same_port(port: Optional[int]) -> Optional[int]:
        """A restarted Triton keeps its ports (clients hold the address) once its predecessor frees them.

        A cluster Service's address never moves with its pod; here the wait is bounded (10 s),
        after which a new port is taken and the Service annotation follows it.
        """
        if not port:
            return None
        try:
            return poll_until(lambda: process.port_free(port) and port, f"port {port} to be released",
                              timeout=10, interval=0.1)
        except WaitTimeout:
            return None

    def _container_group(self, key: str, limit: Optional[int]):
        """(the memory cgroup for this server's Triton, the hook that puts a new PID in it), or (None, None)."""
        if self.cgroups is None:
            return None, None
        try:
            group = cgroups.ensure(self.cgroups, self.state_root, key, limit)
        except OSError as exc:
            log.warning("no memory cgroup for %s (%s): Triton runs without its limit", key, exc.strerror or exc)
            return None, None
        return group, lambda pid: cgroups.add(group, pid)

    def _start_agent(self, namespace: str, name: str, where: ServerDir, triton: process.ProcessRecord,
                     s3_env: dict[str, str]) -> process.ProcessRecord:
        where.agent_status.unlink(missing_ok=True)
        argv = process.python_argv("helpers.local.agent", "--config-dir", str(where.config_file.parent),
                                   "--model-dir", str(where.models),
                                   "--triton-url", f"http://127.0.0.1:{triton.ports['http']}",
                                   "--status-file", str(where.agent_status),
                                   "--region-env", self.profile.region_env, *self.profile.agent_args)
        # Only what KServe injects: no S3 settings of this process leak into the agent.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        return process.start(f"agent-{namespace}.{name}", argv, self.logs / f"agent-{server_key(namespace, name)}.log",
                             where.agent_status.exists, env={**inherited, **s3_env}, timeout=60)

    def record(self, namespace: str, name: str, role: str) -> Optional[process.ProcessRecord]:
        """The process record of one server's `triton` or `agent`, if the controller started it."""
        found = self.records(namespace, name).get(role)
        return found if isinstance(found, process.ProcessRecord) else None

    def records(self, namespace: str, name: str) -> dict:
        """Everything in one server's processes.json: process records by role, and the notes kept beside them."""
        return self._records(self.dir(namespace, name))

    @staticmethod
    def _records(where: ServerDir) -> dict:
        if not where.records.exists():
            return {}
        data = json.loads(where.records.read_text())
        return {k: process.ProcessRecord.from_json(v) if isinstance(v, dict) else v for k, v in data.items()}

    @staticmethod
    def _save(where: ServerDir, records: dict) -> None:
        data = {k: v.to_json() if isinstance(v, process.ProcessRecord) else v for k, v in records.items()}
        tmp = where.records.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(where.records)

    def running(self) -> list[str]:
        """Keys `<ns>.<name>` of every server folder with process records."""
        return sorted(p.parent.name for p in (self.state_root / "servers").glob("*/processes.json"))

    def known(self) -> list[str]:
        """Keys `<ns>.<name>` of every server folder, running or not (a deleted pod's has no records)."""
        return sorted(p.name for p in (self.state_root / "servers").glob("*/") if p.is_dir())

    def stop(self, key: str, remove: bool = False, pod_gone: bool = False) -> None:
        """Stop a server's agent then its Triton; `remove` also deletes its folder (the ISVC is gone);
        `pod_gone` empties its model folder, the pod's `model-dir` emptyDir, which goes with its pod."""
        where = ServerDir(self.state_root / "servers" / key)
        records = self._records(where)
        for role in ("agent", INITIALIZER, "triton"):
            record = records.get(role)
            if isinstance(record, process.ProcessRecord) and process.stop(record):
                log.info("stopped %s for %s (pid %s)", role, key, record.pid)
        if records.get("triton-cgroup"):
            cgroups.remove(Path(json.loads(records["triton-cgroup"])["path"]))
        if remove:
            shutil.rmtree(where.root, ignore_errors=True)
        else:
            where.records.unlink(missing_ok=True)
            if pod_gone:
                shutil.rmtree(where.models, ignore_errors=True)

    # --- objects -----------------------------------------------------------------------
    def ensure_objects(self, isvc: dict, triton: process.ProcessRecord, address: Optional[str] = None,
                       model_config: bool = True) -> None:
        """The Service that maps the ISVC's address to Triton (or, with `address`, to the mesh's guard in
        front of it, the pod's own port then kept in POD_ADDRESS_ANNOTATION for port-forwards), and, for
        the multi-model server (`model_config`), the (empty) model-config ConfigMap."""
        meta = isvc["metadata"]
        ns, name = meta["namespace"], meta["name"]
        own = f"127.0.0.1:{triton.ports['http']}"
        notes = {LOCAL_ADDRESS_ANNOTATION: address or own, GRPC_ADDRESS_ANNOTATION: f"127.0.0.1:{triton.ports['grpc']}",
                 **({POD_ADDRESS_ANNOTATION: own} if address else {})}
        group = api_group(isvc["apiVersion"].split("/")[0])
        labels = {group.isvc_label: name}
        svc = self.kube.read(self.kube.core.read_namespaced_service, name, ns)
        if svc is None:
            body = client.V1Service(
                metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=notes,
                                             owner_references=[owner_reference(isvc)]),
                spec=client.V1ServiceSpec(ports=[client.V1ServicePort(name="http", port=80, target_port=8080)]))
            self.kube.core.create_namespaced_service(ns, body)
        elif any((svc.metadata.annotations or {}).get(k) != v for k, v in notes.items()):
            self.kube.core.patch_namespaced_service(name, ns, {"metadata": {"annotations": notes}})
        if not model_config:
            return
        cm_name = model_config_map_name(name)
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=cm_name, labels=labels,
                                                               owner_references=[owner_reference(isvc)]),
                                  data={"models.json": "[]"})
        self.kube.ensure(self.kube.core.create_namespaced_config_map, self.kube.core.read_namespaced_config_map,
                         cm_name, body, ns)

    def write_status(self, group: ApiGroup, isvc: dict, problem: Optional[CheckFailed]) -> None:
        """Status as KServe writes it: url, address.url, components, conditions, and on KServe modelStatus.

        A problem that is not a verdict (`unknown`) makes PredictorReady and Ready Unknown. Only what
        changed is written (the patch merges: a field left out keeps its value, as `url` does after
        a failure).
        """
        meta = isvc["metadata"]
        ns, name = meta["namespace"], meta["name"]
        revision = f"{name}-predictor-default-00001"
        if problem is None:
            parts = [condition(t, True) for t in
                     ("IngressReady", "PredictorConfigurationReady", "PredictorReady", "PredictorRouteReady")]
        else:
            parts = [condition("PredictorReady", None if problem.unknown else False, problem.reason, str(problem))]
        old = isvc.get("status") or {}
        conditions = parts + [ready_from(parts)]
        status = {"observedGeneration": meta.get("generation", 1), "conditions": conditions}
        if problem is None:
            status.update({
                "url": status_url(name, ns),
                "address": {"url": f"http://{name}.{ns}.svc.cluster.local"},
                "components": {"predictor": {
                    "latestCreatedRevision": revision, "latestReadyRevision": revision,
                    "url": f"http://{name}-predictor-default.{ns}.example.com",
                    "traffic": [{"latestRevision": True, "percent": 100, "revisionName": revision}]}},
            })
        if group.group != KFSERVING_GROUP:
            status["modelStatus"] = model_status(problem, (old.get("modelStatus") or {}).get("lastFailureInfo"))
        comparable = {key: old.get(key) for key in status}
        comparable["conditions"] = strip_times(old.get("conditions"))
        if comparable == {**status, "conditions": strip_times(conditions)}:
            return
        status["conditions"] = merge_times(old.get("conditions"), conditions)
        self.kube.patch_status(group.group, group.isvc_version, "inferenceservices", isvc, status)


def model_status(problem: Optional[CheckFailed], last_failure: Optional[dict] = None) -> dict:
    """KServe's `status.modelStatus` (PropagateModelStatus / UpdateModelRevisionStates, kserve v0.15.2
    `inference_service_status.go`): Loaded with one copy once ready; Loading while the storage
    initializer runs; FailedToLoad with the initializer's exit in lastFailureInfo; Pending otherwise.
    A failure once recorded stays in lastFailureInfo (SetModelFailureInfo only replaces it)."""
    if problem is None:
        found = {"transitionStatus": "UpToDate", "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
                 "copies": {"failedCopies": 0, "totalCopies": 1}}
    else:
        state = problem.model_state or "Pending"
        found = {"transitionStatus": "BlockedByFailedLoad" if state == "FailedToLoad" else "InProgress",
                 "states": {"activeModelState": "", "targetModelState": state}}
    failure = problem.failure if problem is not None and problem.failure else last_failure
    if failure:
        found["lastFailureInfo"] = failure
    return found


def _answers(triton: process.ProcessRecord) -> bool:
    """Whether Triton answers ready (a storageUri server's loads every model before it does)."""
    try:
        return tritonserver.ready(triton.ports["http"])
    except requests.RequestException:
        return False


TERMINATION_LINES, TERMINATION_BYTES = 80, 2048  # the kubelet's FallbackToLogsOnError tail


def termination_message(log_file: Path) -> str:
    """What `terminationMessagePolicy: FallbackToLogsOnError` puts in a failed container's status: the end
    of its last run's log, at most 80 lines and 2048 bytes (kubelet `kuberuntime_container.go`)."""
    from helpers.local.cluster.kubelet import runs

    found = runs(log_file)
    if not found:
        return ""
    data = log_file.read_bytes()[found[-1].start:found[-1].end]
    tail = b"\n".join(data.rstrip(b"\n").split(b"\n")[-TERMINATION_LINES:])
    return tail[-TERMINATION_BYTES:].decode(errors="replace")


def describe(exc: Exception) -> str:
    """A one-line message for an unexpected error while reconciling."""
    if isinstance(exc, SetupError):
        return exc.cause
    return f"{type(exc).__name__}: {exc}"
