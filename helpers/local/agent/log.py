"""One JSON line per event on stdout, shaped like KServe's agent log (zap's production encoder).

`{"level":"info","ts":1605449512.0457,"logger":"Watcher","msg":"Processing event",...}`. Field
names that look like secrets are masked, so a careless call cannot leak a key.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

_SECRET_WORDS = ("secret", "password", "token", "access_key", "accesskey", "credential")
_lock = threading.Lock()


def _safe(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: "<hidden>" if any(w in k.lower() for w in _SECRET_WORDS) else v for k, v in fields.items()}


class Logger:
    """A named logger (KServe's names: Watcher, modelWatcher, modelProcessor, Downloader, ...)."""

    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self.name = name
        self.stream = stream

    def named(self, name: str) -> "Logger":
        return Logger(name, self.stream)

    def _emit(self, level: str, msg: str, fields: dict[str, Any]) -> None:
        record = {"level": level, "ts": time.time(), "logger": self.name, "msg": msg, **_safe(fields)}
        line = json.dumps(record, default=str, separators=(",", ":"))
        with _lock:
            out = self.stream or sys.stdout
            out.write(line + "\n")
            out.flush()

    def info(self, msg: str, **fields: Any) -> None:
        self._emit("info", msg, fields)

    def warn(self, msg: str, **fields: Any) -> None:
        self._emit("warn", msg, fields)

    def error(self, msg: str, **fields: Any) -> None:
        self._emit("error", msg, fields)
