"""The guide's two Knative patches of `knative-serving/config-deployment`, and how to undo them.

Explained in 00_cluster_prep.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.clients.k8s import forbidden, not_found
from helpers.core.constants import KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE
from helpers.core.errors import SetupError
from helpers.core.i18n import _


@dataclass(frozen=True)
class Change:
    key: str
    before: Optional[str]
    after: Optional[str]

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def as_dict(self) -> dict:
        return {"key": self.key, "before": self.before, "after": self.after, "changed": self.changed}


# Where 00_cluster_prep keeps the values it found, for 99_cleanup to put back (JSON: key -> value or null).
SAVED_ANNOTATION = "mms-notebooks/config-deployment-before"


def _read(core: client.CoreV1Api) -> Optional[client.V1ConfigMap]:
    """knative-serving/config-deployment, or None when Knative is not installed."""
    try:
        return core.read_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE)
    except ApiException as exc:
        if not_found(exc):
            return None
        if exc.status in (401, 403):
            raise forbidden(exc, "get", "configmaps", KNATIVE_NAMESPACE) from None
        raise


def _patch(core: client.CoreV1Api, body: dict) -> None:
    try:
        core.patch_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE, body)
    except ApiException as exc:
        if exc.status in (401, 403):
            raise forbidden(exc, "patch", "configmaps", KNATIVE_NAMESPACE) from None
        raise


def patch_config_deployment(api: client.ApiClient, patches: list[dict]) -> list[Change]:
    """Merge each patch's `data` into knative-serving/config-deployment (as `kubectl patch cm`).

    Idempotent: a key that already has the value is not written again. Returns each key's
    value before and after. The first patch that changes something also saves the values it
    found in the annotation `SAVED_ANNOTATION`, which `restore_config_deployment` puts back.
    """
    core = client.CoreV1Api(api)
    found = _read(core)
    if found is None:
        raise SetupError(_("ConfigMap {namespace}/{name} not found").format(
                             namespace=KNATIVE_NAMESPACE, name=KNATIVE_CONFIG_DEPLOYMENT),
                         _("is Knative Serving installed? KFServing's serverless mode needs it"))
    before = found.data or {}
    wanted = {k: str(v) for patch in patches for k, v in (patch.get("data") or {}).items()}
    todo = {k: v for k, v in wanted.items() if before.get(k) != v}
    if todo:
        body: dict[str, Any] = {"data": todo}
        if SAVED_ANNOTATION not in (found.metadata.annotations or {}):
            saved = json.dumps({k: before.get(k) for k in wanted})
            body["metadata"] = {"annotations": {SAVED_ANNOTATION: saved}}
        _patch(core, body)
    after = core.read_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE).data or {}
    return [Change(k, before.get(k), after.get(k)) for k in wanted]


def restore_config_deployment(api: client.ApiClient) -> list[Change]:
    """Put back the config-deployment values `patch_config_deployment` saved (a key that was unset
    is removed again) and drop the annotation; [] when nothing was saved (99_cleanup)."""
    core = client.CoreV1Api(api)
    found = _read(core)
    if found is None:
        return []
    saved = (found.metadata.annotations or {}).get(SAVED_ANNOTATION)
    if saved is None:
        return []
    try:
        values = json.loads(saved)
    except ValueError:
        raise SetupError(_("the annotation {annotation} on {namespace}/{name} is not the JSON 00_cluster_prep "
                           "wrote").format(annotation=SAVED_ANNOTATION, namespace=KNATIVE_NAMESPACE,
                                           name=KNATIVE_CONFIG_DEPLOYMENT),
                         _("set the keys back by hand (`kubectl edit cm config-deployment -n knative-serving`) "
                           "and remove the annotation")) from None
    before = found.data or {}
    _patch(core, {"data": values, "metadata": {"annotations": {SAVED_ANNOTATION: None}}})
    after = core.read_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE).data or {}
    return [Change(k, before.get(k), after.get(k)) for k in values]


def restore_command(changes: list[Change]) -> str:
    """The `kubectl patch cm config-deployment` that does what `restore_config_deployment` did."""
    patch = {"data": {c.key: c.after for c in changes}, "metadata": {"annotations": {SAVED_ANNOTATION: None}}}
    return f"kubectl patch cm {KNATIVE_CONFIG_DEPLOYMENT} -n {KNATIVE_NAMESPACE} --type merge -p '{json.dumps(patch)}'"


def describe_changes(changes: list[Change]) -> str:
    """`key: before -> after (changed|unchanged)` lines."""
    width = max((len(c.key) for c in changes), default=0)
    unset, changed, unchanged = _("(unset)"), _("changed"), _("already set, unchanged")
    return "\n".join(f"{c.key:<{width}}  {c.before or unset} -> {c.after or unset}  "
                      f"({changed if c.changed else unchanged})" for c in changes)


def knative_patch_commands(patches: list[dict]) -> str:
    """The `kubectl patch cm config-deployment ...` line for each patch: the guide's own line, character
    for character, where the guide patches the same data (its JSON spacing varies), else one like it."""
    from helpers.steps.prep.guide_text import guide_commands

    guide = {}
    for line in guide_commands():
        found = re.match(rf"^kubectl patch cm {KNATIVE_CONFIG_DEPLOYMENT} --patch '(.*)' -n {KNATIVE_NAMESPACE}$", line)
        if found:
            guide[json.dumps(json.loads(found.group(1)), sort_keys=True)] = line
    lines = []
    for p in patches:
        body = {"data": p.get("data") or {}}
        lines.append(guide.get(json.dumps(body, sort_keys=True)) or
                     f"kubectl patch cm {KNATIVE_CONFIG_DEPLOYMENT} --patch '{json.dumps(body)}' -n {KNATIVE_NAMESPACE}")
    return "\n".join(lines)
