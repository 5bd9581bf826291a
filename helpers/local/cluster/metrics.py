"""The metrics API (`metrics.k8s.io/v1beta1`) as metrics-server serves it: `kubectl top pod|node`.

On a cluster metrics-server scrapes every kubelet's container counters (cAdvisor, the cgroups)
and the apiserver's aggregator proxies `/apis/metrics.k8s.io/` to it. Here a container is a
process: its CPU is the rate of the CPU time used by the process and its descendants (Triton's
Python-backend stubs are its children; what reaped children used counts too, as a cgroup counts
it), its memory the sum of their resident sets (the nearest thing to cAdvisor's working set).
The node is the whole machine: busy time in `/proc/stat`, `MemTotal - MemAvailable`.

A sampler thread reads `/proc` every `RESOLUTION` seconds; usage is the rate between its last two
samples (the `window`), as metrics-server's is between two scrapes, so a new container shows from
its second sample on and `kubectl top` says "metrics not available yet" before that.

The local controller serves it from a thread over HTTPS on 127.0.0.1 (the aggregator speaks only
HTTPS; the self-signed certificate is accepted through `insecureSkipTLSVerify`, as metrics-server's
own APIService has it). The apiserver finds it through an `ExternalName` Service
`kube-system/metrics-server` named `127.0.0.1` and the APIService's port: the aggregator resolves
an ExternalName without kube-proxy, and Endpoints may not hold loopback addresses. The aggregator
authorizes each request first (RBAC on `pods.metrics.k8s.io`, `metrics_reader_role`) and passes
the user in headers; this server needs no identity: it serves usage numbers only.
"""
from __future__ import annotations

import json
import logging
import os
import re
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Mapping, Optional
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("metrics")

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
APISERVICE = f"{VERSION}.{GROUP}"
SERVICE, SERVICE_NAMESPACE = "metrics-server", "kube-system"  # metrics-server's manifests name them so
READER_ROLE = "system:aggregated-metrics-reader"
RESOLUTION = 5.0  # seconds between samples (metrics-server's --metric-resolution, 15 s by default)


# --- quantities, as resource.Quantity writes them -----------------------------------------------
def cpu_quantity(nanocores: int) -> str:
    """CPU as metrics-server writes it (a DecimalSI quantity of nanocores): `1234567n`, `5m`, `2`."""
    for suffix, exponent in (("", 9), ("m", 6), ("u", 3)):
        if nanocores % 10 ** exponent == 0:
            return f"{nanocores // 10 ** exponent}{suffix}"
    return f"{nanocores}n"


def memory_quantity(nbytes: int) -> str:
    """Memory in bytes as a BinarySI quantity: `123456Ki`, `20Mi`, `1Gi`, `1000` (the largest exact unit)."""
    for suffix, power in (("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if nbytes and nbytes % (1 << power) == 0:
            return f"{nbytes >> power}{suffix}"
    return str(nbytes)


def duration(seconds: float) -> str:
    """A window as Go's time.Duration prints it: `5s`, `5.002s`."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cpu_rate(ticks_before: int, ticks_now: int, seconds: float, clock_ticks: int) -> int:
    """Nanocores used between two readings of a CPU-time counter in clock ticks (never negative)."""
    if seconds <= 0:
        return 0
    return max(int((ticks_now - ticks_before) / clock_ticks / seconds * 1e9), 0)


# --- /proc ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcStat:
    """What one process's `/proc/<pid>/stat` says: its parent, CPU time (own + reaped children's), RSS."""

    ppid: int
    ticks: int
    rss: int  # bytes


def parse_stat(text: str, page_size: int) -> ProcStat:
    fields = text.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces and parentheses
    # After the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21, in pages)
    return ProcStat(int(fields[1]), sum(int(f) for f in fields[11:15]), int(fields[21]) * page_size)


def read_processes(proc: Path = Path("/proc"), page_size: int = 0) -> dict[int, ProcStat]:
    """Every process under `proc` (a process that ends while it is read is left out)."""
    page_size = page_size or os.sysconf("SC_PAGE_SIZE")
    found = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = parse_stat((entry / "stat").read_text(), page_size)
            except (OSError, ValueError, IndexError):
                continue
    return found


def children_of(processes: Mapping[int, ProcStat]) -> dict[int, list[int]]:
    """Each PID's child PIDs: made once per sample, read for every container's tree."""
    children: dict[int, list[int]] = {}
    for pid, stat in processes.items():
        children.setdefault(stat.ppid, []).append(pid)
    return children


def tree_usage(processes: Mapping[int, ProcStat], root: int,
               children: Optional[Mapping[int, list[int]]] = None) -> Optional[tuple[int, int]]:
    """(CPU ticks, RSS bytes) of `root` and all its descendants; None if `root` is not running."""
    if root not in processes:
        return None
    children = children_of(processes) if children is None else children
    ticks = rss = 0
    todo, seen = [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        ticks, rss = ticks + processes[pid].ticks, rss + processes[pid].rss
        todo.extend(children.get(pid, []))
    return ticks, rss


def node_busy_ticks(proc_stat: str) -> int:
    """CPU time the machine spent not idle (`cpu` line of /proc/stat, without idle and iowait)."""
    for line in proc_stat.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:9]]  # user nice system idle iowait irq softirq steal
            return sum(values) - values[3] - values[4]
    raise ValueError("no cpu line in /proc/stat")


def node_memory_used(meminfo: str) -> int:
    """Bytes in use: MemTotal - MemAvailable (what a node's working set comes closest to)."""
    values = {}
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0]) * 1024 if rest.strip() else 0
    return values["MemTotal"] - values["MemAvailable"]


