"""N TrainedModels added to the one server, one after the other, each measured as a cluster user reads it.

Explained in 07_one_server_many_models. Every copy is 03_cifar10's network, from the files 03 uploaded
(`torchscript/cifar10`), copied once to `scale/cifar10` without the `name:` line of its `config.pbtxt`
(Triton wants the name to be the folder, which is the TrainedModel's name: 05_lifecycle). For each model:

- the time from `kubectl apply` until Triton's repository index (`POST /v2/repository/index`) says
  READY, or until the controller refuses it (KServe's `MemoryResourceAvailable`);
- the server's memory right after, from the metrics API (`kubectl top pod --containers`): the first
  sample taken after the load (metrics-server samples every 15-60 s on a cluster, every 5 s locally);
- afterwards, from the agent's log, how long its download and Triton's load took.

Triton's own `/metrics` (port 8002 of the server's pod, through a port-forward) lists each model it
serves; one request to every copy shows in it. What this identity may not read (the metrics API, a
port-forward) is one line, and the rest goes on.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.clients import inference, manifests, storage
from helpers.clients.k8s import api_message, not_found
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.show import show_not_in_guide
from helpers.core.wait import poll_until
from helpers.steps.models import agent_log
from helpers.steps.operations import lifecycle
from helpers.steps.scale.footprint import nbytes

if TYPE_CHECKING:
    from helpers.clients.target import Endpoint, Target
    from helpers.core.constants import ApiGroup

SOURCE = "torchscript/cifar10"  # what 03_cifar10 uploaded
FOLDER = "scale"  # everything 07 puts in the bucket (99_cleanup deletes it with the rest)
PREFIX = f"{FOLDER}/cifar10"  # the copy every TrainedModel of 07 points at
NAME = re.compile(r"^cifar10-\d{2}$")  # cifar10-01, cifar10-02, ...
METRICS_PORT = 8002  # Triton's --metrics-port (default), as KServe's Triton predictor leaves it
METRICS_GROUP, METRICS_VERSION = "metrics.k8s.io", "v1beta1"


def names(n: int) -> list[str]:
    """The TrainedModels' names: `cifar10-01` ... (at most 99)."""
    if not 1 <= int(n) <= 99:
        raise SetupError(_("n_models is {n}: it must be between 1 and 99").format(n=n),
                         _("set n_models in the parameters cell (small: 3 to 10)"))
    return [f"cifar10-{i:02d}" for i in range(1, int(n) + 1)]


def start_clean(api: client.ApiClient, group: "ApiGroup", namespace: str, server: str) -> list[str]:
    """Delete the copies an earlier run left (any number of them), so this run starts from the guide's models."""
    left = [name for name in lifecycle.declared_memory(api, group, server, namespace) if NAME.match(name)]
    return lifecycle.start_clean(api, group, namespace, left)


def prepare_files(s3: Any, bucket: str, folder: Path) -> tuple[Path, list[str]]:
    """Copy 03's cifar10 files to `scale/cifar10` without `name:` in config.pbtxt; return the local copy (under
    `folder`) and the keys uploaded."""
    source = Path(folder) / "from-03"
    storage.download_folder(s3, bucket, SOURCE, source)
    nameless = lifecycle.versioned_copy(source, Path(folder) / "cifar10", 1)
    return nameless, storage.upload_folder(s3, nameless, bucket, PREFIX, progress=False)


def show_copy(place: "Target", bucket: str) -> None:
    """The copy as a shell does it: down, `name:` removed, up (`mc` where it is set up, rclone locally)."""
    from helpers.steps.objectstore import mc

    sed = "sed -i '/^name:/d' scale-cifar10/config.pbtxt"
    mc_lines = (f"./mc cp -r myminio/{bucket}/{SOURCE}/ scale-cifar10/\n{sed}\n"
                f"./mc cp -r scale-cifar10/ myminio/{bucket}/{PREFIX}/")
    rclone = f"rclone copy myminio:{bucket}/{SOURCE} scale-cifar10\n{sed}\nrclone copy scale-cifar10 myminio:{bucket}/{PREFIX}"
    command = mc.with_rclone(place, mc_lines, rclone)
    show_not_in_guide(command, _("one copy of cifar10's files without the name in config.pbtxt, for every TrainedModel"))


