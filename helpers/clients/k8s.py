"""Kubernetes access shared by every target: Service addresses, namespaces, and create-or-update.

`apply` is what the notebooks do where the guide says `kubectl apply -f`: it creates the object;
if it already exists (409) it patches it with the manifest, so the fields the manifest sets win
and fields set by others stay (a learner's `kubectl patch`, status, server defaults). Unlike
`kubectl apply`, a field later dropped from a manifest is not removed. Built-in kinds get a
strategic merge patch (lists such as `containers` and `env` merge by name); custom resources,
which have no strategic merge, a JSON merge patch. A Pod whose spec changed is deleted and
created again (Pods are immutable), as `kubectl replace --force` does. It works for built-in
kinds and custom resources alike, through the dynamic client's discovery.

How the API client is made for each target is `helpers.clients.target`'s job.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import tempfile
import time
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Mapping, Optional, Union
from urllib.parse import urlsplit, urlunsplit

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from kubernetes.dynamic.resource import Resource

from helpers.core.constants import LOCAL_ADDRESS_ANNOTATION
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.wait import WaitTimeout, poll_until

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
# Server-owned metadata: a manifest read back from the cluster carries these, a patch must not.
SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink")

Client = Union[ApiClient, DynamicClient]

_discovery_dir: Optional[tempfile.TemporaryDirectory] = None


class ManifestRejected(SetupError):
    """The apiserver refused a manifest; `status` is the HTTP status (422 invalid, 403 forbidden, ...)."""

    def __init__(self, cause: str, fix: str, status: int, message: str) -> None:
        super().__init__(cause, fix)
        self.status = status
        self.message = message


def dynamic_client(client: Client) -> DynamicClient:
    """A DynamicClient for `client` (returned as is if it already is one).

    Its discovery cache goes to a folder private to this process: the default, one shared file
    per server address in /tmp, outlives short-lived local apiservers and can describe another.
    """
    global _discovery_dir
    if isinstance(client, DynamicClient):
        return client
    if _discovery_dir is None:
        _discovery_dir = tempfile.TemporaryDirectory(prefix="mms-discovery-")
    name = hashlib.sha256(client.configuration.host.encode()).hexdigest()[:16]
    return DynamicClient(client, cache_file=f"{_discovery_dir.name}/{name}.json")


def not_found(exc: BaseException) -> bool:
    """True when the API server answered 404: the object (or its namespace, or its kind) is not there."""
    return isinstance(exc, ApiException) and exc.status == 404


def api_message(exc: ApiException) -> str:
    """The apiserver's own sentence from an error (its Status `message`), else the HTTP reason."""
    try:
        return json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(exc.body or exc.reason)


SYSTEM_NAMESPACES = ("kubeflow", "knative-serving", "istio-system", "kfserving-system", "kserve", "kube-system")


def role_with(resource: str, namespace: Optional[str]) -> str:
    """Which role of a Kubeflow cluster grants access to `resource` (plural[.group]) in `namespace`."""
    if namespace is None:
        return _("{resource} are cluster-wide: only a cluster admin (cluster-admin) has them").format(resource=resource)
    if namespace in SYSTEM_NAMESPACES:
        return _("{namespace} is a system namespace: a cluster admin's role, not a learner's").format(namespace=namespace)
    if resource.startswith("trainedmodels"):
        return _("in a profile namespace kubeflow-edit (the Notebook's default-editor) grants trainedmodels only from "
                  "KServe 0.15: before that an admin must bind a role that has them")
    return _("kubeflow-edit in {namespace}: the Profile's default-editor service account (a Notebook's) has it").format(
               namespace=namespace)


