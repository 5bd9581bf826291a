"""What a pod costs on this cluster, against what one more model costs in a server that is already running.

Explained in 07_one_server_many_models. One InferenceService per model is one pod per model, and
every pod asks the scheduler for the same extras whatever its model holds:

- the model server itself, with the resources the InferenceService names, else KServe's default
  (1 cpu and 2Gi, or `inferenceService.resource` of `inferenceservice-config` where a release has it);
- KServe's `storage-initializer` init container, which downloads `storageUri` before the server starts
  (`storageInitializer` in `inferenceservice-config`);
- Knative's `queue-proxy` in Serverless mode (`config-deployment`: 25m cpu unless it says otherwise);
- Istio's `istio-proxy` where the namespace is in the mesh (`values` of `istio-sidecar-injector`).

The multi-model server pays these once, plus the model agent (`agent` in `inferenceservice-config`).
`read` takes the server pod's own containers as the pod shows them (a learner may read their own pod)
and the rest from the cluster's configuration, each with where it came from; a source this identity may
not read (a Kubeflow Notebook's account reads none of them) is one line in `unread`, left out of the
sums, and the rest goes on. `compare` sets N one-model pods beside the one server, against the nodes'
allocatable cpu, memory and pod count.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from helpers.clients.k8s import not_found
from helpers.core.constants import (
    INFERENCESERVICE_CONFIG,
    ISTIO_NAMESPACE,
    KNATIVE_CONFIG_DEPLOYMENT,
    KNATIVE_NAMESPACE,
    ApiGroup,
)
from helpers.core.i18n import _
from helpers.core.show import pad, show_not_in_guide, text_width

AGENT, QUEUE_PROXY, ISTIO_PROXY, STORAGE_INITIALIZER = "agent", "queue-proxy", "istio-proxy", "storage-initializer"
ISTIO_INJECTOR = "istio-sidecar-injector"
# KServe's default requests for a predictor that names none (pkg/apis/serving/v1beta1 defaults, every release
# from KFServing 0.5 on), where inferenceservice-config has no `inferenceService.resource` to say otherwise.
PREDICTOR_DEFAULT = {"cpu": "1", "memory": "2Gi"}
QUEUE_PROXY_DEFAULT_CPU = "25m"  # Knative's queueSidecarCPURequest when config-deployment leaves it out
# Knative's keys for queue-proxy's requests: camelCase before Knative 1.x, kebab-case since (both read).
QUEUE_KEYS = {"cpu": ("queue-sidecar-cpu-request", "queueSidecarCPURequest"),
              "memory": ("queue-sidecar-memory-request", "queueSidecarMemoryRequest")}


@dataclass(frozen=True)
class Part:
    """One container a pod gets and what it asks the scheduler for (`cpu` in cores, `memory` in bytes).

    `model_pod`/`server_pod`: whether a one-model InferenceService's pod, and the multi-model server's
    pod, have it. `init`: an init container, which runs before the others and counts for scheduling
    only when it asks more than they do together. `source` says where the numbers were read."""

    container: str
    cpu: float
    memory: int
    source: str
    model_pod: bool
    server_pod: bool
    init: bool = False


@dataclass(frozen=True)
class NodeRoom:
    """A node's allocatable room (`status.allocatable`): pods, cpu (cores), memory (bytes)."""

    name: str
    pods: int
    cpu: float
    memory: int


@dataclass
class Footprint:
    """What one pod costs here: its parts, the nodes' room, what could not be read, and the commands
    that read the rest."""

    parts: list[Part] = field(default_factory=list)
    nodes: list[NodeRoom] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # looked for and not on this cluster, one line each
    commands: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"parts": [asdict(p) for p in self.parts], "nodes": [asdict(n) for n in self.nodes],
                "unread": list(self.unread), "absent": list(self.absent)}


def cores(quantity: Any) -> float:
    """A cpu quantity (`100m`, `1`) in cores; 0 for none."""
    return float(parse_quantity(str(quantity))) if quantity not in (None, "") else 0.0


def nbytes(quantity: Any) -> int:
    """A memory quantity (`100Mi`, `2Gi`) in bytes; 0 for none."""
    return int(parse_quantity(str(quantity))) if quantity not in (None, "") else 0


def cpu_text(value: float) -> str:
    """Cores as Kubernetes writes them: `1`, `2.5`, `100m`; `-` for none."""
    if not value:
        return "-"
    return f"{value:g}" if value >= 1 else f"{round(value * 1000):d}m"


