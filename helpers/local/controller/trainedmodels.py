"""TrainedModel -> conditions, the model-config ConfigMap the agent reads, and status, as KServe's
TrainedModel controller does it for the stack's release (pkg/controller/v1alpha1/trainedmodel).

- a TrainedModel whose InferenceService does not exist is deleted;
- `trainedmodel.finalizer` keeps a deleted one until it has left the model config;
- conditions are the release's: InferenceServiceReady (KFServing 0.5.1), plus IsMMSPredictor and
  MemoryResourceAvailable (KServe); the model goes into `models.json` only when all are True;
- `Ready` means exactly that, not "Triton has loaded it": as on a cluster, the learner asks
  Triton (`/v2/models/<name>/ready`) for that. A download or load the agent gave up on shows, as
  on every release, only in the agent's log (`kubectl logs <server pod> agent`): the release's
  TrainedModel controller records no Event of it (its one Event is UpdateFailed). With the
  friendly agent (MMS_AGENT_FRIENDLY=1) the controller also adds ModelLoaded/ModelLoadFailed
  Events (`agent_event`).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Optional

from kubernetes.client.rest import ApiException
from kubernetes.utils import parse_quantity

from helpers.clients.k8s import triton_predictor
from helpers.core.constants import MODEL_CONFIG_FILE, ApiGroup, model_config_map_name
from helpers.local.agent.spec import ModelSpec
from helpers.local.controller.conditions import condition, merge_times, ready_from, strip_times
from helpers.local.controller.kube import Kube
from helpers.local.controller.servers import ServerDir
from helpers.local.controller.webhooks import implementations
from helpers.local.stack.releases import Profile

log = logging.getLogger("controller")
FINALIZER = "trainedmodel.finalizer"
PARENT_LABEL = "inferenceservice"


def isvc_memory_limit(isvc: dict) -> float:
    """The stored predictor container's `limits.memory` in bytes, which TrainedModels must fit in
    (IsMemoryResourceAvailable, pkg/controller/v1beta1/inferenceservice/utils/utils.go at v0.15.2):
    KServe 0.10+'s defaulter adds no resources to `predictor.model`, so without a limit it is 0 and
    every TrainedModel is refused."""
    limit = (((triton_predictor(isvc) or {}).get("resources") or {}).get("limits") or {}).get("memory")
    return float(parse_quantity(limit)) if limit else 0.0


def is_mms_predictor(isvc: dict) -> bool:
    """KServe's IsMMSPredictor: the predictor's implementation has no storageUri."""
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    chosen = [key for key in implementations(isvc["apiVersion"].split("/")[0], predictor) if key != "containers"]
    return bool(chosen) and isinstance(predictor[chosen[0]], dict) and not predictor[chosen[0]].get("storageUri")


def conditions_for(profile: Profile, tm: dict, isvc: dict, isvc_ready: bool, memory_ok: bool) -> list[dict]:
    """The release's conditions (Ready excluded) for a TrainedModel whose InferenceService exists."""
    parts = [condition("InferenceServiceReady", True) if isvc_ready else condition(
        "InferenceServiceReady", False, "InferenceServiceNotReady",
        "Inference Service needs to be ready before Trained Model can be ready")]
    if "IsMMSPredictor" in profile.tm_conditions:
        parts.append(condition("IsMMSPredictor", True) if is_mms_predictor(isvc) else condition(
            "IsMMSPredictor", False, "IsNotMMSPredictor",
            "Inference Service predictor is not configured for multi-model serving"))
    if "MemoryResourceAvailable" in profile.tm_conditions:
        parts.append(condition("MemoryResourceAvailable", True) if memory_ok else condition(
            "MemoryResourceAvailable", False, "MemoryResourceNotAvailable",
            "Inference Service does not have enough memory resources for Trained Model"))
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
                       written: Optional[dict] = None, trust: bool = False,
                       project: Optional[Callable[[Path, str], None]] = None) -> None:
    """Update the ConfigMap (the API object), then have it projected into the agent's file (the kubelet's job).

    `models.json` is compact JSON, as KServe's `json.Marshal` writes it. The ConfigMap is written
    first and only what it holds is projected: when the API server refuses it (422, more than
    1 MiB of data), the agent's file keeps the last good list, the error is logged as
    controller-runtime logs a failed reconcile, and no Event or condition says so, as in every
    release (`ModelConfigReconciler.Reconcile` returns the error; the conditions were set before).
    `project` (a `projection.Projector`'s) writes the file after the stack's ConfigMap delay, as a
    kubelet's sync does; without it the file is written at once (tmp + rename, which wakes the agent).
    `written` (server folder -> text) remembers what this controller last put in the ConfigMap, and
    what the API server refused; with `trust`, an unchanged config then costs no API call (the full
    pass does not trust it: someone may have edited the ConfigMap).
    """
    text = json.dumps(sorted(entries, key=lambda e: e["modelName"]), separators=(",", ":"))
    key, refused_key = str(where.root), f"{where.root}#refused"
    if not (trust and written is not None and written.get(key) == text):
        name = model_config_map_name(isvc)
        cm = kube.read(kube.core.read_namespaced_config_map, name, namespace)
        if cm is not None and (cm.data or {}).get(MODEL_CONFIG_FILE) != text:
            if written is not None and written.get(refused_key) == text:
                return  # refused already: the same list would be refused again
            try:
                kube.core.patch_namespaced_config_map(name, namespace, {"data": {MODEL_CONFIG_FILE: text}})
            except ApiException as exc:
                if exc.status != 422:
                    raise
                log.error("Reconciler error: ConfigMap %s/%s: %s (%d models, %d bytes of models.json)", namespace,
                          name, api_message(exc), len(entries), len(text.encode()))
                if written is not None:
                    written[refused_key] = text
                return
        if cm is not None and written is not None:
            written[key] = text
            written.pop(refused_key, None)
    if project is not None:
        project(where.config_file, text)
    elif not where.config_file.exists() or where.config_file.read_text() != text:
        where.config_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = where.config_file.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(where.config_file)


def api_message(exc: ApiException) -> str:
    """The API server's own message of a refused request (its Status body), else the exception's reason."""
    try:
        return json.loads(exc.body or "{}").get("message") or str(exc.reason)
    except ValueError:
        return str(exc.reason)


def agent_event(tm: dict, agent: dict) -> Optional[tuple[str, str, str]]:
    """(type, reason, message) of what the agent did with this TrainedModel's current spec, if final."""
    entry = agent.get(tm["metadata"]["name"]) or {}
    if entry.get("sha") != ModelSpec.from_json(model_entry(tm)["modelSpec"]).sha:
        return None
    if entry.get("state") == "Failed":
        return ("Warning", "ModelLoadFailed",
                f"the model agent could not serve this spec: {entry.get('message', 'load failed')} "
                "(see `kubectl logs <server pod> agent`)")
    if entry.get("state") == "Loaded":
        return ("Normal", "ModelLoaded", "the model agent downloaded the model and Triton loaded it")
    return None


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
