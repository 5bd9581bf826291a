"""The parts that live inside another process (the controller's threads), named where a user looks.

The controller serves the node's kubelet endpoint, the release's admission webhooks, the metrics
API (`kubectl top`), the gateway's authorizer (on profiles whose gateway asks for a login) and keeps
nginx's routes; each is a thread
of the controller, not a process the supervisor could restart. The controller publishes them every
few seconds in `<state>/controller-parts.json` (its PID, the time, and per part: its address and
whether its thread runs); `status` reads that file and also probes each address itself, so a part
is healthy only when its host runs, the file is fresh, its thread runs and its port answers.
Such a part comes back when its host is restarted (the supervisor restarts the controller).

The controller publishes names and details in English; `read` and `shown_name` give them in the
reader's language (`shown`), whatever language the controller was started in.
"""
from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from helpers.core.i18n import _
from helpers.local.stack.process import ProcessRecord

FILE = "controller-parts.json"
HOST = "controller"
STALE_AFTER = 10.0  # seconds: a file older than this means its writer stopped publishing


@dataclass(frozen=True)
class Part:
    """One part as its host publishes it: `ok` is the host's own view (its thread runs, its last work succeeded)."""

    name: str
    port: int = 0  # 0: it listens on nothing (then only `ok` counts)
    scheme: str = "http"
    ok: bool = True
    detail: str = ""


@dataclass(frozen=True)
class PartStatus:
    name: str
    inside: str
    running: bool
    healthy: bool
    pid: Optional[int]
    address: str
    detail: str


def _names(_: Callable[[str], str] = _) -> dict[str, str]:
    """The parts' names as the controller publishes them (`_names(str)`), or in the reader's language.

    Every table here takes the lookup as a parameter called `_`: the catalogue tool finds the
    messages, and `str` gives the English the controller writes."""
    return {"kubelet": _("kubelet endpoint"), "webhooks": _("admission webhooks"), "metrics": _("metrics API"),
            "authz": _("gateway authorizer"), "routes": _("gateway routes")}


def _details(_: Callable[[str], str] = _) -> dict[str, str]:
    """What the controller publishes as a part's detail (`controller/parts_report.py`, the gateway's
    `health` in `cluster/gateway.py`); nginx's own words in `{error}` stay as nginx wrote them."""
    return {"thread": _("its thread has stopped"),
            "threads": _("its server or sampler thread has stopped"),
            "no_nginx": _("nginx is not installed: no gateway to route"),
            "waiting": _("waiting for nginx to run again (the supervisor restarts it)"),
            "routed": _("nginx pid {pid}: {hosts} host(s) routed"),
            "reload": _("nginx -s reload failed: {error}")}


def shown(text: str, table: Callable[..., dict[str, str]]) -> str:
    """`text`, written in English from one of `table`'s templates, in the reader's language (as it is
    when no template matches: a newer message, or words of another program)."""
    for key, english in table(str).items():
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>.*?)", re.escape(english))
        found = re.fullmatch(pattern, text, flags=re.S)
        if found:
            return table()[key].format(**found.groupdict())
    return text


def shown_name(name: str) -> str:
    """A part's name in the reader's language."""
    return shown(name, _names)


def path(state_root: Path) -> Path:
    return Path(state_root) / FILE


def publish(state_root: Path, pid: int, found: list[Part]) -> None:
    """Write the file whole (tmp + rename), so a reader never sees half of it."""
    target = path(state_root)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps({"pid": pid, "time": time.time(), "parts": [asdict(p) for p in found]}, indent=1))
    tmp.replace(target)


def accepts(port: int, timeout: float = 1.0) -> bool:
    """True if something accepts a TCP connection on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def read(state_root: Path, host: Optional[ProcessRecord], now: Optional[float] = None) -> list[PartStatus]:
    """Every published part with its health, judged here: host running, file fresh, thread up, port answering."""
    try:
        data = json.loads(path(state_root).read_text())
    except (OSError, ValueError):
        return []
    now = time.time() if now is None else now
    host_runs = bool(host and host.alive() and host.pid == data.get("pid"))
    age = now - float(data.get("time", 0))
    rows = []
    for raw in data.get("parts", []):
        part = Part(**raw)
        address = f"{part.scheme}://127.0.0.1:{part.port}" if part.port else ""
        if not host_runs:
            detail, running, healthy = _("down with its host, the {host} (was pid {pid}); it comes back when the "
                                         "{host} is restarted").format(host=HOST, pid=data.get("pid")), False, False
        elif age > STALE_AFTER:
            detail, running, healthy = _("not reported for {seconds}s: the {host} may be stuck").format(
                seconds=f"{age:.0f}", host=HOST), True, False
        elif not part.ok:
            detail, running, healthy = shown(part.detail, _details) or _details()["thread"], True, False
        elif part.port and not accepts(part.port):
            detail, running, healthy = _("its port {port} does not accept connections").format(port=part.port), True, False
        else:
            detail, running, healthy = shown(part.detail, _details), True, True
        rows.append(PartStatus(part.name, HOST, running, healthy, data.get("pid"), address, detail))
    return rows