# --- the metrics API (kubectl top) ----------------------------------------------------------------
def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


@dataclass(frozen=True)
class Usage:
    """One metrics sample of a pod: when it was taken (unix time), over what window, memory per container."""

    taken: float
    window: str
    memory: dict[str, int]


class Top:
    """`kubectl top pod --containers` for one pod, through the metrics API; `unread` says why not, once."""

    def __init__(self, api: client.ApiClient, namespace: str, pod: str) -> None:
        self.api, self.namespace, self.pod = api, namespace, pod
        self.unread = ""

    @classmethod
    def for_server(cls, api: client.ApiClient, group: "ApiGroup", server: str, namespace: str) -> "Top":
        """For the InferenceService's running pod."""
        from helpers.steps.serving.server_pod import server_pod

        return cls(api, namespace, server_pod(api, group, server, namespace).metadata.name)

    def now(self) -> Optional[Usage]:
        """The latest sample, or None (not yet, no metrics API, or not allowed: then `unread` says so)."""
        if self.unread:
            return None
        try:
            found = client.CustomObjectsApi(self.api).get_namespaced_custom_object(
                METRICS_GROUP, METRICS_VERSION, self.namespace, "pods", self.pod)
        except ApiException as exc:
            if exc.status in (401, 403):
                self.unread = _("the metrics API: you may not read pods.metrics.k8s.io in {namespace} ({status}); "
                                "`kubectl top pod` needs it").format(namespace=self.namespace, status=exc.status)
            elif not_found(exc) and "could not find the requested resource" in api_message(exc):
                self.unread = _("the metrics API: this cluster serves none (no metrics-server)")
            # any other 404 names the pod: it has no sample yet (a new pod shows from its second sample on)
            elif exc.status == 503:
                self.unread = _("the metrics API: unavailable (503): metrics-server is not answering")
            return None
        return Usage(_stamp(found["timestamp"]), found.get("window", ""),
                     {c["name"]: nbytes(c["usage"]["memory"]) for c in found.get("containers") or []})

    def after(self, moment: float, timeout: float = 30.0) -> Optional[Usage]:
        """The first sample taken after `moment` (unix time), waiting up to `timeout`; else the latest one."""
        deadline = time.monotonic() + timeout
        latest = self.now()
        while not self.unread and (latest is None or latest.taken < moment) and time.monotonic() < deadline:
            time.sleep(0.5)
            latest = self.now() or latest
        return latest


# --- adding the models ----------------------------------------------------------------------------
@dataclass
class Added:
    """One TrainedModel added: apply -> served (s), or refused (the controller's reason); the server's
    memory (bytes, Triton's container and the agent's) in the first sample after it."""

    name: str
    applied: float
    served_s: Optional[float] = None
    refused: str = ""
    triton_memory: Optional[int] = None
    agent_memory: Optional[int] = None
    sampled: Optional[float] = None
    download_s: Optional[float] = None
    load_s: Optional[float] = None
    handoff_s: Optional[float] = None


def _decided(api: client.ApiClient, group: "ApiGroup", name: str, namespace: str, endpoint: "Endpoint") -> str:
    """"served" once Triton's index says READY, "refused: <reason>" once the controller refuses, "failed: <reason>"
    when Triton could not load it, else "" (not decided yet)."""
    from helpers.clients import triton

    rows = [r for r in triton.repository_index(endpoint.base_url, endpoint.headers) if r["name"] == name]
    if any(r["state"] == "READY" for r in rows):
        return "served"
    memory = inference.conditions(inference.get(api, group, inference.TM, name, namespace)).get(
        "MemoryResourceAvailable") or {}
    if memory.get("status") == "False":
        return "refused: " + (memory.get("message") or memory.get("reason") or "MemoryResourceAvailable=False")
    # "unloaded": a folder of that name that Triton unloaded before (an earlier run's copy), while the agent
    # writes the new one; any other reason is Triton's load error
    failed = [r for r in rows if r["state"] == "UNAVAILABLE" and r["reason"] not in ("", "unloaded")]
    return "failed: " + failed[0]["reason"] if failed else ""


