"""The guide's known pitfalls, checked on a namespace and its server: `python -m helpers.doctor`.

Explained in 06_troubleshooting. The doctor reads only what a learner can read on any cluster:
the Kubernetes API (the S3 Secret's annotations, never its values; the service account, the
server's Pod and its Events, the TrainedModels and their conditions and Events, the cluster's
version and served API groups), the agent's log (`kubectl logs <pod> agent`), the ingress
gateway and Triton's repository index through the server's endpoint, and S3 with the Secret's
keys. `gather` collects those facts once; each check is a pure function of them, so a check
can be tested on facts recorded from a cluster the local stack cannot imitate.

Each finding is `ok`, `problem` or `n/a` (not applicable, or not visible with your rights),
with the evidence it saw and the fix.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.clients.inference import conditions
from helpers.clients.k8s import not_found, predictor_path, triton_predictor
from helpers.clients.manifests import DEFAULTS
from helpers.clients.storage import bucket_exists, connect
from helpers.core.constants import (
    API_GROUPS,
    DEFAULT_BUCKET,
    INFERENCESERVICE_CONFIG,
    KFSERVING_GROUP,
    KSERVE_GROUP,
    MINIO_SERVICE,
    MODEL_CONFIG_FILE,
    ApiGroup,
    api_group,
    model_config_map_name,
)
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.show import pad, text_width
from helpers.steps.models import agent_log
from helpers.steps.objectstore.kubeflow_minio import from_secret

# The agent's region env, by release: KFServing 0.5.1, then KServe 0.14+ (pkg/credentials/s3/s3_secret.go).
REGION_ENVS = ("AWS_REGION", "AWS_DEFAULT_REGION")
OK, PROBLEM, NA = "ok", "problem", "n/a"
ISSUES = "https://github.com/kserve/kserve/issues/"
SERVICE_ACCOUNT = DEFAULTS["service_account"]  # the guide's; once a server exists its spec names the real one
# Memory quantities as Kubernetes writes them.
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "k": 10**3, "M": 10**6,
          "G": 10**9, "T": 10**12, "m": 1e-3, "": 1}
# Istio's AuthorizationPolicy kind, and what its sidecar answers when no ALLOW policy matches a request.
MESH_GROUP, MESH_PLURAL = "security.istio.io", "authorizationpolicies"
MESH_DENIED = "RBAC: access denied"
OWNER_POLICY = "ns-owner-access-istio"  # the profile controller's: it opens no route through the local gateway
OPENING_MANIFEST = "manifests/predictor_authorization_policy.yaml"
# Envoy's answer, at the ingress gateway, to a bearer JWT whose issuer no RequestAuthentication names.
JWT_ISSUER_UNKNOWN = "Jwt issuer is not configured"
# The API server's cap on a ConfigMap's data (MaxSecretSize, 1 MiB): past it the write is refused with 422.
CONFIGMAP_LIMIT = 1048576
SIDECAR = "istio-proxy"
HOLD_ANNOTATION = "proxy.istio.io/config"
_HOLD = re.compile(r'"?holdApplicationUntilProxyStarts"?\s*:\s*"?true', re.I)
RACE_SECONDS = 10.0  # how soon after the agent starts a `connection refused` reads as the sidecar race
# Triton's answer to a request whose tensor does not match the model's config (HTTP 400).
_SHAPE_MESSAGE = re.compile(r"unexpected shape for input '([^']+)' for model '([^']+)'\. "
                            r"Expected \[([^\]]*)\], got \[([^\]]*)\]")


@dataclass
class Finding:
    """One check's verdict: `result` is ok / problem / n/a; `issue` where users reported it."""

    check: str
    result: str
    evidence: str
    fix: str = ""
    issue: str = ""
    id: str = ""  # the check's name in the code (`region` for check_region): the same in every language

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Facts:
    """What the doctor read, as plain JSON-able dicts (recorded facts make unit tests)."""

    namespace: str
    server: str
    group: str
    bucket: str = DEFAULT_BUCKET
    k8s_version: str = ""
    served: dict = field(default_factory=dict)      # group -> resource names served in v1beta1 (Istio's: group/version)
    isvc: Optional[dict] = None
    isvc_events: list = field(default_factory=list)
    service_account: Optional[dict] = None
    secrets: dict = field(default_factory=dict)     # name -> metadata only (annotations, times)
    services: dict = field(default_factory=dict)    # name -> {"type", "externalName"}
    pod: Optional[dict] = None
    pod_events: list = field(default_factory=list)
    trained_models: list = field(default_factory=list)
    tm_events: dict = field(default_factory=dict)   # TrainedModel name -> its Events
    inference_config: Optional[dict] = None         # {"namespace", "predictors"} or {"denied": [...]}
    agent_lines: list = field(default_factory=list)
    server_lines: list = field(default_factory=list)  # Triton's log lines about model folders it refused
    gateway: Optional[dict] = None                  # {"url", "status", "body", "location", "sent"}
    cluster_local: Optional[dict] = None            # status.address.url probed: {"url", "status", "body"} or "skipped"
    mesh_policies: Optional[list] = None            # the namespace's AuthorizationPolicies ({"name", "spec"}); None: unread
    model_config: Optional[dict] = None             # modelconfig-<server>-0: {"name", "bytes", "models"}
    repository: Optional[list] = None               # Triton's repository index
    s3: Optional[dict] = None                       # {"endpoint", "bucket", "ok", "error"}
    listings: dict = field(default_factory=dict)    # storageUri -> one ListObjects page, as the agent asks
    can_i: dict = field(default_factory=dict)       # "create trainedmodels" -> this identity's answer
    error: str = ""                                 # what failed in the notebook, if it said
    unreadable: dict = field(default_factory=dict)  # what could not be read -> why

    @property
    def api_group(self) -> ApiGroup:
        return api_group(self.group)


# --- small readers ---------------------------------------------------------------------------
def quantity(text: Any) -> Optional[float]:
    """A Kubernetes quantity (`16Gi`, `512Mi`, `1G`) in bytes, or None."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", str(text or ""))
    if not match or match.group(2) not in _UNITS:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


def _time(value: Any) -> Optional[float]:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _agent_json(lines: list) -> list[dict]:
    """The agent's JSON log records (real agents and the local one log the same shape)."""
    return [event["fields"] for event in agent_log.parse(lines)]


def _agent_line(facts: Facts, needle: str) -> str:
    """The latest agent log line containing `needle` (its message and error), or ""."""
    for record in reversed(_agent_json(facts.agent_lines)):
        text = f"{record.get('msg', '')} {record.get('error', '')}"
        if needle in text:
            model = record.get("modelName") or record.get("model") or ""
            error = str(record.get("error", "")).split("; fix:")[0]  # the local agent appends its hint
            error = "" if error and error in str(record.get("msg", "")) else error  # a release's line has it in msg
            line = f"{record.get('msg', '')}{f' ({model})' if model else ''}: {error}".rstrip(": ")
            return _("agent log: {line}").format(line=line)
    for line in reversed(facts.agent_lines):
        if needle in line and not line.strip().startswith("{"):
            return _("agent log: {line}").format(line=line.strip()[:200])
    return ""


def _events_text(events: list) -> list[str]:
    return [f"{e.get('type', '')} {e.get('reason', '')}: {e.get('message', '')}" for e in events]


def _s3_secret(facts: Facts) -> tuple[str, dict]:
    """(name, metadata) of the service account's Secret that carries an s3-endpoint annotation of
    either group (the first listed, as KServe's builder takes it); ("", {}) if none."""
    for ref in ((facts.service_account or {}).get("secrets") or []):
        meta = facts.secrets.get(ref.get("name"))
        if meta is None:
            continue
        notes = meta.get("annotations") or {}
        if any(f"{g}/s3-endpoint" in notes for g in API_GROUPS):
            return ref["name"], meta
    return "", {}


def _server_account(facts: Facts) -> str:
    predictor = ((facts.isvc or {}).get("spec") or {}).get("predictor") or {}
    return predictor.get("serviceAccountName") or ("default" if facts.isvc else SERVICE_ACCOUNT)


def _agent_env(facts: Facts) -> Optional[dict]:
    """The agent container's env in the server's Pod: name -> value ("<secret>" for references)."""
    for container in ((facts.pod or {}).get("spec") or {}).get("containers") or []:
        if container.get("name") == "agent":
            return {e["name"]: e.get("value", "<secret>") for e in container.get("env") or []}
    return None


