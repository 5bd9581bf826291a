"""Thin, typed access to the objects the local controller reads and writes."""
from __future__ import annotations

import logging
from typing import Any, Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ...constants import PROFILE_GROUP, PROFILE_PLURAL, PROFILE_VERSION

log = logging.getLogger("controller")


REQUEST_TIMEOUT = (3.0, 15.0)  # (connect, read) seconds of every API call that names none


def connect(kubeconfig: str, timeout: tuple[float, float] = REQUEST_TIMEOUT) -> client.ApiClient:
    """An ApiClient for the controller: bounded calls, and no sleeping on `Retry-After`.

    The kubernetes client waits for ever by default, and urllib3 under it sleeps as long as a
    429/503 answer's `Retry-After` says, several times over. A restarted apiserver answers just
    so while it starts; the controller then sat out ~10 s with its watches and passes asleep.
    Here such an answer fails the call at once and the controller's own loops retry (passes every
    second, watches every 0.1-1 s); connection errors are still retried by urllib3.
    """
    import urllib3
    from kubernetes import config as kconfig

    configuration = client.Configuration()
    kconfig.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.retries = urllib3.Retry(total=3, read=0, status=0, respect_retry_after_header=False)
    api = client.ApiClient(configuration)
    request = api.rest_client.request

    def with_timeout(*args, **kwargs):
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = timeout
        return request(*args, **kwargs)

    api.rest_client.request = with_timeout
    return api


class Kube:
    """The apiserver, as the controller uses it."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.rbac = client.RbacAuthorizationV1Api(api)

    def list_custom(self, group: str, version: str, plural: str) -> list[dict]:
        """All objects of a custom resource; [] when its CRD is not installed."""
        try:
            return self.custom.list_cluster_custom_object(group, version, plural)["items"]
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise

    def patch_status(self, group: str, version: str, plural: str, obj: dict, status: dict) -> None:
        """Replace `.status` of a custom object through the status subresource."""
        meta = obj["metadata"]
        body = {"status": status}
        try:
            if meta.get("namespace"):
                self.custom.patch_namespaced_custom_object_status(
                    group, version, meta["namespace"], plural, meta["name"], body)
            else:
                self.custom.patch_cluster_custom_object_status(group, version, plural, meta["name"], body)
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile
                raise

    def list_profiles(self) -> list[dict]:
        return self.list_custom(PROFILE_GROUP, PROFILE_VERSION, PROFILE_PLURAL)

    def read(self, fn: Any, *args: Any) -> Optional[Any]:
        """Call a read_* method; None on 404."""
        try:
            return fn(*args)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def ensure(self, create: Any, read: Any, name: str, body: Any, namespace: Optional[str] = None) -> bool:
        """Create an object unless it exists. Returns True if it was created."""
        args = (name, namespace) if namespace else (name,)
        if self.read(read, *args) is not None:
            return False
        try:
            create(namespace, body) if namespace else create(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            return False
        return True


def owner_reference(obj: dict, controller: bool = True) -> dict:
    """An ownerReference to `obj`, so the garbage collector removes what the controller made."""
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": controller, "blockOwnerDeletion": True}