def copies(template: Sequence[dict], models: Sequence[str], storage_uri: str) -> list[dict]:
    """One TrainedModel document per name: the guide's `template` (trained_model1.yaml) with that name and
    `storage_uri` (what editing the file before `kubectl apply -f` does)."""
    return [doc for name in models for doc in lifecycle.edited(template, name, storage_uri)]


def add_models(api: client.ApiClient, group: "ApiGroup", namespace: str, endpoint: "Endpoint", top: Optional[Top],
               docs: Sequence[dict], timeout: float = 120.0) -> list[Added]:
    """Apply the TrainedModels `docs` one after the other; wait for each to be served or refused; read the
    server's memory after each (module doc)."""
    added = []
    for doc in docs:
        name = doc["metadata"]["name"]
        one = Added(name, time.time())
        manifests.apply(api, [doc])
        outcome = poll_until(lambda: _decided(api, group, name, namespace, endpoint),
                             _("{name} to be served by Triton or refused").format(name=name), timeout=timeout,
                             interval=0.1)
        done = time.time()
        if outcome.startswith("failed: "):
            raise SetupError(_("Triton could not load {name}: {reason}").format(name=name, reason=outcome[8:]),
                             _("`kubectl logs $SERVER agent -n {namespace}` says what the agent did").format(
                                 namespace=namespace))
        if outcome == "served":
            one.served_s = round(done - one.applied, 3)
        else:
            one.refused = outcome.split(": ", 1)[1]
        usage = top.after(done) if top is not None and outcome == "served" else None
        if usage is not None:
            one.triton_memory, one.agent_memory = usage.memory.get(group.server_container), usage.memory.get("agent")
            one.sampled = usage.taken
        added.append(one)
    return added


def show_apply(folder: Path, path: Path, group: "ApiGroup", namespace: str) -> None:
    """`kubectl apply -f` of the file that holds every copy (this notebook applied them one by one)."""
    show_not_in_guide("\n".join([f"cd {folder}  # " + _("where this notebook wrote {file}").format(file=Path(path).name),
                                 f"kubectl apply -f {Path(path).name}",
                                 f"kubectl get {group.tm_resource} -n {namespace}"]),
                      _("the guide's trained_model1.yaml once per copy, with another name and storageUri, in one file "
                        "written by this notebook"))


def read_agent_log(lines: Sequence[str], added: Sequence[Added]) -> None:
    """Fill each served model's hand-off (apply -> the agent's config event), download and load times from the
    agent's log (`kubectl logs $SERVER agent`)."""
    for one in added:
        if one.refused:
            continue
        try:
            found = agent_log.timeline(lines, one.name)
        except ValueError:
            continue
        one.handoff_s = round(found["start"] - one.applied, 3) if found["start"] else None
        one.download_s = found["download_s"]
        if found["load_s"] is not None and found["download_s"] is not None:
            one.load_s = round(found["load_s"] - found["download_s"], 3)


def mib_of(usage: Optional[Usage], group: "ApiGroup") -> Optional[float]:
    """Triton's memory in a sample, MiB (None without one)."""
    found = usage.memory.get(group.server_container) if usage is not None else None
    return found / 2**20 if found else None


def mib(value: Optional[float]) -> str:
    return f"{value / 2**20:.1f}" if value else "-"


def seconds(value: Optional[float]) -> str:
    return f"{value:.2f}" if value is not None else "-"


def table(before: Optional[Usage], added: Sequence[Added], group: "ApiGroup") -> str:
    """One row per model: apply -> served, hand-off, download, load (s), the server's memory after it (MiB)."""
    from helpers.steps.scale.footprint import _table

    header = [_("MODEL"), _("APPLY → SERVED S"), _("HAND-OFF S"), _("DOWNLOAD S"), _("LOAD S"),
              _("TRITON MIB"), _("AGENT MIB")]
    rows = []
    if before is not None:
        rows.append([_("(before)"), "", "", "", "", mib(before.memory.get(group.server_container)),
                     mib(before.memory.get("agent"))])
    for one in added:
        if one.refused:
            rows.append([one.name, _("refused: {reason}").format(reason=one.refused), "", "", "", "", ""])
            continue
        rows.append([one.name, seconds(one.served_s), seconds(one.handoff_s), seconds(one.download_s),
                     seconds(one.load_s), mib(one.triton_memory), mib(one.agent_memory)])
    return _table(header, rows)