def forbidden(exc: ApiException, verb: str, resource: str, namespace: Optional[str] = None) -> SetupError:
    """A 403 (or 401) as a SetupError: what was refused, and which role has it."""
    if exc.status == 401:
        cause = (_("the API server did not accept your credentials ({verb} {resource} in namespace {namespace}: "
                   "401)").format(verb=verb, resource=resource, namespace=namespace) if namespace else
                 _("the API server did not accept your credentials ({verb} {resource}: 401)").format(
                     verb=verb, resource=resource))
        return SetupError(cause, _("renew the kubeconfig's token, or restart the local stack"))
    refused = api_message(exc)
    cause = (_("you may not {verb} {resource} in namespace {namespace} (403: {api_message})").format(
                 verb=verb, resource=resource, namespace=namespace, api_message=refused) if namespace else
             _("you may not {verb} {resource} (403: {api_message})").format(
                 verb=verb, resource=resource, api_message=refused))
    return SetupError(cause,
                      _("{role}; ask your cluster's admin (00_cluster_prep prints what to hand them)").format(
                          role=role_with(resource, namespace)))


def describe(manifest: Mapping[str, Any]) -> str:
    """`Kind namespace/name` (or `Kind name`), for messages."""
    meta = manifest.get("metadata", {})
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{manifest.get('kind', '?')} {where}{meta.get('name', '?')}"


def _rejected(exc: ApiException, manifest: Mapping[str, Any], resource: Resource, verb: str) -> ManifestRejected:
    message = api_message(exc)
    what = describe(manifest)
    namespace = manifest.get("metadata", {}).get("namespace")
    if exc.status == 422:
        fix = _("correct the manifest: the message names the field and what is wrong with it")
    elif exc.status == 403:
        qualified = f"{resource.name}.{resource.group}" if resource.group else resource.name
        fix = _("you may not {verb} {resource}: {role}; ask your cluster's admin").format(
            verb=verb, resource=qualified, role=role_with(qualified, namespace))
    elif exc.status == 401:
        fix = _("the apiserver refused your credentials: renew the kubeconfig's token (or restart the local stack)")
    else:
        fix = _("read the apiserver's message above")
    return ManifestRejected(_("the apiserver rejected {what} ({status} {reason}): {message}").format(
                                what=what, status=exc.status, reason=exc.reason, message=message),
                            fix, exc.status, message)


def _resource(dyn: DynamicClient, manifest: Mapping[str, Any]) -> Resource:
    api_version, kind = manifest.get("apiVersion"), manifest.get("kind")
    if not api_version or not kind:
        raise SetupError(_("manifest {manifest} has no apiVersion or kind").format(manifest=describe(manifest)),
                         _("add both to the manifest"))
    try:
        return dyn.resources.get(api_version=api_version, kind=kind)
    except ResourceNotFoundError:
        raise SetupError(
            _("the cluster does not serve {kind} in {api_version}").format(kind=kind, api_version=api_version),
            _("install what defines it (the KServe/KFServing or Kubeflow CRDs), or check the apiVersion: KFServing 0.5/0.6 "
              "uses serving.kubeflow.org, KServe serving.kserve.io"),
        ) from None


def _patch_body(manifest: Mapping[str, Any]) -> dict:
    body = dict(manifest)
    body["metadata"] = {k: v for k, v in manifest["metadata"].items() if k not in SERVER_FIELDS}
    return body


def _patch(dyn: DynamicClient, resource: Resource, body: dict, name: str, namespace: Optional[str]) -> Any:
    # Built-in groups are the core group, dotless ones (apps) and *.k8s.io; custom resources have no
    # strategic merge. A few CRDs live under *.k8s.io (gateway.networking.k8s.io): they answer 415.
    group = resource.group or ""
    if not group or "." not in group or group.endswith(".k8s.io"):
        try:
            return dyn.patch(resource, body=body, name=name, namespace=namespace, content_type=STRATEGIC_MERGE_PATCH)
        except ApiException as exc:
            if exc.status != 415:
                raise
    return dyn.patch(resource, body=body, name=name, namespace=namespace, content_type=MERGE_PATCH)


def _waiting_for_service_account(exc: ApiException) -> bool:
    # Right after a namespace is made, the controller manager has not yet created its `default`
    # service account (403) or that account's token (500): the ServiceAccount admission plugin
    # rejects Pods until then.
    return exc.status in (403, 500) and "service account" in api_message(exc).lower()