# --- the checks ------------------------------------------------------------------------------
def check_crds(facts: Facts) -> Finding:
    name = _("InferenceService CRDs served")
    served = [g for g in API_GROUPS if "inferenceservices" in facts.served.get(g, [])]
    minor = re.match(r"v?1\.(\d+)", facts.k8s_version or "")
    version = f"Kubernetes {facts.k8s_version or '?'}"
    if facts.group in served:
        return Finding(name, OK, _("{version} serves {group}/v1beta1 inferenceservices").format(
            version=version, group=facts.group))
    issue = "https://github.com/kubeflow/kubeflow/issues/6098"
    if facts.group == KFSERVING_GROUP and minor and int(minor.group(1)) >= 22:
        return Finding(name, PROBLEM, _("{version} does not serve {group}: KFServing 0.5's CRDs are "
                                        "apiextensions.k8s.io/v1beta1, which Kubernetes removed in 1.22").format(
                                            version=version, group=facts.group),
                       _("on Kubernetes >= 1.22 install KServe (0.7+, serving.kserve.io, apiextensions v1 CRDs) and "
                         "set api_group='serving.kserve.io'; or use a cluster of 1.21 or older for KFServing 0.5"),
                       issue)
    other = [g for g in served if g != facts.group]
    fix = (_("this cluster serves {group}: set api_group={quoted}").format(group=other[0], quoted=repr(other[0]))
           if other else
           _("install KServe (or KFServing); `kubectl get crd | grep serving` shows what is there"))
    return Finding(name, PROBLEM, _("{version} does not serve {group}/v1beta1 inferenceservices").format(
        version=version, group=facts.group), fix, ISSUES + "1843")


def check_annotation_prefix(facts: Facts) -> Finding:
    name = _("S3 Secret annotation prefix")
    group = facts.api_group
    account = _server_account(facts)
    secret, meta = _s3_secret(facts)
    if not secret:
        return Finding(name, NA, _("no Secret of service account {account} has an s3-endpoint annotation "
                                   "(see the service account's check)").format(account=repr(account)))
    notes = meta.get("annotations") or {}
    if group.s3_endpoint in notes:
        return Finding(name, OK, _("Secret {secret} is annotated {annotation}").format(
            secret=secret, annotation=group.s3_endpoint))
    wrong = next(g for g in API_GROUPS if f"{g}/s3-endpoint" in notes)
    warning = [e for e in _events_text(facts.isvc_events) if wrong in e]
    evidence = _("Secret {secret} is annotated {wrong}/s3-*, but the server is {group}: the credential builder "
                 "ignores it, so the agent has no S3 endpoint").format(secret=secret, wrong=wrong, group=group.group)
    seen = _agent_line(facts, "no S3 endpoint") or (warning[0] if warning else "")
    return Finding(name, PROBLEM, evidence + (f"; {seen}" if seen else ""),
                   _("annotate the Secret {group}/s3-endpoint (and s3-usehttps, s3-region, s3-usevirtualbucket): "
                     "01_minio with api_group={quoted}; then re-create the server so its pod takes the env").format(
                         group=group.group, quoted=repr(group.group)),
                   ISSUES + "1843")


def _region_fix(group: str) -> str:
    return _('add the annotation {group}/s3-region: "us-east-1" (any value suits MinIO) to the S3 Secret, then '
             "re-create the server").format(group=group)


def _recreate_fix() -> str:
    return _("re-create the server (see the check 'Secret changed after the pod started')")


def _no_secret() -> str:
    return _("no usable S3 Secret (see the checks above)")


def check_region(facts: Facts) -> Finding:
    name = _("S3 region (s3-region)")
    group = facts.api_group
    secret, meta = _s3_secret(facts)
    seen = _agent_line(facts, "MissingRegion")
    if not secret or group.s3_endpoint not in (meta.get("annotations") or {}):
        if seen:
            return Finding(name, PROBLEM, seen, _region_fix(group.group), ISSUES + "2140")
        return Finding(name, NA, _no_secret())
    if group.s3_region not in meta["annotations"]:
        return Finding(name, PROBLEM, _("Secret {secret} has no {annotation}: the agent takes its region only "
                                        "from it").format(secret=secret, annotation=group.s3_region)
                       + (f"; {seen}" if seen else ""),
                       _region_fix(group.group), ISSUES + "2140")
    if seen and not _pod_newer_than_secret(facts, meta):
        return Finding(name, PROBLEM, _("{seen}; the Secret has the annotation now, the pod's env predates it").format(
            seen=seen), _recreate_fix(), ISSUES + "2140")
    return Finding(name, OK, f"Secret {secret}: {group.s3_region}={meta['annotations'][group.s3_region]}")


def _endpoint_is_service(endpoint: str) -> bool:
    host = endpoint.rsplit(":", 1)[0]
    return not re.fullmatch(r"[0-9.]+", host) and (host.count(".") <= 1 or ".svc" in host)


def _vhost_fix(group: str) -> str:
    return _('add the annotation {group}/s3-usevirtualbucket: "false" to the S3 Secret, then re-create the '
             "server").format(group=group)


def check_virtual_host(facts: Facts) -> Finding:
    name = _("virtual-host bucket DNS (s3-usevirtualbucket)")
    group = facts.api_group
    secret, meta = _s3_secret(facts)
    seen = _agent_line(facts, "no such host")
    notes = meta.get("annotations") or {}
    if not secret or group.s3_endpoint not in notes:
        if seen:
            return Finding(name, PROBLEM, seen, _vhost_fix(group.group), ISSUES + "3120")
        return Finding(name, NA, _no_secret())
    endpoint = notes[group.s3_endpoint]
    if str(notes.get(group.s3_usevirtualbucket, "")).lower() == "false":
        if seen and not _pod_newer_than_secret(facts, meta):
            return Finding(name, PROBLEM, _("{seen}; the Secret says false now, the pod's env predates it").format(
                seen=seen), _recreate_fix(), ISSUES + "3120")
        return Finding(name, OK, _("Secret {secret}: {annotation}=false (path-style requests)").format(
            secret=secret, annotation=group.s3_usevirtualbucket))
    if _endpoint_is_service(endpoint) or seen:
        return Finding(name, PROBLEM, _('Secret {secret} has no {annotation}: "false", so the agent asks for '
                                        "<bucket>.{endpoint}, which cluster DNS does not know").format(
                                            secret=secret, annotation=group.s3_usevirtualbucket, endpoint=endpoint)
                       + (f"; {seen}" if seen else ""),
                       _vhost_fix(group.group), ISSUES + "3120")
    return Finding(name, OK, _("endpoint {endpoint} is not a Service name: virtual-host requests may resolve").format(
        endpoint=endpoint))


def _secret_changed_at(meta: dict) -> Optional[float]:
    times = [_time(f.get("time")) for f in meta.get("managedFields") or []]
    times = [t for t in times if t] or [_time(meta.get("creationTimestamp"))]
    return max((t for t in times if t), default=None)


def _pod_started_at(facts: Facts) -> Optional[float]:
    pod = facts.pod or {}
    return _time((pod.get("status") or {}).get("startTime")) or _time((pod.get("metadata") or {}).get("creationTimestamp"))


def _pod_newer_than_secret(facts: Facts, meta: dict) -> bool:
    changed, started = _secret_changed_at(meta), _pod_started_at(facts)
    return bool(changed and started and started >= changed)


def check_stale_env(facts: Facts) -> Finding:
    name = _("Secret changed after the pod started")
    group = facts.api_group
    secret, meta = _s3_secret(facts)
    env = _agent_env(facts)
    if not secret or env is None:
        return Finding(name, NA, _("no S3 Secret or no server pod to compare"))
    notes = meta.get("annotations") or {}
    # The region's env name is the release's (KFServing 0.5.1 AWS_REGION, KServe 0.14+ AWS_DEFAULT_REGION):
    # the one the pod's agent env carries, else the group's usual one.
    region = next((k for k in REGION_ENVS if k in env), REGION_ENVS[0] if group.group == KFSERVING_GROUP else REGION_ENVS[1])
    wanted = {region: notes.get(group.s3_region), "S3_USER_VIRTUAL_BUCKET": notes.get(group.s3_usevirtualbucket),
              "S3_ENDPOINT": notes.get(group.s3_endpoint)}
    differs = [_("{key}: pod {pod}, Secret {secret}").format(key=key, pod=repr(env.get(key, "<unset>")),
                                                             secret=repr(value))
               for key, value in wanted.items() if value is not None and env.get(key) != value]
    changed, started = _secret_changed_at(meta), _pod_started_at(facts)
    when = ""
    if changed and started:
        when = " " + _("(Secret last written {changed}Z, pod started {started}Z)").format(
            changed=f"{datetime.fromtimestamp(changed, timezone.utc):%H:%M:%S}",
            started=f"{datetime.fromtimestamp(started, timezone.utc):%H:%M:%S}")
    if differs:
        return Finding(name, PROBLEM, _("the agent's env differs from the Secret's annotations: {differences}").format(
                           differences="; ".join(differs)) + when,
                       _("the credential builder writes the env when the pod is made: delete the server's pod (or "
                         "re-create the InferenceService) so a new pod takes the Secret as it is now"),
                       ISSUES + "1764")
    return Finding(name, OK, _("the agent's env matches the Secret's annotations") + when)


def check_service_account(facts: Facts) -> Finding:
    name = _("service account lists the S3 Secret")
    account = _server_account(facts)
    if "service_account" in facts.unreadable:
        return Finding(name, NA, facts.unreadable["service_account"])
    if facts.service_account is None:
        return Finding(name, PROBLEM, _("service account {account} does not exist in {namespace}").format(
                           account=repr(account), namespace=facts.namespace),
                       _("apply s3_secret.yaml (01_minio), or fix spec.predictor.serviceAccountName"), ISSUES + "1519")
    refs = [r.get("name") for r in facts.service_account.get("secrets") or []]
    secret, _meta = _s3_secret(facts)
    if secret:
        return Finding(name, OK, _("service account {account} lists {secret}").format(account=account, secret=secret))
    missing = [r for r in refs if r not in facts.secrets]
    evidence = (_("service account {account} lists {secrets}").format(account=account, secrets=refs or "[]")
                + (_("; missing: {missing}").format(missing=missing) if missing else "")
                + _(", none with an s3-endpoint annotation"))
    return Finding(name, PROBLEM, evidence, _("add the S3 Secret under the service account's `secrets:` "
                                              "(s3_secret.yaml does both), then re-create the server"), ISSUES + "1519")


