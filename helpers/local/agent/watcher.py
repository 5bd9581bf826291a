"""Watcher: turns changes of `<config-dir>/models.json` into add / replace / remove operations.

KServe's agent watches the model-config ConfigMap mounted into its pod with fsnotify; the local
controller plays the kubelet and projects that ConfigMap into the same file (tmp + rename). The
watcher is woken by inotify on the folder (`fsevents`), then compares the file's stat and content
with what it last read; a slow re-read every `resync` seconds is the safety net for a missed
event (or a filesystem without inotify, where it is the only path).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Optional

from helpers.core.constants import MODEL_CONFIG_FILE
from helpers.local.agent.log import Logger
from helpers.local.agent.spec import ConfigError, ModelSpec, Op, parse_model_configs
from helpers.local.cluster.fsevents import FolderEvents


def diff(old: dict[str, ModelSpec], new: dict[str, ModelSpec]) -> list[Op]:
    """Operations that take the agent from `old` to `new` models: adds, replaces, then removes.

    Pure: no I/O. A changed spec is a `replace` (unload, download the new spec, load).
    """
    ops = [Op("add", name, spec) for name, spec in new.items() if name not in old]
    ops += [Op("replace", name, spec) for name, spec in new.items() if name in old and old[name] != spec]
    ops += [Op("remove", name) for name in old if name not in new]
    return ops


def read_config(path: Path) -> dict[str, ModelSpec]:
    """The models a `models.json` file asks for; a missing or empty file means none.

    Raises ConfigError if the file is not a JSON list (bad entries alone are skipped).
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    return parse_model_configs(text)[0]


class Watcher:
    """Watches `models.json` and hands every operation to `emit`, in order.

    `wakeups` counts what woke each check ("event" from inotify, "resync" from the slow timer),
    so tests and benchmarks can tell which path noticed a change.
    """

    def __init__(self, config_dir: Path, emit: Callable[[Op], None], log: Logger, resync: float = 10.0) -> None:
        self.path = Path(config_dir) / MODEL_CONFIG_FILE
        self.emit = emit
        self.log = log.named("Watcher")
        self.models_log = log.named("modelWatcher")
        self.resync = resync
        self.models: dict[str, ModelSpec] = {}
        self.wakeups = {"event": 0, "resync": 0}
        self.noticed_by: dict[str, str] = {}  # model name -> the path that noticed its last change
        self._stat: object = "unseen"
        self._text: Optional[str] = None
        self._stop = threading.Event()
        self._events = FolderEvents(names={MODEL_CONFIG_FILE})
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)

    def start(self) -> None:
        self._events.add(self.path.parent)
        self.log.info("Watching", path=str(self.path), inotify=self._events.available, resyncSeconds=self.resync)
        self.poll()  # the first sync runs before start() returns, like KServe's forced CREATE event
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._events.interrupt()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        if not self._thread.is_alive():
            self._events.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            # Without inotify the timer is the only path: then it runs at the old poll's pace.
            timeout = self.resync if self._events.available else min(self.resync, 0.5)
            woke = "event" if self._events.wait(timeout) else "resync"
            if self._stop.is_set():
                return
            if not self._events.folders():
                self._events.add(self.path.parent)  # the folder may appear later
            self.wakeups[woke] += 1
            try:
                self.poll(woke)
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive any one bad poll
                self.log.error("Failed to sync model config file", error=str(exc))

    def poll(self, woke: str = "start") -> list[Op]:
        """Check the file once; emit and return the operations its change implies.

        `woke` says what asked for the check ("event", "resync", "start"); it is logged with
        the change and kept per model in `noticed_by`.
        """
        try:
            st = os.stat(self.path)
            stat: Optional[tuple[int, int, int]] = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stat = None
        if stat == self._stat:
            return []
        self._stat = stat
        try:
            text = self.path.read_text() if stat else ""
        except FileNotFoundError:
            text, stat = "", None
        if text == self._text:
            return []
        kind = "CREATE" if self._text in (None, "") else "REMOVE" if stat is None else "WRITE"
        self.log.info("Processing event", event=f'"{self.path}": {kind}', wokenBy=woke)
        try:
            models, problems = parse_model_configs(text)
        except ConfigError as exc:
            # Keep the last good state: a half-written file must not unload every model. The
            # next write changes the file's stat, so it is read again then.
            self.log.error("Failed to sync model config file", path=str(self.path), error=str(exc))
            return []
        for problem in problems:
            self.log.error("Skipping model config entry", path=str(self.path), error=problem)
        self._text = text
        ops = diff(self.models, models)
        self.models = models
        for op in ops:
            self.noticed_by[op.name] = woke
            self._announce(op)
            self.emit(op)
        return ops

    def _announce(self, op: Op) -> None:
        if op.kind in ("replace", "remove"):
            self.models_log.info("removing model", modelName=op.name)
        if op.kind in ("add", "replace"):
            assert op.spec is not None
            self.models_log.info("adding model", modelName=op.name, storageUri=op.spec.storage_uri)
