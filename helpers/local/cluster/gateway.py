"""The local ingress gateway: Debian's nginx, routing by `Host` as Istio's ingress gateway does.

The supervisor runs nginx as one part of the stack (`gateway_process`: started, health-checked and
restarted like S3 or etcd); the local controller writes its config in the state folder
(`gateway/nginx.conf`) with one `server` block per InferenceService host (from its
`status.url`), proxied to that server's Triton, and a `default_server` that answers 404 to any
other Host, as Istio does. On Kubeflow-style profiles each route first asks the authorizer
(`authz`, nginx's `auth_request`): no session gets the release's login answer, an identity
without rights in the namespace 403 `RBAC: access denied`. When InferenceServices come and go the config is rewritten and nginx
reloads it (`nginx -s reload`, no dropped connections). It listens on 127.0.0.1:80 when it can
bind it (as root), else on a free port.

In front of it the controller keeps the Services a cluster has in `istio-system`, type
LoadBalancer with `status.loadBalancer.ingress[0].ip` 127.0.0.1: `istio-ingressgateway`
(Kubeflow's Istio) and, where KFServing's API group is installed, `kfserving-ingressgateway`
(the guide's). Their `http2` port is the port nginx listens on. On the guide's cluster (Kubeflow
1.0.x's `istio/kfserving-gateway`, which no authservice EnvoyFilter selects) the
`kfserving-ingressgateway` answers without a login: nginx then also listens on 127.0.0.2 (that
Service's load-balancer IP) with the same routes, unguarded (`open_address`).

Binary lookup: $NGINX, else `nginx` on PATH, else /usr/sbin/nginx (Debian's `nginx-light`).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import requests

from helpers.core.constants import KFSERVING_GROUP
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.local.cluster import mesh
from helpers.local.stack import process

if TYPE_CHECKING:
    from kubernetes import client

log = logging.getLogger("gateway")
ISTIO_NAMESPACE = "istio-system"
PREFERRED_PORT = 80
HEALTH_HOST = "gateway-health.invalid"
WORKLOAD_HEADER = "X-Mms-Workload"  # the InferenceService whose predictor the mesh guards (mesh profiles)
HOP_HEADER = "X-Mms-Hop"  # "local-gateway": a request to the cluster-local address
# The load-balancer IP of an unguarded kfserving-ingressgateway (loopback, but not istio-ingressgateway's).
OPEN_ADDRESS = "127.0.0.2"
# name -> (labels, status port, http2 target port, https target port), as each install defines it:
# Istio 1.9 (Kubeflow 1.3) and KFServing's own gateway (kfserving/hack, Istio 1.3-1.6).
GATEWAY_SERVICES = {
    "istio-ingressgateway": ({"app": "istio-ingressgateway", "istio": "ingressgateway"}, 15021, 8080, 8443),
    "kfserving-ingressgateway": ({"app": "kfserving-ingressgateway", "kfserving": "ingressgateway"}, 15020, 80, 443),
}


def nginx_binary() -> Optional[str]:
    """$NGINX, else nginx on PATH, else Debian's /usr/sbin/nginx; None when none is installed."""
    given = os.environ.get("NGINX")
    if given:
        if not os.access(given, os.X_OK):
            raise SetupError(_("NGINX={given} is not an executable file").format(given=given),
                             _("point NGINX at nginx, or unset it"))
        return given
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    """True if this process may listen on `host`:`port` now (free, and allowed: port 80 needs root)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EPERM):
                return False
            raise
    return True


def _ask(auth_port: int) -> list[str]:
    return [f"            proxy_pass http://127.0.0.1:{auth_port};",
            "            proxy_method GET;", "            proxy_pass_request_body off;",
            '            proxy_set_header Content-Length "";',
            "            proxy_set_header X-Original-URI $request_uri;",
            "            proxy_set_header X-Original-Method $request_method;"]


def _auth_locations(auth_port: int, namespace: str, workload: str = "") -> list[str]:
    """The `auth_request` location asking the authorizer (`authz`), and the two answers it may lead to."""
    ask = _ask(auth_port)
    return [
        "        location = /_mms_auth {",
        "            internal;",
        *ask,
        f"            proxy_set_header X-Mms-Namespace {namespace};",
        *([f"            proxy_set_header {WORKLOAD_HEADER} {workload};",
           # the ingress gateway sets kubeflow-userid from the session, whatever the client sent
           f'            proxy_set_header {mesh.USERID_HEADER} "";'] if workload else []),
        "        }",
        "        location @mms_login {  # no session: the release's login answer (a redirect to Dex, a sign-in page)",
        *ask,
        "            proxy_set_header X-Mms-Phase login;",
        "        }",
        "        location @mms_denied {  # what Istio's AuthorizationPolicy answers",
        "            default_type text/plain;",
        '            return 403 "RBAC: access denied";',
        "        }",
    ]


def render_config(root: Path, port: int, routes: dict[str, str], access_log: Path,
                  auth_port: Optional[int] = None, namespaces: Optional[dict[str, str]] = None,
                  open_address: Optional[str] = None, workloads: Optional[dict[str, str]] = None,
                  mesh_ports: Optional[dict[str, int]] = None) -> str:
    """nginx.conf: a 404 default server, then one server block per Host -> `127.0.0.1:<port>`.

    With `auth_port`, every routed request is first checked by the authorizer there, for the
    namespace of its Host (`namespaces`), and where `workloads` names the Host's InferenceService,
    also by the mesh's policies at its predictor. With `open_address`, the same routes are served there
    too, without the check (a gateway no auth filter selects). With `mesh_ports` (upstream -> port),
    each upstream is also served on its own port, the cluster-local address, where every request
    is checked as coming through `knative-local-gateway`."""
    temp = root / "tmp"
    lines = [
        "# Written by the local controller (helpers/local/cluster/gateway.py); rewritten as InferenceServices change.",
        "daemon off;", "worker_processes 1;", f"pid {root / 'nginx.pid'};", "error_log stderr notice;",
        "events { worker_connections 512; }",
        "http {",
        f"    access_log {access_log};",
        *(f"    {kind}_temp_path {temp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
        "    server_tokens off;",
        "    client_max_body_size 0;",
        # Stream bodies both ways: no temp files (whose folder nginx's workers may not enter).
        "    proxy_request_buffering off;", "    proxy_buffering off;",
        "    proxy_http_version 1.1;", "    proxy_read_timeout 600s;", "    proxy_send_timeout 600s;",
        "    server {",
        f"        listen 127.0.0.1:{port} default_server;",
        *([f"        listen {open_address}:{port} default_server;"] if open_address else []),
        "        return 404;  # an unknown Host: Istio answers 404 too",
        "    }",
    ]
    by_upstream: dict[str, list[str]] = {}
    for host, upstream in sorted(routes.items()):
        by_upstream.setdefault(upstream, []).append(host)
    workloads, mesh_ports = workloads or {}, mesh_ports or {}
    for upstream, hosts in sorted(by_upstream.items()):
        guarded = auth_port is not None
        lines += [
            "    server {",
            f"        listen 127.0.0.1:{port};",
            f"        server_name {' '.join(hosts)};",
            "        location / {",
            *(["            auth_request /_mms_auth;", "            error_page 401 = @mms_login;",
               "            error_page 403 = @mms_denied;"] if guarded else []),
            f"            proxy_pass http://{upstream};",
            "            proxy_set_header Host $host;",
            '            proxy_set_header Connection "";',
            "        }",
            *(_auth_locations(auth_port, (namespaces or {}).get(hosts[0], ""), workloads.get(hosts[0], ""))
              if guarded else []),
            "    }",
        ]
        if guarded and upstream in mesh_ports and workloads.get(hosts[0]):
            lines += [
                "    server {  # the cluster-local address: through knative-local-gateway to the predictor's sidecar",
                f"        listen 127.0.0.1:{mesh_ports[upstream]};",
                "        location / {",
                "            auth_request /_mms_mesh;", "            error_page 403 = @mms_denied;",
                f"            proxy_pass http://{upstream};",
                "            proxy_set_header Host $host;",
                '            proxy_set_header Connection "";',
                "        }",
                "        location = /_mms_mesh {",
                "            internal;",
                *_ask(auth_port),
                f"            proxy_set_header X-Mms-Namespace {(namespaces or {}).get(hosts[0], '')};",
                f"            proxy_set_header {WORKLOAD_HEADER} {workloads[hosts[0]]};",
                f"            proxy_set_header {HOP_HEADER} local-gateway;",
                "        }",
                "        location @mms_denied {",
                "            default_type text/plain;",
                f'            return 403 "{mesh.DENIED_BODY}";',
                "        }",
                "    }",
            ]
        if open_address:
            lines += [
                "    server {  # kfserving-ingressgateway: no auth filter selects it",
                f"        listen {open_address}:{port};",
                f"        server_name {' '.join(hosts)};",
                "        location / {",
                f"            proxy_pass http://{upstream};",
                "            proxy_set_header Host $host;",
                '            proxy_set_header Connection "";',
                "        }",
                "    }",
            ]
    return "\n".join(lines + ["}", ""])


SERVICES_RESYNC_S = 30.0  # how often the controller's pass reads the gateway Services again


class Gateway:
    """nginx as the stack's ingress gateway, plus its LoadBalancer Services."""

    def __init__(self, state_root: Path, logs: Path, auth_port: Optional[int] = None,
                 open_gateway: bool = False) -> None:
        self.root = state_root / "gateway"
        self.logs = logs
        self.binary = nginx_binary()
        self.record: Optional[process.ProcessRecord] = None
        self.routes: Optional[dict[str, str]] = None
        self.auth_port = auth_port  # the authorizer (`authz`) guarding every route, else none
        self.open_address = OPEN_ADDRESS if open_gateway else None  # kfserving-ingressgateway, unguarded
        self.namespaces: dict[str, str] = {}
        self.workloads: dict[str, str] = {}
        self.mesh_ports: dict[str, int] = {}
        self.error = ""  # the last reload's failure, until one succeeds
        self._services_ensured: Optional[tuple[int, float]] = None  # (gateway port, when) of the last full check

    @property
    def config(self) -> Path:
        return self.root / "nginx.conf"

    @property
    def state_file(self) -> Path:
        return self.root / "gateway.json"

    @property
    def port(self) -> Optional[int]:
        return self.record.ports.get("http") if self.record else None

    def _argv(self, *extra: str) -> list[str]:
        return [self.binary or "nginx", "-p", str(self.root), "-c", str(self.config), "-e", "stderr", *extra]

    def start(self) -> Optional[int]:
        """Attach to the nginx the supervisor runs for this stack (`gateway_process`); returns its port.

        The routes are written on the controller's next pass; an nginx that is down now is attached
        to when the supervisor has started it again (`sync`)."""
        if self.binary is None:
            log.warning("nginx is not installed: no ingress gateway (install nginx-light: `make setup`)")
            return None
        self.sync()
        return self.port

    def sync(self) -> bool:
        """Follow the nginx the stack runs now: after a restart (a new PID or port) the config is
        rendered and compared again on the next `route`. Returns whether a live nginx is attached."""
        now = self._load()
        if now is None or not now.alive():
            if self.record is not None and not self.record.alive():
                log.warning("gateway: nginx (pid %s) is not running: the supervisor restarts it", self.record.pid)
                self.record = None
            return self.record is not None
        if self.record is None or (now.pid, now.ports) != (self.record.pid, self.record.ports):
            log.info("gateway: nginx (pid %s) listens on port %s: writing its routes", now.pid, now.ports.get("http"))
            self.record, self.routes = now, None
        return True

    def health(self) -> tuple[bool, str]:
        """The "gateway routes" part: (ok, what it says), as `status` shows it."""
        if self.binary is None:
            return True, "nginx is not installed: no gateway to route"
        if self.record is None or not self.record.alive():
            return False, "waiting for nginx to run again (the supervisor restarts it)"
        if self.error:
            return False, self.error
        hosts = len(self.routes or {})
        return True, f"nginx pid {self.record.pid}: {hosts} host(s) routed"

    def _load(self) -> Optional[process.ProcessRecord]:
        if not self.state_file.exists():
            return None
        return process.ProcessRecord.from_json(json.loads(self.state_file.read_text()))

    def route(self, routes: dict[str, str], namespaces: Optional[dict[str, str]] = None,
              workloads: Optional[dict[str, str]] = None, mesh_ports: Optional[dict[str, int]] = None) -> None:
        """Make nginx route exactly `routes` (Host -> `127.0.0.1:<port>`), each Host guarded for its
        namespace in `namespaces` when the gateway has an authorizer (and for the mesh, with
        `workloads` and `mesh_ports`: `render_config`); reload only when they changed."""
        namespaces, workloads, mesh_ports = namespaces or {}, workloads or {}, mesh_ports or {}
        if self.binary is None or not self.sync():
            return  # no nginx now: the supervisor restarts it, and the next pass routes it
        if routes == self.routes and (namespaces, workloads, mesh_ports) == (self.namespaces, self.workloads,
                                                                           self.mesh_ports):
            return
        self.namespaces, self.workloads, self.mesh_ports = dict(namespaces), dict(workloads), dict(mesh_ports)
        text = render_config(self.root, self.port, routes, self.logs / "gateway-access.log",
                             self.auth_port, namespaces, self.open_address, workloads, mesh_ports)
        if not self.config.exists() or self.config.read_text() != text:
            self.config.write_text(text)
            old_workers = _children(self.record.pid)
            result = subprocess.run(self._argv("-s", "reload"), capture_output=True, text=True)
            if result.returncode != 0:
                self.error = f"nginx -s reload failed: {result.stderr.strip()}"
                log.warning("gateway: %s", self.error)
                return
            self.error = ""
            log.info("gateway: routes %s", ", ".join(f"{h} -> {u}" for h, u in sorted(routes.items())) or "(none)")
            self._wait_for(set(routes) - set(self.routes or {}), old_workers)
        self.routes = dict(routes)

    def _wait_for(self, hosts: set[str], old_workers: set[int], timeout: float = 3.0) -> None:
        """`nginx -s reload` only signals the master: wait (bounded) until new hosts are routed.

        Until the old workers have exited they still accept connections with the old config, so a
        host answered once by a new worker may get the old config's 404 on the next request: wait
        for them too."""
        from helpers.core.wait import WaitTimeout, poll_until

        if hosts and old_workers:
            try:
                poll_until(lambda: not (old_workers & _children(self.record.pid)),
                           "nginx's old workers to exit after the reload", timeout=timeout, interval=0.05)
            except WaitTimeout:
                log.warning("gateway: nginx's old workers %s still run %.0f s after the reload",
                            sorted(old_workers & _children(self.record.pid)), timeout)

        def routed(host: str) -> bool:
            try:
                # Not following a guarded route's redirect to Dex: any answer but the 404 means routed.
                return requests.get(f"http://127.0.0.1:{self.port}/v2/health/live", headers={"Host": host},
                                    timeout=1, allow_redirects=False).status_code != 404
            except requests.RequestException:
                return False
        for host in hosts:
            try:
                poll_until(lambda: routed(host), f"the gateway to route {host}", timeout=timeout, interval=0.05)
            except WaitTimeout:
                log.warning("gateway: %s is not routed %.0f s after the reload", host, timeout)

    def stop(self) -> None:
        """Let go of nginx: the stack stops it (`down`), so it keeps serving while the controller restarts."""
        self.record = None

    # --- the Services in istio-system -----------------------------------------------------------
    def ensure_services(self, api: client.ApiClient) -> None:
        """`istio-ingressgateway` (and `kfserving-ingressgateway` where KFServing is installed), type
        LoadBalancer, http2 on the gateway's port, load-balancer IP 127.0.0.1."""
        if self.port is None:
            return
        # The Services are the controller's own and nobody else edits them: read again every SERVICES_RESYNC_S,
        # or at once when the gateway's port changed.
        if self._services_ensured and self._services_ensured[0] == self.port \
                and time.monotonic() - self._services_ensured[1] < SERVICES_RESYNC_S:
            return
        # Imported here: only the controller calls this, and the stack's other processes (its supervisor,
        # the CLI, the gateway's keeper) import this module without needing the kubernetes client.
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        from helpers.clients.k8s import not_found

        core = client.CoreV1Api(api)
        names = ["istio-ingressgateway"]
        try:
            # only whether it exists: the CRD's schema is large, and parsing it into objects costs a pass dearly
            client.ApiextensionsV1Api(api).read_custom_resource_definition(
                f"inferenceservices.{KFSERVING_GROUP}", _preload_content=False).release_conn()
            names.append("kfserving-ingressgateway")
        except ApiException as exc:
            if not not_found(exc):
                raise
        for name in names:
            labels, status_port, http_target, https_target = GATEWAY_SERVICES[name]
            ports = [{"name": "status-port", "port": status_port, "targetPort": status_port, "protocol": "TCP"},
                     {"name": "http2", "port": self.port, "targetPort": http_target, "protocol": "TCP"},
                     {"name": "https", "port": 443, "targetPort": https_target, "protocol": "TCP"}]
            try:
                svc = core.read_namespaced_service(name, ISTIO_NAMESPACE)
            except ApiException as exc:
                if not not_found(exc):
                    raise
                svc = core.create_namespaced_service(ISTIO_NAMESPACE, {
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": ISTIO_NAMESPACE, "labels": labels},
                    "spec": {"type": "LoadBalancer", "selector": labels, "ports": ports}})
                log.info("gateway: created Service %s/%s (http2 port %s)", ISTIO_NAMESPACE, name, self.port)
            http2 = [p for p in svc.spec.ports or [] if p.name == "http2"]
            if not http2 or http2[0].port != self.port:
                for port in svc.spec.ports or []:
                    if port.name == "http2":
                        port.port = self.port
                core.replace_namespaced_service(name, ISTIO_NAMESPACE, svc)
            ip = self.open_address if name == "kfserving-ingressgateway" and self.open_address else "127.0.0.1"
            lb = svc.status.load_balancer if svc.status else None
            if not (lb and lb.ingress and lb.ingress[0].ip == ip):
                core.patch_namespaced_service_status(
                    name, ISTIO_NAMESPACE, {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})
        self._services_ensured = (self.port, time.monotonic())