def check_external_name(facts: Facts) -> Finding:
    name = _("ExternalName Service {service}").format(service=MINIO_SERVICE)
    secret, meta = _s3_secret(facts)
    endpoint = (meta.get("annotations") or {}).get(facts.api_group.s3_endpoint, "")
    host = endpoint.rsplit(":", 1)[0]
    if host and "." in host:
        return Finding(name, OK, _("the Secret's endpoint {endpoint} names its namespace: no Service in "
                                   "{namespace} needed").format(endpoint=endpoint, namespace=facts.namespace))
    svc = facts.services.get(MINIO_SERVICE)
    if svc is None:
        return Finding(name, PROBLEM, _("no Service {service} in {namespace}").format(
                           service=MINIO_SERVICE, namespace=facts.namespace)
                       + (_(", and the Secret's endpoint {endpoint} is a short name").format(endpoint=endpoint)
                          if host else ""),
                       _("apply external_service.yaml (01_minio): an ExternalName Service pointing at "
                         "minio-service.kubeflow.svc.cluster.local"))
    return Finding(name, OK, f"Service {MINIO_SERVICE}: type {svc.get('type')} {svc.get('externalName') or ''}".rstrip())


def _flag_fix() -> str:
    return _("an admin sets predictors.triton.multiModelServer to true in {config} (KFServing 0.5.1 ships false; "
             "00_cluster_prep prints the command), then the InferenceService is re-created").format(
                 config=INFERENCESERVICE_CONFIG)


def check_multi_model(facts: Facts) -> Finding:
    name = _("multi-model flag (multiModelServer)")
    reason = conditions(facts.isvc).get("Ready", {})
    seen = f"InferenceService Ready=False {reason.get('reason')}: {reason.get('message', '')}" \
        if reason.get("reason") in ("MultiModelServerDisabled", "NotMultiModelServer") else ""
    triton = triton_predictor(facts.isvc) or {}
    if triton.get("storageUri"):
        return Finding(name, PROBLEM, _("{path}.storageUri is set: a single-model server takes no "
                                        "TrainedModels").format(path=predictor_path(facts.isvc)),
                       _("remove storageUri (multi_model_triton_server.yaml)"), ISSUES + "1391")
    config = facts.inference_config or {}
    if "predictors" not in config:
        if seen:
            return Finding(name, PROBLEM, seen, _flag_fix(), ISSUES + "1391")
        why = (_("not allowed to read {config} in {namespaces}").format(config=INFERENCESERVICE_CONFIG,
                                                                        namespaces=", ".join(config["denied"]))
               if config.get("denied") else _("{config} not found").format(config=INFERENCESERVICE_CONFIG))
        return Finding(name, NA, why)
    where = f"ConfigMap {config.get('namespace')}/{INFERENCESERVICE_CONFIG}"
    predictors = config["predictors"]
    if predictors is None:
        return Finding(name, OK, _("{where} has no predictors: KServe 0.10+ needs no switch").format(where=where))
    flag = (predictors.get("triton") or {}).get("multiModelServer")
    if flag is True:
        if seen:
            return Finding(name, PROBLEM, _("{seen}; the flag is true now: re-create the server").format(seen=seen),
                           _("re-create the InferenceService"), ISSUES + "1391")
        return Finding(name, OK, f"{where}: predictors.triton.multiModelServer is true")
    return Finding(name, PROBLEM, f"{where}: predictors.triton.multiModelServer is {json.dumps(flag)}"
                                  + (f"; {seen}" if seen else ""), _flag_fix(), ISSUES + "1391")


def check_config_name(facts: Facts) -> Finding:
    name = _("config.pbtxt name = TrainedModel name")
    current = {tm["metadata"]["name"] for tm in facts.trained_models}
    loaded = {m.get("name") for m in facts.repository or [] if m.get("state") == "READY"}
    refused = []
    for line in facts.server_lines:
        match = re.search(r"model directory '([^']+)': (.*directory name must equal model name)", line)
        if match and match.group(1) in current - loaded:
            refused.append(_("Triton log: {line}").format(
                line=f"Poll failed for model directory '{match.group(1)}': {match.group(2)}"))
    seen = [_("agent log: {line}").format(line=str(r.get("error", "")).split("; fix:")[0])
            for r in _agent_json(facts.agent_lines)
            if "failed to poll from model repository" in str(r.get("error", ""))
            and (r.get("modelName") or r.get("model")) in current - loaded]
    if refused or seen:
        return Finding(name, PROBLEM, "; ".join(refused[-1:] + seen[-1:])[:400],
                       _("the agent writes the model to a folder named after the TrainedModel and Triton wants "
                         "config.pbtxt's `name` to equal that folder: fix `name:` (or delete the line) and upload it "
                         "again, or name the TrainedModel as the config does; then delete and re-apply the "
                         "TrainedModel"))
    if facts.repository is None:
        return Finding(name, NA, _("Triton's repository index was not reachable"))
    return Finding(name, OK, _("{count} model(s) READY in Triton's index, no TrainedModel's folder refused "
                               "for its name").format(count=len(loaded)))


