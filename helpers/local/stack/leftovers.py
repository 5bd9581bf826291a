"""What a dead process of the stack leaves behind in its session: orphaned children, killed by PID.

Every process the stack starts is a session leader (`process.start` uses `start_new_session`), so
everything it forked carries its PID as session id. When the leader dies, its children may live
on, re-parented to PID 1: nginx's worker keeps serving the old config and holds port 80 after its
master is killed, and a new master cannot bind it. A kubelet kills a dead container's remaining
processes with its cgroup; the supervisor does the same with the session, before it starts the
part again and when `down` stops it.

Only processes whose session id is the dead leader's PID are touched, found in /proc, each killed by
its own PID; a leader that still runs is never touched here (`process.stop` stops a live one).
"""
from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger("leftovers")


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, session, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def session_members(session: int) -> list[int]:
    """PIDs of live (not zombie) processes whose session id is `session`, except `session` itself."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == session:
            continue
        try:
            fields = _stat_fields(int(entry.name))
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] != "Z" and int(fields[3]) == session:
            found.append(int(entry.name))
    return found


def leader_alive(session: int) -> bool:
    try:
        return _stat_fields(session)[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_leftovers(session: int, timeout: float = 5.0) -> list[int]:
    """SIGKILL what is left of the session of the dead leader `session`; returns their PIDs.

    Nothing is done while the leader runs (it owns its children). Waits (bounded) until they are gone,
    so the ports they held are free when the caller starts the part again."""
    if leader_alive(session):
        return []
    members = session_members(session)
    for pid in members:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(leader_alive(pid) for pid in members):
        time.sleep(0.02)
    return members


def clean(session: int, name: str) -> list[int]:
    """`kill_leftovers`, logged: what the supervisor and `down` call for a part that died."""
    killed = kill_leftovers(session)
    if killed:
        log.warning("%s (pid %s) had left %d process(es) running: killed %s", name, session, len(killed),
                    ", ".join(map(str, killed)))
    return killed
