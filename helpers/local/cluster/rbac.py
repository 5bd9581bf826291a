"""Kubeflow's user-facing RBAC on the local stack: the aggregated ClusterRoles a profile's
service accounts are bound to, as each release's manifests define them.

Kubeflow defines three empty ClusterRoles that aggregate by label (kubeflow/manifests,
`common/kubeflow-roles/base/cluster-roles.yaml`, the same in v1.3.1 and v1.10.2):
`kubeflow-admin` <- `kubeflow-edit` <- `kubeflow-view`, plus `kubeflow-kubernetes-{admin,edit,view}`
with the core rules. Each application adds its own roles with the aggregation labels; the
serving ones differ by release (`serving_edit_resources`):

- Kubeflow 1.0.2 (`kfserving/kfserving-install/base/cluster-role.yaml`) and 1.3.1
  (`apps/kfserving/upstream/overlays/kubeflow/cluster-role.yaml`) with KFServing 0.5.1:
  `kubeflow-kfserving-edit` grants `serving.kubeflow.org` **inferenceservices only**: no
  trainedmodels, so a learner's `default-editor` cannot create the guide's TrainedModels.
- Kubeflow 1.10.0 (KServe 0.14.1, `apps/kserve/kserve/kserve_kubeflow.yaml`): `kubeflow-kserve-edit`
  grants inferenceservices and servingruntimes, plus Knative's serving resources: still no trainedmodels.
- Kubeflow 1.10.1 (KServe 0.15.0) and 1.11.0 (KServe 0.15.2, `applications/kserve/...`): inferencegraphs,
  inferenceservices, servingruntimes, trainedmodels (kserve/kserve#4225).

The kube-controller-manager's `clusterrole-aggregation` controller fills the aggregated roles'
rules, as on a cluster (`controlplane.CONTROLLERS`).
"""
from __future__ import annotations

from helpers.local.stack.releases import Profile

AGGREGATE = "rbac.authorization.kubeflow.org/aggregate-to-"
READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
KUBEFLOW_EDIT, KUBEFLOW_VIEW, KUBEFLOW_ADMIN = "kubeflow-edit", "kubeflow-view", "kubeflow-admin"
KNATIVE_SERVING = ("services", "services/status", "routes", "routes/status", "configurations",
                   "configurations/status", "revisions", "revisions/status")



def serving_edit_resources(profile: Profile) -> tuple[str, ...]:
    """The serving resources the release's `kubeflow-<app>-edit` (and -view) role names."""
    if profile.group == "serving.kubeflow.org":
        return ("inferenceservices",)
    if profile.edit_trainedmodels:
        return ("inferencegraphs", "inferenceservices", "servingruntimes", "trainedmodels")
    return ("inferenceservices", "servingruntimes")


def _rule(groups: tuple[str, ...], resources: tuple[str, ...], verbs: tuple[str, ...]) -> dict:
    return {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}


