"""The Node and the per-InferenceService Pod a cluster shows, with a status that follows the processes.

The local controller plays the kubelet of one Node (as virtual-kubelet does) and its scheduler:
it registers the Node with its kubelet endpoint and its size (`cluster/node.py`), creates for
every served InferenceService the Pod KFServing's Knative revision (or KServe's) would run, binds
it to the Node if its requests fit what the Node has left (`cluster/scheduler.py`; else it stays
Pending with kube-scheduler's `FailedScheduling` Event, and is tried again on every pass), and
writes the Pod's status from the real Triton and agent processes: phase, conditions, podIP,
containerStatuses whose `restartCount` grows when the controller restarts a dead process,
`lastState` from its exit (`OOMKilled` when the kernel ended Triton over its memory limit).

A storageUri server's Pod has no agent but an init container, `storage-initializer` (KServe's storage
initializer injector: its image and resources from `inferenceservice-config`'s `storageInitializer`,
args `<storageUri> /mnt/models`, the `kfserving-provision-location`/`kserve-provision-location` emptyDir
mounted there, read-only in the server container); its status shows `Init:0/1` while the initializer
runs, `Init:Error` and `Init:CrashLoopBackOff` when it fails, with its log's end as the termination
message (FallbackToLogsOnError), and the phase stays Pending until it has succeeded.

The pod carries the InferenceService's annotations (KServe copies them to the Knative revision, which
puts them on its pods), and in a namespace labelled `istio-injection: enabled` what the release's Istio
injector adds (`mesh.sidecar_for`, `mesh.inject`): on Kubeflow 1.0.2's Istio 1.1.6, an `istio-init` init
container and the `istio-proxy` container last; on Kubeflow 1.10/1.11 a native sidecar, which the local
API server (Kubernetes 1.20) cannot store, so the pod shows none unless it asks for the old kind
(`sidecar.istio.io/nativeSidecar: "false"`), then first with `pilot-agent wait` when the pod holds its
containers for it (`proxy.istio.io/config` holdApplicationUntilProxyStarts). The proxy has no process
here: its status follows its start (with the agent's, or before the others when held) and Envoy's
startup (`mesh.PROXY_STARTUP_S`), and a pod whose agent starts before it gets `outbound_delay` in its
Placement: the agent's outbound connections are refused for that long (the sidecar race).

A Pod deleted while its InferenceService lives is replaced, with fresh processes, as its
ReplicaSet would; a Pod whose InferenceService is gone (ownerReferences, the garbage collector)
is let go: as the kubelet does, the controller confirms the deletion once the processes stopped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import secrets
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

from kubernetes.client.exceptions import ApiException

from helpers.clients.k8s import not_found, triton_predictor
from helpers.core.constants import (
    AGENT_CONTAINER,
    CONFIG_DIR,
    INFERENCESERVICE_CONFIG,
    KFSERVING_GROUP,
    KSERVE_GROUP,
    KUBEFLOW_NAMESPACE,
    LOCAL_ADDRESS_ANNOTATION,
    MODEL_DIR,
    TRITON_HTTP_PORT,
    ApiGroup,
    api_group,
    model_config_map_name,
)
from helpers.local.cluster import cgroups, mesh, scheduler
from helpers.local.cluster.kubelet import ContainerLog, LogError
from helpers.local.cluster.kubelet_portforward import PortForwardError
from helpers.local.cluster.metrics import PodProcesses
from helpers.local.cluster.node import NodeSize
from helpers.local.controller.kube import Kube, owner_reference
from helpers.local.controller.servers import PROXY_READY_AT, storage_uri, termination_message
from helpers.local.stack import process
from helpers.local.stack.controlplane import KUBE_VERSION, NODE_NAME
from helpers.local.stack.seed import MINIO_POD, SEAWEEDFS_POD

log = logging.getLogger("controller")

INIT_CONTAINER, INIT_ROLE = "storage-initializer", "initializer"  # the init container and its process's role
# What KServe leaves out when it copies the InferenceService's annotations to the revision (and so the pod):
# ServiceAnnotationDisallowedList (kf v0.5.1, ks v0.15.0 pkg/constants/constants.go), both spellings of
# Knative's scale keys.
DISALLOWED_ANNOTATIONS = ("autoscaling.knative.dev/minScale", "autoscaling.knative.dev/maxScale",
                          "autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale",
                          "kubectl.kubernetes.io/last-applied-configuration")
_SAFE = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' alphabet for generated name suffixes
# A server pod's Triton ports as the pod numbers them (its args; metrics at Triton's default) -> the
# local process's port of that kind, for `kubectl port-forward pod/... 8002`.
TRITON_POD_PORTS = {TRITON_HTTP_PORT: "http", 9000: "grpc", 8002: "metrics"}


def revision(group: ApiGroup, isvc: str) -> str:
    """The Knative revision: `<isvc>-predictor-default-00001` (KFServing), `<isvc>-predictor-00001` (KServe)."""
    return f"{isvc}-predictor-default-00001" if group.group == KFSERVING_GROUP else f"{isvc}-predictor-00001"


def _suffix(seed: str, length: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:length])


def pod_name(group: ApiGroup, isvc: str, template_seed: str) -> str:
    """`<revision>-deployment-<template hash>-<random>`, as Knative's Deployment + ReplicaSet name it."""
    return f"{revision(group, isvc)}-deployment-{_suffix(template_seed, 10)}-{_suffix(secrets.token_hex(8), 5)}"