def _create(dyn: DynamicClient, resource: Resource, body: dict, namespace: Optional[str],
            timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return dyn.create(resource, body=body, namespace=namespace)
        except ApiException as exc:
            if resource.kind != "Pod" or not _waiting_for_service_account(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.25)


def _replace_pod(dyn: DynamicClient, resource: Resource, body: dict, namespace: str) -> Any:
    """Delete the Pod and create it from `body`; if the new one is refused, put the old one back."""
    name = body["metadata"]["name"]
    old = dyn.get(resource, name=name, namespace=namespace).to_dict()
    dyn.delete(resource, name=name, namespace=namespace, body={"gracePeriodSeconds": 0})

    def gone() -> bool:
        try:
            return dyn.get(resource, name=name, namespace=namespace).metadata.uid != old["metadata"]["uid"]
        except ApiException as exc:
            if not_found(exc):
                return True
            raise

    poll_until(gone, _("{what} to be deleted before it is created again").format(what=describe(body)), timeout=60)
    try:
        return _create(dyn, resource, body, namespace)
    except ApiException:
        old.pop("status", None)
        _create(dyn, resource, _patch_body(old), namespace)
        raise


def _wait_established(dyn: DynamicClient, resource: Resource, name: str, timeout: float = 60.0) -> Any:
    """Wait until a CRD is Established (its API is served); a NamesAccepted=False ends the wait."""
    def conditions() -> dict:
        stored = dyn.get(resource, name=name).to_dict()
        return {c["type"]: c for c in (stored.get("status") or {}).get("conditions") or []}

    def rejected_names() -> Optional[str]:
        names = conditions().get("NamesAccepted")
        if names and names.get("status") == "False":
            return _("its names were not accepted: {message}").format(message=names.get('message', ''))
        return None

    try:
        poll_until(lambda: conditions().get("Established", {}).get("status") == "True",
                   _("CustomResourceDefinition {name} to be Established").format(name=name), timeout=timeout,
                   give_up=rejected_names)
    except WaitTimeout as exc:
        raise SetupError(str(exc), _("`kubectl get crd {name} -o yaml` shows its conditions").format(name=name)) from None
    return dyn.get(resource, name=name)


def apply(client: Client, manifest: Mapping[str, Any], namespace: Optional[str] = None) -> dict:
    """Create or update one object from its manifest and return it as stored.

    `namespace` is used when a namespaced manifest names none (else `default`, as kubectl does).
    A CustomResourceDefinition is returned once it is Established. Raises `ManifestRejected`
    when the apiserver refuses the manifest (422 invalid, 403 forbidden, ...).
    """
    dyn = dynamic_client(client)
    resource = _resource(dyn, manifest)
    body = json.loads(json.dumps(manifest))  # a private, JSON-clean copy
    body.setdefault("metadata", {})
    name = body["metadata"].get("name")
    if not name:
        raise SetupError(_("a {kind} manifest has no metadata.name").format(kind=body.get('kind')),
                         _("name the object in its manifest"))
    ns: Optional[str] = None
    if resource.namespaced:
        ns = body["metadata"].get("namespace") or namespace or "default"
        body["metadata"]["namespace"] = ns
    else:
        body["metadata"].pop("namespace", None)

    verb = "create"
    try:
        try:
            stored = _create(dyn, resource, body, ns)
        except ApiException as exc:
            if exc.status != 409:
                raise
            verb = "patch"
            try:
                stored = _patch(dyn, resource, _patch_body(body), name, ns)
            except ApiException as patch_exc:
                if patch_exc.status != 422 or resource.kind != "Pod":
                    raise
                verb = "delete"
                stored = _replace_pod(dyn, resource, body, ns)
    except ApiException as exc:
        raise _rejected(exc, body, resource, verb) from exc

    if resource.group == "apiextensions.k8s.io" and resource.kind == "CustomResourceDefinition":
        stored = _wait_established(dyn, resource, name)
    return stored.to_dict()


def apply_all(client: Client, manifests: Iterable[Mapping[str, Any]], namespace: Optional[str] = None) -> list[dict]:
    """`apply` each manifest in order (namespaces and CRDs before what lives in them); returns them as stored."""
    dyn = dynamic_client(client)
    return [apply(dyn, manifest, namespace) for manifest in manifests]


# --- kubectl get -----------------------------------------------------------------------------
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def _age(stamp: str, now: Optional[datetime] = None) -> str:
    """`2m5s`-style age of an RFC 3339 time, as kubectl prints it (largest two units, then one)."""
    try:
        began = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - began).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if days < 2:
        return f"{hours}h"
    return f"{days}d"


