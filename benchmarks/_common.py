"""Shared pieces of the benchmark scripts: tables, percentiles, process-tree memory, a throw-away stack.

Not a benchmark itself. The scripts run as `python benchmarks/<script>.py`, so this module is
imported by its bare name (the scripts' folder is first on sys.path).
"""
from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import psutil

from helpers.local.stack.stack import Stack
from helpers.tools import walkthrough

# Settings that pin the local stack's ports: a benchmark's own stack must not fight the user's.
_PORT_SETTINGS = ("MMS_S3_PORT", "MMS_APISERVER_PORT", "MMS_TRITON_PORT")
MIB = 1024 * 1024


# --- printing ------------------------------------------------------------------------------------
def heading(title: str) -> None:
    """A section title, underlined."""
    print(f"\n{title}\n{'=' * len(title)}", flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], note: str = "") -> None:
    """Print rows as an aligned table: text left-aligned, numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(_is_number(row[i]) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    print(line(list(headers)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))
    if note:
        print(note)
    sys.stdout.flush()


def _is_number(value: object) -> bool:
    return value is None or isinstance(value, (int, float))


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def figure(label: str, value: str, width: int = 48) -> None:
    """One `label .... value` line (the smoke test looks for these)."""
    print(f"{label:<{width}} {value}", flush=True)


def mib(nbytes: float) -> float:
    return round(nbytes / MIB, 1)


# --- statistics ----------------------------------------------------------------------------------
@dataclass
class Latency:
    """Summary of one series of request times, in milliseconds."""

    n: int
    p50: float
    p99: float
    mean: float
    minimum: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> "Latency":
        ms = sorted(s * 1000.0 for s in seconds)
        return cls(len(ms), percentile(ms, 50), percentile(ms, 99), statistics.fmean(ms), ms[0])


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (p99 of fewer than 100 values is the maximum)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, min(len(sorted_values), int(-(-pct * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def timed_calls(call: Callable[[], object], n: int, warmup: int) -> list[float]:
    """Run `call` `warmup` times unmeasured, then `n` times; return each measured duration in seconds."""
    for _ in range(warmup):
        call()
    durations = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        durations.append(time.perf_counter() - start)
    return durations


def timed_pairs(first: Callable[[], object], second: Callable[[], object], n: int,
                warmup: int) -> tuple[list[float], list[float]]:
    """Like `timed_calls` for two calls, alternated (first, second, first, ...), so that load from
    other processes on a shared machine weighs on both alike; returns both lists of seconds."""
    for _ in range(warmup):
        first()
        second()
    a, b = [], []
    for _ in range(n):
        for call, out in ((first, a), (second, b)):
            start = time.perf_counter()
            call()
            out.append(time.perf_counter() - start)
    return a, b


# --- memory --------------------------------------------------------------------------------------
@dataclass
class TreeMemory:
    """Memory of a process and its descendants (Triton + its python-backend stubs)."""

    processes: int
    rss: int  # sum of RSS: counts shared pages (libraries, torch) once per process
    pss: int  # sum of PSS: shared pages split between the processes that map them


def tree_memory(pid: int, with_pss: bool = True) -> TreeMemory:
    """RSS (and PSS, from smaps) of `pid` and every descendant; processes that vanish are skipped."""
    root = psutil.Process(pid)
    procs = [root] + root.children(recursive=True)
    rss = pss = count = 0
    for proc in procs:
        try:
            if with_pss:
                info = proc.memory_full_info()
                pss += getattr(info, "pss", info.rss)
            else:
                info = proc.memory_info()
            rss += info.rss
            count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return TreeMemory(count, rss, pss if with_pss else 0)


@dataclass
class PeakSampler:
    """Samples a process tree's RSS in a thread; `peak` is the highest sum seen."""

    pid: int
    interval: float = 0.25
    peak: TreeMemory = field(default_factory=lambda: TreeMemory(0, 0, 0))
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: Optional[threading.Thread] = None

    def __enter__(self) -> "PeakSampler":
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        try:
            now = tree_memory(self.pid, with_pss=False)
        except psutil.NoSuchProcess:
            return
        if now.rss > self.peak.rss:
            self.peak = now