def memory_text(value: float) -> str:
    """Bytes as `16Gi`, `2.1Gi`, `100Mi`; `-` for none."""
    if not value:
        return "-"
    if value >= 2**30:
        return f"{value / 2**30:.3g}Gi"
    return f"{value / 2**20:.3g}Mi"


def _refused(exc: ApiException) -> bool:
    return exc.status in (401, 403)


def _read(call: Callable[[], Any], what: str, unread: list[str]) -> Optional[Any]:
    """The object, or None: 404 quietly (not on this cluster), 401/403 as one line in `unread`."""
    try:
        return call()
    except ApiException as exc:
        if not_found(exc):
            return None
        if _refused(exc):
            unread.append(_("{what} ({status}: not allowed for you); your cluster's admin can read it").format(
                what=what, status=exc.status))
            return None
        raise


def _requests(container: Any) -> tuple[float, int]:
    requests = (container.resources.requests if container.resources else None) or {}
    return cores(requests.get("cpu")), nbytes(requests.get("memory"))


def _server_pod(api: client.ApiClient, group: ApiGroup, server: str, namespace: str, fp: Footprint) -> list[Part]:
    """The server pod's containers as its spec holds them (what the cluster really added to it)."""
    label = f"{group.isvc_label}={server}"
    pods = _read(lambda: client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=label),
                 f"pods -l {label} -n {namespace}", fp.unread)
    running = [p for p in (pods.items if pods else []) if not p.metadata.deletion_timestamp]
    if not running:
        return []
    pod = running[0]
    fp.commands.append(f"kubectl get pod -l {label} -n {namespace} -o jsonpath='{{range .items[0].spec.containers[*]}}"
                       "{.name}{\"\\t\"}{.resources.requests}{\"\\n\"}{end}'")
    parts = []
    for container in pod.spec.containers:
        cpu, memory = _requests(container)
        shared = container.name in (QUEUE_PROXY, ISTIO_PROXY)  # every pod of the mesh and of Knative has them
        parts.append(Part(container.name, cpu, memory, _("the server's pod"), model_pod=shared, server_pod=True))
    return parts


def _json_entry(data: dict, key: str) -> dict:
    try:
        value = json.loads(data.get(key) or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _serving_config(api: client.ApiClient, group: ApiGroup, fp: Footprint, have: set[str]) -> list[Part]:
    """From `inferenceservice-config`: the agent (if the pod did not show it), the storage initializer, and
    the predictor's default requests (else KServe's built-in default)."""
    from helpers.steps.prep.preflight import find_inferenceservice_config

    cm, denied = find_inferenceservice_config(api)
    parts = []
    if cm is None:
        if denied:
            fp.unread.append(_("{what} ({status}: not allowed for you); your cluster's admin can read it").format(
                what=f"ConfigMap {INFERENCESERVICE_CONFIG} ({', '.join(denied)})", status=403))
    else:
        ns, data = cm.metadata.namespace, cm.data or {}
        where = f"{ns}/{INFERENCESERVICE_CONFIG}"
        for key, container, model_pod, server_pod, init in (("agent", AGENT, False, True, False),
                                                            ("storageInitializer", STORAGE_INITIALIZER, True, False,
                                                             True)):
            entry = _json_entry(data, key)
            if not entry or (container in have):
                continue
            parts.append(Part(container, cores(entry.get("cpuRequest")), nbytes(entry.get("memoryRequest")),
                              f"{where}: {key}", model_pod, server_pod, init))
            fp.commands.append(f"kubectl get cm {INFERENCESERVICE_CONFIG} -n {ns} -o jsonpath='{{.data.{key}}}'")
        resource = _json_entry(data, "inferenceService").get("resource") or {}
        if resource.get("cpuRequest") or resource.get("memoryRequest"):
            parts.append(Part(group.server_container, cores(resource.get("cpuRequest")),
                              nbytes(resource.get("memoryRequest")), f"{where}: inferenceService.resource",
                              model_pod=True, server_pod=False))
            fp.commands.append(f"kubectl get cm {INFERENCESERVICE_CONFIG} -n {ns} -o jsonpath='{{.data.inferenceService}}'")
            return parts
    parts.append(Part(group.server_container, cores(PREDICTOR_DEFAULT["cpu"]), nbytes(PREDICTOR_DEFAULT["memory"]),
                      _("KServe's default for a predictor that names no resources"), model_pod=True, server_pod=False))
    return parts


def _queue_proxy(api: client.ApiClient, fp: Footprint) -> Optional[Part]:
    """Knative's queue-proxy, from `config-deployment` (its default cpu where the ConfigMap says nothing)."""
    cm = _read(lambda: client.CoreV1Api(api).read_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE),
               f"ConfigMap {KNATIVE_NAMESPACE}/{KNATIVE_CONFIG_DEPLOYMENT}", fp.unread)
    if cm is None:
        return None
    data = cm.data or {}
    cpu = next((data[k] for k in QUEUE_KEYS["cpu"] if data.get(k)), None)
    memory = next((data[k] for k in QUEUE_KEYS["memory"] if data.get(k)), None)
    keys = "".join(f"{{.data.{k}}}" for pair in QUEUE_KEYS.values() for k in pair)
    fp.commands.append(f"kubectl get cm {KNATIVE_CONFIG_DEPLOYMENT} -n {KNATIVE_NAMESPACE} -o jsonpath='{keys}'  # "
                       + _("empty: Knative's defaults"))
    where = f"{KNATIVE_NAMESPACE}/{KNATIVE_CONFIG_DEPLOYMENT}"
    if cpu is None:
        where = _("{where} (Knative's default: the ConfigMap sets no request)").format(where=where)
    return Part(QUEUE_PROXY, cores(cpu or QUEUE_PROXY_DEFAULT_CPU), nbytes(memory), where, True, True)


