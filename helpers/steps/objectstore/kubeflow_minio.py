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

    def __repr__(self) -> str:
        return f"MinioCredentials(pod={self.pod!r}, source={self.source!r}, values=<hidden>)"


@dataclass(frozen=True)
class MinioService:
    name: str
    namespace: str
    port: int

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
                                    f"Secret {namespace}/{ref.name} (accesskey, secretkey), which pod "
                                    f"{pod.metadata.name} takes with envFrom")
    return None


def _from_pipelines_secret(api: client.ApiClient, own_namespace: str) -> MinioCredentials:
    """MinIO's keys from the copy Kubeflow Pipelines puts in a profile namespace (`accesskey`, `secretkey`)."""
    secret = client.CoreV1Api(api).read_namespaced_secret(PIPELINES_SECRET, own_namespace)
    data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    return MinioCredentials(data["accesskey"], data["secretkey"], "",
                            f"Secret {own_namespace}/{PIPELINES_SECRET} (accesskey, secretkey)")


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
        raise SetupError(f"no pod labelled {MINIO_LABEL} or {SEAWEEDFS_LABEL} in namespace {namespace}",
                         f"check that Kubeflow's object store runs: `kubectl get pods -l {MINIO_LABEL} -n {namespace}`")
    pod = pods[0]
    env = {e.name: e for e in pod.spec.containers[0].env or []}
    found = {}
    for role, names in (("access", ACCESS_KEY_ENV), ("secret", SECRET_KEY_ENV)):
        name = next((n for n in names if n in env), None)
        value = _env_value(api, namespace, env[name]) if name else None
        if not value:
            raise SetupError(f"pod {namespace}/{pod.metadata.name} has no {' or '.join(names)} in its env",
                             "find MinIO's keys in its deployment (`kubectl describe deploy minio -n kubeflow`)")
        found[role] = (name, value)
    return MinioCredentials(found["access"][1], found["secret"][1], pod.metadata.name,
                            f"env of pod {namespace}/{pod.metadata.name} "
                            f"({found['access'][0]}, {found['secret'][0]})")


def minio_service(api: client.ApiClient, namespace: str = KUBEFLOW_NAMESPACE) -> MinioService:
    """MinIO's Service: the one labelled `app=minio` (the guide: `kubectl get svc -l app=minio`), else
    `minio-service` by name (Kubeflow 1.7+ dropped that label from it)."""
    core = client.CoreV1Api(api)
    try:
        services = core.list_namespaced_service(namespace, label_selector=MINIO_LABEL).items
        if not services:
            services = [s for s in core.list_namespaced_service(namespace).items if s.metadata.name == MINIO_SERVICE]
    except ApiException as exc:
        if exc.status in (401, 403):  # a learner: Kubeflow's own name and port, as the guide has them
            return MinioService(MINIO_SERVICE, namespace, MINIO_PORT)
        raise
    if not services:
        raise SetupError(f"no Service labelled {MINIO_LABEL} or named {MINIO_SERVICE} in namespace {namespace}",
                         f"check Kubeflow's MinIO: `kubectl get svc -n {namespace}`")
    svc = services[0]
    port = next((p.port for p in svc.spec.ports or [] if p.port), MINIO_PORT)
    return MinioService(svc.metadata.name, namespace, int(port))


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
            raise SetupError(f"the S3 Secret {secret_name!r} is not in namespace {namespace}",
                             "run 01_minio first (with the same namespace and API group)") from None
        if exc.status in (401, 403):
            raise forbidden(exc, "get", "secrets", namespace) from None
        raise
    notes = secret.metadata.annotations or {}
    address = notes.get(group.s3_endpoint)
    if not address:
        raise SetupError(f"Secret {namespace}/{secret_name} has no {group.s3_endpoint} annotation",
                         f"run 01_minio again with api_group={group.group!r}")
    data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    if not data.get("AWS_ACCESS_KEY_ID") or not data.get("AWS_SECRET_ACCESS_KEY"):
        raise SetupError(f"Secret {namespace}/{secret_name} lacks AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY",
                         "run 01_minio again")
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
            raise SetupError(f"service account {account!r} is not in namespace {ctx.namespace}",
                             "run 01_minio first (with the same namespace)") from None
        raise
    if secret_name not in [ref.name for ref in sa.secrets or []]:
        raise SetupError(f"service account {account!r} does not list Secret {secret_name!r}",
                         "run 01_minio again: it applies both")
    return (f"service account {ctx.namespace}/{account} with S3 Secret {secret_name} "
            f"(endpoint {settings_.endpoint}) is there")
