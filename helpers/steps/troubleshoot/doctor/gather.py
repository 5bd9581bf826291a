"""Reading the cluster once: `gather` collects every fact the checks need, as far as the identity may
read it, and `facts_for_record` keeps them small enough to store (06's recordings).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.clients.inference import conditions
from helpers.clients.k8s import not_found
from helpers.clients.storage import bucket_exists, connect
from helpers.core.constants import (
    API_GROUPS,
    DEFAULT_BUCKET,
    KFSERVING_GROUP,
    MINIO_SERVICE,
    MODEL_CONFIG_FILE,
    ApiGroup,
    model_config_map_name,
)
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.steps.models import agent_log
from helpers.steps.objectstore.kubeflow_minio import from_secret
from helpers.steps.troubleshoot.doctor.checks_agent import LIST_PAGE
from helpers.steps.troubleshoot.doctor.checks_mesh import MESH_GROUP, MESH_PLURAL
from helpers.steps.troubleshoot.doctor.facts import Facts, s3_secret, server_account


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
    account = server_account(facts)
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
    secret, meta = s3_secret(facts)
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
