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
from helpers.core.constants import DEFAULT_NAMESPACE, ApiGroup, model_config_map_name
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.show import show_adapted, show_not_in_guide
from helpers.core.wait import poll_until
from helpers.steps.models import agent_log
from helpers.steps.serving.endpoint import curl

if TYPE_CHECKING:
    from helpers.clients.inference import ServerRef
    from helpers.clients.target import Endpoint

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
        raise SetupError(_("{folder} has no version folder (1/, 2/, ...)").format(folder=folder),
                         _("fetch the model again (03_cifar10)"))
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
            poll_until(done, _("the agent to log {steps} for {model}").format(steps=" -> ".join(until), model=model),
                       timeout=timeout, interval=0.5)
        except TimeoutError:
            seen = "; ".join(s.msg for s in found) or _("nothing")
            namespace = self.server.namespace
            raise SetupError(_("the agent did not log {steps} for {model} within {seconds}s (it logged: {seen})").format(
                                 steps=" -> ".join(until), model=model, seconds=f"{timeout:.0f}", seen=seen),
                             _("`{logs}` and `{describe}` say why").format(
                                 logs=f"kubectl logs $SERVER agent -n {namespace}",
                                 describe=f"kubectl describe {self.server.group.tm_resource} {model} -n {namespace}"),
                             ) from None
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

    poll_until(decided, _("the controller to decide on TrainedModel {name}").format(name=name), timeout=timeout,
               interval=0.5)
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
            kept["…"] = _("abridged here: {keys}").format(keys=", ".join(left))
        out.append(kept)
    return {"model_stats": out}


def statistics_table(rows: Sequence[dict]) -> str:
    """The statistics as a fixed-width table."""
    names = [_("MODEL"), _("VERSION"), _("REQUESTS"), _("EXECUTIONS"), _("MEAN MS"), _("MEMORY (TRITON)")]
    head = f"{names[0]:<20} {names[1]:>7} {names[2]:>9} {names[3]:>10} {names[4]:>8} {names[5]:>16}"
    lines = [head]
    for r in rows:
        memory = f"{r['memory_bytes'] / 2**20:.1f} MiB" if r["memory_bytes"] else _("not reported")
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
               _("TrainedModel {name} to be deleted").format(name=f"{namespace}/{name}"), timeout=timeout, interval=0.5)
    return True


def start_clean(api: client.ApiClient, group: ApiGroup, namespace: str, names: Sequence[str],
                say: Callable[[str], None] = print) -> list[str]:
    """Delete what an earlier run of this notebook left (so a second run starts from the same place); say what."""
    removed = [name for name in names if delete_and_wait(api, group, name, namespace)]
    say(_("removed what an earlier run left: {names}").format(names=", ".join(removed)) if removed
        else _("nothing left from an earlier run"))
    return removed


# --- the commands a learner types for each step (03, 04, 05), labelled as the guide has them ------------
def _group_why(group: ApiGroup, namespace: str) -> list[str]:
    why = [_("`{resource}`: kubectl's full name for it, as both API groups may be installed").format(
        resource=group.tm_resource)]
    if namespace != DEFAULT_NAMESPACE:
        why.append(_("your namespace"))
    return why


def show_apply(group: ApiGroup, namespace: str, filename: str, guide_file: str = "") -> None:
    """`kubectl apply -f <file>` and `kubectl get trainedmodel`, as the guide does after each TrainedModel.

    `guide_file`: the guide's own file name when `filename` is another (05 edits trained_model1.yaml)."""
    command = f"kubectl apply -f {filename}\nkubectl get {group.tm_resource} -n {namespace}"
    why = _group_why(group, namespace)
    if guide_file and guide_file != filename:
        why.insert(0, _("{file} with another name and storageUri").format(file=guide_file))
    show_adapted(command, "; ".join(why))


def show_models_json(server_name: str, namespace: str) -> None:
    """How to read the hand-off object: `models.json` of the server's model-config ConfigMap."""
    show_not_in_guide(f"kubectl get cm {model_config_map_name(server_name)} -n {namespace} "
                      "-o jsonpath='{.data.models\\.json}'",
                      _("what the controller hands the agent: models.json of the ConfigMap"))


def show_ready(endpoint: "Endpoint", model: str) -> None:
    """The guide's readiness check for `model` (200: loaded)."""
    show_adapted(curl(endpoint, f"/v2/models/{model}/ready"), _("`-v` added, to print the status code: 200 means loaded"))


