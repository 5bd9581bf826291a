"""`kubectl port-forward` from a notebook: a listener on 127.0.0.1 that reaches a pod's port through the API server.

Explained in 02_server (the ingress gateway) and 01_minio (MinIO), used on the cluster target
outside the cluster when no address is given. Each connection to the local port opens the
pod's `portforward` subresource with the `kubernetes` client (`kubernetes.stream.portforward`,
WebSocket `v4.channel.k8s.io`), so it needs nothing but the kubeconfig and the RBAC verb
`create` on `pods/portforward`. The listener runs in a daemon thread and is stopped when the
kernel (the interpreter) exits; `command` is the `kubectl port-forward` line that does the same.
"""
from __future__ import annotations

import atexit
import select
import socket
import threading
from dataclasses import dataclass, field
from typing import Optional, Union

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward as _portforward

from helpers.core.errors import SetupError
from helpers.core.i18n import _

_ACTIVE: dict[tuple[str, str, int], "PortForward"] = {}
_ACTIVE_LOCK = threading.Lock()


@dataclass
class PortForward:
    """A running forward from `127.0.0.1:local_port` to `port` of `pod` in `namespace`.

    `command` is what a shell user would run instead (naming the Service when it came from one).
    """

    api: client.ApiClient
    namespace: str
    pod: str
    port: int
    local_port: int = 0
    command: str = ""
    _listener: Optional[socket.socket] = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _open_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _own_client: Optional[client.ApiClient] = field(default=None, repr=False)
    _announced: bool = field(default=False, repr=False)
    last_error: str = ""  # why the last connection could not be forwarded (the API's or the kubelet's words)

    @property
    def address(self) -> str:
        """`127.0.0.1:<local port>`."""
        return f"127.0.0.1:{self.local_port}"

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<local port>`."""
        return f"http://{self.address}"

    def start(self) -> "PortForward":
        """Listen on 127.0.0.1 (a free port unless `local_port` was given) and serve in a daemon thread."""
        self._check_pod()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", self.local_port))
        except OSError as exc:
            listener.close()
            raise SetupError(_("cannot listen on 127.0.0.1:{local_port}: {strerror}").format(
                                 local_port=self.local_port, strerror=exc.strerror),
                             _("choose another local port, or 0 for a free one")) from None
        listener.listen(16)
        self._listener, self.local_port = listener, listener.getsockname()[1]
        if not self.command:
            self.command = f"kubectl port-forward pod/{self.pod} -n {self.namespace} {self.local_port}:{self.port}"
        threading.Thread(target=self._accept, name=f"port-forward {self.address}", daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the listener; connections being forwarded end with it."""
        self._stop.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread
            except OSError:
                pass
            self._listener.close()
        with _ACTIVE_LOCK:
            if _ACTIVE.get((self.namespace, self.pod, self.port)) is self:
                del _ACTIVE[(self.namespace, self.pod, self.port)]

    def _check_pod(self) -> None:
        try:
            client.CoreV1Api(self.api).read_namespaced_pod(self.pod, self.namespace)
        except ApiException as exc:
            raise SetupError(_("cannot port-forward to pod {namespace}/{pod}: {status} {reason}").format(
                                 namespace=self.namespace, pod=self.pod, status=exc.status, reason=exc.reason),
                             _("check it exists: `kubectl get pod {pod} -n {namespace}`").format(
                                 pod=self.pod, namespace=self.namespace)) from None

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _open(self):
        # kubernetes.stream swaps the ApiClient's call_api while it opens the WebSocket: one at a time,
        # on a client of our own so the notebook's other calls are never affected.
        with self._open_lock:
            if self._own_client is None:
                self._own_client = client.ApiClient(self.api.configuration)
            return _portforward(client.CoreV1Api(self._own_client).connect_get_namespaced_pod_portforward,
                                self.pod, self.namespace, ports=str(self.port))

    def _serve(self, conn: socket.socket) -> None:
        try:
            forward = self._open()
        except Exception as exc:  # noqa: BLE001 - the API refused (e.g. RBAC): the local connection just closes
            self.last_error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            conn.close()
            return
        remote = forward.socket(self.port)
        try:
            _pump(conn, remote, self._stop)
        finally:
            conn.close()
            remote.close()
        if forward.error(self.port):  # what the kubelet said on the port's error channel
            self.last_error = forward.error(self.port)


def _pump(a: socket.socket, b, stop: threading.Event) -> None:
    """Copy bytes both ways until one side closes."""
    ends = {a: b, b: a}
    while not stop.is_set():
        ready, _, _ = select.select(list(ends), [], [], 1.0)
        for sock in ready:
            try:
                data = sock.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            try:
                ends[sock].sendall(data)
            except OSError:
                return


def forward_pod(api: client.ApiClient, namespace: str, pod: str, port: int, local_port: int = 0,
                command: str = "") -> PortForward:
    """A running forward to `pod`'s `port` (the one already running for it, if any)."""
    with _ACTIVE_LOCK:
        found = _ACTIVE.get((namespace, pod, port))
        if found is not None and not found._stop.is_set():
            return found
    started = PortForward(api, namespace, pod, port, local_port, command).start()
    with _ACTIVE_LOCK:
        _ACTIVE[(namespace, pod, port)] = started
    return started


def announce(forward: PortForward, what: str) -> None:
    """Print, once per forward, what it reaches and the kubectl command that does the same."""
    if not forward._announced:
        forward._announced = True
        print(_("{what}: port-forward {address} -> pod {namespace}/{pod}:{port}, started here, stops with the kernel; "
                "in a shell:").format(what=what, address=forward.address, namespace=forward.namespace, pod=forward.pod,
                                      port=forward.port) + f"\n  {forward.command}")


def service_pod(api: client.ApiClient, namespace: str, service: str, port: Union[int, str, None] = None
                ) -> tuple[str, int, int]:
    """(a running pod the Service selects, the pod port behind the Service's `port`, that Service port),
    as kubectl picks them.

    `port`: the Service port's number or name; None: its first port. Raises SetupError when the
    Service has no such port, no selector or no running pod.
    """
    core = client.CoreV1Api(api)
    try:
        svc = core.read_namespaced_service(service, namespace)
    except ApiException as exc:
        raise SetupError(_("no Service {namespace}/{service} ({status})").format(
                             namespace=namespace, service=service, status=exc.status),
                         _("`kubectl get svc -n {namespace}`").format(namespace=namespace)) from None
    ports = svc.spec.ports or []
    chosen = next((p for p in ports if port is None or port in (p.port, p.name)), None)
    if chosen is None:
        raise SetupError(_("Service {namespace}/{service} has no port {port}").format(
                             namespace=namespace, service=service, port=port),
                         _("`kubectl get svc {service} -n {namespace}` lists its ports").format(
                             service=service, namespace=namespace))
    selector = svc.spec.selector or {}
    if not selector:
        raise SetupError(_("Service {namespace}/{service} selects no pods, so there is nothing to port-forward to").format(
                             namespace=namespace, service=service),
                         _("give its address instead (see the environment variables in the README)"))
    labels = ",".join(f"{k}={v}" for k, v in selector.items())
    pods = [p for p in core.list_namespaced_pod(namespace, label_selector=labels).items
            if not p.metadata.deletion_timestamp and (p.status is None or p.status.phase in (None, "Running", "Pending"))]
    if not pods:
        raise SetupError(_("no running pod behind Service {namespace}/{service} ({labels})").format(
                             namespace=namespace, service=service, labels=labels),
                         _("`kubectl get pods -n {namespace} -l {labels}`").format(namespace=namespace, labels=labels))
    pod = sorted(pods, key=lambda p: (p.status is None or p.status.phase != "Running", p.metadata.name))[0]
    target = chosen.target_port if chosen.target_port is not None else chosen.port
    if isinstance(target, str) and not target.isdigit():  # a named port: look it up in the pod
        named = [cp.container_port for c in pod.spec.containers for cp in c.ports or [] if cp.name == target]
        if not named:
            raise SetupError(_("pod {name} has no port named {target}").format(name=pod.metadata.name, target=target),
                             _("check the Service's targetPort"))
        target = named[0]
    return pod.metadata.name, int(target), int(chosen.port)


def forward_service(api: client.ApiClient, namespace: str, service: str, port: Union[int, str, None] = None,
                    local_port: int = 0) -> PortForward:
    """`kubectl port-forward svc/<service>`: a running forward to a pod behind the Service (`port`: see service_pod)."""
    pod, target, service_port = service_pod(api, namespace, service, port)
    forward = forward_pod(api, namespace, pod, target, local_port)
    if forward.command.startswith("kubectl port-forward pod/"):
        forward.command = f"kubectl port-forward svc/{service} -n {namespace} {forward.local_port}:{service_port}"
    return forward


def forward_address(api: client.ApiClient, address: str, namespace: str = "default", hops: int = 5) -> PortForward:
    """A running forward for a cluster address (`svc.ns:port`, an ExternalName followed to its Service)."""
    from helpers.clients.k8s import _split_service_host

    host, _colon, port = address.removeprefix("http://").removeprefix("https://").rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        host, port = address, "80"
    for _hop in range(hops):
        where = _split_service_host(host, namespace)
        if where is None:
            break
        namespace, name = where
        try:
            svc = client.CoreV1Api(api).read_namespaced_service(name, namespace)
        except ApiException:
            break
        if svc.spec.type == "ExternalName" and svc.spec.external_name:
            host = svc.spec.external_name
            continue
        return forward_service(api, namespace, name, int(port))
    raise SetupError(_("{address} is not a Service of this cluster, so there is nothing to port-forward to").format(
                         address=address),
                     _("give the address this machine can reach (see the environment variables in the README)"))


def stop_all() -> None:
    """Stop every forward this process started (registered to run at interpreter exit)."""
    with _ACTIVE_LOCK:
        running = list(_ACTIVE.values())
    for forward in running:
        forward.stop()


atexit.register(stop_all)
