"""A model's life in a running multi-model server: new files, a new version, deletion, a model too big.

Explained in 05_lifecycle. What the notebook watches, it reads where a cluster user would:
the `modelconfig-<isvc>-0` ConfigMap's `models.json` (what the controller handed the agent), the
agent's and Triton's logs from a mark on (`Logs`: `kubectl logs $SERVER agent`, `... kfserving-container`),
Triton's repository index (`POST /v2/repository/index`) and the TrainedModel's status conditions.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from kubernetes import client
from kubernetes.utils import parse_quantity

from helpers.clients import inference
from helpers.clients.k8s import triton_predictor
from helpers.clients.target import Target
from helpers.core.constants import ApiGroup
from helpers.core.errors import SetupError
from helpers.core.wait import poll_until
from helpers.steps.models import agent_log

if TYPE_CHECKING:
    from helpers.clients.inference import ServerRef

PREFIX = "lifecycle"  # where 05 uploads its two versions: s3://<bucket>/lifecycle/v1, .../v2


def model_names(entries: Sequence[dict]) -> list[str]:
    """The `modelName` of each `models.json` entry, in order."""
    return [e.get("modelName", "") for e in entries]


def entry(entries: Sequence[dict], model: str) -> Optional[dict]:
    """The `models.json` entry of `model`, or None."""
    return next((e for e in entries if e.get("modelName") == model), None)


def versioned_copy(folder: Path, dest: Path, version: int) -> Path:
    """Copy a Triton model folder to `dest` with its weights under `<version>/` and no `name:` in config.pbtxt.

    A TrainedModel's name is the folder the agent writes, and Triton refuses a config whose
    `name` differs from its folder: leaving the name out lets one set of files serve under any name.
    """
    folder, dest = Path(folder), Path(dest)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    config = (folder / "config.pbtxt").read_text()
    (dest / "config.pbtxt").write_text(re.sub(r'(?m)^name:\s*"[^"]*"\s*\n', "", config))
    versions = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        raise SetupError(f"{folder} has no version folder (1/, 2/, ...)", "fetch the model again (03_cifar10)")
    shutil.copytree(versions[-1], dest / str(version))
    return dest


@dataclass(frozen=True)
class AgentStep:
    """One agent log event about a model: seconds from the first one shown, who logged it, what."""

    seconds: float
    logger: str
    msg: str
    line: str


def steps_after(lines: Sequence[str], model: str, skip: int) -> list[AgentStep]:
    """The agent's events about `model` in `lines[skip:]`, in order, timed from the first."""
    pairs = [(events[0], line.strip()) for line in lines[skip:] if f'"{model}"' in line
             for events in [agent_log.parse([line])] if events]
    if not pairs:
        return []
    start = pairs[0][0]["ts"]
    return [AgentStep(round(e["ts"] - start, 3), e["logger"], e["msg"], line) for e, line in pairs]


class Logs:
    """The server pod's two logs from a mark on: what one step added to `kubectl logs $SERVER agent` and
    to Triton's `kubectl logs $SERVER kfserving-container` (`kserve-container`)."""

    def __init__(self, api: client.ApiClient, place: Target, server: "ServerRef") -> None:
        self.api, self.place, self.server = api, place, server
        self._agent_mark = self._triton_mark = 0

    def agent(self) -> list[str]:
        return agent_log.agent_lines(self.api, self.place, self.server.group, self.server.name, self.server.namespace)

    def triton(self) -> list[str]:
        return agent_log.server_lines(self.api, self.place, self.server.group, self.server.name,
                                      self.server.namespace)

    def mark(self) -> None:
        """Remember where both logs end now: what is read next starts after this."""
        self._agent_mark, self._triton_mark = len(self.agent()), len(self.triton())

    def triton_since(self, model: str) -> list[str]:
        """Triton's lines about `model` since the mark, as logged."""
        return agent_log.triton_lines(self.triton()[self._triton_mark:], model)

    def wait_agent(self, model: str, until: Sequence[str], timeout: float = 180.0) -> list[AgentStep]:
        """Poll the agent's log until its events about `model` since the mark contain every message in
        `until`, in order. Raises SetupError naming what did not come, with what came, after `timeout`."""
        found: list[AgentStep] = []

        def done() -> bool:
            nonlocal found
            found = steps_after(self.agent(), model, self._agent_mark)
            return in_order([s.msg for s in found], until)

        try:
            poll_until(done, f"the agent to log {' -> '.join(until)} for {model}", timeout=timeout, interval=0.5)
        except TimeoutError:
            seen = "; ".join(s.msg for s in found) or "nothing"
            namespace = self.server.namespace
            raise SetupError(f"the agent did not log {' -> '.join(until)} for {model} within {timeout:.0f}s "
                             f"(it logged: {seen})",
                             f"`kubectl logs $SERVER agent -n {namespace}` and `kubectl describe "
                             f"{self.server.group.tm_resource} {model} -n {namespace}` say why") from None
        return found


