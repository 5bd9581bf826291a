"""Where MinIO is and which keys open it, found the way the guide finds them.

Explained in 01_minio. `minio_credentials` reads the keys from the `minio` pod's env in
`kubeflow` (the guide's `kubectl get pods -l app=minio -o jsonpath=...env`), `minio_service`
finds `minio-service` (`kubectl get svc -l app=minio`). Notebooks 03/04 read the S3 Secret
that 01 applied in the learner's namespace instead (`from_secret`): a Kubeflow user may read
their own namespace, not `kubeflow`, and a missing Secret says "run 01_minio first".

On Kubeflow 1.11 there is no MinIO: SeaweedFS answers behind `minio-service`, its pod takes the
admin's keys from Secret `mlpipeline-minio-artifact` (`envFrom`), and every profile namespace gets
a key of its own that may only touch `mlpipeline/{artifacts, private-artifacts/<ns>, private/<ns>,
shared}/` (Kubeflow Pipelines' sync.py). `own_location` tells such a key apart (it may not even
ask whether bucket `mlpipeline` exists, but may list its own folder) and names the folder the
walkthrough then uses instead of a bucket of its own.

Values are never printed: `MinioCredentials` and `S3Settings` hide them in their repr.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from minio import Minio

from helpers.clients.k8s import forbidden, not_found
from helpers.clients.storage import S3Settings, connect
from helpers.clients.target import Target
from helpers.core.constants import KUBEFLOW_NAMESPACE, MINIO_LABEL, MINIO_PORT, MINIO_SERVICE, ApiGroup
from helpers.core.errors import SetupError
from helpers.core.i18n import _

# Env names of the keys: MinIO releases Kubeflow shipped, then newer ones.
ACCESS_KEY_ENV = ("MINIO_ACCESS_KEY", "MINIO_ROOT_USER")
SECRET_KEY_ENV = ("MINIO_SECRET_KEY", "MINIO_ROOT_PASSWORD")


@dataclass(frozen=True)
class MinioCredentials:
    """MinIO's keys and where they were read; the values never show in a repr."""

    access_key: str
    secret_key: str
    pod: str
    source: str  # e.g. "env of pod kubeflow/minio-abc (MINIO_ACCESS_KEY, MINIO_SECRET_KEY)"
    # How they were read: "pod-env" (the guide's way), "pod-env-ref" (the env points at a Secret),
    # "env-from" (SeaweedFS), "pipelines-secret" (the learner's own namespace).
    how: str = ""
    secret: str = ""  # the Secret read, as namespace/name ("" for values in the pod's env)
    keys: tuple[str, str] = ("accesskey", "secretkey")  # the Secret's keys (or the pod's env names) that hold them

    def __repr__(self) -> str:
        return f"MinioCredentials(pod={self.pod!r}, source={self.source!r}, values=<hidden>)"


@dataclass(frozen=True)
class MinioService:
    name: str
    namespace: str
    port: int
    # How it was found: "label" (the guide's `-l app=minio`), "name" (Kubeflow 1.7+ dropped the label),
    # "assumed" (not allowed to list Services there: Kubeflow's own name and port).
    found: str = "label"

    @property
    def address(self) -> str:
        """`minio-service.kubeflow:9000`: how pods in other namespaces name it (the guide's s3-endpoint)."""
        return f"{self.name}.{self.namespace}:{self.port}"


def _env_value(api: client.ApiClient, namespace: str, env: Any) -> Optional[str]:
    if env.value is not None:
        return env.value
    ref = env.value_from.secret_key_ref if env.value_from else None
    if ref is None:
        return None
    secret = client.CoreV1Api(api).read_namespaced_secret(ref.name, namespace)
    raw = (secret.data or {}).get(ref.key)
    return base64.b64decode(raw).decode() if raw else None


PIPELINES_SECRET = "mlpipeline-minio-artifact"  # Kubeflow Pipelines copies it into every profile namespace
SEAWEEDFS_LABEL = "app=seaweedfs"  # Kubeflow 1.11's object store, behind minio-service
PIPELINES_BUCKET = "mlpipeline"


def _from_env_from(api: client.ApiClient, namespace: str, pod: Any) -> Optional[MinioCredentials]:
    """The keys a pod takes with `envFrom: secretRef` (SeaweedFS: `accesskey`, `secretkey`), else None."""
    for source in pod.spec.containers[0].env_from or []:
        ref = source.secret_ref
        if ref is None:
            continue
        secret = client.CoreV1Api(api).read_namespaced_secret(ref.name, namespace)
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        if data.get("accesskey") and data.get("secretkey"):
            return MinioCredentials(data["accesskey"], data["secretkey"], pod.metadata.name,
                                    _("Secret {secret} (accesskey, secretkey), which pod {pod} takes with "
                                      "envFrom").format(secret=f"{namespace}/{ref.name}", pod=pod.metadata.name),
                                    "env-from", f"{namespace}/{ref.name}")
    return None