# --- the machine ---------------------------------------------------------------------------------
def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines() -> list[tuple[str, str]]:
    """What the figures came from: CPU, cores, RAM, load, date, package versions (no imports of torch/tf)."""
    mem = psutil.virtual_memory()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    tf = _version("tensorflow-cpu")
    return [
        ("date", time.strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("cpu", cpu_model()),
        ("cores", str(os.cpu_count())),
        ("ram", f"{mem.total / 1024**3:.1f} GiB ({mem.available / 1024**3:.1f} GiB available)"),
        ("load average (1, 5, 15 min)", load),
        ("python", platform.python_version()),
        ("tritonserver", f"from nvidia-pytriton {_version('nvidia-pytriton')} (server 2.51; see GET /v2 below)"),
        ("torch / tensorflow", f"{_version('torch')} / {tf if tf != 'not installed' else _version('tensorflow')}"),
        ("numpy / tritonclient", f"{_version('numpy')} / {_version('tritonclient')}"),
        ("kubernetes client / papermill", f"{_version('kubernetes')} / {_version('papermill')}"),
    ]


def print_machine() -> None:
    heading("Machine")
    for label, value in machine_lines():
        figure(label, value, width=32)


# --- a throw-away local stack --------------------------------------------------------------------
@contextlib.contextmanager
def scratch_env(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A temporary folder; MMS_STATE_DIR and MMS_BUILD_DIR point into it while the block runs.

    Port settings are cleared so this stack takes free ports and never the user's. The folder is
    deleted afterwards unless `keep`.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    saved = {k: os.environ.get(k) for k in ("MMS_STATE_DIR", "MMS_BUILD_DIR", "MMS_TARGET", *_PORT_SETTINGS)}
    os.environ["MMS_STATE_DIR"] = str(root / "state")
    os.environ["MMS_BUILD_DIR"] = str(root / "build")
    os.environ["MMS_TARGET"] = "local"
    for key in _PORT_SETTINGS:
        os.environ.pop(key, None)
    try:
        yield root
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if keep:
            print(f"(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_stack(root: Path, profile: Optional[str] = None) -> Iterator[tuple[Stack, float]]:
    """A fresh local stack in `root/state` (of `profile`, else the default) for the block: (the stack,
    seconds `up` took); always stopped."""
    stack = Stack(root / "state")
    # SIGTERM (`kill PID`) would end Python without running `finally`: leave through it, stopping the stack.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        start = time.monotonic()
        stack.up(say=lambda _m: None, profile=profile)
        yield stack, time.monotonic() - start
    finally:
        stack.down(say=lambda _m: None)
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(*_args: object) -> None:
    raise SystemExit(128 + signal.SIGTERM)


@contextlib.contextmanager
def stack_for(root: Path, stack_dir: Optional[Path] = None, profile: Optional[str] = None
              ) -> Iterator[tuple[Stack, Optional[float]]]:
    """The stack a benchmark runs on: a fresh one in `root/state` (stopped at the end), or, with
    `stack_dir`, the stack there (started if it is not running, and left running): what
    `tests/stack/test_benchmarks.py` passes so the benchmarks share one stack. Yields (stack, seconds
    `up` took, or None for a shared stack, whose start is not the benchmark's)."""
    if stack_dir is None:
        with running_stack(root, profile) as (stack, up_s):
            yield stack, up_s
        return
    saved = os.environ.get("MMS_STATE_DIR")
    os.environ["MMS_STATE_DIR"] = str(stack_dir)
    try:
        stack = Stack(Path(stack_dir))
        stack.up(say=lambda _m: None, profile=profile)
        yield stack, None
    finally:
        if saved is None:
            os.environ.pop("MMS_STATE_DIR", None)
        else:
            os.environ["MMS_STATE_DIR"] = saved


def quiet_stderr() -> contextlib.AbstractContextManager[None]:
    """Send file descriptor 2 to /dev/null for the block (C++ libraries' start-up chatter)."""
    return walkthrough.stderr_to(os.devnull)


class PhaseClock:
    """Turns Stack.up's progress messages into per-phase durations (`say` callback)."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.marks: list[tuple[str, float]] = []

    def say(self, message: str) -> None:
        name = message.removeprefix("starting ").removesuffix(" ...")
        if message.startswith("installing CRDs"):
            name = "seed (CRDs, kubeflow objects)"
        self.marks.append((name, time.monotonic()))

    def phases(self, end: float) -> list[tuple[str, float]]:
        """(phase, seconds) from each message to the next, the last one to `end`."""
        stamps = self.marks + [("", end)]
        return [(name, stamps[i + 1][1] - t) for i, (name, t) in enumerate(stamps[:-1])]
