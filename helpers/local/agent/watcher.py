"""Watcher: turns changes of `<config-dir>/models.json` into add / replace / remove operations.

KServe's agent watches the model-config ConfigMap mounted into its pod; the local controller
plays the kubelet and projects that ConfigMap into the same file. The file is polled (stat,
then content) instead of inotify, which behaves the same on every filesystem.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Optional

from ...constants import MODEL_CONFIG_FILE
from .log import Logger
from .spec import ConfigError, ModelSpec, Op, parse_model_configs


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
    """Polls `models.json` and hands every operation to `emit`, in order."""

    def __init__(self, config_dir: Path, emit: Callable[[Op], None], log: Logger, interval: float = 0.5) -> None:
        self.path = Path(config_dir) / MODEL_CONFIG_FILE
        self.emit = emit
        self.log = log.named("Watcher")
        self.models_log = log.named("modelWatcher")
        self.interval = interval
        self.models: dict[str, ModelSpec] = {}
        self._stat: object = "unseen"
        self._text: Optional[str] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)

    def start(self) -> None:
        self.log.info("Watching", path=str(self.path))
        self.poll()  # the first sync runs before start() returns, like KServe's forced CREATE event
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive any one bad poll
                self.log.error("Failed to sync model config file", error=str(exc))

    def poll(self) -> list[Op]:
        """Check the file once; emit and return the operations its change implies."""
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
        self.log.info("Processing event", event=f'"{self.path}": {kind}')
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
            self._announce(op)
            self.emit(op)
        return ops

    def _announce(self, op: Op) -> None:
        if op.kind in ("replace", "remove"):
            self.models_log.info("removing model", modelName=op.name)
        if op.kind in ("add", "replace"):
            assert op.spec is not None
            self.models_log.info("adding model", modelName=op.name, storageUri=op.spec.storage_uri)
