"""The guide's two Knative patches of `knative-serving/config-deployment`, and how to undo them.

Explained in 00_cluster_prep.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .constants import KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE
from .errors import SetupError
from .k8s import forbidden


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


def patch_config_deployment(api: client.ApiClient, patches: list[dict]) -> list[Change]:
    """Merge each patch's `data` into knative-serving/config-deployment (as `kubectl patch cm`).

    Idempotent: a key that already has the value is not written again. Returns each key's
    value before and after.
    """
    core = client.CoreV1Api(api)
    try:
        before = core.read_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE).data or {}
    except ApiException as exc:
        if exc.status == 404:
            raise SetupError(f"ConfigMap {KNATIVE_NAMESPACE}/{KNATIVE_CONFIG_DEPLOYMENT} not found",
                             "is Knative Serving installed? KFServing's serverless mode needs it") from None
        if exc.status in (401, 403):
            raise forbidden(exc, "get", "configmaps", KNATIVE_NAMESPACE) from None
        raise
    wanted = {k: str(v) for patch in patches for k, v in (patch.get("data") or {}).items()}
    todo = {k: v for k, v in wanted.items() if before.get(k) != v}
    if todo:
        try:
            core.patch_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE, {"data": todo})
        except ApiException as exc:
            if exc.status in (401, 403):
                raise forbidden(exc, "patch", "configmaps", KNATIVE_NAMESPACE) from None
            raise
    after = core.read_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE).data or {}
    return [Change(k, before.get(k), after.get(k)) for k in wanted]


def describe_changes(changes: list[Change]) -> str:
    """`key: before -> after (changed|unchanged)` lines."""
    width = max((len(c.key) for c in changes), default=0)
    return "\n".join(f"{c.key:<{width}}  {c.before or '(unset)'} -> {c.after or '(unset)'}  "
                     f"({'changed' if c.changed else 'already set, unchanged'})" for c in changes)


def knative_patch_commands(patches: list[dict]) -> str:
    """The guide's `kubectl patch cm config-deployment ...` line for each patch."""
    return "\n".join(f"kubectl patch cm {KNATIVE_CONFIG_DEPLOYMENT} --patch '{json.dumps({'data': p.get('data') or {}})}'"
                     f" -n {KNATIVE_NAMESPACE}" for p in patches)
