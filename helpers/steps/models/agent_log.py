"""Read a model agent's log as a timeline: when the config changed, when files were there, when Triton served.

Explained in notebooks 03_cifar10 and 04_inception. Reads three formats:
this project's local agent and KFServing 0.5's agent (zap JSON with a float `ts`, a `logger`
and a `modelName` field), and later KServe agents (ISO `ts`, a `caller` and the model name
inside `msg`, e.g. "Successfully loaded model inception").
"""
from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Callable, Iterable, Optional

from kubernetes import client

from helpers.clients.target import NoServerPod, Target
from helpers.core.constants import AGENT_CONTAINER, DEFAULT_NAMESPACE, DEFAULT_SERVER_NAME, KFSERVING_GROUP, ApiGroup
from helpers.core.i18n import _
from helpers.core.show import show_adapted
from helpers.core.wait import nap

# Later agents name no logger: the source file of the call says which role spoke.
_CALLER_LOGGERS = {"watcher": "Watcher", "puller": "modelProcessor", "downloader": "Downloader",
                   "syncer": "Syncer", "main": "modelAgent"}

_MODEL_IN_MSG = [
    re.compile(r"^(?:adding|removing|unloading|loading) model (?P<m>\S+)"),
    re.compile(r"^Worker is started for (?P<m>\S+)", re.IGNORECASE),
    re.compile(r"^Successfully (?:un)?loaded model (?P<m>\S+)"),
    re.compile(r"^Failed to (?:load|unload|download) model (?P<m>[^\s,]+)", re.IGNORECASE),
    re.compile(r"^completion event for model (?P<m>[^\s,]+)"),
    re.compile(r"^Model successFile exists already for (?P<m>\S+)"),
    re.compile(r"^Creating successFile .*/(?P<m>[^/]+)/SUCCESS\.[0-9a-f]+$"),
]
_IN_FLIGHT = re.compile(r"in flight ops (\d+)")


def _ts(value: object) -> Optional[float]:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _model(record: dict, msg: str) -> Optional[str]:
    for key in ("modelName", "model"):
        if isinstance(record.get(key), str):
            return record[key]
    for pattern in _MODEL_IN_MSG:
        match = pattern.search(msg)
        if match:
            return match.group("m")
    return None


def _logger(record: dict) -> str:
    if isinstance(record.get("logger"), str):
        return record["logger"]
    caller = str(record.get("caller", ""))
    stem = caller.rsplit("/", 1)[-1].split(".", 1)[0]
    return _CALLER_LOGGERS.get(stem, stem)


def parse(lines: Iterable[str]) -> list[dict]:
    """The log's JSON events as dicts with `ts` (float seconds), `logger`, `msg`, `model` (or None),
    plus `fields` (the record as logged) and `line` (as written). Lines that are not JSON events are skipped."""
    events = []
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        ts = _ts(record.get("ts")) if isinstance(record, dict) else None
        if ts is None or not isinstance(record.get("msg"), str):
            continue
        msg = record["msg"]
        events.append({"ts": ts, "logger": _logger(record), "msg": msg, "model": _model(record, msg),
                       "fields": record, "line": line})
    return events


def _in_flight(event: dict) -> Optional[int]:
    value = event["fields"].get("inFlight")
    if isinstance(value, int):
        return value
    match = _IN_FLIGHT.search(event["msg"])
    return int(match.group(1)) if match else None


def timeline(lines: Iterable[str], model: str) -> dict:
    """Seconds from the config event that added `model` (its latest add) to download done and load done.

    Returns `{"model", "start" (unix ts), "download_s", "load_s", "downloaded", "failed"}`: download
    done is the `SUCCESS.<sha>` marker (`downloaded` False when it existed already, None when
    the agent does not log it, as KFServing 0.5's does not); load done is "Successfully loaded
    model", else the completion event that leaves no operation in flight. A `None` time means
    the step is not in the log (yet); `failed` holds the agent's failure message, if any.
    """
    events = parse(lines)
    adds = [i for i, e in enumerate(events) if e["model"] == model and e["msg"].startswith("adding model")]
    if not adds:
        raise ValueError(f"the log shows no 'adding model' event for {model!r}")
    first = adds[-1]
    start_index = first
    for i in range(first, -1, -1):  # the config event that led to the add
        if events[i]["msg"].startswith("Processing event"):
            start_index = i
            break
    start = events[start_index]["ts"]
    result: dict = {"model": model, "start": start, "download_s": None, "load_s": None,
                    "downloaded": None, "failed": None}
    completion_s = None
    for event in events[first:]:
        if event["model"] != model:
            continue
        msg, offset = event["msg"], round(event["ts"] - start, 6)
        if msg.startswith("Creating successFile") and result["download_s"] is None:
            result["download_s"], result["downloaded"] = offset, True
        elif msg.startswith("Model successFile exists already") and result["download_s"] is None:
            result["download_s"], result["downloaded"] = offset, False
        elif msg.startswith("Successfully loaded model"):
            result["load_s"], result["failed"] = offset, None  # a retry that succeeded
            break
        elif msg.startswith(("Failed to load model", "Failed to download model")):
            fields = event["fields"]
            result["failed"] = str(fields.get("error") or msg)
        elif msg.startswith("completion event for model") and _in_flight(event) == 0:
            completion_s = offset
            break
    if result["load_s"] is None and completion_s is not None and result["failed"] is None:
        result["load_s"] = completion_s
    return result