def _time(epoch: Optional[float] = None) -> str:
    moment = datetime.fromtimestamp(epoch, timezone.utc) if epoch else datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Placement:
    """What the scheduler made of a server's pod: bound to the node, or Pending and why."""

    bound: bool
    message: str = ""
    memory_limit: Optional[int] = None  # the server container's limits.memory in bytes, if any
    # Seconds the agent's outbound connections are refused after it starts: its pod's Istio proxy starts
    # after it and listens only then (the sidecar race). None: no such proxy, or the agent ran already.
    outbound_delay: Optional[float] = None


def _template_hash(isvc: dict) -> str:
    """The pod-template-hash of the server's pod: one per generation of the InferenceService."""
    meta = isvc["metadata"]
    return _suffix(f"{meta['uid']}/{meta.get('generation', 1)}", 10)


def _pod_object(pod) -> dict:
    """The fields Kube.event needs of a V1Pod."""
    meta = pod.metadata
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": meta.name, "namespace": meta.namespace,
                                                           "uid": meta.uid, "resourceVersion": meta.resource_version}}


def exit_code(pid: int) -> Optional[int]:
    """The exit code of a child seen dead (128+signal), as a runtime reports it; None if unknown.

    Read through `process`, which keeps each child's status once collected: reaping it here
    with waitpid would leave the controller's restart log without the reason. A child whose
    memory is gone may not be a zombie yet (more so on a busy machine): its status is waited for.
    """
    return process.exit_code(pid, dying=True)


