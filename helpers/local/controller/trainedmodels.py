"""TrainedModel -> validation, the model-config ConfigMap the agent reads, and TrainedModel status.

Unlike KFServing 0.5, `Ready` here means Triton has the model loaded; a failure shows S3's or
Triton's own message (from the agent's status file) in the TrainedModel's status.
"""
from __future__ import annotations

import json
import logging
from typing import Optional

import requests
from kubernetes.utils import parse_quantity

from ...constants import MODEL_CONFIG_FILE, TRITON_FRAMEWORKS, ApiGroup, model_config_map_name
from ..agent.spec import ModelSpec
from .conditions import condition, merge_times, ready_from, strip_times
from .kube import Kube
from .servers import ServerDir

log = logging.getLogger("controller")
SUPPORTED_SCHEMES = ("s3://",)  # what the local agent downloads; KFServing 0.5's agent: s3 and gs


def isvc_memory_limit(isvc: dict) -> Optional[float]:
    """The predictor's memory limit in bytes, if it sets one (TrainedModels must fit in it)."""
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    for holder in (predictor.get("triton") or {}, predictor):
        limit = ((holder.get("resources") or {}).get("limits") or {}).get("memory")
        if limit:
            return float(parse_quantity(limit))
    return None


def validate(tm: dict, isvc: Optional[dict], isvc_ready: bool) -> list[dict]:
    """KServe's TrainedModel checks as conditions (all True when the model may be served)."""
    spec = tm.get("spec") or {}
    model = spec.get("model") or {}
    target = spec.get("inferenceService", "")
    uri, framework = model.get("storageUri", ""), model.get("framework", "")
    parts = []
    if isvc is None:
        parts.append(condition("InferenceServiceReady", False, "InferenceServiceNotFound",
                               f"InferenceService {target!r} not found in this namespace: create it first (02_server)"))
    elif not isvc_ready:
        parts.append(condition("InferenceServiceReady", False, "InferenceServiceNotReady",
                               f"InferenceService {target!r} is not Ready: see `kubectl describe isvc {target}`"))
    else:
        parts.append(condition("InferenceServiceReady", True))
    if not uri.startswith(SUPPORTED_SCHEMES):
        parts.append(condition("StorageUriSupported", False, "StorageUriNotSupported",
                               f"storageUri {uri!r}: the agent downloads {', '.join(SUPPORTED_SCHEMES)} URIs only"))
    if framework not in TRITON_FRAMEWORKS:
        parts.append(condition("FrameworkSupported", False, "FrameworkNotSupported",
                               f"framework {framework!r} is not served by Triton: use one of {', '.join(TRITON_FRAMEWORKS)}"))
    else:
        parts.append(condition("FrameworkSupported", True))
    try:
        if float(parse_quantity(str(model.get("memory", "")))) <= 0:
            raise ValueError
        parts.append(condition("MemoryResourceAvailable", True))
    except (ValueError, TypeError):
        parts.append(condition("MemoryResourceAvailable", False, "MemoryInvalid",
                               f"memory {model.get('memory')!r} is not a quantity such as 1Gi or 256Mi"))
    return parts


def fit_memory(tms: list[dict], limit: Optional[float]) -> set[str]:
    """Names of the TrainedModels that do not fit the server's memory limit (in creation order)."""
    if limit is None:
        return set()
    used, too_big = 0.0, set()
    for tm in sorted(tms, key=lambda t: t["metadata"].get("creationTimestamp", "")):
        need = float(parse_quantity(str(tm["spec"]["model"]["memory"])))
        if used + need > limit:
            too_big.add(tm["metadata"]["name"])
        else:
            used += need
    return too_big


def model_entry(tm: dict) -> dict:
    """One entry of KServe's models.json."""
    model = tm["spec"]["model"]
    return {"modelName": tm["metadata"]["name"],
            "modelSpec": {"storageUri": model["storageUri"], "framework": model["framework"],
                          "memory": str(model["memory"])}}


