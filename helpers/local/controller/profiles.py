"""Profile -> namespace + service accounts + owner's role binding (Kubeflow's profile controller)."""
from __future__ import annotations

from kubernetes import client

from ...constants import PROFILE_GROUP, PROFILE_PLURAL, PROFILE_VERSION
from .conditions import condition, merge_times, strip_times
from .kube import Kube, owner_reference

NAMESPACE_LABELS = {
    "app.kubernetes.io/part-of": "kubeflow-profile",
    "katib-metricscollector-injection": "enabled",
    "serving.kubeflow.org/inferenceservice": "enabled",
    "pipelines.kubeflow.org/enabled": "true",
}
SERVICE_ACCOUNTS = ("default-editor", "default-viewer")


def reconcile_profile(kube: Kube, profile: dict) -> None:
    """Make the profile's namespace, its service accounts and the owner's admin binding."""
    name = profile["metadata"]["name"]
    owner = (profile.get("spec") or {}).get("owner") or {}
    ns = kube.read(kube.core.read_namespace, name)
    if ns is None:
        body = client.V1Namespace(metadata=client.V1ObjectMeta(
            name=name, labels=NAMESPACE_LABELS, annotations={"owner": owner.get("name", "")},
            owner_references=[owner_reference(profile)]))
        kube.ensure(kube.core.create_namespace, kube.core.read_namespace, name, body)
        ns = kube.read(kube.core.read_namespace, name)
    if ns is not None and ns.status.phase == "Terminating":
        message = f"namespace {name} is still terminating; the profile's namespace is made again once it is gone"
        return _write_status(kube, profile, condition("Successful", False, "NamespaceTerminating", message))
    for sa in SERVICE_ACCOUNTS:
        body = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa))
        kube.ensure(kube.core.create_namespaced_service_account, kube.core.read_namespaced_service_account,
                    sa, body, name)
    if owner.get("name"):
        binding = client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="namespaceAdmin", annotations={"user": owner["name"], "role": "admin"}),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="kubeflow-admin"),
            subjects=[client.RbacV1Subject(kind=owner.get("kind", "User"), name=owner["name"],
                                           api_group="rbac.authorization.k8s.io")])
        kube.ensure(kube.rbac.create_namespaced_role_binding, kube.rbac.read_namespaced_role_binding,
                    "namespaceAdmin", binding, name)
    _write_status(kube, profile, condition("Successful", True, "", f"namespace {name} is ready"))


def _write_status(kube: Kube, profile: dict, cond: dict) -> None:
    old = (profile.get("status") or {}).get("conditions") or []
    if strip_times(old) == strip_times([cond]):
        return
    kube.patch_status(PROFILE_GROUP, PROFILE_VERSION, PROFILE_PLURAL, profile,
                      {"conditions": merge_times(old, [cond])})