class Pods:
    """The Node and the Pods of the local stack, and the container logs the kubelet endpoint serves."""

    def __init__(self, kube: Kube, state_root: Path, logs: Path, preemption_message: bool = False,
                 kubeflow: str = "") -> None:
        self.kube = kube
        self.state_root = state_root
        self.logs = logs
        self.preemption_message = preemption_message  # does this release's scheduler word its preemption verdict
        self.kubeflow = kubeflow  # the Kubeflow release, whose Istio injector the pods meet (mesh.INJECTORS)
        self.size: Optional[NodeSize] = None  # what the Node's status says now
        self._kubelet_port = 0
        self._lock = threading.Lock()

    # --- node --------------------------------------------------------------------------------
    def resize(self, size: NodeSize) -> None:
        """Write a new size into the Node's status (when `up --node-cpu/--node-memory` changed it)."""
        if size != self.size and self._kubelet_port:
            log.info("node %s: allocatable now cpu=%s memory=%s", NODE_NAME, size.cpu, size.memory)
            self.ensure_node(self._kubelet_port, size)

    def ensure_node(self, kubelet_port: int, size: NodeSize) -> None:
        """Register the Node (once) and write its status: address, kubelet endpoint, size, Ready."""
        self._kubelet_port, self.size = kubelet_port, size
        labels = {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", "type": "virtual-kubelet"}
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_NAME, "labels": labels}}
        self.kube.ensure(self.kube.core.create_node, self.kube.core.read_node, NODE_NAME, body)
        now = _time()
        conditions = [{"type": kind, "status": "False", "reason": f"KubeletHas{reason}",
                       "message": message, "lastHeartbeatTime": now, "lastTransitionTime": now}
                      for kind, reason, message in (
                          ("MemoryPressure", "SufficientMemory", "kubelet has sufficient memory available"),
                          ("DiskPressure", "NoDiskPressure", "kubelet has no disk pressure"),
                          ("PIDPressure", "SufficientPID", "kubelet has sufficient PID available"))]
        conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                           "message": "the local controller plays this node's kubelet",
                           "lastHeartbeatTime": now, "lastTransitionTime": now})
        status = {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "conditions": conditions, "capacity": size.capacity(), "allocatable": size.allocatable(),
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": platform.release(),
                         "osImage": "mms-notebooks local stack", "containerRuntimeVersion": "local://processes",
                         "kubeletVersion": KUBE_VERSION, "kubeProxyVersion": KUBE_VERSION,
                         "operatingSystem": "linux", "architecture": "amd64"},
        }
        self.kube.core.patch_node_status(NODE_NAME, {"status": status})

    def run_seed_pods(self, pods: Optional[list] = None) -> None:
        """Mark the seed's pods bound to this node (Kubeflow's `minio`, whose process is the stack's S3
        server) Running, as their kubelet would: `kubectl get pods` and `kubectl port-forward` see them so."""
        if pods is None:
            pods = self.kube.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={NODE_NAME}").items
        for pod in pods:
            if pod.metadata.owner_references or pod.metadata.deletion_timestamp or \
                    (pod.status and pod.status.phase == "Running"):
                continue  # a server's pod: its status follows its processes
            now = _time()
            statuses = [{"name": c.name, "ready": True, "restartCount": 0, "image": c.image, "imageID": "",
                         "started": True, "state": {"running": {"startedAt": now}}} for c in pod.spec.containers]
            status = {"phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
                      "startTime": now, "containerStatuses": statuses,
                      "conditions": [{"type": kind, "status": "True", "lastTransitionTime": now}
                                     for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]}
            self.kube.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})

    # --- per-server state -------------------------------------------------------------------
    def _state_file(self, key: str) -> Path:
        return self.state_root / "servers" / key / "pod.json"

    def _load(self, key: str) -> dict:
        path = self._state_file(key)
        return json.loads(path.read_text()) if path.exists() else {}

    def _server_states(self, namespace: str = "*") -> Iterator[tuple[str, dict]]:
        """(server key, pod state) of each server pod this node keeps (in `namespace`)."""
        for path in sorted((self.state_root / "servers").glob(f"{namespace}.*/pod.json")):
            try:
                yield path.parent.name, json.loads(path.read_text())
            except (OSError, ValueError):  # its server stopped meanwhile
                continue

    @staticmethod
    def _container_roles(state: dict) -> dict[str, str]:
        """A server pod's container names -> the process each stands for: its init container first, then
        its containers in their order."""
        server = api_group(state.get("group") or KSERVE_GROUP).server_container
        if state.get("storageUri"):
            return {INIT_CONTAINER: INIT_ROLE, server: "triton"}
        return {server: "triton", AGENT_CONTAINER: "agent"}

    def _save(self, key: str, state: dict) -> None:
        path = self._state_file(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    def observe(self, key: str, records: dict) -> None:
        """Before the controller restarts anything: note the exit code of each process that died,
        and whether the OOM killer ended it (its memory cgroup counted a kill during the run)."""
        state = self._load(key)
        if not state:
            return
        changed = False
        for role in self._container_roles(state).values():
            record = records.get(role)
            runs = state["containers"].get(role, [])
            if isinstance(record, process.ProcessRecord) and runs and runs[-1]["pid"] == record.pid \
                    and "exitCode" not in runs[-1] and not record.alive():
                self._finish(runs[-1], records.get(f"{role}-cgroup"))
                changed = True
        if changed:
            self._save(key, state)

    @staticmethod
    def _finish(run: dict, cgroup: Optional[str]) -> None:
        """Note how a run ended: its exit code, and OOMKilled when its cgroup's kill counter grew."""
        run.update({"exitCode": exit_code(run["pid"]), "finishedAt": _time()})
        if cgroup:
            group = json.loads(cgroup)
            if group.get("pid") == run["pid"] and cgroups.oom_kills(Path(group["path"])) > group.get("oomKills", 0):
                run["reason"] = "OOMKilled"

    # --- the pod ------------------------------------------------------------------------------
    def _current_pod(self, ns: str, state: dict):
        """The server's Pod named in its state, if it still exists (None if gone or replaced)."""
        if not state.get("pod"):
            return None
        pod = self.kube.read(self.kube.core.read_namespaced_pod, state["pod"], ns)
        return pod if pod is not None and pod.metadata.uid == state.get("uid") else None

    def place(self, group: ApiGroup, isvc: dict, agent_env: list[dict]) -> Placement:
        """Create the server's Pod if it has none, and schedule it: bind it to the node if its requests
        fit what the node has left, else leave it Pending with the scheduler's condition and Event.

        Called on every pass, so a Pending pod is tried again as soon as a pod is deleted or the node
        grows (kube-scheduler retries on such cluster events).
        """
        meta = isvc["metadata"]
        ns, name = meta["namespace"], meta["name"]
        key = f"{ns}.{name}"
        with self._lock:
            state = self._load(key)
            pod = self._current_pod(ns, state)
            if pod is not None and pod.metadata.deletion_timestamp:
                return Placement(False, "its pod is being deleted; a new one replaces it")
            if pod is not None and (pod.metadata.labels or {}).get("pod-template-hash") != _template_hash(isvc):
                # A changed InferenceService is a new revision, with a new pod (its processes were stopped
                # already): so lowering a Pending server's requests lets it be scheduled, as on a cluster.
                log.info("inferenceservice %s changed: its pod %s/%s is replaced", key, ns, pod.metadata.name)
                self._delete(ns, pod.metadata.name)
                pod = None
            if pod is None:
                pod, sidecar = self._create(group, isvc, agent_env)
                state = {"pod": pod.metadata.name, "uid": pod.metadata.uid, "group": group.group,
                         "created": _time(), "containers": {}}
                if storage_uri(isvc):
                    state["storageUri"] = storage_uri(isvc)
                if sidecar is not None:
                    state["sidecar"] = sidecar.to_json()
                self._save(key, state)
            spec = self.kube.api.sanitize_for_serialization(pod.spec)
            limit = self._memory_limit(group, spec)
            placed = Placement(True, memory_limit=limit) if pod.spec.node_name else self._schedule(pod, spec, limit)
            return replace(placed, outbound_delay=self._outbound_delay(state)) if placed.bound else placed

    @staticmethod
    def _outbound_delay(state: dict) -> Optional[float]:
        """For a pod whose agent has not run yet and whose Istio proxy starts after it: how long the agent's
        outbound connections are refused once it starts (the proxy's startup)."""
        sidecar = mesh.sidecar_json(state.get("sidecar"))
        if sidecar is None or not sidecar.races or state.get("storageUri") or state["containers"].get("agent"):
            return None
        return mesh.PROXY_STARTUP_S

    @staticmethod
    def _memory_limit(group: ApiGroup, spec: dict) -> Optional[int]:
        for container in spec.get("containers") or []:
            if container.get("name") == group.server_container:
                memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
                return scheduler.memory_bytes(memory) if memory else None
        return None

    def _schedule(self, pod, spec: dict, limit: Optional[int]) -> Placement:
        node = self.kube.core.read_node(NODE_NAME)
        allocatable = scheduler.Allocatable.of(node.status.allocatable or {})
        others = [self.kube.api.sanitize_for_serialization(p)
                  for p in self.kube.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={NODE_NAME}").items]
        placed = [scheduler.pod_requests(p.get("spec") or {}) for p in others if scheduler.holds_resources(p, NODE_NAME)]
        reasons = scheduler.insufficient(scheduler.pod_requests(spec), allocatable, placed)
        ns, name = pod.metadata.namespace, pod.metadata.name
        if reasons:
            message = scheduler.fit_error(reasons, preemption=self.preemption_message)
            self._unschedulable(pod, message)
            return Placement(False, message, limit)
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME}}
        # The client cannot read the Status object a binding answers with: take the raw response.
        self.kube.core.create_namespaced_pod_binding(name, ns, binding, _preload_content=False)
        self.kube.event(_pod_object(pod), "Normal", "Scheduled", scheduler.scheduled_message(ns, name, NODE_NAME),
                        source="default-scheduler")
        log.info("pod %s/%s bound to node %s", ns, name, NODE_NAME)
        return Placement(True, memory_limit=limit)

    def _delete(self, ns: str, name: str) -> None:
        try:
            self.kube.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
        except ApiException as exc:
            if not not_found(exc):
                raise

    def _unschedulable(self, pod, message: str) -> None:
        """PodScheduled False (reason Unschedulable) and a FailedScheduling Event, as kube-scheduler writes them."""
        before = {c.type: c for c in (pod.status.conditions or [])} if pod.status else {}
        old = before.get("PodScheduled")
        if old is None or old.status != "False" or old.message != message:
            log.info("pod %s/%s stays Pending: %s", pod.metadata.namespace, pod.metadata.name, message)
            status = {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                 "lastProbeTime": None, "lastTransitionTime": _time()}]}
            try:
                self.kube.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})
            except ApiException as exc:
                if not not_found(exc):
                    raise
        self.kube.event(_pod_object(pod), "Warning", "FailedScheduling", message, source="default-scheduler")

    def sync(self, group: ApiGroup, isvc: dict, records: dict, unready: tuple[str, ...] = ()) -> None:
        """For a bound Pod (see `place`): note new runs of its processes (and the end of a storage
        initializer's), and write the Pod's status; `unready`: roles that run but are not ready yet."""
        meta = isvc["metadata"]
        ns, name = meta["namespace"], meta["name"]
        key = f"{ns}.{name}"
        with self._lock:
            state = self._load(key)
            pod = self._current_pod(ns, state)
            if pod is None or pod.metadata.deletion_timestamp:
                return  # gone or being deleted: the next place() makes a new one, cleanup() lets it go
            for role in self._container_roles(state).values():
                record = records.get(role)
                runs = state["containers"].setdefault(role, [])
                if isinstance(record, process.ProcessRecord) and (not runs or runs[-1]["pid"] != record.pid):
                    if runs and "finishedAt" not in runs[-1]:
                        self._finish(runs[-1], None)
                    runs.append({"pid": record.pid, "startedAt": _time(record.started or None), "log": record.log})
                elif role == INIT_ROLE and runs and "finishedAt" not in runs[-1] and isinstance(
                        record, process.ProcessRecord) and not record.alive():
                    self._finish(runs[-1], None)  # an init container's end is its result, not a crash to restart
            self._start_sidecar(key, state, records)
            self._save(key, state)
        self._write_status(group, ns, pod, state, records, unready)

    def _start_sidecar(self, key: str, state: dict, records: dict) -> None:
        """Note when the pod's Istio proxy (no process here) started and is ready: with the agent, Envoy
        listening `mesh.PROXY_STARTUP_S` later; held, or without an agent, with the server container (held:
        ready by then). Its log and its init container's are empty runs."""
        data = state.get("sidecar")
        sidecar = mesh.sidecar_json(data)
        if sidecar is None or not sidecar.shown or "startedAt" in data:
            return
        role = "agent" if sidecar.races and not state.get("storageUri") else "triton"
        runs = state["containers"].get(role) or []
        if not runs:
            return
        record = records.get(role)
        started = record.started if isinstance(record, process.ProcessRecord) and record.pid == runs[0]["pid"] \
            and record.started else time.time()
        ready = started + (0 if sidecar.held else mesh.PROXY_STARTUP_S)
        if role == "agent" and records.get(PROXY_READY_AT):  # counted from the agent's own start, as it counts
            ready = max(ready, float(records[PROXY_READY_AT]))
        data.update(startedAt=started, readyAt=ready)
        for name in (sidecar.injector.init_name, mesh.SIDECAR):
            path = self._sidecar_log(key, name)
            if not path.exists():
                path.write_text(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(started))} starting {name}: "
                                "no process in the local stack\n")

    def proxy_ready(self, key: str) -> bool:
        """Whether the server's pod has no Istio proxy shown here, or one that is ready by now."""
        state = self._load(key)
        sidecar = mesh.sidecar_json(state.get("sidecar"))
        if sidecar is None or not sidecar.shown:
            return True
        ready_at = (state.get("sidecar") or {}).get("readyAt")
        return ready_at is not None and time.time() >= ready_at

    def _sidecar_log(self, key: str, name: str) -> Path:
        return self.logs / f"{name}-{key}.log"

    def _create(self, group: ApiGroup, isvc: dict, agent_env: list[dict]):
        """The server's Pod as the revision's Deployment makes it and the pod mutator injects into it: the
        agent beside a multi-model server, the storage initializer before a storageUri server (which gets
        `agent_env`, the credential builder's env, instead)."""
        meta, spec = isvc["metadata"], isvc.get("spec") or {}
        ns, name = meta["namespace"], meta["name"]
        predictor = spec.get("predictor") or {}
        triton = triton_predictor(isvc) or {}
        uri = storage_uri(isvc)
        rev = revision(group, name)
        template = f"{meta['uid']}/{meta.get('generation', 1)}"
        labels = {group.isvc_label: name, "component": "predictor", "app": rev,
                  "serving.knative.dev/configuration": rev.rsplit("-", 1)[0],
                  "serving.knative.dev/revision": rev, "serving.knative.dev/service": rev.rsplit("-", 1)[0],
                  "pod-template-hash": _template_hash(isvc)}
        images = self._images(group, triton)
        server = {
            "name": group.server_container, "image": images["triton"],
            "args": self._server_args(group, triton),
            "ports": [{"name": "user-port", "containerPort": TRITON_HTTP_PORT, "protocol": "TCP"}],
            "resources": triton.get("resources") or {},
        }
        pod_spec: dict = {"serviceAccountName": predictor.get("serviceAccountName") or "default",
                          "restartPolicy": "Always"}
        if uri:
            # StorageInitializerInjector.InjectStorageInitializer (kf v0.5.1, ks v0.15.2): the shared emptyDir,
            # written by the init container, read-only in the server container.
            volume = provision_volume(group)
            server["volumeMounts"] = [{"name": volume, "mountPath": MODEL_DIR, "readOnly": True}]
            init = {"name": INIT_CONTAINER, "image": images["storage-initializer"], "args": [uri, MODEL_DIR],
                    "env": agent_env, "resources": images["storage-initializer-resources"],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "volumeMounts": [{"name": volume, "mountPath": MODEL_DIR}]}
            pod_spec.update({"initContainers": [init], "containers": [server],
                             "volumes": [{"name": volume, "emptyDir": {}}]})
        else:
            mounts = [{"name": "model-dir", "mountPath": MODEL_DIR}]
            server["volumeMounts"] = mounts
            agent = {
                "name": AGENT_CONTAINER, "image": images["agent"],
                "args": ["--enable-puller", "--config-dir", CONFIG_DIR, "--model-dir", MODEL_DIR],
                "env": agent_env,  # as KServe's credential builder wrote it: the keys only as references
                "resources": images["agent-resources"],
                "volumeMounts": mounts + [{"name": "model-config", "mountPath": CONFIG_DIR}],
            }
            pod_spec.update({"containers": [server, agent],
                             "volumes": [{"name": "model-dir", "emptyDir": {}},
                                         {"name": "model-config", "configMap": {"name": model_config_map_name(name)}}]})
        # The InferenceService's own annotations, but the disallowed ones (predictor.go), as the revision has
        # them; the predictor adds the storageUri for the storage initializer injector (StorageInitializerSourceUri...).
        source = f"internal.{group.group}/storage-initializer-sourceuri"
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                       if k not in DISALLOWED_ANNOTATIONS and k != source}
        annotations.update({"autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev", source: uri}
                           if group.group == KFSERVING_GROUP else {source: uri} if uri else {})
        metadata = {"name": pod_name(group, name, template), "namespace": ns, "labels": labels,
                    "ownerReferences": [owner_reference(isvc)]}
        if annotations:
            metadata["annotations"] = annotations
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}
        sidecar = self._sidecar(ns, annotations)
        if sidecar is not None:  # Istio's injector, the last mutating webhook the pod meets
            body = mesh.inject(sidecar, body)
        pod = self.kube.core.create_namespaced_pod(ns, body)
        log.info("created pod %s/%s for inferenceservice %s (%s)", ns, pod.metadata.name, name,
                 mesh.describe_sidecar(sidecar))
        return pod, sidecar

    def _sidecar(self, ns: str, annotations: dict) -> Optional[mesh.Sidecar]:
        """The Istio sidecar this release's injector gives a pod with `annotations` in namespace `ns`."""
        if self.kubeflow not in mesh.INJECTORS:
            return None
        namespace = self.kube.read(self.kube.core.read_namespace, ns)
        labels = (namespace.metadata.labels or {}) if namespace is not None else {}
        return mesh.sidecar_for(self.kubeflow, labels, annotations)

    @staticmethod
    def _server_args(group: ApiGroup, triton: dict) -> list[str]:
        """KFServing 0.5.1's Triton predictor puts explicit model control among its own args when there is
        no storageUri; KServe takes the kserve-tritonserver runtime's args, then the model's, to which
        SetTritonDefaults appends `--model-control-mode=explicit` when there is no storageUri. With one,
        neither adds it: Triton loads every model of the repository at start."""
        base = ["tritonserver", f"--model-store={MODEL_DIR}", "--grpc-port=9000", f"--http-port={TRITON_HTTP_PORT}",
                "--allow-grpc=true", "--allow-http=true"]
        explicit = [] if triton.get("storageUri") else ["--model-control-mode=explicit"]
        if group.group == KFSERVING_GROUP:
            return [*base, *explicit, *(triton.get("args") or [])]
        return [*base, *(triton.get("args") or []), *explicit]

    def _images(self, group: ApiGroup, triton: dict) -> dict:
        """Triton's, the agent's and the storage initializer's images, from inferenceservice-config as
        KFServing/KServe read them, and the agent's and the initializer's resources from their entries
        (the injectors' cpuRequest, memoryRequest, cpuLimit, memoryLimit). On Kubeflow's KServe the
        `default` ClusterStorageContainer would take precedence for the initializer; Kubeflow 1.10.1 and
        1.11.0 ship it with the same image and resources (kserve-cluster-resources.yaml)."""
        found = {"triton": "nvcr.io/nvidia/tritonserver", "agent": "kfserving/agent:v0.5.1", "version": "20.08-py3",
                 "agent-resources": {}, "storage-initializer": "gcr.io/kfserving/storage-initializer:latest",
                 "storage-initializer-resources": {}}
        if group.group != KFSERVING_GROUP:  # the kserve-tritonserver ClusterServingRuntime (Kubeflow 1.10/1.11)
            found["version"] = "23.05-py3"
            found["storage-initializer"] = "kserve/storage-initializer:latest"
        for ns in ("kfserving-system", "kserve", "kubeflow"):
            cm = self.kube.read(self.kube.core.read_namespaced_config_map, INFERENCESERVICE_CONFIG, ns)
            if cm is None:
                continue
            try:
                predictors = json.loads((cm.data or {}).get("predictors", "{}"))
                agent = json.loads((cm.data or {}).get("agent", "{}"))
                initializer = json.loads((cm.data or {}).get("storageInitializer", "{}"))
            except ValueError:
                break
            found["triton"] = (predictors.get("triton") or {}).get("image", found["triton"])
            found["version"] = (predictors.get("triton") or {}).get("defaultImageVersion", found["version"])
            found["agent"] = agent.get("image", found["agent"])
            found["agent-resources"] = _agent_resources(agent)
            found["storage-initializer"] = initializer.get("image") or found["storage-initializer"]
            found["storage-initializer-resources"] = _agent_resources(initializer)
            break
        return {"triton": f"{found['triton']}:{triton.get('runtimeVersion') or found['version']}",
                "agent": found["agent"], "agent-resources": found["agent-resources"],
                "storage-initializer": found["storage-initializer"],
                "storage-initializer-resources": found["storage-initializer-resources"]}

    def _write_status(self, group: ApiGroup, ns: str, pod, state: dict, records: dict,
                      unready: tuple[str, ...] = ()) -> None:
        """The Pod's status from its processes (`unready`: roles that run but do not answer ready yet)."""
        roles = self._container_roles(state)
        names = {role: name for name, role in roles.items()}
        images = {c.name: c.image for c in [*(pod.spec.init_containers or []), *pod.spec.containers]}
        init_roles = [INIT_ROLE] if state.get("storageUri") else []
        init_statuses = [self._init_status(names[role], images.get(names[role], ""), records.get(role),
                                           state["containers"].get(role) or [], pod) for role in init_roles]
        initialized = all(st["state"].get("terminated", {}).get("exitCode") == 0 for st in init_statuses)
        statuses, all_ready = [], True
        for role in [r for r in roles.values() if r not in init_roles]:
            record = records.get(role)
            runs = state["containers"].get(role) or []
            alive = isinstance(record, process.ProcessRecord) and record.alive() and initialized
            ready = alive and role not in unready
            all_ready = all_ready and ready
            status = {"name": names[role], "image": images.get(names[role], ""), "imageID": "",
                      "ready": ready, "started": alive, "restartCount": max(len(runs) - 1, 0)}
            if not initialized:
                status["state"] = {"waiting": {"reason": "PodInitializing"}}
            elif alive:
                status["containerID"] = f"local://{record.pid}"
                status["state"] = {"running": {"startedAt": runs[-1]["startedAt"]}}
            else:
                status["state"] = {"waiting": {"reason": "CrashLoopBackOff",
                                               "message": "the local controller restarts it on its next pass"}}
            if len(runs) > 1:
                status["lastState"] = {"terminated": _terminated(runs[-2])}
            statuses.append(status)
        sidecar = mesh.sidecar_json(state.get("sidecar"))
        if sidecar is not None and sidecar.shown:
            proxy, init = self._sidecar_statuses(sidecar, state, images, initialized)
            all_ready = all_ready and proxy["ready"]
            statuses = [proxy, *statuses] if sidecar.held else [*statuses, proxy]
            init_statuses = [init, *init_statuses] if sidecar.injector.init_name == "istio-validation" \
                else [*init_statuses, init]
        ready = "True" if all_ready else "False"
        old = pod.status.to_dict() if pod.status else {}
        old_conditions = {c["type"]: c for c in (old.get("conditions") or [])}

        def cond(kind: str, value: str, reason: str = "", message: str = "") -> dict:
            before = old_conditions.get(kind) or {}
            since = before.get("last_transition_time")
            same = before.get("status") == value and since
            found = {"type": kind, "status": value, "lastProbeTime": None,
                     "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ") if same else _time()}
            return {**found, "reason": reason, "message": message} if reason else found

        # The kubelet's words for conditions that are False (pkg/kubelet/status/generate.go).
        incomplete = [st["name"] for st in init_statuses if st["state"].get("terminated", {}).get("exitCode") != 0]
        unready_names = [st["name"] for st in statuses if not st["ready"]]
        not_ready = ("ContainersNotReady", f"containers with unready status: [{' '.join(unready_names)}]") \
            if unready_names else ("", "")
        status = {"phase": "Running" if initialized else "Pending", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                  "podIPs": [{"ip": "127.0.0.1"}], "qosClass": "Burstable",
                  "startTime": state.get("created") or _time(),
                  "conditions": [cond("Initialized", "True") if initialized else cond(
                                     "Initialized", "False", "ContainersNotInitialized",
                                     f"containers with incomplete status: [{' '.join(incomplete)}]"),
                                 cond("Ready", ready, *not_ready), cond("ContainersReady", ready, *not_ready),
                                 cond("PodScheduled", "True")],
                  "containerStatuses": statuses}
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        if self._same(old, status):
            return
        try:
            self.kube.core.patch_namespaced_pod_status(pod.metadata.name, ns, {"status": status})
        except ApiException as exc:
            if not not_found(exc):
                raise

    @staticmethod
    def _sidecar_statuses(sidecar: mesh.Sidecar, state: dict, images: dict, initialized: bool) -> tuple[dict, dict]:
        """The istio-proxy container's status (running from its start, ready once Envoy is) and its init
        container's (iptables set: Completed at once), for a proxy that has no process here."""
        created = state.get("created") or _time()
        data = state.get("sidecar") or {}
        init_name = sidecar.injector.init_name
        init = {"name": init_name, "image": images.get(init_name, ""), "imageID": "", "ready": True, "started": False,
                "restartCount": 0, "containerID": f"local://{init_name}",
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": created,
                                         "finishedAt": created, "containerID": f"local://{init_name}"}}}
        if init_name == "istio-init" and not initialized:  # it runs after the pod's own init containers
            init = {"name": init_name, "image": init["image"], "imageID": "", "ready": False, "started": False,
                    "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}
        proxy = {"name": mesh.SIDECAR, "image": images.get(mesh.SIDECAR, ""), "imageID": "", "restartCount": 0,
                 "ready": False, "started": False}
        if not initialized or "startedAt" not in data:
            proxy["state"] = {"waiting": {"reason": "PodInitializing" if not initialized else "ContainerCreating"}}
            return proxy, init
        proxy.update(started=True, ready=time.time() >= data["readyAt"], containerID=f"local://{mesh.SIDECAR}",
                     state={"running": {"startedAt": _time(data["startedAt"])}})
        return proxy, init

    def _init_status(self, name: str, image: str, record, runs: list[dict], pod) -> dict:
        """An init container's status: running, terminated (Completed, or Error with its log's end as the
        message, FallbackToLogsOnError) or, failed again and waiting for its next run, CrashLoopBackOff."""
        status = {"name": name, "image": image, "imageID": "", "ready": False, "started": False,
                  "restartCount": max(len(runs) - 1, 0), "state": {"waiting": {"reason": "PodInitializing"}}}
        if not runs:
            return status
        current = runs[-1]
        alive = isinstance(record, process.ProcessRecord) and record.pid == current["pid"] and record.alive()
        if alive:
            status.update(started=True, containerID=f"local://{current['pid']}",
                          state={"running": {"startedAt": current["startedAt"]}})
            if len(runs) > 1:
                status["lastState"] = {"terminated": self._init_terminated(runs[-2])}
            return status
        ended = self._init_terminated(current)
        status["containerID"] = f"local://{current['pid']}"
        if ended["exitCode"] == 0:
            status.update(ready=True, state={"terminated": ended})
        elif len(runs) == 1:  # its first failure: Init:Error until the kubelet runs it again
            status["state"] = {"terminated": ended}
        else:  # failed again: the kubelet waits before the next run (Init:CrashLoopBackOff)
            status.update(state={"waiting": {"reason": "CrashLoopBackOff", "message": (
                f"back-off restarting failed container={name} pod={pod.metadata.name}_{pod.metadata.namespace}"
                f"({pod.metadata.uid})")}}, lastState={"terminated": ended})
        return status

    def _init_terminated(self, run: dict) -> dict:
        found = _terminated(run)
        if found["exitCode"] != 0 and run.get("log"):
            found["message"] = termination_message(Path(run["log"]))
        return found

    @staticmethod
    def _same(old: dict, new: dict) -> bool:
        """Whether the stored status already says what `new` says (times of unchanged conditions aside)."""
        if old.get("phase") != new["phase"] or old.get("pod_ip") != new["podIP"]:
            return False
        was = {c["type"]: c["status"] for c in old.get("conditions") or []}
        if was != {c["type"]: c["status"] for c in new["conditions"]}:
            return False

        def kind(state: Optional[dict]) -> str:
            found = {k: v for k, v in (state or {}).items() if v}
            return next(iter(found), "") + "/" + str(next(iter(found.values()), {}).get("reason") or "")

        for old_key, new_key in (("container_statuses", "containerStatuses"),
                                 ("init_container_statuses", "initContainerStatuses")):
            before = [(c["name"], c["ready"], c["restart_count"], (c.get("container_id") or ""), kind(c.get("state")))
                      for c in old.get(old_key) or []]
            after = [(c["name"], c["ready"], c["restartCount"], c.get("containerID", ""), kind(c.get("state")))
                     for c in new.get(new_key) or []]
            if before != after:
                return False
        return True

    # --- deletion -----------------------------------------------------------------------------
    def cleanup(self, live: set[str], stop_server) -> None:
        """Confirm the deletion of this node's Pods that are being deleted (as the kubelet does).

        A Pod deleted while its InferenceService (`<ns>.<name>` in `live`) is served is replaced:
        its processes are stopped through `stop_server(key)`, and the next pass starts new ones.
        """
        pods = self.kube.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={NODE_NAME}").items
        self.run_seed_pods(pods)  # e.g. minio, made again by `up` with new keys
        for pod in pods:
            if not pod.metadata.deletion_timestamp:
                continue
            ns, name = pod.metadata.namespace, pod.metadata.name
            for key in live:
                if self._load(key).get("pod") == name and key.split(".", 1)[0] == ns:
                    log.info("pod %s/%s was deleted: stopping its processes; a new pod replaces it", ns, name)
                    with self._lock:
                        stop_server(key)
                        self._state_file(key).unlink(missing_ok=True)
            try:
                self.kube.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
                log.info("pod %s/%s deleted", ns, name)
            except ApiException as exc:
                if not not_found(exc):
                    raise

    # --- logs (called from the kubelet endpoint's threads) -------------------------------------
    def container_log(self, namespace: str, pod: str, container: str, previous: bool) -> ContainerLog:
        """Which log file and run the kubelet serves for `kubectl logs POD CONTAINER [--previous]`."""
        for key, state in self._server_states(namespace):
            if state.get("pod") != pod:
                continue
            role = self._container_roles(state).get(container)
            sidecar = mesh.sidecar_json(state.get("sidecar"))
            if role is None and sidecar is not None and sidecar.shown \
                    and container in (mesh.SIDECAR, sidecar.injector.init_name):
                if previous:
                    raise LogError(400, f'previous terminated container "{container}" in pod "{pod}" not found')
                return ContainerLog(self._sidecar_log(key, container), -1, lambda: container == mesh.SIDECAR)
            if role is None:
                raise LogError(400, f"container {container} is not valid for pod {pod}")
            runs = state["containers"].get(role) or []
            if previous and len(runs) < 2:
                raise LogError(400, f'previous terminated container "{container}" in pod "{pod}" not found')
            pid = runs[-1]["pid"] if runs else 0
            return ContainerLog(self.logs / f"{role}-{key}.log", -2 if previous else -1,
                                lambda: _pid_alive(pid))
        raise LogError(404, f'pod "{pod}" not found on node {NODE_NAME}')

    # --- metrics (called from the metrics API's sampler thread) ---------------------------------
    def processes(self, s3_pid: Optional[int] = None) -> list[PodProcesses]:
        """This node's Running Pods with the PID of each container's process: a server's Triton and
        agent; the seed's object store pod (`minio`, SeaweedFS) with `s3_pid`, the stack's S3 server."""
        servers = {(key.split(".", 1)[0], state.get("pod")): state for key, state in self._server_states()}
        found = []
        for pod in self.kube.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={NODE_NAME}").items:
            ns, name = pod.metadata.namespace, pod.metadata.name
            if pod.metadata.deletion_timestamp or not pod.status or pod.status.phase != "Running":
                continue
            containers: tuple[tuple[str, int], ...] = ()
            state = servers.get((ns, name))
            if state:
                containers = tuple((name, runs[-1]["pid"]) for name, role in self._container_roles(state).items()
                                   if (runs := state["containers"].get(role)) and "finishedAt" not in runs[-1])
            elif s3_pid and ns == KUBEFLOW_NAMESPACE and name in (MINIO_POD, SEAWEEDFS_POD) \
                    and not pod.metadata.owner_references:
                containers = ((pod.spec.containers[0].name, s3_pid),)
            found.append(PodProcesses(ns, name, pod.metadata.labels or {}, containers))
        return found

    # --- port-forward (called from the kubelet endpoint's threads) -----------------------------
    def port_address(self, namespace: str, pod: str, port: int) -> str:
        """Where a port of one of this node's Pods listens (`host:port`), for the kubelet's port-forward.

        A pod's processes run on this machine; the Service that selects the pod (or, without a
        selector, carries the pod's labels) and targets `port` holds their loopback address.
        """
        found = self.kube.read(self.kube.core.read_namespaced_pod, pod, namespace)
        if found is None or (found.spec.node_name or "") != NODE_NAME:
            raise PortForwardError(404, f'pod "{pod}" not found on node {NODE_NAME}')
        served = self._triton_address(namespace, pod, port)
        if served:
            return served
        labels = found.metadata.labels or {}
        for svc in self.kube.core.list_namespaced_service(namespace).items:
            notes = svc.metadata.annotations or {}
            address = notes.get(LOCAL_ADDRESS_ANNOTATION.replace("address", "pod-address")) or notes.get(LOCAL_ADDRESS_ANNOTATION)
            match = svc.spec.selector or svc.metadata.labels or {}
            if not address or not match or any(labels.get(k) != v for k, v in match.items()):
                continue
            if any(str(p.target_port or p.port) == str(port) for p in svc.spec.ports or []):
                return address
        raise PortForwardError(404, f"nothing listens on port {port} of pod {namespace}/{pod}")


    def _triton_address(self, namespace: str, pod: str, port: int) -> str:
        """A server pod's Triton port by the number it has in the pod (`--http-port=8080`, `--grpc-port=9000`,
        and the metrics port Triton keeps at its default, 8002), where the local process listens; "" if none."""
        kind = TRITON_POD_PORTS.get(port)
        for key, state in self._server_states(namespace):
            if state.get("pod") != pod or kind is None:
                continue
            try:
                record = json.loads((self.state_root / "servers" / key / "processes.json").read_text()).get("triton")
            except (OSError, ValueError):
                return ""
            local = ((record or {}).get("ports") or {}).get(kind)
            return f"127.0.0.1:{local}" if local else ""
        return ""


def provision_volume(group: ApiGroup) -> str:
    """The emptyDir the storage initializer writes: `kfserving-provision-location` (KFServing 0.5.1),
    `kserve-provision-location` (KServe), StorageInitializerVolumeName."""
    return "kfserving-provision-location" if group.group == KFSERVING_GROUP else "kserve-provision-location"


def _terminated(run: dict) -> dict:
    """A finished run as `state.terminated` / `lastState.terminated` says it."""
    code = run.get("exitCode")
    found = {"exitCode": 137 if code is None else code,
             "reason": run.get("reason") or ("ContainerStatusUnknown" if code is None else
                                             "Completed" if code == 0 else "Error"),
             "startedAt": run["startedAt"], "finishedAt": run.get("finishedAt") or _time(),
             "containerID": f"local://{run['pid']}"}
    if code is None and not run.get("reason"):
        found["message"] = "the local stack could not read this run's exit code"
    return found


def _agent_resources(agent: dict) -> dict:
    """The agent container's resources as the agent injector sets them from the `agent` config entry."""
    limits = {k: agent[key] for k, key in (("cpu", "cpuLimit"), ("memory", "memoryLimit")) if agent.get(key)}
    requests = {k: agent[key] for k, key in (("cpu", "cpuRequest"), ("memory", "memoryRequest")) if agent.get(key)}
    return {k: v for k, v in (("limits", limits), ("requests", requests)) if v}


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