def show_infer(endpoint: "Endpoint", model: str, request_file: Path) -> None:
    """The guide's prediction request, with the body this notebook wrote."""
    show_adapted(curl(endpoint, f"/v2/models/{model}/infer", "POST", str(request_file)),
                 _("a JSON Content-Type, and `cd` to the folder where this notebook wrote the request"))


def show_request(endpoint: "Endpoint", path: str, why: str, method: str = "GET") -> None:
    """A request to Triton the guide never makes (index, versions, statistics), through the guide's ingress."""
    show_not_in_guide(curl(endpoint, path, method), why)


def write_manifest(docs: Sequence[dict], folder: Path, name: str) -> Path:
    """`docs` as `<folder>/<name>.yaml`, the file a learner applies with `kubectl apply -f` (05's edits)."""
    import yaml

    path = Path(folder) / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return path


def show_upload(place: "Target", local: Path, bucket: str) -> None:
    """How 05's two versions go to S3: `mc cp` where mc is set up, rclone on the local stack."""
    mc = "\n".join(f"./mc cp -r {local}/v{v} myminio/{bucket}/{PREFIX}/" for v in (1, 2))
    rclone = "\n".join(f"rclone copy {local}/v{v} myminio:{bucket}/{PREFIX}/v{v}" for v in (1, 2))
    command = "\n".join([place.shell_env, rclone]) if place.shell_env else mc
    show_not_in_guide(command, _("two versions of cifar10's files, as the guide's `mc cp` uploads a model"))


def show_apply_edit(folder: Path, path: Path, group: ApiGroup, namespace: str, change: str) -> None:
    """`cd` to where 05 wrote an edited TrainedModel file, `kubectl apply -f` it, `kubectl get` the list.

    `change`: what differs from the guide's trained_model1.yaml: "name" (name and storageUri),
    "storage" (storageUri: the v2 folder) or "memory" (name and a memory the server cannot hold)."""
    why = {"name": _("the guide's trained_model1.yaml with another name and storageUri, written by this notebook"),
           "storage": _("the same file with storageUri changed to the v2 folder, written by this notebook"),
           "memory": _("the guide's trained_model1.yaml with another name and more memory than the server has, "
                       "written by this notebook")}[change]
    lines = [f"cd {folder}  # " + _("where this notebook wrote {file}").format(file=Path(path).name),
             f"kubectl apply -f {Path(path).name}", f"kubectl get {group.tm_resource} -n {namespace}"]
    show_adapted("\n".join(lines), why)


def describe_limit(limit: str, name: str, asked: str) -> str:
    """One line: the server's memory limit, and what the TrainedModel `name` asks for."""
    return _("the server's memory limit: {limit}; {name} asks for {asked}").format(
        limit=limit or _("(none set)"), name=name, asked=asked)


def describe_decision(memory_condition: Optional[str], in_config: bool) -> str:
    """One line: the controller's MemoryResourceAvailable, and whether the model reached models.json."""
    return _("MemoryResourceAvailable: {condition}; in models.json: {in_config}").format(
        condition=memory_condition or _("not set by this release"), in_config=in_config)


def wait_gone(url: str, headers: dict[str, str], names: Sequence[str], timeout: float = 120.0) -> list[dict]:
    """Poll Triton's repository index until none of `names` is in it (the agent removed their folders)."""
    return wait_index(url, headers, lambda index: not set(names) & {row["name"] for row in index},
                      _("{names} to leave Triton's repository index").format(names=", ".join(names)), timeout)


def show_conditions(group: ApiGroup, name: str, namespace: str) -> None:
    """How to read a TrainedModel's status conditions."""
    show_not_in_guide(f"kubectl get {group.tm_resource} {name} -n {namespace} -o jsonpath='{{.status.conditions}}'",
                      _("the conditions the controller wrote"))


def show_delete(group: ApiGroup, name: str, namespace: str) -> None:
    """`kubectl delete trainedmodel <name>`: the guide never deletes a model."""
    show_not_in_guide(f"kubectl delete {group.tm_resource} {name} -n {namespace}",
                      _("deleting a TrainedModel"))


def show_index(endpoint: "Endpoint") -> None:
    """`POST /v2/repository/index`: every model folder Triton sees (the guide never asks)."""
    show_not_in_guide(curl(endpoint, "/v2/repository/index", "POST"),
                      _("Triton's repository index: every model folder and its state"))


