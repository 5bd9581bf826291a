"""Istio's AuthorizationPolicy at the predictor's sidecar, on the Kubeflow profiles (`Profile.mesh`).

What a Kubeflow 1.10/1.11 cluster holds (docs/research/issue21-facts.md, sections 1 and 2):

- `global-deny-all` in `istio-system`, the mesh's root namespace, with an empty spec: an ALLOW
  policy without rules, which applies to every workload and matches nothing, so a request is
  refused unless another ALLOW policy of that workload matches it;
- per profile namespace, the profile controller's `ns-owner-access-istio` (kubeflow/kubeflow
  v1.10.0 `getAuthorizationPolicy`, the image Kubeflow 1.10.x and 1.11.0 both run): the owner's
  `kubeflow-userid` from the ingress gateway or the Pipelines UI, any workload of the namespace,
  Knative's probe paths, and the notebook controller's kernel probe.

A request reaches the predictor's sidecar from a *hop*, whose identity the policy sees (`Source`):
KServe's VirtualService sends both the ingress gateway's traffic and the cluster-local address
`status.address.url` through `knative-local-gateway`, whose pods are the `cluster-local-gateway`
pods, so at the predictor both come from that gateway's service account in `istio-system`; only a
client calling the predictor's pods directly keeps its own namespace. The header the ingress
gateway sets (`kubeflow-userid`, from the session) travels on through the local gateway.

Matching follows Istio's documented semantics (istio.io, "Authorization Policy"): DENY policies
first, then, if any ALLOW policy applies to the workload, one of its rules must match; a rule
matches when each of its `from`, `to` and `when` matches (within one, any entry); strings match
exactly, by prefix (`abc*`), by suffix (`*abc`) or any (`*`). CUSTOM and AUDIT policies are not
modelled (none is on the predictor's path). A refused request gets 403 `RBAC: access denied`.

The local gateway (nginx) asks `authz` about each request; `authz` asks `decide` here, with the
predictor pod's labels as the workload.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

GROUP = "security.istio.io"
VERSION = "v1beta1"  # what Kubeflow's manifests and profile controller write (Istio 1.22+ also serves v1)
PLURAL = "authorizationpolicies"
ROOT_NAMESPACE = "istio-system"
DENIED_BODY = "RBAC: access denied"
USERID_HEADER = "kubeflow-userid"  # the profile controller's USERID_HEADER in every release's manifests
OWNER_POLICY = "ns-owner-access-istio"
GLOBAL_DENY = "global-deny-all"
INGRESS_GATEWAY = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
LOCAL_GATEWAY = "cluster.local/ns/istio-system/sa/cluster-local-gateway-service-account"
PIPELINES_UI = "cluster.local/ns/kubeflow/sa/ml-pipeline-ui"
NOTEBOOK_CONTROLLER = "cluster.local/ns/kubeflow/sa/notebook-controller-service-account"
PROBE_PATHS = ("/healthz", "/metrics", "/wait-for-drain")


@dataclass(frozen=True)
class Source:
    """Who the predictor's sidecar sees sending a request: the hop's identity (mTLS principal)."""

    principal: str

    @property
    def namespace(self) -> str:
        parts = self.principal.split("/")
        return parts[2] if len(parts) > 2 and parts[1] == "ns" else ""

    @classmethod
    def workload(cls, namespace: str, account: str = "default-editor") -> "Source":
        return cls(f"cluster.local/ns/{namespace}/sa/{account}")


THROUGH_LOCAL_GATEWAY = Source(LOCAL_GATEWAY)


@dataclass
class Request:
    path: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    source: Source = THROUGH_LOCAL_GATEWAY

    def header(self, name: str) -> Optional[str]:
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


def crd() -> dict:
    """The `authorizationpolicies.security.istio.io` CRD as the API serves it here (spec kept as given)."""
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}", "labels": {"app": "istio-pilot", "istio": "security"}},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"kind": "AuthorizationPolicy", "listKind": "AuthorizationPolicyList", "plural": PLURAL,
                           "singular": "authorizationpolicy", "categories": ["istio-io", "security-istio-io"]},
                 "versions": [{"name": VERSION, "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "metadata": {"type": "object"}, "spec": schema, "status": schema}}},
                               "subresources": {"status": {}}}]},
    }


def global_deny_all() -> dict:
    """kubeflow/manifests `common/istio*/istio-install/base/deny_all_authorizationpolicy.yaml` (v1.3.0-v1.11.0)."""
    return {"apiVersion": f"{GROUP}/v1beta1", "kind": "AuthorizationPolicy",
            "metadata": {"name": GLOBAL_DENY, "namespace": ROOT_NAMESPACE}, "spec": {}}


def owner_access(namespace: str, owner: str) -> dict:
    """The profile controller's `ns-owner-access-istio` (kubeflow/kubeflow v1.10.0, no selector: every workload)."""
    return {"apiVersion": f"{GROUP}/v1beta1", "kind": "AuthorizationPolicy",
            "metadata": {"name": OWNER_POLICY, "namespace": namespace,
                         "annotations": {"user": owner, "role": "admin"}},
            "spec": {"action": "ALLOW", "rules": [
                {"from": [{"source": {"principals": [INGRESS_GATEWAY, PIPELINES_UI]}}],
                 "when": [{"key": f"request.headers[{USERID_HEADER}]", "values": [owner]}]},
                {"when": [{"key": "source.namespace", "values": [namespace]}]},
                {"to": [{"operation": {"paths": list(PROBE_PATHS)}}]},
                {"from": [{"source": {"principals": [NOTEBOOK_CONTROLLER]}}],
                 "to": [{"operation": {"methods": ["GET"], "paths": ["*/api/kernels"]}}]},
            ]}}


