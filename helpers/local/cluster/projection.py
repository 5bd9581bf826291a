"""The kubelet's part in the model config: a changed `modelconfig-<isvc>-0` reaches the agent's folder late.

On a cluster the controller updates the ConfigMap at once, but the kubelet refreshes a mounted
ConfigMap only on its pod's periodic sync: `syncFrequency` 1 min plus up to half of it in jitter
(pkg/kubelet/pod_workers.go), so 60-90 s with the defaults (docs/research/issue21-facts.md, section 5).
Only then does the agent see `models.json` change. The local controller patches the ConfigMap at
once too and hands the file to a `Projector`, which writes it after the stack's delay:

- the delay is the state folder's `configmap-delay` file, set by `python -m helpers.local up
  --configmap-delay SECONDS` or MMS_CONFIGMAP_DELAY (0 when neither ever did: the suite stays fast),
  read on every change, so a running stack takes a new value at once;
- the first change starts the wait; later ones ride along and are written with it, as a sync
  writes whatever the ConfigMap holds then; a change undone before that is never written.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from helpers.core.errors import SetupError
from helpers.core.i18n import _

log = logging.getLogger("controller")

DELAY_ENV = "MMS_CONFIGMAP_DELAY"
DELAY_FILE = "configmap-delay"
# What a kubelet with the default syncFrequency takes at most: a realistic value to try a notebook with.
REALISTIC_DELAY = 90.0


def parse_delay(value: str, source: str) -> float:
    """Seconds from a flag or variable; a SetupError names where a bad value came from."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise SetupError(_("{source}={value!r} is not a ConfigMap delay").format(source=source, value=value),
                         _("give seconds between 0 and 3600, e.g. 60 (a kubelet's default sync takes 60-90 s)"))
    return seconds


def chosen_delay(asked: Optional[float]) -> Optional[float]:
    """The delay `up` records: the flag, else MMS_CONFIGMAP_DELAY, else None (keep the folder's)."""
    if asked is not None:
        return asked
    value = os.environ.get(DELAY_ENV, "").strip()
    return parse_delay(value, DELAY_ENV) if value else None


def read_delay(state_root: Path) -> float:
    """The state folder's ConfigMap delay in seconds (0 when never set)."""
    try:
        return max(0.0, float((Path(state_root) / DELAY_FILE).read_text().strip()))
    except (OSError, ValueError):
        return 0.0


def write_delay(state_root: Path, seconds: float) -> None:
    path = Path(state_root) / DELAY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{seconds:g}\n")
    tmp.replace(path)


def _write(path: Path, text: str) -> None:
    """Atomically, as the kubelet swaps `..data`: the agent sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


class Projector:
    """Writes each server's `models.json` `delay()` seconds after its ConfigMap changed (at once for 0)."""

    def __init__(self, delay: Callable[[], float], clock: Callable[[], float] = time.monotonic) -> None:
        self.delay = delay
        self.clock = clock
        self._pending: dict[Path, tuple[float, float, str]] = {}  # file -> (changed at, due at, text)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def project(self, path: Path, text: str) -> None:
        """The ConfigMap behind `path` now holds `text`: write it now, or at the pod's next sync."""
        path = Path(path)
        with self._lock:
            try:
                current: Optional[str] = path.read_text()
            except OSError:
                current = None
            if current == text:
                self._pending.pop(path, None)  # undone before the sync: nothing to write
                return
            delay = self.delay()
            if delay <= 0:
                self._pending.pop(path, None)
                _write(path, text)
                return
            now = self.clock()
            changed, due, _old = self._pending.get(path, (now, now + delay, ""))
            self._pending[path] = (changed, due, text)
            self._ensure_thread()
        self._wake.set()

    def waiting(self, path: Path) -> Optional[float]:
        """Seconds until `path` is written, if a change waits for it."""
        with self._lock:
            entry = self._pending.get(Path(path))
        return None if entry is None else max(0.0, entry[1] - self.clock())

    def flush_due(self) -> list[Path]:
        """Write every file whose sync has come; return them."""
        now, written = self.clock(), []
        with self._lock:
            for path, (changed, due, text) in sorted(self._pending.items()):
                if due > now:
                    continue
                del self._pending[path]
                if path.parent.is_dir():  # a server deleted meanwhile has no volume left to write into
                    _write(path, text)
                    written.append(path)
                    log.info("kubelet: projected %s into %s, %.1f s after the ConfigMap changed",
                             path.name, path.parent.parent.name, now - changed)
        return written

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="configmap-projection", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.flush_due()
            with self._lock:
                dues = [due for _changed, due, _text in self._pending.values()]
            timeout = max(0.05, min(dues) - self.clock()) if dues else None
            self._wake.wait(timeout)
            self._wake.clear()
