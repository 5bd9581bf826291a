"""Checks on what 00-02 set up: the API groups, the S3 Secret and its annotations, the service
account, the ExternalName Service, the server's spec and the trainedmodels RBAC.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Optional

from helpers.clients.inference import conditions
from helpers.clients.k8s import predictor_path, triton_predictor
from helpers.core.constants import (
    API_GROUPS,
    INFERENCESERVICE_CONFIG,
    KFSERVING_GROUP,
    MINIO_SERVICE,
)
from helpers.core.i18n import _
from helpers.steps.troubleshoot.doctor.facts import (
    ISSUES,
    NA,
    OK,
    PROBLEM,
    Facts,
    Finding,
    agent_env,
    agent_json,
    agent_line,
    epoch_seconds,
    events_text,
    pod_command,
    s3_secret,
    server_account,
)

# The agent's region env, by release: KFServing 0.5.1, then KServe 0.14+ (pkg/credentials/s3/s3_secret.go).
REGION_ENVS = ("AWS_REGION", "AWS_DEFAULT_REGION")


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
    account = server_account(facts)
    secret, meta = s3_secret(facts)
    if not secret:
        return Finding(name, NA, _("no Secret of service account {account} has an s3-endpoint annotation "
                                   "(see the service account's check)").format(account=repr(account)))
    notes = meta.get("annotations") or {}
    if group.s3_endpoint in notes:
        return Finding(name, OK, _("Secret {secret} is annotated {annotation}").format(
            secret=secret, annotation=group.s3_endpoint))
    wrong = next(g for g in API_GROUPS if f"{g}/s3-endpoint" in notes)
    warning = [e for e in events_text(facts.isvc_events) if wrong in e]
    evidence = _("Secret {secret} is annotated {wrong}/s3-*, but the server is {group}: the credential builder "
                 "ignores it, so the agent has no S3 endpoint").format(secret=secret, wrong=wrong, group=group.group)
    seen = agent_line(facts, "no S3 endpoint") or (warning[0] if warning else "")
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
    secret, meta = s3_secret(facts)
    seen = agent_line(facts, "MissingRegion")
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
    secret, meta = s3_secret(facts)
    seen = agent_line(facts, "no such host")
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
    times = [epoch_seconds(f.get("time")) for f in meta.get("managedFields") or []]
    times = [t for t in times if t] or [epoch_seconds(meta.get("creationTimestamp"))]
    return max((t for t in times if t), default=None)


def _pod_started_at(facts: Facts) -> Optional[float]:
    pod = facts.pod or {}
    return (epoch_seconds((pod.get("status") or {}).get("startTime"))
            or epoch_seconds((pod.get("metadata") or {}).get("creationTimestamp")))


def _pod_newer_than_secret(facts: Facts, meta: dict) -> bool:
    changed, started = _secret_changed_at(meta), _pod_started_at(facts)
    return bool(changed and started and started >= changed)


def check_stale_env(facts: Facts) -> Finding:
    name = _("Secret changed after the pod started")
    group = facts.api_group
    secret, meta = s3_secret(facts)
    env = agent_env(facts)
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
    account = server_account(facts)
    if "service_account" in facts.unreadable:
        return Finding(name, NA, facts.unreadable["service_account"])
    if facts.service_account is None:
        return Finding(name, PROBLEM, _("service account {account} does not exist in {namespace}").format(
                           account=repr(account), namespace=facts.namespace),
                       _("apply s3_secret.yaml (01_minio), or fix spec.predictor.serviceAccountName"), ISSUES + "1519")
    refs = [r.get("name") for r in facts.service_account.get("secrets") or []]
    secret, _meta = s3_secret(facts)
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
    secret, meta = s3_secret(facts)
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
            for r in agent_json(facts.agent_lines)
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


def check_endpoint_scheme(facts: Facts) -> Finding:
    """The credential builder puts `http://` or `https://` (s3-usehttps) in front of the annotation itself,
    so an endpoint written with a scheme becomes `http://http://...` (KServe accepts a scheme only from
    kserve/kserve#4797, after every release here)."""
    name = _("s3-endpoint without a scheme")
    secret, meta = s3_secret(facts)
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
                       usehttps=facts.api_group.s3_usehttps, https=https, command=pod_command(facts)),
                   "https://github.com/kserve/kserve/pull/4797")


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