def guide_log(model: str) -> list[str]:
    """The agent log the guide shows for `cifar10` (KFServing 0.5) or `inception` (a later agent), verbatim."""
    from helpers.core.resources import data_path

    folder = data_path("guide_agent_logs")
    path = next(folder.glob(f"{model}_*.log"), None)
    if path is None:
        raise KeyError(f"the guide shows no agent log for {model!r}")
    return path.read_text().splitlines()


# --- reading the log from the server's pod ---------------------------------------------------
def agent_lines(api: client.ApiClient, place: Target, group: ApiGroup, name: str, namespace: str) -> list[str]:
    """The model agent's log lines (`kubectl logs $SERVER agent -n <namespace>`)."""
    return place.container_log(api, group, name, namespace, AGENT_CONTAINER).splitlines()


def server_lines(api: client.ApiClient, place: Target, group: ApiGroup, name: str, namespace: str) -> list[str]:
    """Triton's own log lines (`kubectl logs $SERVER kfserving-container`)."""
    return place.container_log(api, group, name, namespace, group.server_container).splitlines()


def crash(lines: Iterable[str]) -> Optional[str]:
    """The Go runtime's `panic: ...` line when the agent's container died of one, else None.

    A panic ends the container, so a log that shows one is the log of an agent that will not answer
    (KFServing 0.5.1 without an S3 endpoint, kserve/kserve#1317): waiting longer only sees it restart."""
    return next((line.strip() for line in lines if line.startswith("panic: ")), None)


def wait_agent_loaded(api: client.ApiClient, place: Target, group: ApiGroup, name: str, namespace: str,
                      model: str, timeout: float = 300.0,
                      stop: Optional[Callable[[], bool]] = None) -> tuple[list[str], dict]:
    """Poll the agent's log until it shows `model` loaded (or failed); return (lines, timeline).

    The timeline is `helpers.steps.models.agent_log.timeline`: seconds from the config event to download
    done and load done; `failed` also holds the panic of an agent that crashed (`crash`). After `timeout`,
    or once `stop()` says the agent will never see the model (a TrainedModel the controller refused), the
    last timeline is returned as it is (steps None).
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        try:
            lines = agent_lines(api, place, group, name, namespace)
        except NoServerPod:
            # No pod this moment: one being replaced (a new InferenceService's, or one the garbage
            # collector took); its successor's log is read on the next poll, until the deadline.
            if time.monotonic() >= deadline:
                raise
            nap(0.5, start, deadline)
            continue
        try:
            found = timeline(lines, model)
        except ValueError:
            found = {"model": model, "start": None, "download_s": None, "load_s": None,
                     "downloaded": None, "failed": None}
        if found["load_s"] is None and not found["failed"]:
            found["failed"] = crash(lines)
        if found["load_s"] is not None or found["failed"] or time.monotonic() >= deadline or (stop and stop()):
            return lines, found
        nap(0.5, start, deadline)


def _short_paths(text: str) -> str:
    """`<state>/servers/ns.isvc/models/cifar10/SUCCESS.<sha>` -> `.../cifar10/SUCCESS.<12 hex>…` (the part that teaches)."""
    def short(match: "re.Match[str]") -> str:
        parts = match.group(0).split("/")
        return match.group(0) if len(parts) <= 4 else ".../" + "/".join(parts[-2:])

    text = re.sub(r"(?<![\w:/.])/[^\s\"']+", short, text)
    return re.sub(r"(SUCCESS\.[0-9a-f]{12})[0-9a-f]{52}", r"\1…", text)  # the marker's sha, abridged


def agent_events(lines: list[str], model: str, limit: int = 14) -> str:
    """The agent's log lines about `model` since its latest `adding model`, one short line each.

    `+0.000s  Logger  message  key=value ...`, times from the config event that added it.
    """
    events = parse(lines)
    adds = [i for i, e in enumerate(events) if e["model"] == model and e["msg"].startswith("adding model")]
    if not adds:
        return _("(no 'adding model {model}' event in the agent log yet)").format(model=model)
    first = adds[-1]
    for i in range(first, -1, -1):
        if events[i]["msg"].startswith("Processing event"):
            first = i
            break
    start = events[first]["ts"]
    last = max(i for i, e in enumerate(events) if e["model"] == model)
    shown = [e for e in events[first:last + 1] if e["model"] in (model, None)][:limit]
    skip = {"level", "ts", "logger", "msg", "caller", "modelName", "model"}
    out = []
    for e in shown:
        extra = " ".join(f"{k}={_short_paths(str(v))}" for k, v in e["fields"].items() if k not in skip)
        out.append(f"+{e['ts'] - start:7.3f}s  {e['logger']:<15} {e['msg']}  {extra}".rstrip())
    return "\n".join(out)


def timelines(lines: list[str], models: list[str]) -> list[dict]:
    """`agent_log.timeline` of each model the log mentions (models it does not mention are left out)."""
    found = []
    for model in models:
        try:
            found.append(timeline(lines, model))
        except ValueError:
            continue
    return found


def raw_lines(lines: list[str], model: str, limit: int = 12) -> list[str]:
    """The agent's own log lines about `model` since its latest `adding model`, as `kubectl logs` shows
    them (JSON, unchanged); past `limit`, one visible marker says how many were left out."""
    events = parse(lines)
    adds = [i for i, e in enumerate(events) if e["model"] == model and e["msg"].startswith("adding model")]
    if not adds:
        return []
    first = next((i for i in range(adds[-1], -1, -1) if events[i]["msg"].startswith("Processing event")), adds[-1])
    last = max(i for i, e in enumerate(events) if e["model"] == model)  # later config events concern other models
    about = [e["line"] for e in events[first:last + 1] if e["model"] in (model, None)]
    if len(about) <= limit:
        return about
    return about[:limit] + [_("… ({count} more lines: `kubectl logs $SERVER agent` shows them all)").format(
        count=len(about) - limit)]


def triton_lines(lines: list[str], model: str) -> list[str]:
    """Triton's own log lines that name `model` (loading, version, `successfully loaded`, unloads)."""
    return [line for line in lines if re.search(rf"['\s:]{re.escape(model)}['\s:]", line)]


