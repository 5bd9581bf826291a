"""One child process of the local stack: own session, log file, health wait, TERM then KILL.

Modelled on controller-runtime envtest's process layer: defaults are filled at start, the
health wait races the process's exit and a deadline, and errors name the binary and its log.
Processes outlive the command that started them (`python -m helpers.local up` returns), so a
`ProcessRecord` is kept in the state folder and `stop` works from it, by PID, never by name.
"""
from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from helpers.core.config import env_flag
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.wait import WaitTimeout, poll_until


@dataclass
class ProcessRecord:
    """What is needed to find, check and stop a started process later."""

    name: str
    pid: int
    argv: list[str]
    log: str
    ports: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    restarts: int = 0  # how often a supervisor started it again after it died (kubelet's restartCount)
    last_exit: str = ""  # why the previous instance ended, e.g. "killed by SIGKILL" or "exit code 1"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> "ProcessRecord":
        return cls(**dict(data))

    def alive(self) -> bool:
        """True while the PID runs the same program it was started as (PIDs get reused)."""
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie has exited
            return False
        return bool(cmdline) and cmdline[0].decode(errors="replace") == self.argv[0]


# Popen objects of the processes this process started, by PID: only a parent learns how its
# child ended (exit code or signal), and polling them reaps the zombies.
_children: dict[int, subprocess.Popen] = {}


_exited: dict[int, int] = {}  # pid -> Popen returncode, once collected: every reader sees the same


def _exit_status(pid: int, dying: bool = False) -> Optional[int]:
    """The Popen returncode of a child of this process that ended (negative: killed by a signal)."""
    if pid in _exited:
        return _exited[pid]
    proc = _children.get(pid)
    if proc is None:
        return None
    code = proc.poll()
    if code is None and dying:
        # Dying: its memory is gone (alive() says so) but the kernel has not made it a
        # zombie yet, so there is no status to collect for a few milliseconds.
        try:
            code = proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return None
    if code is None:
        return None
    del _children[pid]
    _exited[pid] = code
    return code


def exit_code(pid: int, dying: bool = False) -> Optional[int]:
    """A child's exit code as a container runtime reports it (128 + signal), None while it runs.

    `dying`: the caller saw it end (`ProcessRecord.alive()` is False), so its status is waited for
    briefly rather than read as "still running" in the moment before it becomes a zombie.
    """
    code = _exit_status(pid, dying=dying)
    return None if code is None else 128 - code if code < 0 else code


def exit_reason(record: ProcessRecord) -> Optional[str]:
    """None while `record` runs; else how it ended ("exit code 1", "killed by SIGKILL").

    Only a process's parent can tell its exit status; for a process some other command started
    (adopted after a supervisor or controller restart) the reason says that it is unknown.
    """
    ours = record.pid in _children or record.pid in _exited
    if ours:
        code = _exit_status(record.pid, dying=not record.alive())
        if code is None:
            return None
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"
    if record.alive():
        return None
    return "exited (status unknown: another process started it)"


@dataclass
class CrashLoopBackOff:
    """The kubelet's restart delays, scaled to a laptop: at once, then 1, 2, 4 ... 30 s.

    A process that ran `reset_after` seconds before dying starts the series again, so one crash
    a day restarts at once while a crash loop waits longer each time (kubelet: 10 s doubling to
    5 min, reset after 10 min of running).
    """

    first: float = 1.0
    cap: float = 30.0
    reset_after: float = 60.0
    streak: dict[str, int] = field(default_factory=dict)

    def delay(self, name: str, ran_for: float) -> float:
        """The wait before restarting `name`, which ran `ran_for` seconds; counts this crash."""
        streak = 0 if ran_for >= self.reset_after else self.streak.get(name, 0)
        self.streak[name] = streak + 1
        return 0.0 if streak == 0 else min(self.first * 2 ** (streak - 1), self.cap)

    def reset(self, name: str) -> None:
        self.streak.pop(name, None)


def log_tail(path: str | Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def require_port(port: int, who: str, setting: str) -> int:
    """Return `port` if it is free, else raise a SetupError naming the setting to change."""
    if not port_free(port):
        raise SetupError(
            _("port {port} on 127.0.0.1, wanted by {who}, is already in use by another program").format(port=port, who=who),
            _("stop that program, or pick another port with {setting}=<port> (unset it for a free one)").format(
                setting=setting),
        )
    return port


def start(
    name: str,
    argv: Sequence[str],
    log: Path,
    healthy: Callable[[], bool],
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[Path] = None,
    timeout: float = 60.0,
    ports: Optional[Mapping[str, int]] = None,
    on_spawn: Optional[Callable[[int], None]] = None,
) -> ProcessRecord:
    """Start `argv` in its own session, output to `log`, and wait until `healthy()` is true.

    If the process exits or the deadline passes first, it is stopped and a SetupError names the
    binary, the reason and the end of its log. `on_spawn(pid)` runs as soon as the process
    exists, before the wait (e.g. to put it in a memory cgroup before it loads anything).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    echo = env_flag("MMS_ECHO")
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {name}: {argv[0]}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            stdout=None if echo else out,
            stderr=subprocess.STDOUT if not echo else None,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,  # own process group: stop() signals the whole group
        )
    _children[proc.pid] = proc
    record = ProcessRecord(name, proc.pid, list(argv), str(log), dict(ports or {}), time.time())
    if on_spawn is not None:
        try:
            on_spawn(proc.pid)
        except BaseException:
            stop(record, proc=proc)
            _children.pop(proc.pid, None)
            raise

    def exited() -> Optional[str]:
        code = proc.poll()
        return f"{name} exited with code {code}" if code is not None else None

    try:
        poll_until(healthy, f"{name} to become healthy", timeout=timeout, give_up=exited)
    except WaitTimeout as exc:
        stop(record, proc=proc)
        _children.pop(proc.pid, None)
        raise SetupError(
            _("{name} ({program}) did not start: {exc}\n  its log, {log}:\n{log_tail}").format(
                name=name, program=argv[0], exc=exc, log=log, log_tail=log_tail(log)),
            _("read {log}; `python -m helpers.local logs {name}` shows it too").format(log=log, name=name),
        ) from None
    except BaseException:  # e.g. SIGTERM while waiting: never leave a child nobody has a record of
        stop(record, proc=proc)
        _children.pop(proc.pid, None)
        raise
    return record


STOP_GRACE = 15.0  # seconds from SIGTERM to SIGKILL, unless a component says otherwise


def stop(record: ProcessRecord, timeout: float = STOP_GRACE, proc: Optional[subprocess.Popen] = None) -> bool:
    """Stop a started process and its group: TERM, wait, then KILL. Returns True if it was running.

    A child of this process is reaped too (no zombie is left behind).
    """
    proc = proc or _children.get(record.pid)
    try:
        if proc is None and not record.alive():
            return False
        if proc is not None and proc.poll() is not None:
            return False
        for sig, wait_for in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(record.pid, sig)
            except ProcessLookupError:
                break
            except PermissionError:
                os.kill(record.pid, sig)
            deadline = time.monotonic() + wait_for
            while time.monotonic() < deadline:
                if proc is not None:
                    if proc.poll() is not None:
                        return True
                elif not record.alive():
                    return True
                time.sleep(0.05)
        if proc is not None:
            proc.wait(timeout=5)
        return True
    finally:
        if proc is not None and proc.poll() is not None:
            _children.pop(record.pid, None)
            _exited[record.pid] = proc.returncode


def python_argv(module: str, *args: str) -> list[str]:
    """argv that runs `python -m module args` with the current interpreter."""
    return [sys.executable, "-m", module, *args]