def in_order(messages: Sequence[str], wanted: Sequence[str]) -> bool:
    """True when `messages` contain a message starting with each of `wanted`, in that order."""
    position = 0
    for msg in messages:
        if position < len(wanted) and msg.startswith(wanted[position]):
            position += 1
    return position == len(wanted)


def wait_index(url: str, headers: dict[str, str], check: Callable[[list[dict]], bool], what: str,
               timeout: float = 120.0) -> list[dict]:
    """Poll Triton's repository index until `check(index)` holds; return the index."""
    from helpers.clients import triton

    index: list[dict] = []

    def done() -> bool:
        nonlocal index
        index = triton.repository_index(url, headers)
        return check(index)

    poll_until(done, what, timeout=timeout, interval=0.5)
    return index


def memory_limit(isvc: dict) -> str:
    """The predictor's memory limit as written in the InferenceService (e.g. `16Gi`), or "" when none is set."""
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    for holder in (triton_predictor(isvc) or {}, predictor):
        limit = ((holder.get("resources") or {}).get("limits") or {}).get("memory")
        if limit:
            return str(limit)
    return ""


def gib(quantity: str) -> float:
    """A Kubernetes memory quantity (`512Mi`, `16Gi`, `1G`) in GiB."""
    return float(parse_quantity(quantity)) / 2**30


def more_than(limit: str) -> str:
    """A memory quantity twice `limit` (at least 4Gi), in whole Gi: a model that cannot fit."""
    return f"{max(4, int(gib(limit) * 2 + 0.999)) if limit else 64}Gi"


def wait_decided(api: client.ApiClient, group: ApiGroup, name: str, namespace: str,
                 timeout: float = 120.0) -> dict:
    """Poll a TrainedModel until its controller has decided: Ready=True, or MemoryResourceAvailable set."""
    found: dict = {}

    def decided() -> bool:
        nonlocal found
        found = inference.get(api, group, inference.TM, name, namespace) or {}
        conds = inference.conditions(found)
        return inference.is_ready(found) or "MemoryResourceAvailable" in conds

    poll_until(decided, f"the controller to decide on TrainedModel {name}", timeout=timeout, interval=0.5)
    return found


def statistics(url: str, headers: dict[str, str], models: Sequence[str]) -> list[dict]:
    """Per model and version: requests, executions, mean request time (ms), from `/v2/models/<m>/stats`."""
    from helpers.clients import triton

    rows = []
    for model in models:
        for stat in triton.model_statistics(url, model, headers):
            inference = stat.get("inference_stats") or {}
            success = inference.get("success") or {}
            count = int(success.get("count", 0))
            rows.append({"model": stat.get("name", model), "version": stat.get("version", ""),
                         "inference_count": int(stat.get("inference_count", 0)),
                         "execution_count": int(stat.get("execution_count", 0)),
                         "mean_ms": round(int(success.get("ns", 0)) / count / 1e6, 3) if count else None,
                         "memory_bytes": sum(int(m.get("byte_size", 0)) for m in stat.get("memory_usage") or [])})
    return rows


# What 05 reads of a model's statistics; the rest is left out, and named where it was.
STATS_SHOWN = ("name", "version", "last_inference", "inference_count", "execution_count", "inference_stats",
               "memory_usage")
INFERENCE_STATS_SHOWN = ("success", "fail", "queue", "compute_infer")


