"""Status conditions written the way Knative/KServe write them."""
from __future__ import annotations

import time
from typing import Optional


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def condition(kind: str, ok: Optional[bool], reason: str = "", message: str = "") -> dict:
    """One condition; `ok=None` means Unknown (still in progress)."""
    status = "Unknown" if ok is None else "True" if ok else "False"
    cond = {"type": kind, "status": status}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def merge_times(old: list[dict], new: list[dict]) -> list[dict]:
    """Keep lastTransitionTime from `old` where a condition's status did not change."""
    before = {c.get("type"): c for c in old or []}
    merged = []
    for cond in new:
        prev = before.get(cond["type"])
        same = prev and prev.get("status") == cond["status"]
        merged.append({**cond, "lastTransitionTime": prev.get("lastTransitionTime", now()) if same else now()})
    return merged


def ready_from(parts: list[dict], ready_type: str = "Ready") -> dict:
    """The top-level Ready condition: the first part that is not True decides it."""
    for part in parts:
        if part["status"] != "True":
            return condition(ready_type, None if part["status"] == "Unknown" else False,
                             part.get("reason", ""), part.get("message", ""))
    return condition(ready_type, True)


def strip_times(conditions: list[dict]) -> list[dict]:
    return [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in conditions or []]