def _restarts(facts: Facts) -> str:
    """What the server Pod's container statuses say of restarts: "" when none."""
    said = []
    for status in ((facts.pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("restartCount"):
            last = ((status.get("lastState") or {}).get("terminated") or {}).get("reason", "")
            said.append(_("container {name} restarted {count}x").format(name=status.get("name"),
                                                                       count=status["restartCount"])
                        + (f" (last: {last})" if last else ""))
    return "; ".join(said)


def check_served(facts: Facts) -> Finding:
    """A TrainedModel Ready whose model Triton does not hold: typically Triton restarted (OOMKilled,
    a crash) and the agent, which loads a model only when models.json changes or its pod starts,
    never loads it again (KFServing 0.5.1 and KServe 0.14-0.15 `pkg/agent`: no health watch)."""
    name = _("Ready TrainedModels served by Triton")
    if facts.repository is None:
        return Finding(name, NA, _("Triton's repository index was not reachable"))
    states = {m.get("name"): m.get("state") or "" for m in facts.repository}
    ready = [tm["metadata"]["name"] for tm in facts.trained_models
             if conditions(tm).get("Ready", {}).get("status") == "True"]
    failed = {(r.get("modelName") or r.get("model")) for r in _agent_json(facts.agent_lines) if r.get("error")}
    failed |= set(_gave_up(facts))  # the agent's own failure line: the check 'no model the agent gave up on' names it
    lost = [n for n in ready if states.get(n) != "READY" and n not in failed]  # an agent error: other checks say why
    if not lost:
        return Finding(name, OK, _("{count} Ready TrainedModel(s), each READY in Triton").format(count=len(ready)))
    absent = _("not in the index")
    seen = ", ".join(f"{n} ({states.get(n) or absent})" for n in lost)
    restarts = _restarts(facts)
    return Finding(name, PROBLEM, _("Ready but not served: {models}").format(models=seen)
                   + (f"; {restarts}" if restarts else ""),
                   _("the agent loads a model when models.json changes or its pod starts, and does not reload what a "
                     "restarted Triton lost: `{command}` (the new pod's agent loads every model), or delete and "
                     "re-apply the TrainedModel").format(
                         command=f"kubectl delete pod -n {facts.namespace} -l {facts.api_group.isvc_label}={facts.server}"))


def check_memory(facts: Facts) -> Finding:
    name = _("TrainedModel memory within the server's")
    limits = (triton_predictor(facts.isvc) or {}).get("resources") or {}
    limit = quantity((limits.get("limits") or {}).get("memory"))
    refused = []
    for tm in facts.trained_models:
        cond = conditions(tm).get("MemoryResourceAvailable")
        if cond and cond.get("status") == "False":
            refused.append(f"{tm['metadata']['name']}: MemoryResourceAvailable=False {cond.get('message', '')}".strip())
    total = sum(quantity(((tm.get("spec") or {}).get("model") or {}).get("memory")) or 0 for tm in facts.trained_models)
    fix = _("give the TrainedModel a smaller spec.model.memory (it is immutable: delete and re-create it) or raise the "
            "server's memory limit; KFServing 0.5 does not check this, KServe refuses the model")
    if refused:
        return Finding(name, PROBLEM, "; ".join(refused), fix, "https://github.com/kserve/kserve/pull/1446")
    if limit is None:
        return Finding(name, NA, _("the server has no memory limit to compare with"))
    if total > limit:
        return Finding(name, PROBLEM, _("TrainedModels ask for {total}Gi in all, the server's limit is {limit}Gi").format(
                           total=f"{total / 2**30:.2f}", limit=f"{limit / 2**30:.2f}"),
                       fix, "https://github.com/kserve/kserve/pull/1446")
    return Finding(name, OK, _("{count} TrainedModel(s) ask {total}Gi of {limit}Gi").format(
        count=len(facts.trained_models), total=f"{total / 2**30:.2f}", limit=f"{limit / 2**30:.2f}"))


def check_pending(facts: Facts) -> Finding:
    name = _("server pod scheduled")
    triton = triton_predictor(facts.isvc) or {}
    asked = (triton.get("resources") or {}).get("requests") or {}
    asks = ", ".join(f"{key} {asked[key]}" for key in ("memory", "cpu") if asked.get(key)) or "-"
    if facts.pod is None:
        if facts.isvc is None:
            return Finding(name, NA, _("no server pod"))
        return Finding(name, PROBLEM, _("no server pod yet"),
                       _("`kubectl describe inferenceservice {server} -n {namespace}`: its conditions and Events say "
                         "why no pod was made").format(server=facts.server, namespace=facts.namespace))
    phase = (facts.pod.get("status") or {}).get("phase")
    failed = [e for e in facts.pod_events if e.get("reason") == "FailedScheduling"]
    if phase == "Pending" and failed:
        return Finding(name, PROBLEM, _("pod {pod} Pending (it requests {asks}); {event}").format(
                           pod=facts.pod["metadata"]["name"], asks=asks, event=_events_text(failed)[-1]),
                       _("choose the `small` preset (1 cpu, 2Gi: preset='small' in the notebooks' settings, or "
                         "MMS_PRESET=small) and re-create the server, or lower spec.predictor.triton.resources.requests "
                         "({asks}; the guide asks 16Gi and 1 CPU) to what a node has free; else ask your admin for a "
                         "node with room (`kubectl describe node` shows Allocatable and what is requested)").format(
                             asks=asks), ISSUES + "1601")
    return Finding(name, OK, _("pod {pod} is {phase} (it requests {asks})").format(
        pod=facts.pod["metadata"]["name"], phase=phase, asks=asks))


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


def check_webhook(facts: Facts) -> Finding:
    name = _("TrainedModel webhook (name, storageUri)")
    probe = facts.unreadable.get("webhook_probe")
    if probe is None:
        return Finding(name, NA, _("not probed"))
    if probe == "accepted":
        return Finding(name, OK, _("a dry-run TrainedModel with a valid name and s3:// storageUri was admitted"))
    return Finding(name, PROBLEM, probe[:300],
                   _("KFServing 0.5 wants a DNS-1035 name ([a-z]([-a-z0-9]*[a-z0-9])?) and an s3:// or gs:// "
                     "storageUri; `memory` cannot change after creation: read the webhook's message"),
                   ISSUES + "1392")


def check_shape(facts: Facts) -> Finding:
    name = _("request tensor shape")
    match = _SHAPE_MESSAGE.search(facts.error or "")
    if not match:
        return Finding(name, NA, _("no failed request to look at (pass the error to diagnose)"))
    tensor, model, expected, got = match.groups()
    return Finding(name, PROBLEM, _("Triton 400: input {tensor} of {model} expected [{expected}], got [{got}]").format(
                       tensor=repr(tensor), model=repr(model), expected=expected, got=got),
                   _("send [{expected}] ('-1' is the batch: any size up to max_batch_size); `{command}` shows the "
                     "input's shape").format(expected=expected, command=f"curl .../v2/models/{model}"))


def _s3_fix() -> str:
    return _("is MinIO running? `kubectl get pods -n kubeflow -l app=minio`; the agent retries when the model is "
             "applied again")


def _race_hint(facts: Facts) -> str:
    """A pointer to the sidecar race when the agent's refusals came early in a pod whose proxy does not hold it."""
    sidecar, native = _sidecar(facts)
    if sidecar is None or native or _holds(facts, sidecar) or not _early_refusals(facts):
        return ""
    return "; " + _("the refusals came within seconds of the agent's start, in a pod whose Istio sidecar does not "
                    "hold it: if S3 answers now, it was the sidecar race (the check 'agent started after the Istio "
                    "sidecar')")


def check_s3(facts: Facts) -> Finding:
    name = _("S3 reachable, bucket there")
    s3 = facts.s3
    seen = _agent_line(facts, "connection refused") or _agent_line(facts, "NoSuchBucket")
    if not s3:
        if seen:
            return Finding(name, PROBLEM, seen, _s3_fix() + _race_hint(facts), ISSUES + "1370")
        return Finding(name, NA, _("no usable S3 Secret to try"))
    if s3.get("ok"):
        return Finding(name, OK, _("bucket {bucket} at {endpoint}").format(bucket=s3["bucket"], endpoint=s3["endpoint"]))
    error = s3.get("error", "")
    if "does not exist" in error or "NoSuchBucket" in error:
        return Finding(name, PROBLEM, _("bucket {bucket} does not exist at {endpoint}").format(
                           bucket=s3["bucket"], endpoint=s3["endpoint"]),
                       _("create it and upload the models (01_minio, 03, 04), or fix the TrainedModels' storageUri"))
    return Finding(name, PROBLEM, f"{s3['endpoint']}: {error[:200]}" + (f"; {seen}" if seen else ""),
                   _s3_fix(), ISSUES + "1370")


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


def _holds(facts: Facts, sidecar: dict) -> str:
    """How the pod holds its containers until the proxy is up ("" if it does not): the annotation, or the
    `pilot-agent wait` postStart hook Istio's injector adds when the mesh config asks for it."""
    notes = (((facts.pod or {}).get("metadata") or {}).get("annotations")) or {}
    if _HOLD.search(str(notes.get(HOLD_ANNOTATION, ""))):
        return f"{HOLD_ANNOTATION}: {notes[HOLD_ANNOTATION]}"
    command = ((((sidecar.get("lifecycle") or {}).get("postStart") or {}).get("exec") or {}).get("command")) or []
    if "pilot-agent" in " ".join(command) and "wait" in command:
        return f"{SIDECAR} postStart: {' '.join(command)}"
    return ""


def _agent_started(facts: Facts) -> Optional[float]:
    for status in ((facts.pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == "agent":
            return _time(((status.get("state") or {}).get("running") or {}).get("startedAt"))
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
            found.append(text.split("; fix:")[0].strip()[:200])
    return found


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
    held = _holds(facts, sidecar)
    if held:
        return Finding(name, OK, _("pod {pod} waits for the proxy: {held}").format(pod=pod, held=held))
    refused = _early_refusals(facts)
    if not refused:
        return Finding(name, OK, _("pod {pod} has {sidecar} without {annotation}, and no `connection refused` in the "
                                   "agent's first {seconds} s").format(pod=pod, sidecar=SIDECAR,
                                                                       annotation=HOLD_ANNOTATION,
                                                                       seconds=f"{RACE_SECONDS:.0f}"))
    if not (facts.s3 or {}).get("ok"):
        return Finding(name, NA, _("the agent's S3 calls were refused and S3 does not answer the doctor either: "
                                   "see the check 'S3 reachable, bucket there'"))
    return Finding(name, PROBLEM, _("agent log, within {seconds} s of its start: {line}; pod {pod} has {sidecar} but "
                                    "no {annotation}, and S3 answers the doctor now: the agent called S3 before "
                                    "the proxy was up").format(seconds=f"{RACE_SECONDS:.0f}", line=refused[0],
                                                                pod=pod, sidecar=SIDECAR, annotation=HOLD_ANNOTATION),
                   _("annotate the InferenceService `{annotation}: '{{\"holdApplicationUntilProxyStarts\": true}}'` "
                     "(manifests/multi_model_triton_server.yaml has it; KServe copies it to the pod) and re-create "
                     "the server, or an admin sets holdApplicationUntilProxyStarts in Istio's mesh config; a new pod's "
                     "agent then loads every model: `{command}`").format(annotation=HOLD_ANNOTATION,
                                                                        command=_pod_command(facts)),
                   ISSUES + "1370")


def _entry_bytes(tm: dict) -> int:
    """The bytes a TrainedModel's entry adds to models.json (compact JSON, as `json.Marshal` writes it, and a comma)."""
    model = (tm.get("spec") or {}).get("model") or {}
    entry = {"modelName": tm["metadata"]["name"], "modelSpec": {
        "storageUri": model.get("storageUri", ""), "framework": model.get("framework", ""),
        "memory": str(model.get("memory", ""))}}
    return len(json.dumps(entry, separators=(",", ":")).encode()) + 1


def check_models_json(facts: Facts) -> Finding:
    """Every TrainedModel of a server is one entry of one ConfigMap, `modelconfig-<server>-0` (sharding is a
    TODO in every release); the API server refuses a ConfigMap past 1 MiB (422 `Too long`), the controller
    logs a reconciler error and retries, and the TrainedModel reads Ready all the same (its conditions are
    set before the write), while the agent keeps the last list."""
    name = _("models.json within the ConfigMap's 1 MiB")
    config = facts.model_config
    if config is None:
        configmap = model_config_map_name(facts.server)
        return Finding(name, NA, facts.unreadable.get("model_config") or _("no ConfigMap {configmap}").format(
            configmap=configmap))
    listed = set(config.get("models") or [])
    ready = [tm for tm in facts.trained_models if conditions(tm).get("Ready", {}).get("status") == "True"
             and not (tm.get("metadata") or {}).get("deletionTimestamp")]
    missing = [tm for tm in ready if tm["metadata"]["name"] not in listed]
    size = config.get("bytes", 0)
    needed = size + sum(_entry_bytes(tm) for tm in missing)
    if not (missing and needed > CONFIGMAP_LIMIT):
        return Finding(name, OK, _("ConfigMap {configmap}: {count} model(s), {size} of {limit} bytes").format(
            configmap=config.get("name"), count=len(listed), size=size, limit=CONFIGMAP_LIMIT))
    names = ", ".join(tm["metadata"]["name"] for tm in missing[:5]) + (", ..." if len(missing) > 5 else "")
    return Finding(name, PROBLEM, _("ConfigMap {configmap} holds {count} model(s) in {size} bytes; Ready "
                                    "TrainedModel(s) not in it: {models}; with them models.json would be {needed} "
                                    "bytes, past the {limit} the API server allows (422 `Too long`)").format(
                                        configmap=config.get("name"), count=len(listed), size=size, models=names,
                                        needed=needed, limit=CONFIGMAP_LIMIT),
                   _("the controller cannot write a list past 1 MiB, and the TrainedModels read Ready all the same: "
                     "spread the models over another InferenceService (a second server, its TrainedModels naming "
                     "it), or delete TrainedModels you no longer use; the controller then writes the list again"),
                   "https://github.com/kserve/kserve/blob/v0.15.2/pkg/controller/v1alpha1/trainedmodel/sharding/"
                   "memory/strategy.go")


# --- what the releases' agents do once, and what users hit most (issue 21) ----------------------
# The agent's failure lines, as puller.go words them (KFServing 0.5.1, KServe 0.14-0.15): the error is
# inside `msg`, there is no `error` field; the local agent writes the same words.
_GAVE_UP = re.compile(r"^Failed to (?:download model (?P<d>\S+) with err |Load model (?P<l>\S+)$|"
                      r"load model (?P<r>\S+) with status )")
# What the agent logs when it starts on a model again (a re-applied TrainedModel, a new pod): the failure
# before it no longer stands.
_STARTED_AGAIN = re.compile(r"^(?:adding model|Downloading model|loading model|Successfully loaded model|"
                            r"Downloading to model dir|removing model)\b")


def _gave_up(facts: Facts) -> dict[str, str]:
    """Model -> the agent's last failure line for it, where nothing for that model followed it."""
    last: dict[str, str] = {}
    for event in agent_log.parse(facts.agent_lines):
        msg = event["msg"]
        match = _GAVE_UP.match(msg)
        model = (match.group("d") or match.group("l") or match.group("r")) if match else event["model"]
        if not model:
            continue
        if match:
            extra = str(event["fields"].get("error", "")).split("; fix:")[0]
            last[model] = msg[:240] + (f" ({extra[:160]})" if extra and extra not in msg else "")
        elif _STARTED_AGAIN.match(msg):
            last.pop(model, None)
    return last


def _pod_command(facts: Facts) -> str:
    return f"kubectl delete pod -n {facts.namespace} -l {facts.api_group.isvc_label}={facts.server}"


def check_gave_up(facts: Facts) -> Finding:
    """A TrainedModel the agent failed on once and never tried again: every release tries each download
    and each load once (`modelProcessor`, puller.go), so the model stays unloaded while the
    TrainedModel, which is Ready as soon as it is in the ConfigMap, looks fine."""
    name = _("no model the agent gave up on")
    failures = _gave_up(facts)
    served = {m.get("name") for m in facts.repository or [] if m.get("state") == "READY"}
    ours = {tm["metadata"]["name"]: conditions(tm).get("Ready", {}).get("status") == "True"
            for tm in facts.trained_models}
    stuck = [model for model in failures if model in ours and model not in served]
    if not stuck:
        if not facts.agent_lines:
            return Finding(name, NA, _("no agent log to read"))
        return Finding(name, OK, _("no TrainedModel whose last agent attempt failed"))
    said = []
    for model in stuck:
        state = _("Ready (in the ConfigMap), not served") if ours[model] else _("not Ready, not served")
        said.append(_("TrainedModel {model} is {state}; agent log: {line}").format(
            model=model, state=state, line=failures[model]))
    first = stuck[0]
    return Finding(name, PROBLEM, "; ".join(said)[:600],
                   _("the agent tries each download and each load once and never again: mend the cause (the "
                     "line above, and the other PROBLEM rows), then `kubectl delete trainedmodel {model} -n "
                     "{namespace}` and apply it again (or `{command}`: a new pod's agent tries every model "
                     "once more)").format(model=first, namespace=facts.namespace, command=_pod_command(facts)),
                   ISSUES + "1370")


def _agent_restarts(facts: Facts) -> tuple[int, dict]:
    for status in ((facts.pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == "agent":
            return status.get("restartCount") or 0, (status.get("lastState") or {}).get("terminated") or {}
    return 0, {}


def check_agent_panic(facts: Facts) -> Finding:
    """KFServing 0.5.1's agent builds an S3 client only when AWS_ENDPOINT_URL is set; without it the first
    download dereferences a nil provider, the container exits 2 and restarts (kserve/kserve#1317)."""
    name = _("agent running (no panic)")
    panic = next((line.strip() for line in reversed(facts.agent_lines) if "nil pointer dereference" in line), "")
    count, last = _agent_restarts(facts)
    env = _agent_env(facts)
    if env is None and not panic:
        return Finding(name, NA, _("no server pod"))
    no_endpoint = env is not None and not ({"S3_ENDPOINT", "AWS_ENDPOINT_URL"} & set(env))
    exited = count and last.get("exitCode") == 2
    if not panic and not (exited and no_endpoint):
        return Finding(name, OK, _("agent container restarted {count}x").format(count=count))
    evidence = [_("agent log: {line}").format(line=panic[:200])] if panic else []
    if count:
        evidence.append(_("container agent restarted {count}x (last exit code {code})").format(
            count=count, code=last.get("exitCode", "?")))
    if no_endpoint:
        evidence.append(_("its env has no S3_ENDPOINT or AWS_ENDPOINT_URL"))
    return Finding(name, PROBLEM, "; ".join(evidence),
                   _("KFServing 0.5.1's agent has no S3 client without an endpoint and panics on the first download: "
                     "annotate the S3 Secret {annotation} (01_minio), then `{command}` so a new pod takes the env").format(
                       annotation=facts.api_group.s3_endpoint, command=_pod_command(facts)),
                   ISSUES + "1317")


def check_marker_file(facts: Facts) -> Finding:
    """KFServing 0.5.1's agent turns a directory-marker key (one ending in `/`) into an empty file, so the
    next key under it fails with `not a directory` (kserve/kserve#1769; KServe skips markers from v0.7)."""
    name = _("no directory-marker keys under a model")
    seen = _agent_line(facts, "not a directory")
    markers = [(uri, key) for uri, page in facts.listings.items() for key in page.get("markers") or []]
    old_agent = facts.group == KFSERVING_GROUP
    if not seen and not (markers and old_agent):
        if markers:
            return Finding(name, OK, _("marker keys under {uri}, which this release's agent skips").format(
                uri=markers[0][0]))
        if not facts.listings and not facts.agent_lines:
            return Finding(name, NA, _("no listing and no agent log to read"))
        return Finding(name, OK, _("no marker key in the models' listings, no `not a directory` in the agent log"))
    keys = ", ".join(key for _uri, key in markers[:4])
    evidence = "; ".join(filter(None, [seen, _("marker keys: {keys}").format(keys=keys) if keys else ""]))
    return Finding(name, PROBLEM, evidence[:500],
                   _("delete the marker objects (keys ending in `/`: `mc rm` each, or `client.remove_object(bucket, "
                     "key)` in Python), then `{command}`: in the old pod the model's folder holds a file where a "
                     "folder belongs; the new pod's agent downloads each model again (if one still stays unloaded, "
                     "delete and re-apply its TrainedModel)").format(command=_pod_command(facts)),
                   ISSUES + "1769")


def check_sibling_prefix(facts: Facts) -> Finding:
    """Every release lists `s3://b/cifar10` with the prefix as written, so `cifar10-old/...` comes along and
    lands in the model's folder as `-old/...` (kserve/kserve#3776, not fixed in the releases here)."""
    name = _("a model's prefix matches no other folder")
    if not facts.listings:
        return Finding(name, NA, _("the models' storage was not listed"))
    found = [(uri, page["siblings"]) for uri, page in facts.listings.items() if page.get("siblings")]
    if not found:
        return Finding(name, OK, _("{count} storageUri(s) listed: every key is inside the model's own folder").format(
            count=len(facts.listings)))
    uri, keys = found[0]
    return Finding(name, PROBLEM, _("ListObjects on {uri} (the prefix as written, as the agent asks) also returns "
                                    "{keys}: the agent writes them into the model's folder").format(
                                        uri=uri, keys=", ".join(keys[:3])),
                   _("give each model a prefix that no other key starts with: move or rename the other folder "
                     "(`cifar10-old/` to `old/cifar10/`), then delete and re-apply the TrainedModel"),
                   ISSUES + "3776")


LIST_PAGE = 1000  # S3's MaxKeys default: what one ListObjects call returns at most


def check_one_page(facts: Facts) -> Finding:
    """Every release reads one ListObjects page (`GetAllObjects`, no Marker loop): keys past the 1000th are
    never downloaded."""
    name = _("a model's folder fits one listing page")
    if not facts.listings:
        return Finding(name, NA, _("the models' storage was not listed"))
    over = [uri for uri, page in facts.listings.items() if page.get("truncated")]
    if not over:
        most = max(page.get("count", 0) for page in facts.listings.values())
        return Finding(name, OK, _("at most {count} key(s) under a model's prefix (one page holds {page})").format(
            count=most, page=LIST_PAGE))
    return Finding(name, PROBLEM, _("ListObjects on {uri} returns {page} keys and more follow (IsTruncated): the agent "
                                    "reads only the first page, so the rest is never downloaded").format(
                                        uri=over[0], page=LIST_PAGE),
                   _("keep fewer than {page} objects under each model's prefix: one model per prefix, nothing else "
                     "beside it (checkpoints, logs, other versions); then delete and re-apply the TrainedModel").format(
                       page=LIST_PAGE),
                   "https://github.com/kserve/kserve/blob/v0.15.2/pkg/agent/storage/s3.go")


def check_oom(facts: Facts) -> Finding:
    """The server container killed at its memory limit: the kubelet records `OOMKilled` and restarts it,
    and a restarted Triton holds no model (see 'Ready TrainedModels served by Triton')."""
    name = _("server container within its memory limit")
    statuses = ((facts.pod or {}).get("status") or {}).get("containerStatuses")
    if not statuses:
        return Finding(name, NA, _("no server container status"))
    killed = [s for s in statuses if s.get("name") != "agent"
              and ((s.get("lastState") or {}).get("terminated") or {}).get("reason") == "OOMKilled"]
    limits = ((triton_predictor(facts.isvc) or {}).get("resources") or {}).get("limits") or {}
    limit = limits.get("memory") or "-"
    if not killed:
        return Finding(name, OK, _("no container OOMKilled (limits.memory {limit})").format(limit=limit))
    status = killed[0]
    code = ((status.get("lastState") or {}).get("terminated") or {}).get("exitCode", 137)
    total = sum(quantity(((tm.get("spec") or {}).get("model") or {}).get("memory")) or 0 for tm in facts.trained_models)
    return Finding(name, PROBLEM, _("container {container}: lastState.terminated.reason OOMKilled (exit code {code}), "
                                    "restartCount {count}; limits.memory {limit}, the TrainedModels ask "
                                    "{total}Gi").format(container=status.get("name"), code=code,
                                                        count=status.get("restartCount", 0), limit=limit,
                                                        total=f"{total / 2**30:.2f}"),
                   _("raise spec.predictor.triton.resources.limits.memory (the `guide` preset has 16Gi) or load fewer "
                     "or smaller models; then delete and re-apply each TrainedModel, since the agent does not reload "
                     "what the restarted Triton lost"),
                   "https://github.com/kserve/modelmesh-serving/issues/396")


def check_endpoint_scheme(facts: Facts) -> Finding:
    """The credential builder puts `http://` or `https://` (s3-usehttps) in front of the annotation itself,
    so an endpoint written with a scheme becomes `http://http://...` (KServe accepts a scheme only from
    kserve/kserve#4797, after every release here)."""
    name = _("s3-endpoint without a scheme")
    secret, meta = _s3_secret(facts)
    notes = meta.get("annotations") or {}
    endpoint = notes.get(facts.api_group.s3_endpoint)
    if not secret or endpoint is None:
        return Finding(name, NA, _no_secret())
    scheme = re.match(r"\s*([A-Za-z][A-Za-z0-9+.-]*)://", endpoint)
    if not scheme:
        return Finding(name, OK, f"Secret {secret}: {facts.api_group.s3_endpoint}={endpoint}")
    bare = endpoint.split("://", 1)[1].rstrip("/")
    https = "1" if scheme.group(1).lower() == "https" else "0"
    return Finding(name, PROBLEM, _("Secret {secret}: {annotation}={endpoint}; KServe adds the scheme itself "
                                    "(from s3-usehttps), so the agent's endpoint becomes "
                                    "http(s)://{endpoint}").format(secret=secret, annotation=facts.api_group.s3_endpoint,
                                                                   endpoint=endpoint),
                   _("`kubectl annotate secret {secret} -n {namespace} --overwrite {annotation}={bare} "
                     "{usehttps}={https}` (the host and port only; s3-usehttps says the scheme), then `{command}`").format(
                       secret=secret, namespace=facts.namespace, annotation=facts.api_group.s3_endpoint, bare=bare,
                       usehttps=facts.api_group.s3_usehttps, https=https, command=_pod_command(facts)),
                   "https://github.com/kserve/kserve/pull/4797")


def check_terminating(facts: Facts) -> Finding:
    """A TrainedModel deleted after its InferenceService: its controller needs the parent to finish the
    deletion, so the finalizer stays and the object stays Terminating (kserve/kserve#1422)."""
    name = _("no TrainedModel stuck Terminating")
    deleting = [tm for tm in facts.trained_models if (tm.get("metadata") or {}).get("deletionTimestamp")]
    if not deleting:
        return Finding(name, OK, _("no TrainedModel of {server} is being deleted").format(server=facts.server))
    meta = deleting[0]["metadata"]
    evidence = _("TrainedModel {model}: deletionTimestamp {when}, finalizers {finalizers}").format(
        model=meta["name"], when=meta["deletionTimestamp"], finalizers=meta.get("finalizers") or [])
    if facts.isvc is not None or not meta.get("finalizers"):
        return Finding(name, OK, evidence + _("; its server exists, so the controller can finish"))
    return Finding(name, PROBLEM, evidence + _("; InferenceService {server} does not exist").format(server=facts.server),
                   _("remove the finalizer: `kubectl patch trainedmodel {model} -n {namespace} --type=merge -p "
                     "'{{\"metadata\":{{\"finalizers\":null}}}}'`; next time delete the TrainedModels before their "
                     "server").format(model=meta["name"], namespace=facts.namespace),
                   ISSUES + "1422")


def check_rbac(facts: Facts) -> Finding:
    """May this identity create TrainedModels? Kubeflow's kubeflow-edit grants them only from KServe 0.15
    (kserve/kserve#4225); before that 00_cluster_prep's Role does."""
    name = _("may create TrainedModels")
    command = f"kubectl auth can-i create trainedmodels.{facts.group} -n {facts.namespace}"
    allowed = facts.can_i.get("create trainedmodels")
    if allowed is None:
        return Finding(name, NA, facts.unreadable.get("can_i", _("not asked")))
    if allowed:
        return Finding(name, OK, _("`{command}`: yes").format(command=command))
    return Finding(name, PROBLEM, _("`{command}`: no").format(command=command),
                   _("Kubeflow's default-editor role has trainedmodels only from KServe 0.15: an admin applies "
                     "00_cluster_prep's Role (manifests/trainedmodel_editor.yaml; 00 run as a learner prints it for "
                     "the admin)"),
                   ISSUES + "4225")


CHECKS: list[Callable[[Facts], Finding]] = [
    check_crds, check_service_account, check_annotation_prefix, check_region, check_virtual_host, check_stale_env,
    check_external_name, check_multi_model, check_pending, check_memory, check_config_name, check_webhook,
    check_served, check_models_json, check_gateway, check_cluster_local, check_shape, check_s3, check_sidecar_race,
    check_gave_up, check_agent_panic, check_marker_file, check_sibling_prefix, check_one_page, check_oom,
    check_endpoint_scheme, check_terminating, check_rbac]


def run_checks(facts: Facts) -> list[Finding]:
    """Every check on the facts (a check that trips over odd facts says so as n/a)."""
    findings = []
    for check in CHECKS:
        key = check.__name__.removeprefix("check_")
        try:
            found = check(facts)
        except Exception as exc:  # noqa: BLE001 - one odd object must not hide the other checks
            found = Finding(key, NA, _("could not check: {error}").format(error=repr(exc))[:200])
        found.id = key
        findings.append(found)
    return findings


def facts_for_record(facts: Facts, lines: int = 12) -> dict:
    """The facts as a JSON-able dict, kept small enough to store (06's recordings): the last `lines`
    log lines, the Pod without its volumes and status details the checks do not read."""
    found = asdict(facts)
    found["agent_lines"] = found["agent_lines"][-lines:]
    pod = found.get("pod")
    if pod:
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        pod["metadata"] = {k: (pod.get("metadata") or {}).get(k)
                           for k in ("name", "creationTimestamp", "labels", "annotations")}
        pod["spec"] = {"containers": [{"name": c.get("name"), "env": c.get("env"), "resources": c.get("resources"),
                                       "lifecycle": c.get("lifecycle")} for c in spec.get("containers") or []],
                       "initContainers": [{"name": c.get("name"), "restartPolicy": c.get("restartPolicy")}
                                          for c in spec.get("initContainers") or []]}
        pod["status"] = {k: status.get(k) for k in ("phase", "startTime", "containerStatuses")}
    for meta in found.get("secrets", {}).values():
        meta["managedFields"] = [{"time": f.get("time")} for f in meta.get("managedFields") or []]
    if found.get("isvc"):
        found["isvc"] = {k: found["isvc"].get(k) for k in ("apiVersion", "kind", "spec", "status")}
        found["isvc"]["metadata"] = {"name": facts.server, "namespace": facts.namespace}
    for tm in found.get("trained_models") or []:
        tm["metadata"] = {k: v for k, v in tm["metadata"].items() if k in ("name", "deletionTimestamp", "finalizers")}
    found["tm_events"] = {name: events[-3:] for name, events in found["tm_events"].items()}
    found["isvc_events"] = found["isvc_events"][-3:]
    if found.get("service_account"):
        found["service_account"] = {"secrets": found["service_account"].get("secrets")}
    config = found.get("inference_config") or {}
    if isinstance(config.get("predictors"), dict):
        config["predictors"] = {"triton": config["predictors"].get("triton")}
    return found


# --- reading the cluster ---------------------------------------------------------------------
def _events(core: client.CoreV1Api, namespace: str, kind: str, name: str) -> list[dict]:
    found = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name},involvedObject.kind={kind}")
    events = sorted(found.items, key=lambda e: (e.last_timestamp or e.event_time or e.metadata.creation_timestamp))
    return [{"type": e.type, "reason": e.reason, "message": e.message} for e in events]


def _read(facts: Facts, what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ApiException as exc:
        if not not_found(exc):
            facts.unreadable[what] = _("could not read {what} ({status} {reason})").format(
                what=what, status=exc.status, reason=exc.reason)
        return None
    except (SetupError, requests.RequestException, OSError) as exc:
        facts.unreadable[what] = _("could not read {what}: {error}").format(what=what, error=str(exc).splitlines()[0][:160])
        return None


def _meta_only(secret: client.V1Secret, api: client.ApiClient) -> dict:
    meta = api.sanitize_for_serialization(secret.metadata)
    return {k: meta.get(k) for k in ("name", "annotations", "creationTimestamp", "managedFields", "resourceVersion")}


def gather(api: client.ApiClient, target: Any, namespace: str, server: str, group: Optional[str] = None,
           bucket: str = DEFAULT_BUCKET, error: Optional[BaseException] = None, probe_s3: bool = True) -> Facts:
    """Read everything the checks need; what cannot be read is noted, never fatal."""
    from helpers.steps.prep import preflight

    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    if not group:
        group = _read(Facts(namespace, server, KFSERVING_GROUP), "group", lambda: preflight.served_api_group(api)) \
            or KFSERVING_GROUP
    facts = Facts(namespace, server, group, bucket=bucket, error=str(error or ""))
    ag = facts.api_group
    facts.k8s_version = _read(facts, "version", lambda: client.VersionApi(api).get_code().git_version) or ""
    for name in API_GROUPS:
        facts.served[name] = sorted(_read(facts, f"served {name}", lambda n=name: preflight._served(api, n, "v1beta1")) or [])
    for version in ("v1beta1", "v1"):
        key = f"{MESH_GROUP}/{version}"
        facts.served[key] = sorted(_read(facts, f"served {key}", lambda v=version: preflight._served(
            api, MESH_GROUP, v)) or [])
    facts.isvc = _read(facts, "InferenceService", lambda: custom.get_namespaced_custom_object(
        ag.group, ag.isvc_version, namespace, "inferenceservices", server))
    facts.isvc_events = _read(facts, "events", lambda: _events(core, namespace, "InferenceService", server)) or []
    account = _server_account(facts)
    sa = _read(facts, "service_account", lambda: core.read_namespaced_service_account(account, namespace))
    facts.service_account = api.sanitize_for_serialization(sa) if sa else None
    for ref in (facts.service_account or {}).get("secrets") or []:
        secret = _read(facts, f"secret {ref['name']}", lambda r=ref: core.read_namespaced_secret(r["name"], namespace))
        if secret is not None:
            facts.secrets[ref["name"]] = _meta_only(secret, api)
    svc = _read(facts, "services", lambda: core.read_namespaced_service(MINIO_SERVICE, namespace))
    if svc is not None:
        facts.services[MINIO_SERVICE] = {"type": svc.spec.type, "externalName": svc.spec.external_name}
    pods = _read(facts, "pods", lambda: core.list_namespaced_pod(namespace, label_selector=f"{ag.isvc_label}={server}"))
    live = [p for p in (pods.items if pods else []) if not p.metadata.deletion_timestamp]
    if live:
        facts.pod = api.sanitize_for_serialization(live[0])
        facts.pod_events = _read(facts, "pod events", lambda: _events(core, namespace, "Pod", live[0].metadata.name)) or []
        facts.agent_lines = _read(facts, "agent log", lambda: agent_log.agent_lines(api, target, ag, server, namespace)) or []
        triton_log = _read(facts, "server log", lambda: agent_log.server_lines(api, target, ag, server, namespace)) or []
        facts.server_lines = [line for line in triton_log if "Poll failed for model directory" in line][-20:]
    tms = _read(facts, "trainedmodels", lambda: custom.list_namespaced_custom_object(
        ag.group, ag.tm_version, namespace, "trainedmodels"))
    facts.trained_models = [tm for tm in (tms or {}).get("items", [])
                            if (tm.get("spec") or {}).get("inferenceService") == server]
    for tm in facts.trained_models:
        tm_name = tm["metadata"]["name"]
        facts.tm_events[tm_name] = _read(facts, "events", lambda n=tm_name: _events(core, namespace, "TrainedModel", n)) or []
    if facts.isvc is not None:
        _read_model_config(facts, core, namespace, server)
    _read_policies(facts, custom, namespace)
    cm, denied = _read(facts, "inferenceservice-config", lambda: preflight.find_inferenceservice_config(api)) or (None, [])
    if cm is not None:
        raw = (cm.data or {}).get("predictors")
        facts.inference_config = {"namespace": cm.metadata.namespace, "predictors": json.loads(raw) if raw else None}
    elif denied:
        facts.inference_config = {"denied": denied}
    _probe_webhook(facts, custom, ag, namespace, server)
    allowed = _read(facts, "can_i", lambda: preflight.can_i(api, "create", ag.group, "trainedmodels", namespace))
    if allowed is not None:
        facts.can_i["create trainedmodels"] = allowed
    if facts.isvc is not None:
        _probe_server(facts, api, target)
    if probe_s3:
        _probe_s3(facts, api, target)
    return facts


def _probe_webhook(facts: Facts, custom: client.CustomObjectsApi, ag: ApiGroup, namespace: str, server: str) -> None:
    body = {"apiVersion": ag.tm_api_version, "kind": "TrainedModel",
            "metadata": {"name": "doctor-probe", "namespace": namespace},
            "spec": {"inferenceService": server,
                     "model": {"framework": "pytorch", "storageUri": f"s3://{facts.bucket}/doctor-probe", "memory": "1Mi"}}}
    try:
        custom.create_namespaced_custom_object(ag.group, ag.tm_version, namespace, "trainedmodels", body, dry_run="All")
        facts.unreadable["webhook_probe"] = "accepted"
    except ApiException as exc:
        from helpers.clients.k8s import api_message

        if "denied the request" in (exc.body or "") or "failed calling webhook" in (exc.body or ""):
            facts.unreadable["webhook_probe"] = f"{exc.status}: {api_message(exc)}"
        # anything else (no namespace yet, not the learner's to create) gives no verdict on the webhook


def _probe_server(facts: Facts, api: client.ApiClient, target: Any) -> None:
    from helpers.clients.triton import repository_index

    host = ((facts.isvc or {}).get("status") or {}).get("url", "").split("://", 1)[-1].split("/", 1)[0]
    base = (target.ingress_base(api) or "") if host else ""
    if base:
        try:
            # the session this identity's notebooks send (what the user set, or the local stack's)
            credentials = target.gateway_credentials(api)
            answer = requests.get(f"{base}/v2/health/live", headers={"Host": host, **credentials},
                                  timeout=5, allow_redirects=False)
            facts.gateway = {"url": base, "status": answer.status_code, "body": answer.text.strip()[:120],
                             "location": answer.headers.get("Location", ""), "sent": sorted(credentials)}
        except requests.RequestException as exc:
            facts.gateway = {"url": base, "status": None, "error": type(exc).__name__}
    _probe_cluster_local(facts, api, target)
    if conditions(facts.isvc).get("Ready", {}).get("status") == "True":
        endpoint = _read(facts, "endpoint", lambda: target.server_endpoint(api, facts.isvc))
        if endpoint is not None:
            facts.repository = _read(facts, "repository", lambda: repository_index(endpoint.base_url, endpoint.headers))


def _probe_cluster_local(facts: Facts, api: client.ApiClient, target: Any) -> None:
    """GET <status.address.url>/v2/health/live with no session, as a notebook pod of the namespace sends it (on
    the local stack, to the port the address's Service names); outside the cluster the address does not resolve."""
    address = (((facts.isvc or {}).get("status") or {}).get("address") or {}).get("url") or ""
    if not address:
        return
    parts = urlsplit(address)
    scheme = parts.scheme or "http"
    shown = f"{scheme}://{parts.netloc}"
    from helpers.clients.target import OutOfCluster

    if isinstance(target, OutOfCluster):  # its service_address would port-forward to the pod, past the mesh
        facts.cluster_local = {"url": shown, "skipped": "out-of-cluster"}
        return
    # The address as this process reaches it (cluster DNS in a pod; the local stack's Service annotation here).
    netloc = parts.netloc if parts.port else f"{parts.hostname}:{443 if scheme == 'https' else 80}"
    resolved = _read(facts, "cluster-local address", lambda: target.service_address(api, netloc, facts.namespace))
    url = shown if resolved in (None, netloc) else f"{scheme}://{resolved}"
    try:
        answer = requests.get(f"{url}/v2/health/live", timeout=5, allow_redirects=False)
        facts.cluster_local = {"url": shown, "status": answer.status_code, "body": answer.text.strip()[:120]}
    except requests.RequestException as exc:
        facts.cluster_local = {"url": shown, "status": None, "error": type(exc).__name__}


def _read_policies(facts: Facts, custom: client.CustomObjectsApi, namespace: str) -> None:
    """The namespace's AuthorizationPolicies, name and spec (a learner of Kubeflow 1.10 may not list them:
    `kubeflow-istio-edit` covers istio.io and networking.istio.io only)."""
    version = next((v for v in ("v1beta1", "v1") if MESH_PLURAL in facts.served.get(f"{MESH_GROUP}/{v}", [])), None)
    if version is None:
        return
    found = _read(facts, MESH_PLURAL, lambda: custom.list_namespaced_custom_object(
        MESH_GROUP, version, namespace, MESH_PLURAL))
    if found is not None:
        facts.mesh_policies = [{"name": p["metadata"]["name"], "spec": p.get("spec") or {}}
                               for p in found.get("items") or []]


def _read_model_config(facts: Facts, core: client.CoreV1Api, namespace: str, server: str) -> None:
    name = model_config_map_name(server)
    cm = _read(facts, "model_config", lambda: core.read_namespaced_config_map(name, namespace))
    if cm is None:
        return
    text = (cm.data or {}).get(MODEL_CONFIG_FILE) or "[]"
    try:
        models = [e.get("modelName") for e in json.loads(text)]
    except (ValueError, AttributeError):
        models = []
    size = sum(len(str(v).encode()) for v in (cm.data or {}).values())
    facts.model_config = {"name": name, "bytes": size, "models": models}


def _probe_s3(facts: Facts, api: client.ApiClient, target: Any) -> None:
    """Reach S3 with the Secret's keys, as the agent would, and look for every bucket the models name."""
    secret, meta = _s3_secret(facts)
    if not secret or facts.api_group.s3_endpoint not in (meta.get("annotations") or {}):
        return
    buckets = set()
    for tm in facts.trained_models:
        where = ((tm.get("spec") or {}).get("model") or {}).get("storageUri", "").removeprefix("s3://")
        # A model in the learner's folder of a shared bucket (Kubeflow 1.11) is looked for there: such a
        # key may not ask about the whole bucket.
        inside = "/" in facts.bucket and where.startswith(facts.bucket.rstrip("/") + "/")
        buckets.add(facts.bucket if inside else where.split("/", 1)[0])
    buckets -= {""}
    endpoint = meta["annotations"][facts.api_group.s3_endpoint]
    bucket = facts.bucket
    try:
        s3 = connect(from_secret(api, target, facts.api_group, facts.namespace, secret))
        for bucket in sorted(buckets | {facts.bucket}):
            if not bucket_exists(s3, bucket):
                facts.s3 = {"endpoint": endpoint, "bucket": bucket, "ok": False, "error": f"bucket {bucket} does not exist"}
                return
        facts.s3 = {"endpoint": endpoint, "bucket": ", ".join(sorted(buckets | {facts.bucket})), "ok": True}
        for tm in facts.trained_models:
            uri = ((tm.get("spec") or {}).get("model") or {}).get("storageUri", "")
            if uri.startswith("s3://") and uri not in facts.listings:
                try:
                    facts.listings[uri] = list_page(s3, uri)
                except Exception as exc:  # noqa: BLE001 - a key limited to some prefixes may not list
                    facts.unreadable[f"listing {uri}"] = _("could not read {what}: {error}").format(
                        what=uri, error=str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - any failure here is the finding
        facts.s3 = {"endpoint": endpoint, "bucket": bucket, "ok": False,
                    "error": str(exc).splitlines()[0][:200] or type(exc).__name__}


def list_page(s3: Any, uri: str) -> dict:
    """One ListObjects page of `uri` as every release's agent asks for it (the prefix as written, at most
    1000 keys): its key count, whether more follow, the marker keys (ending in `/`) and the keys beside the
    model's folder (`cifar10-old/...` for `cifar10`), a few of each."""
    import itertools

    bucket, _sep, prefix = uri.removeprefix("s3://").partition("/")
    objects = s3.list_objects(bucket, prefix=prefix, recursive=True, use_api_v1=True)
    keys = [o.object_name for o in itertools.islice(objects, LIST_PAGE + 1)]
    page = keys[:LIST_PAGE]
    folder = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    siblings = [k for k in page if k != prefix and not k.startswith(folder)]
    return {"count": len(page), "truncated": len(keys) > LIST_PAGE,
            "markers": [k for k in page if k.endswith("/")][:5], "siblings": siblings[:5]}


# --- output ----------------------------------------------------------------------------------
def table(findings: list[Finding], width: int = 120) -> str:
    """The findings as a plain-text table: check, result, evidence, fix."""
    marks = {OK: "ok", PROBLEM: "PROBLEM", NA: "n/a"}
    check, result, evidence, fix = _("check"), _("result"), _("evidence / fix"), _("fix:")
    name_w = max([text_width(f.check) for f in findings] + [text_width(check)])
    lines = [f"{pad(check, name_w)}  {pad(result, 7)}  {evidence}", "-" * min(width, name_w + 60)]
    for f in findings:
        lines.append(f"{pad(f.check, name_w)}  {marks[f.result]:<7}  {f.evidence}")
        if f.result == PROBLEM:
            lines.append(f"{'':<{name_w}}  {'':<7}  {fix} {f.fix}" + (f"  [{f.issue}]" if f.issue else ""))
    return "\n".join(lines)


def problems(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.result == PROBLEM]


def diagnose(ctx: Any, error: Optional[BaseException] = None, server: Optional[str] = None,
             show: bool = True, only_problems: bool = False) -> list[Finding]:
    """For a notebook: check the notebook's namespace and server (and `error`, if a request failed);
    print the table (with `only_problems`: the command that prints the same from a terminal, then
    the PROBLEM rows only); return every finding."""
    server = server or ctx.server_name
    facts = gather(ctx.api, ctx.place, ctx.namespace, server, ctx.group.group, bucket=ctx.bucket, error=error)
    findings = run_checks(facts)
    if show and only_problems:
        from helpers.core.show import show_not_in_guide

        show_not_in_guide(f"python -m helpers.doctor --namespace {ctx.namespace} --server {server} --problems",
                          _("the same look from a terminal (`--json` for every row)"))
        bad = problems(findings)
        print(table(bad) if bad else _("no PROBLEM rows: the doctor sees none of the known pitfalls"))
    elif show:
        print(table(findings))
    return findings


def main(argv: Optional[list[str]] = None) -> int:
    from helpers.clients.target import resolve_settings, select

    parser = argparse.ArgumentParser(prog="python -m helpers.doctor", description=__doc__.splitlines()[0],
                                     epilog="Unset options come from where the notebooks take them: MMS_* "
                                            "variables, the settings file, else the guide's defaults.")
    parser.add_argument("--namespace", default="")
    parser.add_argument("--server", default="")
    parser.add_argument("--target", choices=("local", "cluster"), default=None)
    parser.add_argument("--identity", default="admin", choices=("admin", "learner"))
    parser.add_argument("--api-group", default="", choices=("",) + API_GROUPS)
    parser.add_argument("--bucket", default="")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument("--problems", action="store_true", help="print only the PROBLEM rows")
    parser.add_argument("--error", default="", help="the error a request got (e.g. Triton's answer), to read it too")
    args = parser.parse_args(argv)
    try:
        chosen, _where = resolve_settings({"target": args.target, "namespace": args.namespace, "server_name": args.server,
                                      "bucket": args.bucket, "api_group": args.api_group})
        from helpers.core import i18n

        i18n.set_language(chosen.get("language"))
        place = select(chosen["target"])
        api = place.api_client(args.identity, chosen["namespace"])
    except SetupError as exc:
        print(exc, file=sys.stderr)
        return 2
    facts = gather(api, place, chosen["namespace"], chosen["server_name"], chosen["api_group"] or None,
                   bucket=chosen["bucket"])
    facts.error = args.error or facts.error
    findings = run_checks(facts)
    shown = problems(findings) if args.problems else findings
    if args.json:
        print(json.dumps([f.as_dict() for f in shown], indent=1, ensure_ascii=False))
    else:
        print(table(shown) if shown else _("no PROBLEM rows: the doctor sees none of the known pitfalls"))
    return 1 if problems(findings) else 0


if __name__ == "__main__":
    sys.exit(main())