def table(api: client.ApiClient, path: str, resource: str, namespace: Optional[str] = None) -> str:
    """What `kubectl get` prints for a list path (e.g. `/apis/<group>/<v>/namespaces/<ns>/<plural>`):
    the API server's own Table, its priority-0 columns, dates as ages."""
    try:
        if hasattr(api, "param_serialize"):  # the client's generator changed its call API in v34
            answer = api.call_api(*api.param_serialize("GET", path, header_params={"Accept": TABLE},
                                                       auth_settings=["BearerToken"]))
            answer.read()
            if not 200 <= answer.status < 300:
                raise ApiException(http_resp=answer)
        else:
            answer = api.call_api(path, "GET", header_params={"Accept": TABLE}, auth_settings=["BearerToken"],
                                  _preload_content=False, _return_http_data_only=True)
    except ApiException as exc:
        if exc.status in (401, 403):
            raise forbidden(exc, "list", resource, namespace) from None
        raise
    found = json.loads(answer.data)
    shown = [i for i, c in enumerate(found.get("columnDefinitions") or []) if not c.get("priority")]
    columns = [found["columnDefinitions"][i] for i in shown]
    rows = [[("" if row["cells"][i] is None else _age(row["cells"][i]) if c.get("type") == "date" else
              str(row["cells"][i])) for i, c in zip(shown, columns)] for row in found.get("rows") or []]
    if not rows:
        return f"No resources found in {namespace} namespace." if namespace else "No resources found"
    header = [c["name"].upper() for c in columns]
    widths = [max(len(x) for x in column) for column in zip(header, *rows)]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *rows])


