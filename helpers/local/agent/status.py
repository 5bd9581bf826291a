"""The agent's status file: one entry per model, rewritten atomically on every change.

KServe's agent only logs failures; here the local controller reads this file to write each
TrainedModel's status, so a failure carries S3's or Triton's own message. Format:
`{"<modelName>": {"state": ..., "message": ..., "sha": <spec sha>, "time": <unix ts>}}`.
A removed model's "Unloaded" entry stays for the last KEEP_UNLOADED removals only: the file is
rewritten whole on every change, and one entry per model name ever served would grow without end
(the soak: 166 kB after 1000 names).
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Literal, Optional

State = Literal["Downloading", "Loading", "Loaded", "Failed", "Unloaded"]
STATES: tuple[State, ...] = ("Downloading", "Loading", "Loaded", "Failed", "Unloaded")
KEEP_UNLOADED = 100


class StatusFile:
    """Thread-safe holder of the per-model status, mirrored to `path` (tmp + rename)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._entries: dict[str, dict] = {}
        self._lock = threading.Lock()

    def write(self) -> None:
        """Write the file now (the agent does so once at start: the file existing means "up")."""
        with self._lock:
            self._write_locked()

    def set(self, name: str, state: State, message: str = "", sha: str = "") -> None:
        """Record a model's state; unchanged entries are not rewritten."""
        with self._lock:
            old = self._entries.get(name, {})
            sha = sha or old.get("sha", "")
            if old.get("state") == state and old.get("message") == message and old.get("sha") == sha:
                return
            self._entries[name] = {"state": state, "message": message, "sha": sha, "time": time.time()}
            if state == "Unloaded":
                self._forget_oldest_unloaded()
            self._write_locked()

    def _forget_oldest_unloaded(self) -> None:
        unloaded = sorted((entry["time"], name) for name, entry in self._entries.items()
                          if entry["state"] == "Unloaded")
        for _time, name in unloaded[:max(0, len(unloaded) - KEEP_UNLOADED)]:
            del self._entries[name]

    def get(self, name: str) -> Optional[dict]:
        with self._lock:
            entry = self._entries.get(name)
            return dict(entry) if entry else None

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            return {name: dict(entry) for name, entry in self._entries.items()}

    def _write_locked(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._entries, indent=1, sort_keys=True))
        tmp.replace(self.path)  # readers see the old file or the new one, never half of one


def read_status(path: Path) -> dict[str, dict]:
    """The status file's entries; {} while the agent has not written it (or it cannot be read)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