def _from_pipelines_secret(api: client.ApiClient, own_namespace: str) -> MinioCredentials:
    """MinIO's keys from the copy Kubeflow Pipelines puts in a profile namespace (`accesskey`, `secretkey`)."""
    secret = client.CoreV1Api(api).read_namespaced_secret(PIPELINES_SECRET, own_namespace)
    data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    return MinioCredentials(data["accesskey"], data["secretkey"], "",
                            _("Secret {secret} (accesskey, secretkey)").format(
                                secret=f"{own_namespace}/{PIPELINES_SECRET}"),
                            "pipelines-secret", f"{own_namespace}/{PIPELINES_SECRET}")


def minio_credentials(api: client.ApiClient, namespace: str = KUBEFLOW_NAMESPACE,
                      own_namespace: str = "") -> MinioCredentials:
    """The access and secret key from the env of the first `app=minio` pod (as the guide reads them).

    A learner may not read pods in `kubeflow`; then, given `own_namespace`, the keys come from the
    copy Kubeflow Pipelines keeps there (Kubeflow 1.3 and 1.10 alike).
    """
    core = client.CoreV1Api(api)
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=MINIO_LABEL).items
    except ApiException as exc:
        if exc.status in (401, 403):
            if own_namespace:
                try:
                    return _from_pipelines_secret(api, own_namespace)
                except (ApiException, KeyError):
                    pass
            raise forbidden(exc, "list", "pods", namespace) from None
        raise
    if not pods:  # Kubeflow 1.11: SeaweedFS, its keys through envFrom
        for pod in core.list_namespaced_pod(namespace, label_selector=SEAWEEDFS_LABEL).items:
            found = _from_env_from(api, namespace, pod)
            if found:
                return found
        raise SetupError(_("no pod labelled {label} or {other} in namespace {namespace}").format(
                             label=MINIO_LABEL, other=SEAWEEDFS_LABEL, namespace=namespace),
                         _("check that Kubeflow's object store runs: `{command}`").format(
                             command=f"kubectl get pods -l {MINIO_LABEL} -n {namespace}"))
    pod = pods[0]
    env = {e.name: e for e in pod.spec.containers[0].env or []}
    found, refs = {}, []
    for role, names in (("access", ACCESS_KEY_ENV), ("secret", SECRET_KEY_ENV)):
        name = next((n for n in names if n in env), None)
        value = _env_value(api, namespace, env[name]) if name else None
        if not value:
            raise SetupError(_("pod {pod} has no {names} in its env").format(
                                 pod=f"{namespace}/{pod.metadata.name}", names=" / ".join(names)),
                             _("find MinIO's keys in its deployment (`kubectl describe deploy minio -n kubeflow`)"))
        found[role] = (name, value)
        ref = env[name].value_from.secret_key_ref if env[name].value_from else None
        refs += [(f"{namespace}/{ref.name}", ref.key)] if ref is not None else []
    return MinioCredentials(found["access"][1], found["secret"][1], pod.metadata.name,
                            _("env of pod {pod} ({access}, {secret})").format(
                                pod=f"{namespace}/{pod.metadata.name}", access=found["access"][0],
                                secret=found["secret"][0]),
                            "pod-env-ref" if refs else "pod-env", refs[0][0] if refs else "",
                            tuple(key for _ref, key in refs) if len(refs) == 2 else
                            (found["access"][0], found["secret"][0]))


def credentials_commands(creds: MinioCredentials) -> tuple[str, str]:
    """The shell lines that read the keys the way `minio_credentials` did, and why they differ from the
    guide's ("" when they are the guide's own). Keys read from a Secret go into the shell variables
    MINIO_ACCESS_KEY and MINIO_SECRET_KEY, never onto the screen."""
    guide = f"kubectl get pods -l {MINIO_LABEL} -o jsonpath={{.items[0].spec.containers[0].env}} -n {KUBEFLOW_NAMESPACE}"
    if creds.how == "pod-env":  # the guide's line, then the same values into variables for mc (section 5)
        lines = [guide] + [
            f"{var}=$(kubectl get pods -l {MINIO_LABEL} -n {KUBEFLOW_NAMESPACE} -o jsonpath="
            f"'{{.items[0].spec.containers[0].env[?(@.name==\"{name}\")].value}}')"
            for var, name in (("MINIO_ACCESS_KEY", creds.keys[0]), ("MINIO_SECRET_KEY", creds.keys[1]))]
        return "\n".join(lines), _("the same keys also into the shell variables MINIO_ACCESS_KEY and "
                                    "MINIO_SECRET_KEY, for mc")
    namespace, _slash, name = creds.secret.partition("/")
    lines = [f"MINIO_ACCESS_KEY=$(kubectl get secret {name} -n {namespace} -o jsonpath='{{.data.{creds.keys[0]}}}' "
             "| base64 -d)",
             f"MINIO_SECRET_KEY=$(kubectl get secret {name} -n {namespace} -o jsonpath='{{.data.{creds.keys[1]}}}' "
             "| base64 -d)",
             'echo "access key: ${#MINIO_ACCESS_KEY} characters, secret key: ${#MINIO_SECRET_KEY} characters"']
    if creds.how == "pipelines-secret":
        why = _("a learner may not list pods in kubeflow (403 Forbidden): the keys come from Kubeflow Pipelines' "
                "copy in your namespace, into shell variables")
        return "\n".join(lines), why
    why = _("the pod's env names a Secret (valueFrom or envFrom) instead of holding the keys: they are read "
            "from that Secret, into shell variables")
    return "\n".join([guide, *lines]), why