def abridged_statistics(model_stats: Sequence[dict]) -> dict:
    """`GET /v2/models/<m>/stats` as Triton answers it (`{"model_stats": [...]}`), each entry cut to the
    counts 05 reads; a `"…"` key in each says what was left out."""
    out = []
    for stat in model_stats:
        kept = {k: v for k, v in stat.items() if k in STATS_SHOWN}
        inference = stat.get("inference_stats") or {}
        kept["inference_stats"] = {k: v for k, v in inference.items() if k in INFERENCE_STATS_SHOWN}
        left = [k for k in stat if k not in STATS_SHOWN]
        left += [f"inference_stats.{k}" for k in inference if k not in INFERENCE_STATS_SHOWN]
        if left:
            kept["…"] = "abridged here: " + ", ".join(left)
        out.append(kept)
    return {"model_stats": out}


def statistics_table(rows: Sequence[dict]) -> str:
    """The statistics as a fixed-width table."""
    head = f"{'MODEL':<20} {'VERSION':>7} {'REQUESTS':>9} {'EXECUTIONS':>10} {'MEAN MS':>8} {'MEMORY (TRITON)':>16}"
    lines = [head]
    for r in rows:
        memory = f"{r['memory_bytes'] / 2**20:.1f} MiB" if r["memory_bytes"] else "not reported"
        mean = f"{r['mean_ms']:.3f}" if r["mean_ms"] is not None else "-"
        lines.append(f"{r['model']:<20} {r['version']:>7} {r['inference_count']:>9} {r['execution_count']:>10} "
                     f"{mean:>8} {memory:>16}")
    return "\n".join(lines)


def declared_memory(api: client.ApiClient, group: ApiGroup, server: str, namespace: str) -> dict[str, float]:
    """GiB each TrainedModel of `server` declares (`spec.model.memory`), by name, in creation order."""
    found = client.CustomObjectsApi(api).list_namespaced_custom_object(
        group.group, group.tm_version, namespace, inference.TM)["items"]
    mine = [tm for tm in found if (tm.get("spec") or {}).get("inferenceService") == server]
    mine.sort(key=lambda tm: tm["metadata"].get("creationTimestamp", ""))
    return {tm["metadata"]["name"]: gib(str(tm["spec"]["model"]["memory"])) for tm in mine}


def timeline(steps: Sequence[AgentStep]) -> str:
    """`+0.000s  logger  message` per step."""
    return "\n".join(f"+{s.seconds:7.3f}s  {s.logger:<15} {s.msg}" for s in steps)


def as_dicts(steps: Sequence[AgentStep]) -> list[dict[str, Any]]:
    """The steps for the results JSON (without the raw lines)."""
    return [{"s": s.seconds, "logger": s.logger, "msg": s.msg} for s in steps]


def edited(docs: Sequence[dict], name: str, storage_uri: str, memory: Optional[str] = None) -> list[dict]:
    """Copies of TrainedModel documents with another name, `storageUri` and (optionally) `memory`:
    what editing the YAML file before `kubectl apply -f` does."""
    import copy

    out = []
    for doc in docs:
        doc = copy.deepcopy(dict(doc))
        doc["metadata"]["name"] = name
        doc["spec"]["model"]["storageUri"] = storage_uri
        if memory:
            doc["spec"]["model"]["memory"] = memory
        out.append(doc)
    return out


def delete_and_wait(api: client.ApiClient, group: ApiGroup, name: str, namespace: str,
                    timeout: float = 120.0) -> bool:
    """Delete a TrainedModel and wait until it is gone (its finalizer lets go once it left `models.json`).

    Returns False when there was nothing to delete.
    """
    if not inference.delete(api, group, inference.TM, name, namespace):
        return False
    poll_until(lambda: inference.get(api, group, inference.TM, name, namespace) is None,
               f"TrainedModel {namespace}/{name} to be deleted", timeout=timeout, interval=0.5)
    return True


def start_clean(api: client.ApiClient, group: ApiGroup, namespace: str, names: Sequence[str]) -> list[str]:
    """Delete what an earlier run of this notebook left (so a second run starts from the same place)."""
    return [name for name in names if delete_and_wait(api, group, name, namespace)]
