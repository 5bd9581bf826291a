"""CPU seconds per test file, the processes each test started included, printed after every run.

`--durations` shows wall time, but on 2 cores the suite is CPU-bound: a file costs the whole run
its CPU, not its waits (docs/testing.md, "Where the time goes"). The process that runs tests (each
xdist worker, or pytest itself with `-n 0`) moves into a cgroup of its own, a child of the one it is
in, so its limits still hold. Every process it starts inherits the group, daemons too: kernels,
agents, a stack's apiserver. The group's usage before and after a test is the test's CPU, kept as
its `cpu_s` property (also in a JUnit report). A module's or session's fixtures count for the test
that set them up or tore them down.

Where no group can be made (not root, a read-only /sys/fs/cgroup), the summary says why and the
run goes on. Leftover groups are removed at the end of the run.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Optional

import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup")
SHOWN = 15  # files in the summary, costliest first


class Group:
    """A cgroup of this process's own: v1 `cpuacct` where mounted, else the v2 hierarchy."""

    def __init__(self, path: Path, usage_file: str) -> None:
        self.path, self.usage_file = path, usage_file

    def seconds(self) -> float:
        text = (self.path / self.usage_file).read_text()
        if self.usage_file == "cpu.stat":  # v2: "usage_usec N" among other lines
            return int(dict(line.split() for line in text.splitlines())["usage_usec"]) / 1e6
        return int(text) / 1e9  # v1 cpuacct.usage: nanoseconds

    def leave(self) -> None:
        """Move this process back to the parent group and remove this one if nothing else is in it."""
        try:
            (self.path.parent / "cgroup.procs").write_text(str(os.getpid()))
            self.path.rmdir()
        except OSError:
            pass


def own_group(name: str) -> tuple[Optional[Group], str]:
    """Make `<current group>/<name>` and move this process into it: (group, "") or (None, why not)."""
    groups = {controllers: current for _id, controllers, current in
              (line.split(":", 2) for line in Path("/proc/self/cgroup").read_text().splitlines())}
    v1 = next((current for controllers, current in groups.items() if "cpuacct" in controllers.split(",")), None)
    if v1 is not None and (CGROUP_ROOT / "cpuacct").is_dir():
        base, usage, current = CGROUP_ROOT / "cpuacct", "cpuacct.usage", v1
    elif "" in groups and (CGROUP_ROOT / "cgroup.controllers").exists():  # v2: the "0::<path>" line
        base, usage, current = CGROUP_ROOT, "cpu.stat", groups[""]
    else:
        return None, f"no cgroup v1 cpuacct or v2 hierarchy at {CGROUP_ROOT}"
    path = base / current.lstrip("/") / name
    try:
        path.mkdir(exist_ok=True)
        (path / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as exc:
        return None, f"cannot make a cgroup at {path}: {exc.strerror or exc} (root and a writable /sys/fs/cgroup are needed)"
    return Group(path, usage), ""


class CpuReport:
    """The plugin: measures in the process that runs tests, sums per file where reports arrive."""

    def __init__(self, config: pytest.Config) -> None:
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        self.distributing = worker is None and bool(getattr(config.option, "numprocesses", None))
        self.group: Optional[Group] = None
        self.why_not = ""
        if not self.distributing:
            self.group, self.why_not = own_group(f"mms-tests-{worker or os.getpid()}")
        self.started = 0.0
        self.per_file: dict[str, float] = defaultdict(float)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if self.group:
            self.started = self.group.seconds()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        if self.group and call.when == "teardown":
            item.user_properties.append(("cpu_s", round(self.group.seconds() - self.started, 3)))
        yield

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown":
            for key, value in report.user_properties:
                if key == "cpu_s":
                    self.per_file[report.nodeid.split("::")[0]] += value

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if os.environ.get("PYTEST_XDIST_WORKER"):
            return
        terminalreporter.write_sep("=", "CPU seconds per test file (its processes included)")
        if not self.per_file:
            terminalreporter.write_line(f"not measured: {self.why_not or 'no test reported its CPU'}")
            return
        ranked = sorted(self.per_file.items(), key=lambda item: -item[1])
        for path, seconds in ranked[:SHOWN]:
            terminalreporter.write_line(f"{seconds:8.1f}  {path}")
        rest = sum(seconds for _path, seconds in ranked[SHOWN:])
        terminalreporter.write_line(f"{rest:8.1f}  the other {max(0, len(ranked) - SHOWN)} files")
        terminalreporter.write_line(f"{sum(self.per_file.values()):8.1f}  in all")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.group:
            self.group.leave()


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(CpuReport(config), "cpu_report")