def service_commands(service: MinioService) -> tuple[str, str]:
    """The shell line that finds MinIO's Service as `minio_service` did, and why it differs from the guide's."""
    if service.found == "name":
        return (f'kubectl get svc {service.name} -o name -n {service.namespace} | cut -d "/" -f 2',
                _("Kubeflow 1.7+ dropped the label app=minio from the Service: it is found by its name"))
    return f'kubectl get svc -l {MINIO_LABEL} -o name -n {service.namespace} | cut -d "/" -f 2', ""


def minio_service(api: client.ApiClient, namespace: str = KUBEFLOW_NAMESPACE) -> MinioService:
    """MinIO's Service: the one labelled `app=minio` (the guide: `kubectl get svc -l app=minio`), else
    `minio-service` by name (Kubeflow 1.7+ dropped that label from it)."""
    core = client.CoreV1Api(api)
    try:
        services = core.list_namespaced_service(namespace, label_selector=MINIO_LABEL).items
        found = "label"
        if not services:
            services = [s for s in core.list_namespaced_service(namespace).items if s.metadata.name == MINIO_SERVICE]
            found = "name"
    except ApiException as exc:
        if exc.status in (401, 403):  # a learner: Kubeflow's own name and port, as the guide has them
            return MinioService(MINIO_SERVICE, namespace, MINIO_PORT, "assumed")
        raise
    if not services:
        raise SetupError(_("no Service labelled {label} or named {name} in namespace {namespace}").format(
                             label=MINIO_LABEL, name=MINIO_SERVICE, namespace=namespace),
                         _("check Kubeflow's MinIO: `{command}`").format(command=f"kubectl get svc -n {namespace}"))
    svc = services[0]
    port = next((p.port for p in svc.spec.ports or [] if p.port), MINIO_PORT)
    return MinioService(svc.metadata.name, namespace, int(port), found)


def own_location(s3: Minio, namespace: str) -> Optional[str]:
    """`mlpipeline/private/<namespace>` when the key may only use its namespace's folders of the
    Pipelines bucket (Kubeflow 1.11's per-namespace SeaweedFS key); None for a key that may use
    whole buckets (MinIO's shared key, an admin's)."""
    from minio.error import S3Error

    try:
        s3.bucket_exists(PIPELINES_BUCKET)
        return None  # it may ask about the whole bucket: not limited to prefixes
    except S3Error as exc:
        if exc.code != "AccessDenied":
            return None
    except Exception:  # noqa: BLE001 - unreachable, or not S3 as expected: keep the guide's bucket
        return None
    folder = f"private/{namespace}"
    try:
        list(s3.list_objects(PIPELINES_BUCKET, prefix=folder + "/"))
    except Exception:  # noqa: BLE001 - not even its own folder: nothing better to offer
        return None
    return f"{PIPELINES_BUCKET}/{folder}"


def default_location(api: client.ApiClient, place: Target, namespace: str) -> Optional[str]:
    """The folder a learner's key is limited to, found with the keys 01_minio reads (`own_location`);
    None where the guide's bucket of its own works, or when it cannot tell."""
    try:
        creds = minio_credentials(api, own_namespace=namespace)
        s3 = connect(settings(api, place, creds, minio_service(api).address), retries=0)
    except Exception:  # noqa: BLE001 - 01_minio reports these with their fixes
        return None
    return own_location(s3, namespace)


def settings(api: client.ApiClient, place: Target, creds: MinioCredentials, address: str,
             namespace: str = KUBEFLOW_NAMESPACE) -> S3Settings:
    """S3Settings for the keys and the address as this process reaches it; plain http, as in the guide."""
    return S3Settings(place.service_address(api, address, namespace), creds.access_key, creds.secret_key)


