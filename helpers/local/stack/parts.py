"""The parts that live inside another process (the controller's threads), named where a user looks.

The controller serves the node's kubelet endpoint, the release's admission webhooks, the metrics
API (`kubectl top`), the gateway's authorizer (on profiles whose gateway asks for a login) and keeps
nginx's routes; each is a thread
of the controller, not a process the supervisor could restart. The controller publishes them every
few seconds in `<state>/controller-parts.json` (its PID, the time, and per part: its address and
whether its thread runs); `status` reads that file and also probes each address itself, so a part
is healthy only when its host runs, the file is fresh, its thread runs and its port answers.
Such a part comes back when its host is restarted (the supervisor restarts the controller).
"""
from __future__ import annotations

import json
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

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
            detail, running, healthy = (f"down with its host, the {HOST} (was pid {data.get('pid')}); "
                                        f"it comes back when the {HOST} is restarted"), False, False
        elif age > STALE_AFTER:
            detail, running, healthy = f"not reported for {age:.0f}s: the {HOST} may be stuck", True, False
        elif not part.ok:
            detail, running, healthy = part.detail or "its thread has stopped", True, False
        elif part.port and not accepts(part.port):
            detail, running, healthy = f"its port {part.port} does not accept connections", True, False
        else:
            detail, running, healthy = part.detail, True, True
        rows.append(PartStatus(part.name, HOST, running, healthy, data.get("pid"), address, detail))
    return rows
