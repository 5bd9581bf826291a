"""Checks on the way to the server: the ingress gateway, the cluster-local address through Istio's
policies, and the sidecar's start-up race.
"""
from __future__ import annotations

import re
from typing import Optional

from helpers.core.constants import (
    KSERVE_GROUP,
)
from helpers.core.i18n import _
from helpers.steps.models import agent_log
from helpers.steps.troubleshoot.doctor.facts import ISSUES, NA, OK, PROBLEM, Facts, Finding, epoch_seconds, pod_command

# Istio's AuthorizationPolicy kind, and what its sidecar answers when no ALLOW policy matches a request.
MESH_GROUP, MESH_PLURAL = "security.istio.io", "authorizationpolicies"
MESH_DENIED = "RBAC: access denied"
OWNER_POLICY = "ns-owner-access-istio"  # the profile controller's: it opens no route through the local gateway
OPENING_MANIFEST = "manifests/predictor_authorization_policy.yaml"
# Envoy's answer, at the ingress gateway, to a bearer JWT whose issuer no RequestAuthentication names.
JWT_ISSUER_UNKNOWN = "Jwt issuer is not configured"
SIDECAR = "istio-proxy"
HOLD_ANNOTATION = "proxy.istio.io/config"
_HOLD = re.compile(r'"?holdApplicationUntilProxyStarts"?\s*:\s*"?true', re.I)
HOLD_SINCE = (1, 7)  # the first Istio with holdApplicationUntilProxyStarts (istio/istio#11130)
RACE_SECONDS = 10.0  # how soon after the agent starts a `connection refused` reads as the sidecar race


def _mesh_denies(facts: Facts) -> Optional[bool]:
    """Does the mesh refuse what no AuthorizationPolicy allows at the predictor (Kubeflow 1.10+'s
    `global-deny-all`)? The cluster-local probe says so when it ran; else the rule 00's step 5 applies
    (KServe's group and Istio's AuthorizationPolicy kind served); None when nothing tells."""
    probe = facts.cluster_local or {}
    if probe.get("status") == 403 and MESH_DENIED in probe.get("body", ""):
        return True
    if isinstance(probe.get("status"), int) and probe["status"] < 400:
        return False
    if _mesh_served(facts):
        return facts.group == KSERVE_GROUP
    return None


def _mesh_served(facts: Facts) -> bool:
    return any(MESH_PLURAL in facts.served.get(f"{MESH_GROUP}/{v}", []) for v in ("v1beta1", "v1"))


def _opening_fix() -> str:
    return _("an admin applies 00_cluster_prep's AuthorizationPolicy ({manifest}: the namespace's predictors, "
             "/v2 only, from the cluster-local gateway; 00 run as a learner prints it for the admin with your "
             "namespace filled in)").format(manifest=OPENING_MANIFEST)


