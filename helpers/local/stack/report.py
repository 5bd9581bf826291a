"""The supervisor's report, `<state>/supervisor.json`: written by the supervisor, read by `Stack.up` and `status`.

It carries `up`'s progress lines, the outcome of each start round and the back-off deadlines.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

from helpers.core.errors import SetupError

log = logging.getLogger("supervisor")


def read_report(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


class Report:
    """The supervisor's report file, rewritten whole (tmp + rename) on each change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict = {"pid": 0, "round": 0, "state": "starting", "progress": [], "backoff": {}}

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def say(self, line: str) -> None:
        log.info("%s", line)
        self.data["progress"].append(line)
        self.save()

    def finished(self, error: Optional[SetupError]) -> None:
        self.data["round"] += 1
        self.data["state"] = "failed" if error else "running"
        self.data["error"] = {"cause": error.cause, "fix": error.fix} if error else None
        self.save()