# --- Service addresses and namespaces ---------------------------------------------------------
def _split_service_host(host: str, default_namespace: str) -> Optional[tuple[str, str]]:
    """`name`, `name.ns`, `name.ns.svc[.cluster.local]` -> (namespace, name); None for IPs and other hosts."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if host == "localhost":
        return None
    parts = host.split(".")
    if len(parts) == 1:
        return default_namespace, parts[0]
    if len(parts) == 2 or parts[2:] in (["svc"], ["svc", "cluster", "local"]):
        return parts[1], parts[0]
    return None


def _services_on_the_way(api: client.ApiClient, address: str, namespace: str, hops: int,
                         **call: Any) -> Iterator[tuple[Any, str]]:
    """Each Service a pod's DNS lookup of `address` (`host:port`) passes, with the port: ExternalName
    Services followed to their target, at most `hops` of them. Ends at a host that names no Service,
    or one this identity may not read (403) or that does not exist (404). `call`: e.g. `_request_timeout`."""
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
    for _ in range(hops):
        found = _split_service_host(host, namespace)
        if not found:
            return
        namespace, name = found
        try:
            svc = client.CoreV1Api(api).read_namespaced_service(name, namespace, **call)
        except ApiException as exc:
            if exc.status in (403, 404):
                return
            raise
        yield svc, port
        if not (svc.spec.type == "ExternalName" and svc.spec.external_name):
            return
        host = svc.spec.external_name


def resolve_address(api: client.ApiClient, address: str, namespace: str = "default", hops: int = 5) -> str:
    """Follow a Service address (`host:port`) the way cluster DNS would, for the local target.

    ExternalName services are followed to their target; a Service that the local stack annotates
    with the loopback address of the process behind it resolves to that address. Anything else
    (an IP, a public name, a Service without the annotation) is returned unchanged, so on a real
    cluster this is the identity and DNS does the work.
    """
    for svc, _port in _services_on_the_way(api, address, namespace, hops):
        local = (svc.metadata.annotations or {}).get(LOCAL_ADDRESS_ANNOTATION)
        if local:
            return local
    return address


def cluster_ip_address(api: client.ApiClient, address: str, namespace: str = "default", hops: int = 5) -> str:
    """`host:port` -> `<cluster IP>:port` of the Service it names (ExternalName ones followed), as a pod's
    DNS answers it; unchanged where no Service with a cluster IP is found. Each read is bounded to 5 s."""
    for svc, port in _services_on_the_way(api, address, namespace, hops, _request_timeout=5):
        ip = svc.spec.cluster_ip
        if svc.spec.type != "ExternalName" and ip and ip != "None":
            return f"{ip}:{port}" if port else ip
    return address


def resolve_url(api: client.ApiClient, url: str, namespace: str = "default") -> str:
    """`resolve_address` for a URL: `http://svc.ns.svc.cluster.local/v2` -> `http://127.0.0.1:PORT/v2` locally."""
    parts = urlsplit(url)
    default_port = 443 if parts.scheme == "https" else 80
    netloc = parts.netloc if parts.port else f"{parts.hostname}:{default_port}"
    resolved = resolve_address(api, netloc, namespace)
    if resolved == netloc:
        return url
    return urlunsplit((parts.scheme, resolved, parts.path, parts.query, parts.fragment))


def _namespace(core: client.CoreV1Api, name: str) -> Optional[client.V1Namespace]:
    """The namespace, or None if it does not exist. A learner may not read Namespace objects
    (cluster-scoped); their own namespace then shows through what they may list inside it: its
    `default` service account, which every live namespace has."""
    try:
        return core.read_namespace(name)
    except ApiException as exc:
        if not_found(exc):
            return None
        if exc.status not in (401, 403):
            raise
    try:
        accounts = core.list_namespaced_service_account(name).items
    except ApiException as exc:
        if exc.status in (401, 403):
            raise forbidden(exc, "list", "serviceaccounts", name) from None
        raise
    if not any(a.metadata.name == "default" for a in accounts):
        return None
    return client.V1Namespace(metadata=client.V1ObjectMeta(name=name), status=client.V1NamespaceStatus(phase="Active"))


def wait_namespace(api: client.ApiClient, name: str, timeout: float = 60.0) -> client.V1Namespace:
    """Wait until namespace `name` exists and is Active (a Profile's controller makes it), and return it.

    Explained in 00_cluster_prep. Raises SetupError naming the fix when it does not appear.
    """
    core = client.CoreV1Api(api)

    def active() -> Optional[client.V1Namespace]:
        found = _namespace(core, name)
        return found if found and found.status and found.status.phase == "Active" else None

    try:
        return poll_until(active, _("namespace {name} to be Active").format(name=name), timeout=timeout, interval=0.5)
    except WaitTimeout as exc:
        raise SetupError(str(exc), _("`kubectl get profile {name} -o yaml` shows the profile controller's conditions; on the "
                                     "local target `python -m helpers.local logs controller`").format(name=name)) from None


def require_namespace(api: client.ApiClient, name: str, notebook: str = "00_cluster_prep") -> client.V1Namespace:
    """The namespace if it exists; else SetupError saying which notebook makes it (01_minio onwards)."""
    found = _namespace(client.CoreV1Api(api), name)
    if found is None:
        raise SetupError(_("namespace {name} does not exist").format(name=name),
                         _("run {notebook} first, with the same settings").format(notebook=notebook))
    return found


def triton_predictor(isvc: Optional[Mapping[str, Any]]) -> Optional[dict]:
    """The Triton part of an InferenceService's predictor as stored: `predictor.triton` (KFServing,
    or KServe before its defaulter ran), else `predictor.model` with `modelFormat.name: triton`
    (what KServe 0.10+ stores, inference_service_defaults.go `assignTritonRuntime`); None if neither."""
    predictor = ((isvc or {}).get("spec") or {}).get("predictor") or {}
    if isinstance(predictor.get("triton"), dict):
        return predictor["triton"]
    model = predictor.get("model")
    if isinstance(model, dict) and ((model.get("modelFormat") or {}).get("name") or "").lower() == "triton":
        return model
    return None


def predictor_path(isvc: Optional[Mapping[str, Any]]) -> str:
    """Where the Triton predictor is stored, for messages: `spec.predictor.triton` or `spec.predictor.model`."""
    predictor = ((isvc or {}).get("spec") or {}).get("predictor") or {}
    return "spec.predictor.model" if "triton" not in predictor and "model" in predictor else "spec.predictor.triton"