def check_gateway(facts: Facts) -> Finding:
    name = _("ingress gateway lets the request through")
    gateway = facts.gateway
    if not gateway:
        return Finding(name, NA, _("no ingress gateway address, or no server URL yet"))
    status, body, location = gateway.get("status"), gateway.get("body", ""), gateway.get("location", "")
    what = f"GET {gateway.get('url')}/v2/health/live -> {status}"
    cookie = "authservice_session" if "/dex/" in location else "oauth2_proxy_kubeflow"  # Kubeflow <= 1.8, 1.9+
    if _mesh_denies(facts):
        fix = _("pass a Kubeflow session: MMS_INGRESS_COOKIE=<{cookie} cookie> or MMS_INGRESS_TOKEN; if your session "
                "is the namespace owner's, Istio refused it at the predictor, where `global-deny-all` (Kubeflow 1.10+) "
                "refuses the cluster-local address too: {opening}").format(cookie=cookie, opening=_opening_fix())
    else:
        fix = _("pass a Kubeflow session: MMS_INGRESS_COOKIE=<{cookie} cookie> or MMS_INGRESS_TOKEN; inside the "
                "cluster use the cluster-local address; or an admin adds an AuthorizationPolicy for the path").format(
                    cookie=cookie)
    if status in (301, 302, 303, 307, 308):
        return Finding(name, PROBLEM, _("{request} redirect to {location} (Dex login)").format(
            request=what, location=location[:80]), fix, ISSUES + "874")
    if status == 401 and JWT_ISSUER_UNKNOWN in body:
        return Finding(name, PROBLEM, _("{request} {body}: the gateway trusts only tokens Dex issued (Kubeflow "
                                        "1.10+'s default `m2m-dex-only`), and the bearer token sent comes from "
                                        "another issuer (a Kubernetes service-account token does)").format(
                                            request=what, body=JWT_ISSUER_UNKNOWN),
                       _("send a Dex session instead: unset MMS_INGRESS_TOKEN and set MMS_INGRESS_COOKIE=<{cookie} "
                         "cookie> from your browser, or set MMS_INGRESS_TOKEN to an id token Dex issued; for "
                         "service-account tokens an admin installs the `m2m-dex-and-kind` overlay of kubeflow/manifests "
                         "common/oauth2-proxy (`m2m-dex-and-eks` on EKS), whose RequestAuthentication also trusts "
                         "the cluster's issuer").format(cookie=cookie),
                       "https://github.com/kubeflow/community-distribution/issues/2840")
    if status in (401, 403):
        meshed = status == 403 and MESH_DENIED in body and _mesh_denies(facts)
        return Finding(name, PROBLEM, f"{what} {body[:60]}", fix,
                       "https://github.com/kubeflow/community-distribution/issues/2201" if meshed else ISSUES + "1558")
    if status == 404:
        return Finding(name, PROBLEM, _("{request}: the gateway knows no route for that Host").format(request=what),
                       _("is the InferenceService Ready? `kubectl get isvc` shows its URL; send its host as Host"))
    if isinstance(status, int) and status < 300:
        return Finding(name, OK, what)
    return Finding(name, PROBLEM, f"{what} {gateway.get('error', '')}".strip(),
                   _("check MMS_INGRESS_URL (or the port-forward) and the gateway's Service"))


def _predictor_labels(facts: Facts) -> dict:
    """The server pod's labels (what an AuthorizationPolicy's selector matches); KServe's own when no pod was read."""
    labels = (((facts.pod or {}).get("metadata") or {}).get("labels")) or {}
    return labels or {"component": "predictor", facts.api_group.isvc_label: facts.server}


def _openings(facts: Facts) -> Optional[list[str]]:
    """The namespace's ALLOW AuthorizationPolicies that select the predictor, but the profile controller's
    (which opens nothing through the local gateway); None when they could not be read."""
    if facts.mesh_policies is None:
        return None
    labels = _predictor_labels(facts)
    found = []
    for policy in facts.mesh_policies:
        spec = policy.get("spec") or {}
        wanted = (spec.get("selector") or {}).get("matchLabels") or {}
        if (spec.get("action") or "ALLOW") == "ALLOW" and policy.get("name") != OWNER_POLICY \
                and all(labels.get(k) == v for k, v in wanted.items()):
            found.append(policy.get("name", "?"))
    return found


def check_cluster_local(facts: Facts) -> Finding:
    """The predictor's cluster-local address (`status.address.url`), probed as a notebook pod would: on
    Kubeflow 1.10+ the request reaches the predictor's sidecar through `knative-local-gateway`, whose
    identity `ns-owner-access-istio` does not name, and `global-deny-all` refuses it unless an
    AuthorizationPolicy opens the predictor (kubeflow/community-distribution#2201, #2811)."""
    name = _("cluster-local address lets the request through")
    probe = facts.cluster_local
    if not probe:
        return Finding(name, NA, _("no status.address.url yet"))
    if probe.get("skipped"):
        return Finding(name, NA, _("{url} resolves only inside the cluster: run the doctor in a terminal of your "
                                   "notebook to probe it").format(url=probe.get("url")))
    status, body = probe.get("status"), probe.get("body", "")
    what = f"GET {probe.get('url')}/v2/health/live -> {status}"
    if status is None:
        return Finding(name, NA, _("{request}: no answer ({error}); the server's other checks say why").format(
            request=what, error=probe.get("error", "?")))
    if status < 400:
        return Finding(name, OK, what)
    if not (status == 403 and MESH_DENIED in body):
        return Finding(name, NA, _("{request}: not Istio's refusal; the server's other checks say why").format(
            request=what))
    denied = f"{what} {MESH_DENIED}"
    openings = _openings(facts)
    issue = "https://github.com/kubeflow/community-distribution/issues/2201"
    if openings is None:
        why = facts.unreadable.get("authorizationpolicies") or _("not served")
        return Finding(name, PROBLEM, _("{denied}; the namespace's AuthorizationPolicies could not be read ({why}), "
                                        "so whether one opens the predictor cannot be told").format(
                                            denied=denied, why=why),
                       _("Istio refused the request at the predictor: {opening}; if one is applied, its rules must "
                         "match `/v2` from the cluster-local gateway").format(opening=_opening_fix()), issue)
    if openings:
        return Finding(name, PROBLEM, _("{denied}, although AuthorizationPolicy {policies} selects the predictor: its "
                                        "rules do not match this request, or Istio has not pushed it yet "
                                        "(seconds)").format(denied=denied, policies=", ".join(openings)),
                       _("an admin compares its rules with {manifest} (paths /v2 and /v2/*, from the principal of the "
                         "cluster-local gateway's service account) and mends them").format(manifest=OPENING_MANIFEST),
                       issue)
    return Finding(name, PROBLEM, _("{denied}; no ALLOW AuthorizationPolicy in {namespace} selects the predictor "
                                    "(the profile's {owner} trusts the owner only from the ingress gateway, and "
                                    "`global-deny-all` refuses the rest)").format(
                                        denied=denied, namespace=facts.namespace, owner=OWNER_POLICY),
                   _opening_fix(), issue)