def show_log_commands(group: ApiGroup, server_name: str, namespace: str, containers: tuple[str, ...] = (AGENT_CONTAINER,),
                      namespace_first: bool = False, only: str = "") -> None:
    """The guide's `SERVER=$(k get pod ...)` and `kubectl logs $SERVER <container>` lines, as they run here.

    The guide writes `k` (its author's alias for kubectl) and reads Triton's log without `-n` (its
    shell was in namespace mms): both are adapted, and the label says so. `namespace_first` writes
    `kubectl -n <ns> logs ...`, as the guide does for cifar10's agent (`kubectl logs ... -n <ns>` for inception's);
    `only`: a model whose lines alone are kept (`| grep '"<model>"'`, 05).
    """
    lines = [f"SERVER=$(kubectl get pod -l {group.isvc_label}={server_name} -o name -n {namespace})"]
    grep = f" | grep '\"{only}\"'" if only else ""
    for container in containers:
        lines.append((f"kubectl -n {namespace} logs $SERVER {container}" if namespace_first
                      else f"kubectl logs $SERVER {container} -n {namespace}") + grep)
    why = [_("`kubectl` where the guide writes its alias `k`")]
    if only:
        why.append(_("`grep` keeps the lines about {model}").format(model=only))
    if any(c != AGENT_CONTAINER for c in containers):
        why.append(_("`-n` on Triton's log: the guide's shell was in namespace mms"))
    if (namespace, server_name, group.group) != (DEFAULT_NAMESPACE, DEFAULT_SERVER_NAME, KFSERVING_GROUP):
        why.append(_("your namespace, server and API group"))
    show_adapted("\n".join(lines), "; ".join(why))


def show_agent_lines(lines: list[str], model: str, step: str = "added") -> None:
    """The agent's own lines about `model` (already cut to one step), under a title in the learner's language.

    `step`: "added" (03, 04, 05's new model), "reload" or "deleted" (05)."""
    from helpers.core.show import show_lines

    titles = {"added": lambda: _("kubectl logs $SERVER agent: the lines about {model}").format(model=model),
              "reload": lambda: _("kubectl logs $SERVER agent: the reload of {model}").format(model=model),
              "deleted": lambda: _("kubectl logs $SERVER agent: {model} deleted").format(model=model)}
    show_lines(lines, titles[step]())


def show_triton_lines(lines: list[str], model: str, group: ApiGroup) -> None:
    """Triton's own lines about `model`, under a title in the learner's language."""
    from helpers.core.show import show_lines

    show_lines(lines, _("kubectl logs $SERVER {container}: Triton's lines about {model}").format(
        container=group.server_container, model=model))
