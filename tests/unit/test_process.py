"""The process layer's supervision parts without a stack: back-off series, exit reasons, no zombies."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from helpers.core.wait import poll_until
from helpers.local.stack import process


def test_crash_loop_back_off_doubles_to_a_cap_and_resets_after_a_long_run() -> None:
    backoff = process.CrashLoopBackOff(first=1.0, cap=8.0, reset_after=60.0)
    assert [backoff.delay("etcd", ran_for=0.5) for _ in range(6)] == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff.delay("s3", ran_for=0.5) == 0.0  # counted per component
    assert backoff.delay("etcd", ran_for=120.0) == 0.0  # it ran long enough: the series starts again
    assert backoff.delay("etcd", ran_for=0.5) == 1.0


def _start(tmp_path: Path, code: str) -> process.ProcessRecord:
    return process.start("child", [sys.executable, "-c", code], tmp_path / "child.log", lambda: True, timeout=10)


def test_exit_reason_names_the_code_or_the_signal_and_reaps_the_child(tmp_path: Path) -> None:
    go = tmp_path / "go"
    failing = _start(tmp_path, f"import os, sys, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)\nsys.exit(3)")
    assert process.exit_reason(failing) is None  # still running
    go.touch()
    assert poll_until(lambda: process.exit_reason(failing), "the child to exit", timeout=10, interval=0.02) == "exit code 3"
    killed = _start(tmp_path, "import time; time.sleep(60)")
    os.killpg(killed.pid, signal.SIGKILL)
    assert poll_until(lambda: process.exit_reason(killed), "the child to die", timeout=10, interval=0.02) == \
        "killed by SIGKILL"
    for record in (failing, killed):
        assert not Path(f"/proc/{record.pid}").exists()  # reaped: no zombie left


def test_a_child_seen_dead_has_its_exit_code_at_once(tmp_path: Path) -> None:
    """Killed and read in the same instant (a pod's container seen gone): the code is waited for, not
    read as "still running" before the kernel has made the child a zombie (ContainerStatusUnknown)."""
    for _ in range(20):
        record = _start(tmp_path, "import time; time.sleep(60)")
        os.killpg(record.pid, signal.SIGKILL)
        assert process.exit_code(record.pid, dying=True) == 128 + signal.SIGKILL


def test_stop_reaps_its_child(tmp_path: Path) -> None:
    record = _start(tmp_path, "import time; time.sleep(60)")
    assert process.stop(record) is True
    assert not Path(f"/proc/{record.pid}").exists()
    assert process.stop(record) is False  # already gone
