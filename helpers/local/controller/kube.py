"""Thin, typed access to the objects the local controller reads and writes."""
from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from datetime import datetime, timezone
from typing import Any, Iterator, Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.clients.k8s import not_found
from helpers.core.constants import PROFILE_GROUP, PROFILE_PLURAL, PROFILE_VERSION

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
    api = _ApiClient(configuration)
    request = api.rest_client.request

    def with_timeout(*args, **kwargs):
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = timeout
        return request(*args, **kwargs)

    api.rest_client.request = with_timeout
    return api


class _ApiClient(client.ApiClient):
    """The kubernetes client, reading the apiserver's timestamps with the standard library.

    The client parses each with dateutil's general parser: a fifth of the controller's time in
    Python went there (py-spy over a walkthrough), as a Pod holds a dozen timestamps and the
    controller reads its Pods every pass. The apiserver writes RFC 3339 (`2026-12-06T04:13:15Z`,
    MicroTime with fractions), which `datetime.fromisoformat` reads (`Z` from Python 3.11 on,
    spelled `+00:00` for 3.10); anything else goes to dateutil as before.
    """

    def _ApiClient__deserialize_datetime(self, string: str) -> datetime:
        try:
            return datetime.fromisoformat(string[:-1] + "+00:00" if string.endswith("Z") else string)
        except (TypeError, ValueError):
            return super()._ApiClient__deserialize_datetime(string)


class Kube:
    """The apiserver, as the controller uses it."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self._events: set[str] = set()  # Events this process knows are recorded: no API call to repeat one
        # What a pass read (see `one_view`): (read method, its arguments) -> the object or None, and the thread.
        self._view: dict[tuple, Any] = {}
        self._view_thread: Optional[threading.Thread] = None

    @contextlib.contextmanager
    def one_view(self) -> Iterator[None]:
        """Within the block, this thread's `read` of an object asks the apiserver once and then answers
        from what it got, until any write by this process (`forget`).

        A pass read the same objects several times over (the server's Pod in `place` and in `sync`, the
        KServe ConfigMap in each check, the model config in each step): 1,950 requests for one
        walkthrough, a fifth of them repeats. KServe's controller reads from its informers' cache, which
        is no fresher than this.
        """
        self._view, self._view_thread = {}, threading.current_thread()
        try:
            yield
        finally:
            self._view, self._view_thread = {}, None

    def forget(self) -> None:
        """A write happened: the next `read` in a view asks the apiserver again."""
        self._view = {}

    def list_custom(self, group: str, version: str, plural: str) -> list[dict]:
        """All objects of a custom resource; [] when its CRD is not installed.

        A 404 while the CRD exists is an apiserver that restarted and does not serve the resource
        yet: that raises (the pass is skipped), since an empty list would stop every server.
        """
        try:
            return self.custom.list_cluster_custom_object(group, version, plural)["items"]
        except ApiException as exc:
            if not_found(exc) and not self.crd_installed(f"{plural}.{group}"):
                return []
            raise

    def crd_installed(self, name: str) -> bool:
        try:
            client.ApiextensionsV1Api(self.api).read_custom_resource_definition(name)
        except ApiException as exc:
            if not_found(exc):
                return False
            raise
        return True

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
            if not not_found(exc):  # deleted meanwhile
                raise

    def _patch(self, group: str, version: str, plural: str, obj: dict, body: dict) -> None:
        meta = obj["metadata"]
        try:
            self.custom.patch_namespaced_custom_object(group, version, meta["namespace"], plural, meta["name"], body)
        except ApiException as exc:
            if not not_found(exc):
                raise

    def adopt(self, group: str, version: str, plural: str, obj: dict, finalizer: str,
              labels: dict[str, str]) -> None:
        """Add `finalizer` and `labels` to a namespaced custom object unless it has them (as KServe does)."""
        meta = obj["metadata"]
        have = meta.get("labels") or {}
        finalizers = meta.get("finalizers") or []
        if finalizer in finalizers and all(have.get(k) == v for k, v in labels.items()):
            return
        body = {"metadata": {"labels": labels, "resourceVersion": meta.get("resourceVersion"),
                             "finalizers": finalizers if finalizer in finalizers else [*finalizers, finalizer]}}
        try:
            self._patch(group, version, plural, obj, body)
        except ApiException as exc:
            if exc.status != 409:  # changed meanwhile: the next pass sees the new version
                raise

    def remove_finalizer(self, group: str, version: str, plural: str, obj: dict, finalizer: str) -> None:
        finalizers = obj["metadata"].get("finalizers") or []
        if finalizer in finalizers:
            self._patch(group, version, plural, obj,
                        {"metadata": {"finalizers": [f for f in finalizers if f != finalizer]}})

    def delete_custom(self, group: str, version: str, plural: str, obj: dict) -> None:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return
        try:
            self.custom.delete_namespaced_custom_object(group, version, meta["namespace"], plural, meta["name"])
        except ApiException as exc:
            if not not_found(exc):
                raise

    def event(self, obj: dict, kind: str, reason: str, message: str, source: str = "") -> None:
        """Record an Event on `obj` (`kubectl describe` shows it), once per object, reason and message.

        The status passes run every second and for every model: a repeat costs nothing here, and
        after a restart one read of the API finds what an earlier process recorded. `source` is the
        component the Event names (`default-scheduler`, `kubelet`); by default the object's controller.
        """
        meta = obj["metadata"]
        digest = hashlib.sha256(f"{meta['uid']}/{reason}/{message}".encode()).hexdigest()[:10]
        name = f"{meta['name']}.{digest}"
        if name in self._events:
            return
        now = datetime.now(timezone.utc)
        try:
            old = self.core.read_namespaced_event(name, meta["namespace"])
        except ApiException as exc:
            if not not_found(exc):
                raise
            old = None
        if old is not None:
            self._events.add(name)
            return
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=name, namespace=meta["namespace"]),
            involved_object=client.V1ObjectReference(api_version=obj["apiVersion"], kind=obj["kind"],
                                                     name=meta["name"], namespace=meta["namespace"],
                                                     uid=meta["uid"], resource_version=meta.get("resourceVersion")),
            reason=reason, message=message, type=kind, count=1, first_timestamp=now, last_timestamp=now,
            source=client.V1EventSource(component=source or f"{obj['kind'].lower()}-controller"))
        try:
            self.core.create_namespaced_event(meta["namespace"], body)
        except ApiException as exc:
            if not_found(exc):  # the namespace is going away: nothing to remember
                return
            if exc.status != 409:  # 409: recorded already, by a race with ourselves
                raise
        self._events.add(name)

    def list_profiles(self) -> list[dict]:
        return self.list_custom(PROFILE_GROUP, PROFILE_VERSION, PROFILE_PLURAL)

    def read(self, fn: Any, *args: Any) -> Optional[Any]:
        """Call a read_* method; None on 404. Within `one_view`, each object once."""
        viewed = threading.current_thread() is self._view_thread
        key = (fn, args)
        if viewed and key in self._view:
            return self._view[key]
        view = self._view
        try:
            found = fn(*args)
        except ApiException as exc:
            if not not_found(exc):
                raise
            found = None
        if viewed and view is self._view:  # no write meanwhile
            view[key] = found
        return found

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