def race_hint(facts: Facts) -> str:
    """A pointer to the sidecar race when the agent's refusals came early in a pod whose proxy does not hold it."""
    sidecar, native = _sidecar(facts)
    if sidecar is None or native or _holds(sidecar) or not _early_refusals(facts):
        return ""
    return "; " + _("the refusals came within seconds of the agent's start, in a pod whose Istio sidecar does not "
                    "hold it: if S3 answers now, it was the sidecar race (the check 'agent started after the Istio "
                    "sidecar')")


def _sidecar(facts: Facts) -> tuple[Optional[dict], bool]:
    """(the server pod's istio-proxy container, whether it is a native sidecar: an init container that
    keeps running, started before the agent); (None, False) without one."""
    spec = (facts.pod or {}).get("spec") or {}
    for container in spec.get("initContainers") or []:
        if container.get("name") == SIDECAR and container.get("restartPolicy") == "Always":
            return container, True
    for container in spec.get("containers") or []:
        if container.get("name") == SIDECAR:
            return container, False
    return None, False


def _holds(sidecar: dict) -> str:
    """How the pod holds its containers until the proxy is up ("" if it does not): the `pilot-agent wait`
    postStart hook Istio's injector (1.7+) adds for `holdApplicationUntilProxyStarts`, from the pod's
    `proxy.istio.io/config` or the mesh config. The annotation alone holds nothing: an injector that did
    not read it (Istio before 1.7, or a pod made before the annotation) added no hook."""
    command = ((((sidecar.get("lifecycle") or {}).get("postStart") or {}).get("exec") or {}).get("command")) or []
    if "pilot-agent" in " ".join(command) and "wait" in command:
        return f"{SIDECAR} postStart: {' '.join(command)}"
    return ""


def _asks_hold(facts: Facts) -> bool:
    notes = (((facts.pod or {}).get("metadata") or {}).get("annotations")) or {}
    return bool(_HOLD.search(str(notes.get(HOLD_ANNOTATION, ""))))


def _istio_version(sidecar: dict) -> Optional[tuple[int, ...]]:
    """The proxy image's Istio release (`docker.io/istio/proxyv2:1.1.6` -> (1, 1, 6)), None if the tag says none."""
    found = re.search(r":(\d+)\.(\d+)(?:\.(\d+))?", str(sidecar.get("image") or "").rsplit("/", 1)[-1])
    return tuple(int(part) for part in found.groups() if part is not None) if found else None


def _cannot_hold(sidecar: dict) -> bool:
    """Whether this Istio has no holdApplicationUntilProxyStarts at all (before 1.7, as Kubeflow 1.0's 1.1.6)."""
    version = _istio_version(sidecar)
    return version is not None and version < HOLD_SINCE