def from_secret(api: client.ApiClient, place: Target, group: ApiGroup, namespace: str,
                secret_name: str) -> S3Settings:
    """S3Settings from the Secret 01_minio applied (keys + the group's s3-endpoint annotation)."""
    try:
        secret = client.CoreV1Api(api).read_namespaced_secret(secret_name, namespace)
    except ApiException as exc:
        if not_found(exc):
            raise SetupError(_("the S3 Secret {secret} is not in namespace {namespace}").format(
                                 secret=repr(secret_name), namespace=namespace),
                             _("run 01_minio first (with the same namespace and API group)")) from None
        if exc.status in (401, 403):
            raise forbidden(exc, "get", "secrets", namespace) from None
        raise
    notes = secret.metadata.annotations or {}
    address = notes.get(group.s3_endpoint)
    if not address:
        raise SetupError(_("Secret {secret} has no {annotation} annotation").format(
                             secret=f"{namespace}/{secret_name}", annotation=group.s3_endpoint),
                         _("run 01_minio again with api_group={group}").format(group=repr(group.group)))
    data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    if not data.get("AWS_ACCESS_KEY_ID") or not data.get("AWS_SECRET_ACCESS_KEY"):
        raise SetupError(_("Secret {secret} lacks AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY").format(
                             secret=f"{namespace}/{secret_name}"), _("run 01_minio again"))
    secure = notes.get(group.s3_usehttps, "1") != "0"  # KServe's builder: https unless "0"
    return S3Settings(place.service_address(api, address, namespace), data["AWS_ACCESS_KEY_ID"],
                      data["AWS_SECRET_ACCESS_KEY"], secure=secure, region=notes.get(group.s3_region) or "us-east-1")


def client_for(ctx: Any, secret_name: Optional[str] = None) -> Minio:
    """A minio client for a notebook after 01_minio: from the Secret in the notebook's namespace."""
    from helpers.clients.manifests import DEFAULTS

    return connect(from_secret(ctx.api, ctx.place, ctx.group, ctx.namespace,
                               secret_name or ctx.param("secret_name", DEFAULTS["secret_name"])))


def check_prepared(ctx: Any, secret_name: Optional[str] = None) -> str:
    """SetupError ("run 01_minio first") unless the S3 Secret and its ServiceAccount are in the namespace."""
    from helpers.clients.manifests import DEFAULTS

    secret_name = secret_name or ctx.param("secret_name", DEFAULTS["secret_name"])
    account = ctx.param("service_account", DEFAULTS["service_account"])
    settings_ = from_secret(ctx.api, ctx.place, ctx.group, ctx.namespace, secret_name)
    try:
        sa = client.CoreV1Api(ctx.api).read_namespaced_service_account(account, ctx.namespace)
    except ApiException as exc:
        if not_found(exc):
            raise SetupError(_("service account {account} is not in namespace {namespace}").format(
                                 account=repr(account), namespace=ctx.namespace),
                             _("run 01_minio first (with the same namespace)")) from None
        raise
    if secret_name not in [ref.name for ref in sa.secrets or []]:
        raise SetupError(_("service account {account} does not list Secret {secret}").format(
                             account=repr(account), secret=repr(secret_name)),
                         _("run 01_minio again: it applies both"))
    return _("service account {account} with S3 Secret {secret} (endpoint {endpoint}) is there").format(
        account=f"{ctx.namespace}/{account}", secret=secret_name, endpoint=settings_.endpoint)


def describe_service(service: MinioService) -> str:
    """Where MinIO's Service is, and how it was found, in one or two lines."""
    line = _("Service {name} in {namespace}, port {port}: other namespaces reach it as {address}").format(
        name=service.name, namespace=service.namespace, port=service.port, address=service.address)
    if service.found == "assumed":
        line += "\n" + _("(not allowed to list Services in {namespace}: these are Kubeflow's own name and port, the "
                         "ones the guide's command prints)").format(namespace=service.namespace)
    return line


def describe_alias(namespace: str, service: MinioService, external_name: str, reached: str) -> str:
    return "\n".join([
        _("in {namespace}, {name}:{port} now leads to {target}").format(
            namespace=namespace, name=service.name, port=service.port, target=external_name),
        _("this notebook reaches it at {address}").format(address=reached)])


def describe_bucket(bucket: str, created: bool) -> str:
    if "/" in bucket:
        if created:
            return _("folder {bucket}: created").format(bucket=bucket)
        return _("folder {bucket}: already there").format(bucket=bucket)
    if created:
        return _("bucket {bucket}: created").format(bucket=bucket)
    return _("bucket {bucket}: already there").format(bucket=bucket)