# --- matching -------------------------------------------------------------------------------
def _match(pattern: str, value: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return pattern == value


def _any(patterns: Optional[Iterable[str]], value: Optional[str]) -> bool:
    return value is not None and any(_match(p, value) for p in patterns or ())


def _field(values: Optional[list], not_values: Optional[list], value: Optional[str]) -> bool:
    """One field of a source/operation: in `values` (when given) and in none of `not_values`."""
    if values is not None and not _any(values, value):
        return False
    return not (not_values and _any(not_values, value))


def _source(source: Mapping, request: Request) -> bool:
    return (_field(source.get("principals"), source.get("notPrincipals"), request.source.principal)
            and _field(source.get("namespaces"), source.get("notNamespaces"), request.source.namespace)
            # mTLS identities only: a request principal comes from a JWT, which no hop to the predictor checks
            and _field(source.get("requestPrincipals"), source.get("notRequestPrincipals"), None))


def _operation(operation: Mapping, request: Request) -> bool:
    path = request.path.split("?", 1)[0]
    return (_field(operation.get("paths"), operation.get("notPaths"), path)
            and _field(operation.get("methods"), operation.get("notMethods"), request.method.upper()))


def _condition_value(key: str, request: Request) -> Optional[str]:
    if key.startswith("request.headers[") and key.endswith("]"):
        return request.header(key[len("request.headers["):-1])
    return {"source.namespace": request.source.namespace, "source.principal": request.source.principal,
            "request.method": request.method}.get(key)  # unmodelled keys: no value, so `values` never matches


def _rule(rule: Mapping, request: Request) -> bool:
    if rule.get("from") and not any(_source((f or {}).get("source") or {}, request) for f in rule["from"]):
        return False
    if rule.get("to") and not any(_operation((t or {}).get("operation") or {}, request) for t in rule["to"]):
        return False
    return all(_field(c.get("values"), c.get("notValues"), _condition_value(c.get("key", ""), request))
               for c in rule.get("when") or [])


def applies(policy: Mapping, namespace: str, labels: Mapping[str, str]) -> bool:
    """Does `policy` apply to a workload of `namespace` with `labels` (its namespace, or the root namespace)?"""
    meta = policy.get("metadata") or {}
    if meta.get("namespace") not in (namespace, ROOT_NAMESPACE):
        return False
    wanted = (((policy.get("spec") or {}).get("selector") or {}).get("matchLabels")) or {}
    return all(labels.get(k) == v for k, v in wanted.items())


@dataclass(frozen=True)
class Decision:
    allowed: bool
    why: str  # the policy that decided, as Envoy's RBAC filter logs it (`[none]` when no ALLOW matched)


def decide(policies: Iterable[Mapping], namespace: str, labels: Mapping[str, str], request: Request) -> Decision:
    """Istio's verdict for `request` at a workload of `namespace` with `labels`."""
    found = [p for p in policies if applies(p, namespace, labels)]
    for policy in found:
        spec = policy.get("spec") or {}
        if spec.get("action") == "DENY" and any(_rule(r or {}, request) for r in spec.get("rules") or []):
            return Decision(False, f"denied by {policy['metadata']['namespace']}/{policy['metadata']['name']}")
    allows = [p for p in found if (p.get("spec") or {}).get("action", "ALLOW") == "ALLOW"]
    if not allows:
        return Decision(True, "no ALLOW policy applies")
    for policy in allows:
        if any(_rule(r or {}, request) for r in (policy.get("spec") or {}).get("rules") or []):
            return Decision(True, f"allowed by {policy['metadata']['namespace']}/{policy['metadata']['name']}")
    return Decision(False, "rbac_access_denied_matched_policy[none]")