def _role(name: str, labels: tuple[str, ...], rules: list[dict], aggregates: str = "") -> dict:
    role: dict = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                  "metadata": {"name": name, "labels": {AGGREGATE + label: "true" for label in labels}},
                  "rules": rules}
    if aggregates:
        role["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {AGGREGATE + aggregates: "true"}}]}
        # No `rules`: the aggregation controller owns them, and a re-apply on `up` must not empty them.
        del role["rules"]
    return role


def kubeflow_roles() -> list[dict]:
    """`kubeflow-{admin,edit,view}` and `kubeflow-kubernetes-{admin,edit,view}` (Kubeflow 1.3-1.10)."""
    pods_etc = ("pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy")
    apps = ("daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
            "replicasets/scale", "statefulsets", "statefulsets/scale")
    edit_rules = [
        _rule(("",), ("pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"), READ),
        _rule(("",), ("serviceaccounts",), ("impersonate",)),
        _rule(("",), pods_etc, WRITE),
        _rule(("",), ("configmaps", "endpoints", "persistentvolumeclaims", "replicationcontrollers",
                      "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"), WRITE),
        _rule(("apps",), apps, WRITE),
        _rule(("autoscaling",), ("horizontalpodautoscalers",), WRITE),
        _rule(("batch",), ("cronjobs", "jobs"), WRITE),
        _rule(("extensions",), ("daemonsets", "deployments", "deployments/rollback", "deployments/scale", "ingresses",
                                "networkpolicies", "replicasets", "replicasets/scale", "replicationcontrollers/scale"),
              WRITE),
        _rule(("policy",), ("poddisruptionbudgets",), WRITE),
        _rule(("networking.k8s.io",), ("ingresses", "networkpolicies"), WRITE),
    ]
    view_rules = [
        _rule(("",), ("configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                      "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                      "services/status"), READ),
        _rule(("",), ("bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                      "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"), READ),
        _rule(("",), ("namespaces",), READ),
        _rule(("apps",), ("controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                          "deployments/status", "replicasets", "replicasets/scale", "replicasets/status",
                          "statefulsets", "statefulsets/scale", "statefulsets/status"), READ),
        _rule(("autoscaling",), ("horizontalpodautoscalers", "horizontalpodautoscalers/status"), READ),
        _rule(("batch",), ("cronjobs", "cronjobs/status", "jobs", "jobs/status"), READ),
        _rule(("extensions",), ("daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                                "deployments/status", "ingresses", "ingresses/status", "networkpolicies", "replicasets",
                                "replicasets/scale", "replicasets/status", "replicationcontrollers/scale"), READ),
        _rule(("policy",), ("poddisruptionbudgets", "poddisruptionbudgets/status"), READ),
        _rule(("networking.k8s.io",), ("ingresses", "ingresses/status", "networkpolicies"), READ),
    ]
    return [
        _role(KUBEFLOW_ADMIN, (), [], aggregates=KUBEFLOW_ADMIN),
        _role(KUBEFLOW_EDIT, (KUBEFLOW_ADMIN,), [], aggregates=KUBEFLOW_EDIT),
        _role(KUBEFLOW_VIEW, (KUBEFLOW_EDIT,), [], aggregates=KUBEFLOW_VIEW),
        _role("kubeflow-kubernetes-admin", (KUBEFLOW_ADMIN,), [
            _rule(("authorization.k8s.io",), ("localsubjectaccessreviews",), ("create",)),
            _rule(("rbac.authorization.k8s.io",), ("rolebindings", "roles"), READ + WRITE)]),
        _role("kubeflow-kubernetes-edit", (KUBEFLOW_EDIT,), edit_rules),
        _role("kubeflow-kubernetes-view", (KUBEFLOW_VIEW,), view_rules),
    ]


def serving_roles(profile: Profile) -> list[dict]:
    """The release's `kubeflow-<app>-{admin,edit,view}` roles (`kfserving` in 0.5.1, `kserve` after)."""
    group = profile.group
    app = "kfserving" if group == "serving.kubeflow.org" else "kserve"
    resources = serving_edit_resources(profile)
    edit = [_rule((group,), resources, READ + WRITE)]
    view = [_rule((group,), resources, READ)]
    if app == "kserve":
        edit.append(_rule(("serving.knative.dev",), KNATIVE_SERVING, READ + WRITE))
        view.append(_rule(("serving.knative.dev",), KNATIVE_SERVING, ("get", "list")))
    admin = f"kubeflow-{app}-admin"
    return [_role(admin, (KUBEFLOW_ADMIN,), [], aggregates=admin),
            _role(f"kubeflow-{app}-edit", (KUBEFLOW_EDIT, admin), edit),
            _role(f"kubeflow-{app}-view", (KUBEFLOW_VIEW,), view)]


def role_manifests(profile: Profile) -> list[dict]:
    """Every ClusterRole of the profile's Kubeflow + serving release, to seed."""
    return kubeflow_roles() + serving_roles(profile)
