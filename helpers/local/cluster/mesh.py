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

Istio's sidecar injector (`Injector`, `inject`, at the end): what a release's injector adds to a pod of a
namespace labelled `istio-injection: enabled` (the profile controller labels each profile's namespace so
in every release), and when the pod's agent meets the sidecar race (kserve/kserve#1370). Facts with file
and tag in docs/releases.md, "The Istio sidecar in the server's pod".
"""
from __future__ import annotations

import re
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


# --- Istio's sidecar injector ---------------------------------------------------------------
SIDECAR = "istio-proxy"
INJECTION_LABEL = "istio-injection"  # on the namespace: "enabled" turns the injector on for its pods
INJECT_ANNOTATION = "sidecar.istio.io/inject"  # "false" on the pod: no sidecar
NATIVE_ANNOTATION = "sidecar.istio.io/nativeSidecar"  # "true"/"false" on the pod: overrides istiod's default
PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"  # the pod's ProxyConfig overrides (holdApplicationUntilProxyStarts)
_HOLD = re.compile(r'"?holdApplicationUntilProxyStarts"?\s*:\s*"?true', re.I)
HOLD_COMMAND = ("pilot-agent", "wait")
# How long after its start the proxy's Envoy takes to listen (its outbound port 15001, where iptables sends
# every outbound TCP connection of the pod) and to answer its readiness probe: the agent's S3 calls made
# before then are refused. On a cluster it depends on how soon istiod sends Envoy its first config; the
# local stack uses the earliest moment a kubelet can see the proxy Ready: the readiness probe's
# initialDelaySeconds, 1 s in Istio 1.1's injected sidecar (`readiness_probe` below). 2.5 s before: each
# new server pod waited 1.5 s longer, three times in 06_troubleshooting, which took 23.5 s instead of 18.
PROXY_STARTUP_S = 1.0


@dataclass(frozen=True)
class Injector:
    """Istio's sidecar injector as a Kubeflow release installs it: what it adds to a pod, and how.

    `native`: istiod's ENABLE_NATIVE_SIDECARS: the proxy becomes an init container with
    `restartPolicy: Always`, which the kubelet starts, and waits for, before the pod's containers.
    `reads_proxy_config`: whether the injector reads `holdApplicationUntilProxyStarts` from the pod's
    `proxy.istio.io/config` (Istio 1.7+); then the proxy goes first among the containers with a postStart
    hook `pilot-agent wait`, which keeps the kubelet from starting the next container until Envoy is ready.
    """

    istio: str
    source: str  # where the facts are: kubeflow/manifests tag and file
    proxy_image: str
    init_name: str  # istio-init (iptables set by the init container) or istio-validation (Istio CNI)
    init_image: str
    init_args: tuple[str, ...]
    proxy_resources: dict
    init_resources: dict
    native: bool
    reads_proxy_config: bool
    readiness_probe: dict
    startup_probe: Optional[dict] = None
    default_container_annotations: bool = False  # kubectl.kubernetes.io/default-container (Istio 1.10+)

    def proxy_args(self, labels: Mapping[str, str], app_ports: str) -> list[str]:
        if self.istio == "1.1.6":  # the 1.1 template, with Kubeflow 1.0.2's mesh config filled in
            return ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
                    "--configPath", "/etc/istio/proxy", "--binaryPath", "/usr/local/bin/envoy",
                    "--serviceCluster", f"{labels.get('app') or SIDECAR}.$(POD_NAMESPACE)",
                    "--drainDuration", "45s", "--parentShutdownDuration", "1m0s",
                    "--discoveryAddress", "istio-pilot.istio-system:15010", "--zipkinAddress", "zipkin.istio-system:9411",
                    "--connectTimeout", "10s", "--proxyAdminPort", "15000", "--concurrency", "2",
                    "--controlPlaneAuthPolicy", "NONE", "--statusPort", "15020", "--applicationPorts", app_ports]
        return ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning",
                "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"]


_PROBE_1_24 = {"httpGet": {"path": "/healthz/ready", "port": 15021}, "initialDelaySeconds": 0, "periodSeconds": 15,
               "timeoutSeconds": 3, "failureThreshold": 4}
_STARTUP_1_24 = {"httpGet": {"path": "/healthz/ready", "port": 15021}, "initialDelaySeconds": 0, "periodSeconds": 1,
                 "timeoutSeconds": 3, "failureThreshold": 600}
_IPTABLES_1_24 = ("istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "",
                  "-b", "*", "-d", "15090,15021,15020", "--log_output_level=default:info")
_LIMITS = {"cpu": "2000m", "memory": "1024Mi"}

# By the Kubeflow release each profile models (`Profile.kubeflow`).
INJECTORS = {
    # kfctl_k8s_istio.v1.0.2 (the layout with `kfserving-ingressgateway`): Istio 1.1.6, `policy: enabled`.
    "1.0.2": Injector(
        istio="1.1.6", source="kubeflow/manifests v1.0.2 istio/istio-install/base/istio-noauth.yaml",
        proxy_image="docker.io/istio/proxyv2:1.1.6", init_name="istio-init",
        init_image="docker.io/istio/proxy_init:1.1.6",
        init_args=("-p", "15001", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "{ports}", "-d", "15020"),
        proxy_resources={"limits": {"cpu": "2000m", "memory": "128Mi"}, "requests": {"cpu": "10m", "memory": "40Mi"}},
        init_resources={"limits": {"cpu": "100m", "memory": "50Mi"}, "requests": {"cpu": "10m", "memory": "10Mi"}},
        native=False, reads_proxy_config=False,
        readiness_probe={"httpGet": {"path": "/healthz/ready", "port": 15020}, "initialDelaySeconds": 1,
                         "periodSeconds": 2, "failureThreshold": 30}),
    # common/istio-1-24 (Istio 1.24.3, no CNI); profile.yaml sets ENABLE_NATIVE_SIDECARS=true on istiod.
    **{release: Injector(
        istio="1.24.3", source=f"kubeflow/manifests v{release} common/istio-1-24/istio-install/base/install.yaml",
        proxy_image="gcr.io/istio-release/proxyv2:1.24.3", init_name="istio-init",
        init_image="gcr.io/istio-release/proxyv2:1.24.3", init_args=_IPTABLES_1_24,
        proxy_resources={"limits": _LIMITS, "requests": {"cpu": "100m", "memory": "128Mi"}},
        init_resources={"limits": _LIMITS, "requests": {"cpu": "100m", "memory": "128Mi"}},
        native=True, reads_proxy_config=True, readiness_probe=_PROBE_1_24, startup_probe=_STARTUP_1_24,
        default_container_annotations=True) for release in ("1.10.0", "1.10.1")},
    # common/istio (Istio 1.28.0 with its CNI: istio-validation instead of istio-init), native sidecars on.
    "1.11.0": Injector(
        istio="1.28.0", source="kubeflow/manifests v1.11.0 common/istio/istio-install/base/install.yaml",
        proxy_image="gcr.io/istio-release/proxyv2:1.28.0", init_name="istio-validation",
        init_image="gcr.io/istio-release/proxyv2:1.28.0",
        init_args=(*_IPTABLES_1_24, "--run-validation", "--skip-rule-apply"),
        proxy_resources={"limits": _LIMITS, "requests": {"cpu": "10m", "memory": "40Mi"}},
        init_resources={"limits": _LIMITS, "requests": {"cpu": "10m", "memory": "40Mi"}},
        native=True, reads_proxy_config=True, readiness_probe=_PROBE_1_24, startup_probe=_STARTUP_1_24,
        default_container_annotations=True),
}


@dataclass(frozen=True)
class Sidecar:
    """What the injector did to one pod.

    `native`: the proxy is a native sidecar (an init container with `restartPolicy: Always`), started
    and ready before the pod's containers; the local API server (Kubernetes 1.20) cannot store that field,
    so such a pod shows no istio-proxy here. `held`: a regular container first, with `pilot-agent wait`.
    Otherwise a regular container last: the pod's containers start before Envoy listens (`races`).
    """

    injector: Injector
    native: bool
    held: bool

    @property
    def races(self) -> bool:
        """Whether the pod's other containers start before the proxy is ready (the sidecar race)."""
        return not self.native and not self.held

    @property
    def shown(self) -> bool:
        """Whether the pod's spec carries the proxy here (a native sidecar cannot be stored, see above)."""
        return not self.native

    def to_json(self) -> dict:
        return {"istio": self.injector.istio, "native": self.native, "held": self.held}