def show_versions(endpoint: "Endpoint", model: str) -> None:
    """Readiness of versions 2 and 1 of `model` (the guide asks only for a model's default version)."""
    show_not_in_guide(curl(endpoint, f"/v2/models/{model}/versions/2/ready") + "\n"
                      + curl(endpoint, f"/v2/models/{model}/versions/1/ready"),
                      _("one version's readiness: 200 for version 2, 400 for version 1, no longer served"))


def show_statistics(endpoint: "Endpoint", model: str) -> None:
    """`GET /v2/models/<model>/stats`: Triton's statistics extension."""
    show_not_in_guide(curl(endpoint, f"/v2/models/{model}/stats"), _("Triton's statistics of one model"))


def summary(names: dict[str, Any]) -> dict[str, Any]:
    """What 05_lifecycle verified, for its results JSON, read from the notebook's own variables (`locals()`):
    the same names the cells above made, so the closing cell stays one line."""
    n = names
    model, too_big = n["MODEL"], n["TOO_BIG"]
    index_names = [row["name"] for row in n["index_after"]]
    return {
        "added": {"before": model_names(n["before"]), "after": model_names(n["after"]), "agent": as_dicts(n["added"])},
        "reload": {"agent": as_dicts(n["reload"]), "triton_log": n["triton_reload"],
                   "seen": in_order([step.msg for step in n["reload"]], ["unloading model", "Successfully loaded model"])},
        "versions": {"v2_ready": n["v2_ready"], "v1_ready": n["v1_ready"], "index": n["index_v2"]},
        "old_version_gone": n["v2_ready"] and not n["v1_ready"], "statistics": n["stats"],
        "over_memory": {"limit": n["limit"], "asked": n["asked"], "memory_condition": n["memory_condition"],
                        "in_models_json": n["in_config"], "ready": inference.is_ready(n["decided"]),
                        "refused": not n["in_config"]},
        "deleted": {"agent": as_dicts(n["removed"]), "index": index_names,
                    "models_json": model_names(n["models_after"]),
                    "absent_from_index": model not in index_names and too_big not in index_names},
        "declared_memory_gib": n["declared"],
    }


def show_config(entries: Sequence[dict], server_name: str, when: str) -> None:
    """`models.json` of the server's model-config ConfigMap, as the controller wrote it; `when`: "before",
    "after" (an apply or a delete) or "both" (04: both models)."""
    from helpers.core.show import show_json

    name = model_config_map_name(server_name)
    titles = {"before": lambda: _("models.json of ConfigMap {name}, before").format(name=name),
              "after": lambda: _("models.json of ConfigMap {name}, after").format(name=name),
              "both": lambda: _("models.json of ConfigMap {name}: both models").format(name=name)}
    show_json(list(entries), titles[when]())


def show_entry(entries: Sequence[dict], model: str) -> None:
    """The `models.json` entry of one model."""
    from helpers.core.show import show_json

    show_json(entry(entries, model), _("models.json now: the entry of {model}").format(model=model))


def show_repository(index: Sequence[dict], what: str, model: str = "") -> None:
    """Triton's repository index (`POST /v2/repository/index`); `what`: "all", "after" or "rows" (of `model`)."""
    from helpers.core.show import show_json

    title = {"all": _("POST /v2/repository/index: every model folder Triton sees"),
             "after": _("POST /v2/repository/index, after"),
             "rows": _("POST /v2/repository/index: the rows of {model}")}[what]
    show_json(list(index), title.format(model=model))


def say_ready(model: str, ready: bool, served: str = "") -> None:
    """One line: whether Triton answers 200 for `model`'s readiness, and which backend serves it."""
    print(_("{model} ready in Triton: {ready}").format(model=model, ready=ready))
    if served:
        print(_("served by {backend}").format(backend=served))


def show_request_body(request: dict, model: str, path: Path) -> None:
    """The v2 JSON body this notebook wrote for curl, long lists abridged."""
    from helpers.core.show import show_json

    show_json(request, _("POST /v2/models/{model}/infer: the body of {file}").format(model=model, file=Path(path).name))


def show_response(response: dict, classification: bool = False) -> None:
    """Triton's JSON response (with `classification`: the extension's `score:index:label` strings)."""
    from helpers.core.show import show_json

    show_json(response, _("Triton's response: the classification extension's score:index:label") if classification
              else _("Triton's response"), limit=10)