# --- samples --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PodProcesses:
    """A Running Pod of the node and the PID of each of its containers' processes (none: no metrics)."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    containers: tuple[tuple[str, int], ...]  # (container name, pid)


@dataclass(frozen=True)
class Sample:
    time: float
    node_ticks: int
    node_memory: int
    pods: tuple[PodProcesses, ...]
    usage: Mapping[tuple[str, str, str, int], tuple[int, int]]  # (ns, pod, container, pid) -> (ticks, rss)


def take_sample(pods: list[PodProcesses], proc: Path = Path("/proc"), now: Optional[float] = None,
                page_size: int = 0) -> Sample:
    """One reading of the node and of every container's process tree."""
    processes = read_processes(proc, page_size)
    children = children_of(processes)
    usage = {}
    for pod in pods:
        for container, pid in pod.containers:
            found = tree_usage(processes, pid, children)
            if found is not None:
                usage[(pod.namespace, pod.name, container, pid)] = found
    return Sample(time.time() if now is None else now, node_busy_ticks((proc / "stat").read_text()),
                  node_memory_used((proc / "meminfo").read_text()), tuple(pods), usage)


def pod_metrics(before: Sample, now: Sample, clock_ticks: int) -> list[dict]:
    """PodMetrics of every pod whose containers all were measured in both samples, by namespace and name."""
    seconds = now.time - before.time
    items = []
    for pod in sorted(now.pods, key=lambda p: (p.namespace, p.name)):
        containers = []
        for container, pid in pod.containers:
            key = (pod.namespace, pod.name, container, pid)
            if key not in before.usage or key not in now.usage:
                break
            cpu = cpu_rate(before.usage[key][0], now.usage[key][0], seconds, clock_ticks)
            containers.append({"name": container,
                               "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(now.usage[key][1])}})
        else:
            if containers:
                items.append({"kind": "PodMetrics", "apiVersion": API_VERSION,
                              "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": dict(pod.labels),
                                           "creationTimestamp": _stamp(time.time())},
                              "timestamp": _stamp(now.time), "window": duration(seconds), "containers": containers})
    return items


def node_metrics(before: Sample, now: Sample, node: str, clock_ticks: int) -> dict:
    seconds = now.time - before.time
    cpu = cpu_rate(before.node_ticks, now.node_ticks, seconds, clock_ticks)
    return {"kind": "NodeMetrics", "apiVersion": API_VERSION,
            "metadata": {"name": node, "creationTimestamp": _stamp(time.time())},
            "timestamp": _stamp(now.time), "window": duration(seconds),
            "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(now.node_memory)}}


# --- label selectors --------------------------------------------------------------------------
_REQUIREMENT = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*))?\s*$")


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Whether `labels` match an equality-based selector (`a=b,c!=d,e,!f`); raises ValueError on others."""
    for part in filter(None, (p.strip() for p in selector.split(","))):
        found = _REQUIREMENT.match(part)
        if not found or (found.group(1) and found.group(3)):
            raise ValueError(f"unable to parse requirement: {part!r} (only =, ==, != and existence are served here)")
        negate, key, op, value = found.groups()
        if op is None:
            ok = (key in labels) != bool(negate)
        else:
            ok = (labels.get(key) == value) == (op != "!=")
        if not ok:
            return False
    return True


# --- the API ----------------------------------------------------------------------------------
RESOURCES = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION, "resources": [
    {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
    {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]}]}
GROUP_INFO = {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
              "versions": [{"groupVersion": API_VERSION, "version": VERSION}],
              "preferredVersion": {"groupVersion": API_VERSION, "version": VERSION}}
# The aggregator merges each backend's OpenAPI into its own; a 404 it logs as an error and retries.
OPENAPI = {"swagger": "2.0", "info": {"title": "mms-local metrics API", "version": VERSION}, "paths": {},
           "definitions": {}}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason = code, reason

    def status(self) -> dict:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": str(self), "reason": self.reason, "code": self.code}


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource} "{name}" not found')


class Sampler:
    """Samples the node and its pods every `resolution` seconds in a thread; keeps the last two samples."""

    def __init__(self, pods: Callable[[], list[PodProcesses]], node: str, proc: Path = Path("/proc"),
                 resolution: float = RESOLUTION) -> None:
        self.pods, self.node, self.proc, self.resolution = pods, node, proc, resolution
        self.clock_ticks = os.sysconf("SC_CLK_TCK")
        self.samples: tuple[Optional[Sample], Optional[Sample]] = (None, None)

    def sample(self) -> None:
        self.samples = (self.samples[1], take_sample(self.pods(), self.proc))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - the apiserver may be away for a moment: sample again
                log.warning("sampling the node's processes failed: %s", exc)
            stop.wait(self.resolution)

    def answer(self, path: str, query: str) -> dict:
        """The JSON for a GET of `path` under the metrics API; raises ApiError."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts == ["openapi", "v2"]:
            return OPENAPI
        if parts == ["apis", GROUP]:
            return GROUP_INFO
        if parts[:3] != ["apis", GROUP, VERSION]:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rest = parts[3:]
        if not rest:
            return RESOURCES
        before, now = self.samples
        selector = parse_qs(query).get("labelSelector", [""])[-1]
        if rest[0] == "nodes" and len(rest) <= 2:
            if len(rest) == 2 and rest[1] != self.node:
                raise not_found("nodes", rest[1])
            items = [node_metrics(before, now, self.node, self.clock_ticks)] if before and now else []
            if len(rest) == 2:
                if not items:
                    raise not_found("nodemetrics.metrics.k8s.io", self.node)
                return items[0]
            return {"kind": "NodeMetricsList", "apiVersion": API_VERSION, "metadata": {}, "items": items}
        if rest[0] == "pods" and len(rest) == 1:
            namespace, name = "", ""
        elif rest[0] == "namespaces" and len(rest) in (3, 4) and rest[2] == "pods":
            namespace, name = rest[1], rest[3] if len(rest) == 4 else ""
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        items = pod_metrics(before, now, self.clock_ticks) if before and now else []
        if name:
            if not any(p.namespace == namespace and p.name == name for p in (now.pods if now else ())):
                raise not_found("pods", name)
            for item in items:
                if item["metadata"]["namespace"] == namespace and item["metadata"]["name"] == name:
                    return item
            raise not_found("podmetrics.metrics.k8s.io", f"{namespace}/{name}")
        try:
            items = [i for i in items if (not namespace or i["metadata"]["namespace"] == namespace)
                     and selector_matches(selector, i["metadata"]["labels"])]
        except ValueError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        return {"kind": "PodMetricsList", "apiVersion": API_VERSION, "metadata": {}, "items": items}


