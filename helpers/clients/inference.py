"""InferenceServices and TrainedModels, for either API group: read, wait for Ready, delete.

Explained in 02_server (the InferenceService) and 03_cifar10 (the TrainedModel).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.clients.k8s import forbidden, not_found
from helpers.clients.k8s import table as k8s_table
from helpers.core.constants import MODEL_CONFIG_FILE, ApiGroup, model_config_map_name
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.wait import WaitTimeout, poll_until


@dataclass(frozen=True)
class ServerRef:
    """The shared InferenceService: what every call about the server needs."""

    name: str
    namespace: str
    group: ApiGroup


ISVC, TM = "inferenceservices", "trainedmodels"
KINDS = {ISVC: "InferenceService", TM: "TrainedModel"}


def _version(group: ApiGroup, plural: str) -> str:
    return group.isvc_version if plural == ISVC else group.tm_version


def get(api: client.ApiClient, group: ApiGroup, plural: str, name: str, namespace: str) -> Optional[dict]:
    """The object as stored, or None if it does not exist."""
    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(
            group.group, _version(group, plural), namespace, plural, name)
    except ApiException as exc:
        if not_found(exc):
            return None
        raise


def conditions(obj: Optional[dict]) -> dict[str, dict]:
    """Status conditions by type."""
    return {c.get("type"): c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def is_ready(obj: Optional[dict]) -> bool:
    """Ready=True for the object's current spec (a status written for an older generation does not count)."""
    if not obj:
        return False
    observed = (obj.get("status") or {}).get("observedGeneration")
    if observed is not None and observed != obj.get("metadata", {}).get("generation", observed):
        return False
    return conditions(obj).get("Ready", {}).get("status") == "True"


def describe_conditions(obj: Optional[dict]) -> str:
    """`Ready=False (Reason): message; ...`, or a note that there are none yet."""
    conds = conditions(obj)
    if not conds:
        return _("no status conditions yet (is the controller running?)")
    parts = []
    for kind, cond in conds.items():
        text = f"{kind}={cond.get('status')}"
        if cond.get("reason"):
            text += f" ({cond['reason']})"
        if cond.get("message") and cond.get("status") != "True":
            text += f": {cond['message']}"
        parts.append(text)
    return "; ".join(parts)


def _blocking_message(obj: Optional[dict]) -> str:
    conds = conditions(obj)
    ready = conds.get("Ready", {})
    if ready.get("message"):
        return ready["message"]
    for cond in conds.values():
        if cond.get("status") != "True" and cond.get("message"):
            return cond["message"]
    return ""


def _state(obj: Optional[dict]) -> str:
    if obj is None:
        return _("not created yet")
    ready = conditions(obj).get("Ready")
    if not ready:
        return _("no status yet")
    text = f"Ready={ready.get('status')}"
    if ready.get("reason"):
        text += f" ({ready['reason']})"
    return text


def wait_ready(api: client.ApiClient, group: ApiGroup, plural: str, name: str, namespace: str,
               timeout: float = 300.0, interval: float = 1.0, false_grace: float = 30.0,
               progress: bool = True) -> dict:
    """Poll until the object's `Ready` condition is True and return the object.

    A progress display shows the time spent and the Ready state. When the object stays
    `Ready=False` for `false_grace` seconds, or `timeout` passes, raises SetupError whose
    message lists the status conditions; the fix is the blocking condition's message.
    """
    from helpers.core.progress import progress as tqdm

    kind = KINDS[plural]
    began = time.monotonic()
    seen: dict[str, Any] = {"obj": None, "false_since": None}

    waiting = _("waiting for {kind} {name}").format(kind=kind, name=name)
    with tqdm(total=int(timeout), desc=waiting, unit="s", disable=not progress,
              bar_format="{desc}: {elapsed} elapsed{postfix}", mininterval=0.5) as bar:
        def ready() -> Optional[dict]:
            try:
                obj = seen["obj"] = get(api, group, plural, name, namespace)
            except ApiException as exc:
                if exc.status in (401, 403):  # waiting does not grant rights: stop at once
                    seen["refused"] = exc
                    return None
                raise
            bar.n = min(int(time.monotonic() - began), int(timeout))
            bar.set_postfix_str(_state(obj), refresh=True)
            if is_ready(obj):
                bar.total = bar.n = max(bar.n, 1)  # a full bar: a notebook bar closed short turns red
                bar.refresh()
                return obj
            return None

        def stuck() -> Optional[str]:
            if seen.get("refused"):
                return "the API refused"
            if conditions(seen["obj"]).get("Ready", {}).get("status") != "False":
                seen["false_since"] = None
                return None
            seen["false_since"] = seen["false_since"] or time.monotonic()
            return "Ready=False" if time.monotonic() - seen["false_since"] >= false_grace else None

        try:
            return poll_until(ready, f"{kind} {name}", timeout=timeout, interval=interval, give_up=stuck)
        except WaitTimeout:
            pass
    if seen.get("refused"):
        raise forbidden(seen["refused"], "get", f"{plural}.{group.group}", namespace)
    raise _not_ready(group, plural, name, namespace, seen["obj"], time.monotonic() - began)