def per_model(before: Optional[Usage], added: Sequence[Added], group: "ApiGroup") -> Optional[float]:
    """Bytes of Triton's memory per model served: (after the last - before) / models served."""
    served = [a for a in added if a.triton_memory]
    if before is None or not served or not before.memory.get(group.server_container):
        return None
    return (served[-1].triton_memory - before.memory[group.server_container]) / len(served)


def describe(before: Optional[Usage], added: Sequence[Added], group: "ApiGroup", top: Optional[Top]) -> str:
    """What the numbers say, in two lines: the memory per model, and what N one-model servers would hold."""
    served = [a for a in added if not a.refused]
    lines = [_("{served} of {n} served; median apply → served {median} s").format(
        served=len(served), n=len(added), median=seconds(_median([a.served_s for a in served])))]
    each = per_model(before, added, group)
    if each is not None and before is not None:
        base = before.memory[group.server_container]
        lines.append(_("Triton's memory grew {each} MiB per model; {n} servers of one model each would hold about "
                       "{n} × {base} MiB = {total} MiB of Triton alone").format(
                           each=f"{each / 2**20:.2f}", n=len(served), base=mib(base),
                           total=f"{len(served) * base / 2**20:.0f}"))
    elif top is not None and top.unread:
        lines.append(_("no memory figures: {why}").format(why=top.unread))
    return "\n".join(lines)


