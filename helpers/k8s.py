"""Kubernetes access for both targets: one `kubernetes`-client code path, only the config differs.

Explained in 00_cluster_prep. On the local target the client uses the stack's kubeconfig; on a
cluster, the in-cluster config inside Kubeflow Notebooks, else the user's kubeconfig.
"""
from __future__ import annotations

import ipaddress
import os
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from kubernetes import client, config as kconfig
from kubernetes.client.exceptions import ApiException

from . import config
from .constants import LOCAL_ADDRESS_ANNOTATION
from .errors import SetupError


def connect(target: Optional[str] = None) -> client.ApiClient:
    """An ApiClient for the chosen target (`local` or `cluster`, see `helpers.config.target`)."""
    if config.target(target) == "local":
        from .local.stack import Stack

        stack = Stack()
        stack.require_running()
        return kconfig.new_client_from_config(config_file=str(stack.kubeconfig))
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        kconfig.load_incluster_config()
        return client.ApiClient()
    try:
        return kconfig.new_client_from_config()
    except kconfig.ConfigException as exc:
        raise SetupError(f"no Kubernetes configuration found ({exc})",
                         "run inside Kubeflow Notebooks, set KUBECONFIG, or use target='local'") from None


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


def resolve_address(api: client.ApiClient, address: str, namespace: str = "default", hops: int = 5) -> str:
    """Follow a Service address (`host:port`) the way cluster DNS would, for the local target.

    ExternalName services are followed to their target; a Service that the local stack annotates
    with the loopback address of the process behind it resolves to that address. Anything else
    (an IP, a public name, a Service without the annotation) is returned unchanged, so on a real
    cluster this is the identity and DNS does the work.
    """
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
    found = _split_service_host(host, namespace)
    if not found or hops == 0:
        return address
    ns, name = found
    try:
        svc = client.CoreV1Api(api).read_namespaced_service(name, ns)
    except ApiException as exc:
        if exc.status in (403, 404):
            return address
        raise
    local = (svc.metadata.annotations or {}).get(LOCAL_ADDRESS_ANNOTATION)
    if local:
        return local
    if svc.spec.type == "ExternalName" and svc.spec.external_name:
        target = f"{svc.spec.external_name}:{port}" if port else svc.spec.external_name
        return resolve_address(api, target, ns, hops - 1)
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


def wait_namespace(api: client.ApiClient, name: str, timeout: float = 60.0) -> client.V1Namespace:
    """Wait until namespace `name` exists and is Active (a Profile's controller makes it), and return it.

    Explained in 00_cluster_prep. Raises SetupError naming the fix when it does not appear.
    """
    from .wait import WaitTimeout, poll_until

    core = client.CoreV1Api(api)

    def active() -> Optional[client.V1Namespace]:
        try:
            found = core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found if found.status and found.status.phase == "Active" else None

    try:
        return poll_until(active, f"namespace {name} to be Active", timeout=timeout, interval=0.5)
    except WaitTimeout as exc:
        raise SetupError(str(exc), f"`kubectl get profile {name} -o yaml` shows the profile controller's "
                                   "conditions; on the local target `python -m helpers.local logs controller`") from None


def require_namespace(api: client.ApiClient, name: str, notebook: str = "00_cluster_prep") -> client.V1Namespace:
    """The namespace if it exists; else SetupError saying which notebook makes it (01_minio onwards)."""
    try:
        return client.CoreV1Api(api).read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            raise SetupError(f"namespace {name} does not exist", f"run {notebook} first, with the same settings") from None
        raise