def _agent_started(facts: Facts) -> Optional[float]:
    for status in ((facts.pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == "agent":
            return epoch_seconds(((status.get("state") or {}).get("running") or {}).get("startedAt"))
    return None


def _early_refusals(facts: Facts) -> list[str]:
    """The agent's `connection refused` lines from its first seconds, but those about Triton on localhost."""
    events = agent_log.parse(facts.agent_lines)
    start = _agent_started(facts) or (events[0]["ts"] if events else None)
    found = []
    for event in events:
        text = f"{event['msg']} {event['fields'].get('error', '')}"
        if "connection refused" in text and not re.search(r"localhost|127\.0\.0\.1", text) \
                and start is not None and event["ts"] - start <= RACE_SECONDS:
            found.append(_quote(text.split("; fix:")[0].strip(), "connection refused"))
    return found


def _quote(text: str, needle: str, width: int = 200) -> str:
    """At most about `width` characters of `text`: its start and, where a long URL pushed `needle` further
    in, the part that ends with it ("…" where cut)."""
    if len(text) <= width:
        return text
    end = text.find(needle) + len(needle) if needle in text else 0
    if end <= width:
        return text[:width] + "…"
    half = width // 2
    return text[:half] + " … " + text[end - half:end] + ("…" if end < len(text) else "")


def check_sidecar_race(facts: Facts) -> Finding:
    """The agent's first S3 calls made before the pod's istio-proxy sidecar is up are refused (`connection
    refused`); the agent tries each download once, so the model stays unloaded (kserve/kserve#1370). A pod
    annotated `proxy.istio.io/config: '{"holdApplicationUntilProxyStarts": true}'` starts its other
    containers only once the proxy is ready."""
    name = _("agent started after the Istio sidecar")
    if facts.pod is None:
        return Finding(name, NA, _("no server pod"))
    sidecar, native = _sidecar(facts)
    pod = facts.pod["metadata"]["name"]
    if sidecar is None:
        return Finding(name, OK, _("pod {pod} has no {sidecar} container: nothing to wait for").format(
            pod=pod, sidecar=SIDECAR))
    if native:
        return Finding(name, OK, _("{sidecar} is a native sidecar (an init container): it starts before the "
                                   "agent").format(sidecar=SIDECAR))
    held = _holds(sidecar)
    if held:
        return Finding(name, OK, _("pod {pod} waits for the proxy: {held}").format(pod=pod, held=held))
    refused = _early_refusals(facts)
    if not refused:
        return Finding(name, OK, _("pod {pod} has {sidecar} with no `pilot-agent wait` hook, and no `connection "
                                   "refused` in the agent's first {seconds} s").format(
                                       pod=pod, sidecar=SIDECAR, seconds=f"{RACE_SECONDS:.0f}"))
    if not (facts.s3 or {}).get("ok"):
        return Finding(name, NA, _("the agent's S3 calls were refused and S3 does not answer the doctor either: "
                                   "see the check 'S3 reachable, bucket there'"))
    evidence = _("agent log, within {seconds} s of its start: {line}; pod {pod} has {sidecar} with no `pilot-agent "
                 "wait` hook, and S3 answers the doctor now: the agent called S3 before the proxy was up").format(
                     seconds=f"{RACE_SECONDS:.0f}", line=refused[0], pod=pod, sidecar=SIDECAR)
    reapply = _("apply each TrainedModel of the server again once the pod runs (delete it, then apply it: this "
                "release's agent tries each download once and acts only on a change)")
    if _cannot_hold(sidecar):
        version = ".".join(map(str, _istio_version(sidecar) or ()))
        if _asks_hold(facts):
            evidence += "; " + _("{annotation} asks to hold, but Istio {version} has no such option").format(
                annotation=HOLD_ANNOTATION, version=version)
        return Finding(name, PROBLEM, evidence,
                       _("Istio {version} cannot hold the agent until its proxy is up (holdApplicationUntilProxyStarts "
                         "came in Istio 1.7), so every new pod may race: {reapply}").format(version=version,
                                                                                          reapply=reapply),
                       ISSUES + "1370")
    return Finding(name, PROBLEM, evidence,
                   _("annotate the InferenceService `{annotation}: '{{\"holdApplicationUntilProxyStarts\": true}}'` "
                     "(manifests/multi_model_triton_server.yaml has it; KServe copies it to the pod) and re-create "
                     "the server, or an admin sets holdApplicationUntilProxyStarts in Istio's mesh config; a new pod's "
                     "agent then loads every model: `{command}`. Or, in this pod: {reapply}").format(
                         annotation=HOLD_ANNOTATION, command=pod_command(facts), reapply=reapply),
                   ISSUES + "1370")