def write_model_config(kube: Kube, namespace: str, isvc: str, entries: list[dict], where: ServerDir,
                       written: Optional[dict] = None, trust: bool = False) -> None:
    """Update the ConfigMap (the API object) and project it into the agent's file (the kubelet's job).

    The file is written first (tmp + rename, which wakes the agent), so the agent starts while the
    ConfigMap is patched. `written` (server folder -> text) remembers what this controller last
    put in the ConfigMap; with `trust`, an unchanged config then costs no API call (the full pass
    does not trust it: someone may have edited the ConfigMap).
    """
    text = json.dumps(sorted(entries, key=lambda e: e["modelName"]), indent=1)
    where.config_file.parent.mkdir(parents=True, exist_ok=True)
    if not where.config_file.exists() or where.config_file.read_text() != text:
        tmp = where.config_file.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(where.config_file)
    key = str(where.root)
    if trust and written is not None and written.get(key) == text:
        return
    name = model_config_map_name(isvc)
    cm = kube.read(kube.core.read_namespaced_config_map, name, namespace)
    if cm is not None and (cm.data or {}).get(MODEL_CONFIG_FILE) != text:
        kube.core.patch_namespaced_config_map(name, namespace, {"data": {MODEL_CONFIG_FILE: text}})
    if cm is not None and written is not None:
        written[key] = text


def read_agent_status(where: ServerDir) -> dict:
    try:
        return json.loads(where.agent_status.read_text())
    except (OSError, ValueError):
        return {}


_triton = requests.Session()  # keep-alive to each Triton: one ready check per status pass and model


def triton_has(http_port: Optional[int], model: str) -> bool:
    if not http_port:
        return False
    try:
        return _triton.get(f"http://127.0.0.1:{http_port}/v2/models/{model}/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def serving_condition(tm: dict, agent: dict, http_port: Optional[int]) -> dict:
    """Is the model loaded in Triton for the current spec? From the agent's status and Triton itself."""
    name = tm["metadata"]["name"]
    sha = ModelSpec.from_json(model_entry(tm)["modelSpec"]).sha
    entry = agent.get(name) or {}
    if entry.get("sha") != sha:
        return condition("ModelLoaded", None, "Pending", "waiting for the agent to pick up this spec")
    state = entry.get("state", "")
    if state == "Failed":
        return condition("ModelLoaded", False, "ModelLoadFailed", entry.get("message", "load failed"))
    if state == "Loaded" and triton_has(http_port, name):
        return condition("ModelLoaded", True)
    return condition("ModelLoaded", None, state or "Pending", entry.get("message", ""))


def write_status(kube: Kube, group: ApiGroup, tm: dict, parts: list[dict], via: str = "full pass") -> None:
    """Patch the TrainedModel's status if it changed; `via` (which pass wrote it) goes to the log."""
    meta, spec = tm["metadata"], tm.get("spec") or {}
    ns, isvc = meta["namespace"], spec.get("inferenceService", "")
    conditions = parts + [ready_from(parts)]
    status = {"url": f"http://{isvc}.{ns}.example.com/v2/models/{meta['name']}/infer",
              "address": {"url": f"http://{isvc}.{ns}.svc.cluster.local/v2/models/{meta['name']}/infer"},
              "observedGeneration": meta.get("generation", 1), "conditions": conditions}
    old = tm.get("status") or {}
    if {**old, "conditions": strip_times(old.get("conditions"))} == {**status, "conditions": strip_times(conditions)}:
        return
    status["conditions"] = merge_times(old.get("conditions"), conditions)
    kube.patch_status(group.group, group.tm_version, "trainedmodels", tm, status)
    ready = conditions[-1]
    reason = f" {ready['reason']}" if ready.get("reason") else ""
    log.info("trainedmodel %s/%s: Ready=%s%s (via %s)", ns, meta["name"], ready["status"], reason, via)
