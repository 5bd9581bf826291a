"""The gateway's nginx as one supervised part of the stack, like S3 or etcd (`stack.COMPONENTS`).

On a cluster the ingress gateway is a Deployment the kubelet restarts; here the supervisor starts
nginx, checks it (an unknown Host gets nginx's 404) and starts it again after a crash, with
back-off, and `down` stops it. The controller only writes its routes (`gateway.Gateway`, the
"gateway routes" part): it reads which nginx runs from `gateway/gateway.json`, written here.

Port: a restart after a crash keeps the last port (waited for while the dead master's socket is
released), so clients and the `istio-ingressgateway` Service keep working; a fresh start takes
127.0.0.1:80 when it may bind it (as root, and free), else the last port, else a free one.
The config the controller wrote last is kept when it listens on the chosen port, so the routes
are served again the moment nginx answers; else an empty one (404 to every Host) is written and
the controller's next pass (within a second) fills in the routes and reloads.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Optional

from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.wait import WaitTimeout, poll_until
from helpers.local.cluster import gateway
from helpers.local.stack import process

log = logging.getLogger("gateway")
NAME = "gateway"


def folder(state_root: Path) -> Path:
    return Path(state_root) / "gateway"


def record_file(state_root: Path) -> Path:
    """Where the running nginx's record is published for the controller and `env` (`gateway.address`)."""
    return folder(state_root) / "gateway.json"


def published(state_root: Path) -> Optional[process.ProcessRecord]:
    """The record of the nginx last started for this stack, or None."""
    try:
        return process.ProcessRecord.from_json(json.loads(record_file(state_root).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def installed() -> bool:
    """Whether an nginx binary is there (`gateway.nginx_binary`); without it the stack has no gateway."""
    return gateway.nginx_binary() is not None


def choose_port(last: Optional[int], restarting: bool, wait: float = 10.0) -> int:
    """The port to listen on: after a crash the last one (waited for), else 80 if bindable, else the last, else free."""
    if restarting and last:
        try:
            return poll_until(lambda: last if gateway.bindable(last) else None,
                              f"port {last} to be released", timeout=wait, interval=0.1)
        except WaitTimeout:
            log.warning("gateway: port %s is still held %.0f s after nginx ended: choosing another", last, wait)
    for port in (gateway.PREFERRED_PORT, last):
        if port and gateway.bindable(port):
            return port
    return process.free_port()


def listens_on(config: Path) -> Optional[int]:
    """The port of the `default_server` in an nginx.conf the stack wrote, or None."""
    try:
        found = re.search(r"listen 127\.0\.0\.1:(\d+) default_server;", config.read_text())
    except OSError:
        return None
    return int(found.group(1)) if found else None


def start(state_root: Path, log_file: Path, last_port: Optional[int], restarting: bool) -> process.ProcessRecord:
    """Start nginx for the stack at `state_root` and publish its record; raises SetupError if it does not answer.

    An nginx this stack started earlier that still runs and answers (started by a controller before
    the gateway was supervised) is adopted instead of started twice."""
    binary = gateway.nginx_binary()
    if binary is None:
        raise SetupError(_("nginx is not installed, so the stack has no ingress gateway"),
                         _("install Debian's nginx-light (`make setup` does), or point NGINX at an nginx binary"))
    root = folder(state_root)
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / "tmp" / kind).mkdir(parents=True, exist_ok=True)
    earlier = published(state_root)
    if earlier and earlier.alive() and earlier.ports.get("http") and _answers(earlier.ports["http"]):
        log.info("gateway: nginx (pid %s) already runs on port %s: adopting it", earlier.pid, earlier.ports["http"])
        return earlier
    port = choose_port(last_port, restarting)
    config = root / "nginx.conf"
    if listens_on(config) != port:
        config.write_text(gateway.render_config(root, port, {}, log_file.parent / "gateway-access.log"))
    argv = [binary, "-p", str(root), "-c", str(config), "-e", "stderr"]
    record = process.start(NAME, argv, log_file, lambda: _answers(port), timeout=30, ports={"http": port})
    record = gateway._as_retitled(record)
    tmp = record_file(state_root).with_suffix(".tmp")
    tmp.write_text(json.dumps(record.to_json(), indent=2))
    tmp.replace(record_file(state_root))
    log.info("gateway: nginx (pid %s) listens on http://127.0.0.1:%s", record.pid, port)
    return record


def healthy(record: process.ProcessRecord) -> bool:
    return _answers(record.ports["http"])


def _answers(port: int) -> bool:
    try:
        return gateway.answers(port)
    except Exception:  # noqa: BLE001 - refused, reset or timed out: not answering
        return False