def holds(annotations: Mapping[str, str]) -> bool:
    """Whether `proxy.istio.io/config` asks to hold the application until the proxy starts."""
    return bool(_HOLD.search(str(annotations.get(PROXY_CONFIG_ANNOTATION) or "")))


def sidecar_for(kubeflow: str, namespace_labels: Mapping[str, str],
                annotations: Mapping[str, str]) -> Optional[Sidecar]:
    """The sidecar Istio's injector gives a pod of a namespace with `namespace_labels` and pod `annotations`
    on Kubeflow release `kubeflow`, or None (no injector known, injection off for the namespace or the pod)."""
    injector = INJECTORS.get(kubeflow)
    if injector is None or namespace_labels.get(INJECTION_LABEL) != "enabled" \
            or str(annotations.get(INJECT_ANNOTATION, "")).lower() == "false":
        return None
    native = injector.native
    if injector.reads_proxy_config and annotations.get(NATIVE_ANNOTATION) in ("true", "false"):
        native = annotations[NATIVE_ANNOTATION] == "true"
    held = not native and injector.reads_proxy_config and holds(annotations)
    return Sidecar(injector, native, held)


def inject(sidecar: Sidecar, pod: dict) -> dict:
    """The pod (a dict: metadata, spec) as the injector returns it: Istio's label and annotations, and for a
    sidecar that is `shown`, the init container (istio-init after the pod's own init containers, so they
    still reach the network; the CNI's istio-validation before them) and the proxy last, or, held, first
    with its `pilot-agent wait` postStart hook (istio `reorderPod`). Istio's volumes, env and status
    annotation are left out."""
    injector = sidecar.injector
    meta, spec = pod.setdefault("metadata", {}), pod["spec"]
    containers = list(spec.get("containers") or [])
    app = [c["name"] for c in containers]
    meta.setdefault("labels", {}).setdefault("security.istio.io/tlsMode", "istio")
    if injector.default_container_annotations and app:
        notes = meta.setdefault("annotations", {})
        notes.setdefault("kubectl.kubernetes.io/default-container", app[0])
        notes.setdefault("kubectl.kubernetes.io/default-logs-container", app[0])
        notes.setdefault("istio.io/rev", "default")
    if not sidecar.shown:
        return pod
    ports = ",".join(str(p["containerPort"]) for c in containers for p in c.get("ports") or [])
    init = {"name": injector.init_name, "image": injector.init_image,
            "args": [a.replace("{ports}", ports) for a in injector.init_args],
            "resources": injector.init_resources, "imagePullPolicy": "IfNotPresent"}
    proxy: dict = {"name": SIDECAR, "image": injector.proxy_image,
                   "args": injector.proxy_args(meta.get("labels") or {}, ports),
                   "ports": [{"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"}],
                   "resources": injector.proxy_resources, "readinessProbe": injector.readiness_probe,
                   "imagePullPolicy": "IfNotPresent"}
    if injector.startup_probe:
        proxy["startupProbe"] = injector.startup_probe
    if sidecar.held:
        proxy["lifecycle"] = {"postStart": {"exec": {"command": list(HOLD_COMMAND)}}}
    spec["containers"] = [proxy, *containers] if sidecar.held else [*containers, proxy]
    own = list(spec.get("initContainers") or [])
    spec["initContainers"] = [init, *own] if injector.init_name == "istio-validation" else [*own, init]
    return pod


def sidecar_json(data: Optional[dict]) -> Optional[Sidecar]:
    """A Sidecar from `Sidecar.to_json` (None for None or an unknown Istio)."""
    if not data:
        return None
    injector = next((i for i in INJECTORS.values() if i.istio == data.get("istio")), None)
    return Sidecar(injector, bool(data.get("native")), bool(data.get("held"))) if injector else None


def describe_sidecar(sidecar: Optional[Sidecar]) -> str:
    """One line for logs: which sidecar a pod got."""
    if sidecar is None:
        return "no Istio sidecar"
    kind = "native sidecar" if sidecar.native else "held (pilot-agent wait)" if sidecar.held else "container, not held"
    return f"Istio {sidecar.injector.istio} {SIDECAR}: {kind}"

