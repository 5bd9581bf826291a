"""00_cluster_prep, step 5: an opening in Kubeflow 1.10+'s Istio mesh for the server's predictor.

Explained in 00_cluster_prep. On Kubeflow 1.10 and 1.11 every request to the predictor reaches its
sidecar through `knative-local-gateway` and is refused (403 `RBAC: access denied`) by
`global-deny-all` unless an AuthorizationPolicy of the namespace allows it: the profile's
`ns-owner-access-istio` trusts the owner's header only from the ingress gateway's own identity.
The step applies the narrow policy of `manifests/predictor_authorization_policy.yaml` where it
is needed and this identity may (an admin), else prints it for the admin.

It is needed where the cluster serves KServe's API group and Istio's AuthorizationPolicy kind:
Kubeflow 1.3's controller (KFServing's group) lets the owner's header through from any source, and
the guide's Kubeflow 1.0.x has no such kind.
"""
from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client

from helpers.core.constants import KSERVE_GROUP, ApiGroup
from helpers.core.i18n import _
from helpers.steps.prep.preflight import _served, can_i

GROUP, VERSION, PLURAL = "security.istio.io", "v1beta1", "authorizationpolicies"
MANIFEST = "predictor_authorization_policy"


@dataclass
class MeshStep:
    needed: bool
    may_apply: bool
    why: str


def check(api: client.ApiClient, group: ApiGroup, namespace: str) -> MeshStep:
    """Whether the predictor needs the opening here, and whether this identity may apply it."""
    if group.group != KSERVE_GROUP:
        return MeshStep(False, False, _("not needed: KFServing's Kubeflow (1.3 and older) lets the owner's "
                                        "session through to the predictor"))
    if PLURAL not in _served(api, GROUP, VERSION):
        return MeshStep(False, False, _("not needed: this cluster serves no Istio AuthorizationPolicy"))
    may_apply = can_i(api, "create", GROUP, PLURAL, namespace) and can_i(api, "patch", GROUP, PLURAL, namespace)
    return MeshStep(True, may_apply, _("needed: Kubeflow 1.10+ refuses every request to the predictor that no "
                                       "AuthorizationPolicy allows (403 RBAC: access denied)"))


def handoff_name() -> str:
    """What the hand-off block names, when a learner runs 00."""
    return _("an Istio AuthorizationPolicy that opens the namespace's predictors on /v2")


def commands(namespace: str) -> str:
    """The commands that show the policies at work (not in the guide)."""
    return (f"kubectl get authorizationpolicies.security.istio.io -n {namespace}\n"
            f"kubectl get authorizationpolicy allow-predictors-v2 -n {namespace} -o yaml\n"
            "kubectl get authorizationpolicy global-deny-all -n istio-system -o yaml")