def _median(values: Sequence[Optional[float]]) -> Optional[float]:
    found = sorted(v for v in values if v is not None)
    return found[len(found) // 2] if found else None


def show_top(group: "ApiGroup", server: str, namespace: str) -> None:
    """`kubectl top pod --containers` on the server's pod."""
    show_not_in_guide(f"SERVER=$(kubectl get pod -l {group.isvc_label}={server} -o name -n {namespace})\n"
                      f"kubectl top pod ${{SERVER#pod/}} -n {namespace} --containers",
                      _("each container's memory, from the metrics API"))


# --- Triton's own view ------------------------------------------------------------------------------
def infer_each(endpoint: "Endpoint", added: Sequence[Added]) -> dict[str, bool]:
    """One request of zeros to every served copy: whether Triton answered with cifar10's 10 scores."""
    import numpy as np

    from helpers.clients import triton

    answered = {}
    for one in added:
        if one.refused:
            continue
        out = triton.infer(endpoint.base_url, one.name, np.zeros((1, 3, 32, 32), np.float32), headers=endpoint.headers)
        answered[one.name] = list(next(iter(out.values())).shape) == [1, 10]
    return answered


def triton_metrics(api: client.ApiClient, namespace: str, pod: str) -> tuple[str, str]:
    """Triton's `/metrics` text through a port-forward to the pod's port 8002, and "" ; or "" and why not."""
    import requests

    from helpers.clients import portforward

    try:
        forward = portforward.forward_pod(api, namespace, pod, METRICS_PORT)
    except SetupError as exc:
        return "", exc.cause
    try:
        answer = requests.get(f"{forward.url}/metrics", timeout=10)
        answer.raise_for_status()
        return answer.text, ""
    except Exception as exc:  # noqa: BLE001 - a refused port-forward or a closed port: say it, go on
        return "", forward.last_error or type(exc).__name__
    finally:
        forward.stop()


def metric_lines(text: str, models: Sequence[str], metric: str = "nv_inference_count") -> list[str]:
    """The lines of `metric` about `models`, as `/metrics` prints them, and Triton's memory lines."""
    wanted = [line for line in text.splitlines() if line.startswith(metric + "{")
              and re.search(r'model="([^"]+)"', line) and re.search(r'model="([^"]+)"', line).group(1) in models]
    return wanted + [line for line in text.splitlines() if line.startswith("nv_cpu_memory")]


def show_metric_lines(text: str, unread: str, models: Sequence[str]) -> None:
    """The `/metrics` lines about `models` (and Triton's memory lines), as Triton prints them; else why none."""
    from helpers.core.show import show_lines

    if not text:
        print(_("Triton's /metrics: not read here ({why})").format(why=unread))
        return
    show_lines(metric_lines(text, models), _("GET :8002/metrics, the lines about the copies"))


def show_metrics(group: "ApiGroup", server: str, namespace: str, reached: bool) -> None:
    """How to read Triton's /metrics from a shell: a port-forward to 8002, then curl. Where this notebook could
    not reach it, the lines are comments (they would fail the same way)."""
    lines = [f"kubectl port-forward $SERVER {METRICS_PORT}:{METRICS_PORT} -n {namespace} > port-forward.log 2>&1 &",
             "sleep 2", f"curl -s http://127.0.0.1:{METRICS_PORT}/metrics | grep nv_inference_count",
             "kill $!  # " + _("stops the port-forward")]
    if not reached:
        lines = ["# " + _("not reachable from here (see above): the lines that read it where it is")] + [
            f"# {line}" for line in lines]
    show_not_in_guide("\n".join([f"SERVER=$(kubectl get pod -l {group.isvc_label}={server} -o name -n {namespace})",
                                 *lines]), _("Triton's own metrics, on port 8002 of the server's pod"))


def as_dicts(added: Sequence[Added]) -> list[dict[str, Any]]:
    return [asdict(a) for a in added]


def remove(api: client.ApiClient, group: "ApiGroup", namespace: str, endpoint: "Endpoint", models: Sequence[str],
           s3: Any, bucket: str) -> dict[str, Any]:
    """Delete the copies (each leaves models.json, then Triton and its folder) and their files in S3."""
    deleted = [name for name in models if lifecycle.delete_and_wait(api, group, name, namespace)]
    index = lifecycle.wait_gone(endpoint.base_url, endpoint.headers, list(models))
    files = storage.delete_prefix(s3, bucket, FOLDER)
    return {"deleted": deleted, "index": [row["name"] for row in index], "files": files}


def show_remove(place: "Target", group: "ApiGroup", namespace: str, models: Sequence[str], bucket: str,
                servers: Sequence[str] = ()) -> None:
    """The same from a shell: `kubectl delete` the InferenceServices `servers`, the TrainedModels, then the files."""
    from helpers.steps.objectstore import mc

    files = mc.with_rclone(place, f"./mc rm -r --force myminio/{bucket}/{FOLDER}",
                           f"rclone purge myminio:{bucket}/{FOLDER}")
    isvcs = [f"kubectl delete {group.isvc_resource} {' '.join(servers)} -n {namespace}"] if servers else []
    show_not_in_guide("\n".join([*isvcs, f"kubectl delete {group.tm_resource} {' '.join(models)} -n {namespace}",
                                 files]),
                      _("what this notebook added, taken away"))


def summary(names: dict[str, Any]) -> dict[str, Any]:
    """What 07_one_server_many_models verified, for its results JSON, read from the notebook's own variables
    (`locals()`), so its closing cell stays one line."""
    n = names
    group = n["ctx"].group
    return {
        "footprint": n["fp"].as_dict(), "cost": n["cost"], "models": list(n["MODELS"]),
        "uploaded": n["keys"], "added": as_dicts(n["added"]),
        "before_memory": n["before"].memory if n["before"] is not None else None,
        "per_model_bytes": per_model(n["before"], n["added"], group), "memory_unread": n["top"].unread,
        "answered": n["answered"], "index": [row["name"] for row in n["index"] if row["state"] == "READY"],
        "metrics_read": bool(n["metrics_text"]), "metrics_unread": n["metrics_unread"],
        "metrics_lines": metric_lines(n["metrics_text"], n["MODELS"]) if n["metrics_text"] else [],
        "memory_rule": n["rule"], "configmap": n["size"], "removed": n["removed"],
    }