def _istio_proxy(api: client.ApiClient, fp: Footprint) -> Optional[Part]:
    """Istio's sidecar requests, from the injector's `values` (`global.proxy.resources.requests`)."""
    before = len(fp.unread)
    cm = _read(lambda: client.CoreV1Api(api).read_namespaced_config_map(ISTIO_INJECTOR, ISTIO_NAMESPACE),
               f"ConfigMap {ISTIO_NAMESPACE}/{ISTIO_INJECTOR}", fp.unread)
    if cm is None:
        if len(fp.unread) == before:
            fp.absent.append(_("{container}: no ConfigMap {name} on this cluster, so no Istio sidecar is "
                               "counted").format(container=ISTIO_PROXY, name=f"{ISTIO_NAMESPACE}/{ISTIO_INJECTOR}"))
        return None
    values = _json_entry(cm.data or {}, "values")
    requests = ((((values.get("global") or {}).get("proxy") or {}).get("resources") or {}).get("requests") or {})
    fp.commands.append(f"kubectl get cm {ISTIO_INJECTOR} -n {ISTIO_NAMESPACE} -o jsonpath='{{.data.values}}'")
    return Part(ISTIO_PROXY, cores(requests.get("cpu")), nbytes(requests.get("memory")),
                f"{ISTIO_NAMESPACE}/{ISTIO_INJECTOR}: global.proxy.resources", True, True)


def _nodes(api: client.ApiClient, fp: Footprint) -> list[NodeRoom]:
    found = _read(lambda: client.CoreV1Api(api).list_node(), "nodes", fp.unread)
    if found is None:
        return []
    fp.commands.append("kubectl get nodes -o custom-columns=NAME:.metadata.name,PODS:.status.allocatable.pods,"
                       "CPU:.status.allocatable.cpu,MEMORY:.status.allocatable.memory")
    rooms = []
    for node in found.items:
        room = (node.status.allocatable if node.status else None) or {}
        if node.spec and node.spec.unschedulable:
            continue
        rooms.append(NodeRoom(node.metadata.name, int(room.get("pods") or 0), cores(room.get("cpu")),
                              nbytes(room.get("memory"))))
    return rooms


def read(api: client.ApiClient, group: ApiGroup, server: str, namespace: str) -> Footprint:
    """Every part a pod gets here and the nodes' room, read where a cluster user reads them (module doc)."""
    fp = Footprint()
    fp.parts = _server_pod(api, group, server, namespace, fp)
    have = {p.container for p in fp.parts}
    fp.parts += _serving_config(api, group, fp, have)
    for name, sidecar in ((QUEUE_PROXY, _queue_proxy), (ISTIO_PROXY, _istio_proxy)):
        part = sidecar(api, fp) if name not in have else None
        if part is not None:
            fp.parts.append(part)
    fp.nodes = _nodes(api, fp)
    return fp


def pod_requests(parts: list[Part], which: str) -> tuple[float, int]:
    """(cpu cores, memory bytes) the scheduler reserves for one pod of `which` ("model" or "server"): its
    containers' sum, or its largest init container's when that is more."""
    mine = [p for p in parts if (p.model_pod if which == "model" else p.server_pod)]
    run = [p for p in mine if not p.init]
    init = [p for p in mine if p.init]
    cpu = max([sum(p.cpu for p in run)] + [p.cpu for p in init])
    memory = max([sum(p.memory for p in run)] + [p.memory for p in init])
    return cpu, memory


