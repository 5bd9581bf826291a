"""Where one server for many models stops: the memory the TrainedModels declare, and the ConfigMap's 1 MiB.

Explained in 07_one_server_many_models.

- **Memory**: KServe's TrainedModel controller adds up `spec.model.memory` of the server's
  TrainedModels and refuses one that would pass the predictor's memory limit
  (`MemoryResourceAvailable=False`, never written to `models.json`); KFServing 0.5.1 checks nothing
  and leaves the limit to the kernel (05_lifecycle shows both). The rule counts what the
  TrainedModels *declare*, not what Triton uses: `memory_rule` puts the two side by side.
- **The ConfigMap**: the controller writes every TrainedModel of the server into one ConfigMap,
  `modelconfig-<isvc>-0`, as one `models.json`; the API server refuses a ConfigMap whose data
  passes 1 MiB (`MAX_CONFIGMAP_BYTES`, Kubernetes' ValidateConfigMap). `configmap_size` measures the
  bytes per entry in the live ConfigMap and extrapolates to the largest number of entries it holds.
"""
from __future__ import annotations

import json
import math
from typing import Any, Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.clients import inference
from helpers.clients.k8s import forbidden, predictor_path
from helpers.core.constants import KSERVE_GROUP, MODEL_CONFIG_FILE, ApiGroup, model_config_map_name
from helpers.core.i18n import _
from helpers.core.show import show_not_in_guide
from helpers.steps.operations import lifecycle

MAX_CONFIGMAP_BYTES = 1024 * 1024  # core.MaxSecretSize: a ConfigMap's keys and values together


def memory_rule(api: client.ApiClient, group: ApiGroup, server: str, namespace: str, model_memory: str,
                used_per_model: Optional[float]) -> dict[str, Any]:
    """The server's memory limit, what its TrainedModels declare, how many more of `model_memory` fit,
    whether this release checks it, and the declared memory against `used_per_model` (bytes, measured)."""
    isvc = inference.get(api, group, inference.ISVC, server, namespace) or {}
    limit = lifecycle.memory_limit(isvc)
    declared = lifecycle.declared_memory(api, group, server, namespace)
    limit_gib, each_gib = (lifecycle.gib(limit) if limit else 0.0), lifecycle.gib(model_memory)
    room = max(0, math.floor((limit_gib - sum(declared.values())) / each_gib)) if limit and each_gib else None
    return {"limit": limit, "limit_gib": limit_gib, "declared_gib": round(sum(declared.values()), 3),
            "models": len(declared), "model_memory": model_memory, "room": room,
            "total": math.floor(limit_gib / each_gib) if limit and each_gib else None,
            "checked": group.group == KSERVE_GROUP, "used_per_model": used_per_model,
            "declared_over_used": round(each_gib * 2**30 / used_per_model) if used_per_model else None,
            "predictor_path": predictor_path(isvc)}


def describe_memory(rule: dict[str, Any], group: ApiGroup) -> str:
    """The memory rule with this server's numbers, in a few lines."""
    if not rule["limit"]:
        return _("the server sets no memory limit: KServe refuses every TrainedModel (nothing to add up against)")
    lines = [_("the server's limit {limit}; its {models} TrainedModels declare {declared} GiB; each copy declares "
               "{each}: {room} more fit, {total} in all").format(
                   limit=rule["limit"], models=rule["models"], declared=f"{rule['declared_gib']:g}",
                   each=rule["model_memory"], room=rule["room"], total=rule["total"])]
    if rule["checked"]:
        lines.append(_("{group} checks it: the next one past the limit gets MemoryResourceAvailable=False and never "
                       "reaches models.json").format(group=group.group))
    else:
        lines.append(_("{group} (KFServing 0.5.1) checks nothing: past the limit the models load, and the kernel stops "
                       "the container when they really use more (OOMKilled)").format(group=group.group))
    if rule["declared_over_used"]:
        lines.append(_("each copy declares {each} but made Triton grow by {used} MiB here: the rule counts what is "
                       "declared, about {ratio} times what this model uses").format(
                           each=rule["model_memory"], used=f"{rule['used_per_model'] / 2**20:.2f}",
                           ratio=f"{rule['declared_over_used']:,}"))
    return "\n".join(lines)


def show_memory(group: ApiGroup, server: str, namespace: str, path: str) -> None:
    """The two reads behind the rule: the predictor's limit and each TrainedModel's `memory`."""
    show_not_in_guide(f"kubectl get {group.isvc_resource} {server} -n {namespace} "
                      f"-o jsonpath='{{.{path}.resources.limits.memory}}'\n"
                      f"kubectl get {group.tm_resource} -n {namespace} "
                      "-o custom-columns=NAME:.metadata.name,SERVER:.spec.inferenceService,MEMORY:.spec.model.memory",
                      _("what KServe's MemoryResourceAvailable adds up"))


def configmap_size(api: client.ApiClient, server: str, namespace: str) -> dict[str, Any]:
    """Bytes of the live `models.json`, per entry, and how many entries of that size fit in 1 MiB."""
    name = model_config_map_name(server)
    try:
        cm = client.CoreV1Api(api).read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status in (401, 403):
            raise forbidden(exc, "get", "configmaps", namespace) from None
        raise
    data = cm.data or {}
    text = data.get(MODEL_CONFIG_FILE) or "[]"
    entries = len(json.loads(text))
    size = len(text.encode())
    other = sum(len(k.encode()) + len(v.encode()) for k, v in data.items() if k != MODEL_CONFIG_FILE)
    # "[" + entries joined by "," + "]": each entry costs its bytes and one comma, the brackets one byte more
    per_entry = (size - 1) / entries if entries else None
    room = MAX_CONFIGMAP_BYTES - len(MODEL_CONFIG_FILE) - other - 1
    largest = math.floor(room / per_entry) if per_entry else None
    compact = "\n" not in text
    return {"configmap": name, "bytes": size, "entries": entries, "per_entry": round(per_entry, 1) if per_entry else None,
            "largest": largest, "compact": compact, "limit": MAX_CONFIGMAP_BYTES}


def describe_configmap(size: dict[str, Any]) -> str:
    """The ConfigMap's numbers, in two lines."""
    if not size["entries"]:
        return _("{configmap} lists no model yet: nothing to measure").format(configmap=size["configmap"])
    return "\n".join([
        _("{configmap}: models.json is {bytes} bytes for {entries} TrainedModels, {per} bytes each ({form})").format(
            configmap=size["configmap"], bytes=f"{size['bytes']:,}", entries=size["entries"], per=size["per_entry"],
            form=_("compact JSON") if size["compact"] else _("indented JSON")),
        _("at that size the ConfigMap's {limit} bytes hold about {largest} TrainedModels; longer names or paths, "
          "fewer").format(limit=f"{size['limit']:,}", largest=f"{size['largest']:,}")])


def show_configmap(server: str, namespace: str) -> None:
    """`wc -c` of models.json, and its entries counted."""
    name = model_config_map_name(server)
    show_not_in_guide(f"kubectl get cm {name} -n {namespace} -o jsonpath='{{.data.models\\.json}}' | wc -c\n"
                      f"kubectl get cm {name} -n {namespace} -o jsonpath='{{.data.models\\.json}}' "
                      "| python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'",
                      _("the size of models.json, and its entries"))