def _children(pid: int) -> set[int]:
    """PIDs of the processes whose parent is `pid` (nginx's workers of its master), from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z" and int(fields[1]) == pid:  # after the name: state, ppid
            found.add(int(stat.parent.name))
    return found


def _as_retitled(record: process.ProcessRecord) -> process.ProcessRecord:
    """nginx's master renames itself (`nginx: master process ...`): keep that title in the record,
    so `alive()` and `process.stop` recognise the process by PID and title, as for every other one."""
    try:
        title = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return record
    return process.ProcessRecord(record.name, record.pid, [title, *record.argv[1:]], record.log,
                                 record.ports, record.started)


def answers(port: int) -> bool:
    """nginx answers an unknown Host with 404: it is up and routing."""
    return requests.get(f"http://127.0.0.1:{port}/", headers={"Host": HEALTH_HOST}, timeout=2).status_code == 404


def address(state_root: Path) -> Optional[str]:
    """`http://127.0.0.1[:port]` of the running gateway of the stack at `state_root`, else None."""
    path = state_root / "gateway" / "gateway.json"
    if not path.exists():
        return None
    record = process.ProcessRecord.from_json(json.loads(path.read_text()))
    if not record.alive():
        return None
    port = record.ports.get("http")
    return "http://127.0.0.1" if port == 80 else f"http://127.0.0.1:{port}"
