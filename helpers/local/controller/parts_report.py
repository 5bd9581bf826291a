"""The controller's own parts, published for `status` every few seconds (`helpers.local.stack.parts`).

Each part is a thread of this process: the kubelet endpoint (`kubelet`), the admission webhooks
(`webhooks`), the metrics API (`metrics-api`, with its `metrics-sampler`), the gateway's
authorizer (`gateway-authz`, on profiles whose gateway asks for a login) and the gateway routes
(nginx's config, reloaded by the reconcile loop). A thread is found by its name, so the servers
need no hook of their own.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable, Optional

from helpers.local.stack import parts

log = logging.getLogger("controller")


def _thread_runs(name: str) -> bool:
    return any(t.name == name and t.is_alive() for t in threading.enumerate())


def _port(file: Path) -> int:
    try:
        return int(file.read_text().strip())
    except (OSError, ValueError):
        return 0


def collect(state_root: Path, kubelet_port: int, auth_port: Optional[int],
            gateway_health: Callable[[], tuple[bool, str]], metrics_port: int = 0) -> list[parts.Part]:
    """The parts as this process sees them now."""
    found = [
        parts.Part("kubelet endpoint", kubelet_port, "https", _thread_runs("kubelet"),
                   "" if _thread_runs("kubelet") else "its thread has stopped"),
        parts.Part("admission webhooks", _port(state_root / "webhook.port"), "https", _thread_runs("webhooks"),
                   "" if _thread_runs("webhooks") else "its thread has stopped"),
    ]
    if metrics_port:
        threads = _thread_runs("metrics-api") and _thread_runs("metrics-sampler")
        found.append(parts.Part("metrics API", metrics_port, "https", threads,
                                "" if threads else "its server or sampler thread has stopped"))
    if auth_port:
        found.append(parts.Part("gateway authorizer", auth_port, "http", _thread_runs("gateway-authz"),
                                "" if _thread_runs("gateway-authz") else "its thread has stopped"))
    ok, detail = gateway_health()
    found.append(parts.Part("gateway routes", 0, "", ok, detail))
    return found


def publish_forever(state_root: Path, stop: threading.Event, make: Callable[[], list[parts.Part]],
                    interval: float = 2.0) -> threading.Thread:
    """A thread that publishes `make()` every `interval` seconds until `stop` is set."""
    def loop() -> None:
        while True:
            try:
                parts.publish(state_root, os.getpid(), make())
            except Exception as exc:  # noqa: BLE001 - a failed report must not end the reports
                log.warning("publishing the controller's parts failed: %s", exc)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name="parts-report", daemon=True)
    thread.start()
    return thread