def _not_ready(group: ApiGroup, plural: str, name: str, namespace: str, obj: Optional[dict],
               waited: float) -> SetupError:
    what = f"{KINDS[plural]} {namespace}/{name}"
    if obj is None:
        return SetupError(_("{what} does not exist after {waited:.0f}s").format(what=what, waited=waited),
                          _("create it first (`kubectl get {plural} -n {namespace}` lists what is there)").format(
                              plural=plural, namespace=namespace))
    fix = _blocking_message(obj) or f"`kubectl describe {plural} {name} -n {namespace}` shows its events"
    if plural == TM and conditions(obj).get("InferenceServiceReady", {}).get("status") == "False":
        server = (obj.get("spec") or {}).get("inferenceService", "")
        fix = (f"its InferenceService {server!r} is not Ready: `kubectl describe {group.isvc_resource} {server} "
               f"-n {namespace}` says why (02_server makes it)")
    return SetupError(_("{what} is not Ready after {waited:.0f}s: {conditions}").format(
                          what=what, waited=waited, conditions=describe_conditions(obj)), fix)


def require_ready(api: client.ApiClient, group: ApiGroup, plural: str, name: str, namespace: str,
                  notebook: str) -> dict:
    """The object if it exists and is Ready; else SetupError saying which notebook makes it."""
    obj = get(api, group, plural, name, namespace)
    what = f"{KINDS[plural]} {namespace}/{name} ({group.group})"
    if obj is None:
        raise SetupError(_("{what} does not exist").format(what=what),
                         _("run {notebook} first, with the same settings").format(notebook=notebook))
    if not is_ready(obj):
        raise SetupError(_("{what} is not Ready: {conditions}").format(
                             what=what, conditions=describe_conditions(obj)),
                         _blocking_message(obj) or f"run {notebook} again and read its output")
    return obj


def delete(api: client.ApiClient, group: ApiGroup, plural: str, name: str, namespace: str) -> bool:
    """Delete the object; False if it was not there."""
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            group.group, _version(group, plural), namespace, plural, name)
        return True
    except ApiException as exc:
        if not_found(exc):
            return False
        raise


def table(api: client.ApiClient, group: ApiGroup, plural: str, namespace: str) -> str:
    """`kubectl get <plural> -n <namespace>` as kubectl prints it: the API server's own Table
    (the CRD's printer columns), so it reads the same on every cluster and version."""
    return k8s_table(api, f"/apis/{group.group}/{_version(group, plural)}/namespaces/{namespace}/{plural}",
                     f"{plural}.{group.group}", namespace)


def model_config(api: client.ApiClient, server: str, namespace: str) -> list[dict]:
    """What the controller hands the agent: `models.json` of ConfigMap `modelconfig-<server>-0`
    (one entry per TrainedModel: `modelName` and its `modelSpec`); [] when it is not there yet."""
    try:
        found = client.CoreV1Api(api).read_namespaced_config_map(model_config_map_name(server), namespace)
    except ApiException as exc:
        if not_found(exc):
            return []
        if exc.status in (401, 403):
            raise forbidden(exc, "get", "configmaps", namespace) from None
        raise
    return json.loads((found.data or {}).get(MODEL_CONFIG_FILE) or "[]")