def compare(fp: Footprint, n: int) -> dict[str, Any]:
    """N one-model InferenceServices beside one server with N TrainedModels: pods, cpu and memory they
    reserve; how many one-model pods the nodes' room holds; from which N the server reserves less."""
    model_cpu, model_memory = pod_requests(fp.parts, "model")
    server_cpu, server_memory = pod_requests(fp.parts, "server")
    room = {"nodes": len(fp.nodes), "pods": sum(r.pods for r in fp.nodes), "cpu": sum(r.cpu for r in fp.nodes),
            "memory": sum(r.memory for r in fp.nodes)}
    fits = None
    if fp.nodes and model_cpu and model_memory:
        # per node, then summed: a pod does not span nodes
        fits = sum(min(r.pods, math.floor(r.cpu / model_cpu), math.floor(r.memory / model_memory)) for r in fp.nodes)

    def even(server: float, model: float) -> Optional[int]:
        return max(1, math.ceil(server / model)) if model else None

    return {"n": n, "per_model": {"pods": n, "cpu": round(n * model_cpu, 3), "memory": n * model_memory},
            "one_server": {"pods": 1, "cpu": round(server_cpu, 3), "memory": server_memory},
            "model_pod": {"cpu": model_cpu, "memory": model_memory},
            "server_pod": {"cpu": server_cpu, "memory": server_memory},
            "room": room, "fits": fits,
            "even_cpu": even(server_cpu, model_cpu), "even_memory": even(server_memory, model_memory)}


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(pad(c, w) for c, w in zip(cells, widths)).rstrip()


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(text_width(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join([_row(header, widths), *(_row(r, widths) for r in rows)])


def table(fp: Footprint) -> str:
    """The parts as a table: container, which pod has it, cpu and memory requested, where it was read."""
    yes, init = _("yes"), _("yes (init)")
    header = [_("CONTAINER"), _("ONE-MODEL POD"), _("SERVER POD"), _("CPU"), _("MEMORY"), _("READ FROM")]
    rows = [[p.container, (init if p.init else yes) if p.model_pod else "-", yes if p.server_pod else "-",
             cpu_text(p.cpu), memory_text(p.memory), p.source] for p in fp.parts]
    lines = [_table(header, rows)]
    if fp.nodes:
        rows = [[n.name, str(n.pods), cpu_text(n.cpu), memory_text(n.memory)] for n in fp.nodes]
        lines += ["", _table([_("NODE"), _("PODS"), _("CPU"), _("MEMORY")], rows)]
    lines += [""] if fp.absent or fp.unread else []
    lines += fp.absent + [_("not read: {line}").format(line=line) for line in fp.unread]
    return "\n".join(lines)


def comparison_table(cost: dict[str, Any]) -> str:
    """The comparison of `compare` as a table, then what it means in a few lines."""
    per, one, n = cost["per_model"], cost["one_server"], cost["n"]
    header = ["", _("ONE INFERENCESERVICE PER MODEL"), _("ONE SERVER, {n} TRAINEDMODELS").format(n=n)]
    rows = [[_("pods"), str(per["pods"]), str(one["pods"])],
            [_("cpu requested"), cpu_text(per["cpu"]), cpu_text(one["cpu"])],
            [_("memory requested"), memory_text(per["memory"]), memory_text(one["memory"])]]
    lines = [_table(header, rows), ""]
    if cost["even_memory"]:
        lines.append(_("from {n} models on, one server reserves less memory than one pod per model; from {cpu} on, "
                       "less cpu").format(n=cost["even_memory"], cpu=cost["even_cpu"]))
    room = cost["room"]
    if room["nodes"]:
        lines.append(_("the nodes' room: {nodes} node(s), {pods} pods, {cpu} cpu, {memory}: at most {fits} one-model "
                       "InferenceServices fit, before anything else runs there").format(
                         nodes=room["nodes"], pods=room["pods"], cpu=cpu_text(room["cpu"]),
                         memory=memory_text(room["memory"]), fits=cost["fits"]))
    else:
        lines.append(_("the nodes' room is unknown: you may not read the nodes"))
    lines.append(_("one more TrainedModel adds no pod and no request: the server's pod stays as it is"))
    return "\n".join(lines)


def show_commands(fp: Footprint) -> None:
    """The kubectl lines that read what `read` read (the guide reads none of it)."""
    if fp.commands:
        show_not_in_guide("\n".join(fp.commands), _("what each pod gets on this cluster, and the nodes' room"))