def _handler(sampler: Sampler) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = "mms-local-metrics-server"

        def log_message(self, fmt: str, *args) -> None:
            log.debug("%s %s", self.headers.get("X-Remote-User", "-") if self.headers else "-", fmt % args)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            try:
                code, body = 200, sampler.answer(url.path, url.query)
            except ApiError as exc:
                code, body = exc.code, exc.status()
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


class MetricsServer:
    """The metrics API on https://127.0.0.1:`port` (0: a free port), and the sampler behind it."""

    def __init__(self, port: int, cert: Path, key: Path, sampler: Sampler) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.sampler = sampler
        self.stop_event = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(sampler))
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]

    def start(self) -> "MetricsServer":
        threading.Thread(target=self.sampler.run, args=(self.stop_event,), name="metrics-sampler", daemon=True).start()
        threading.Thread(target=self.httpd.serve_forever, name="metrics-api", daemon=True).start()
        log.info("metrics API listening on https://127.0.0.1:%s", self.port)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# --- what makes the apiserver route to it -----------------------------------------------------
def api_manifests(port: int) -> list[dict]:
    """The ExternalName Service and the APIService (metrics-server's, pointed at 127.0.0.1:`port`)."""
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": SERVICE, "namespace": SERVICE_NAMESPACE, "labels": {"k8s-app": SERVICE}},
         "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": {"name": APISERVICE, "labels": {"k8s-app": SERVICE}},
         "spec": {"service": {"name": SERVICE, "namespace": SERVICE_NAMESPACE, "port": port},
                  "group": GROUP, "version": VERSION, "insecureSkipTLSVerify": True,
                  "groupPriorityMinimum": 100, "versionPriority": 100}},
    ]


def metrics_reader_role() -> dict:
    """metrics-server's `system:aggregated-metrics-reader` (manifests/base/rbac.yaml, v0.4-v0.7):
    aggregated into the built-in view, edit and admin roles, not into Kubeflow's `kubeflow-*` ones."""
    labels = {f"rbac.authorization.k8s.io/aggregate-to-{role}": "true" for role in ("view", "edit", "admin")}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": READER_ROLE, "labels": labels},
            "rules": [{"apiGroups": [GROUP], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]}]}
