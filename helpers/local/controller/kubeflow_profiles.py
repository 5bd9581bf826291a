"""Profile -> what Kubeflow's profile controller makes in its namespace (components/profile-controller,
kubeflow/kubeflow v1.3 and v1.10 alike): the namespace (annotation `owner`, label
`istio-injection`), service accounts `default-editor` and `default-viewer` with RoleBindings of
the same names to ClusterRoles `kubeflow-edit` / `kubeflow-view`, and the owner's RoleBinding
`namespaceAdmin` to `kubeflow-admin` (annotations `user`, `role: admin`). Then what Kubeflow
Pipelines' profile controller syncs into every namespace labelled `pipelines.kubeflow.org/enabled`
(sync.py, Kubeflow 1.3 and 1.10): Secret `mlpipeline-minio-artifact` with MinIO's keys
(`accesskey`, `secretkey`), which `default-editor` may read where it cannot read `kubeflow`. On
Kubeflow 1.11 (SeaweedFS) that Secret holds the namespace's own key instead, made once (an
existing Secret is kept, as sync.py keeps it) and limited to the namespace's prefixes of bucket
`mlpipeline` (`seaweedfs.grant_namespace`).
Last, the learner identity of the namespace is published in the state folder (`identity`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

from kubernetes import client

from helpers.core.constants import PROFILE_GROUP, PROFILE_PLURAL, PROFILE_VERSION
from helpers.local.cluster import identity
from helpers.local.controller.conditions import condition, merge_times, strip_times
from helpers.local.controller.kube import Kube, owner_reference
from helpers.local.stack.releases import Profile
from helpers.local.stack.s3server import S3Credentials

log = logging.getLogger("controller")
NAMESPACE_LABELS = {
    "istio-injection": "enabled",
    "app.kubernetes.io/part-of": "kubeflow-profile",
    "katib-metricscollector-injection": "enabled",
    "serving.kubeflow.org/inferenceservice": "enabled",
    "pipelines.kubeflow.org/enabled": "true",
}
SERVICE_ACCOUNTS = {"default-editor": "kubeflow-edit", "default-viewer": "kubeflow-view"}
PIPELINES_SECRET = "mlpipeline-minio-artifact"


def reconcile_profile(kube: Kube, profile: dict, minio: Optional[S3Credentials] = None,
                      state_root: Optional[Path] = None, release: Optional[Profile] = None,
                      namespace_key: Optional[Callable[[str], S3Credentials]] = None) -> bool:
    """Make the profile's namespace, service accounts, role bindings and the Pipelines Secret with
    `minio`'s keys (with `namespace_key`, a new key of the namespace's own when it has no Secret
    yet); with `state_root`, publish the namespace's learner identity there. True once all of it is
    in place; False while something waits (the namespace terminating, the learner's token)."""
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
        _write_status(kube, profile, condition("Successful", False, "NamespaceTerminating", message))
        return False
    owned = [owner_reference(profile)]
    for sa, role in SERVICE_ACCOUNTS.items():
        body = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa, owner_references=owned))
        kube.ensure(kube.core.create_namespaced_service_account, kube.core.read_namespaced_service_account,
                    sa, body, name)
        binding = client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=sa, owner_references=owned),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=sa, namespace=name)])
        kube.ensure(kube.rbac.create_namespaced_role_binding, kube.rbac.read_namespaced_role_binding,
                    sa, binding, name)
    if owner.get("name"):
        binding = client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="namespaceAdmin", annotations={"user": owner["name"], "role": "admin"}),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="kubeflow-admin"),
            subjects=[client.RbacV1Subject(kind=owner.get("kind", "User"), name=owner["name"],
                                           api_group="rbac.authorization.k8s.io")])
        kube.ensure(kube.rbac.create_namespaced_role_binding, kube.rbac.read_namespaced_role_binding,
                    "namespaceAdmin", binding, name)
    if minio is not None and NAMESPACE_LABELS["pipelines.kubeflow.org/enabled"] == "true":
        keys = minio
        if namespace_key is not None:
            if kube.read(kube.core.read_namespaced_secret, PIPELINES_SECRET, name) is not None:
                keys = None  # sync.py: "Using existing secret"
            else:
                keys = namespace_key(name)
                log.info("profile %s: made the namespace's own S3 key (prefixes of bucket mlpipeline)", name)
        if keys is not None:
            secret = client.V1Secret(metadata=client.V1ObjectMeta(name=PIPELINES_SECRET), type="Opaque",
                                     string_data={"accesskey": keys.access_key, "secretkey": keys.secret_key})
            kube.ensure(kube.core.create_namespaced_secret, kube.core.read_namespaced_secret,
                        PIPELINES_SECRET, secret, name)
    if release is not None and release.mesh and owner.get("name"):
        _ensure_owner_access(kube, name, owner["name"])
    complete = True
    if state_root is not None and release is not None:
        if identity.publish_learner(state_root, kube.api, name, owner.get("name", ""), release) is None:
            log.info("profile %s: default-editor has no token yet; the learner identity follows", name)
            complete = False
    _write_status(kube, profile, condition("Successful", True, "", f"namespace {name} is ready"))
    return complete


def _ensure_owner_access(kube: Kube, namespace: str, owner: str) -> None:
    """The profile controller's Istio AuthorizationPolicy `ns-owner-access-istio`, made or put back to its rules."""
    from helpers.local.cluster import mesh

    body = mesh.owner_access(namespace, owner)
    args = (mesh.GROUP, mesh.VERSION, namespace, mesh.PLURAL)
    try:
        found = kube.custom.get_namespaced_custom_object(*args, mesh.OWNER_POLICY)
    except client.exceptions.ApiException as exc:
        if exc.status != 404:
            raise
        kube.custom.create_namespaced_custom_object(*args, body)
        log.info("profile %s: made AuthorizationPolicy %s", namespace, mesh.OWNER_POLICY)
        return
    if found.get("spec") != body["spec"]:  # the controller's reconcile puts its rules back
        kube.custom.patch_namespaced_custom_object(*args, mesh.OWNER_POLICY, {"spec": body["spec"]})


def _write_status(kube: Kube, profile: dict, cond: dict) -> None:
    old = (profile.get("status") or {}).get("conditions") or []
    if strip_times(old) == strip_times([cond]):
        return
    kube.patch_status(PROFILE_GROUP, PROFILE_VERSION, PROFILE_PLURAL, profile,
                      {"conditions": merge_times(old, [cond])})
