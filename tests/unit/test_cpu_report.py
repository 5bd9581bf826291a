"""tests/support/cpu_report.py: reading a cgroup's CPU, and saying why when none can be made."""
from __future__ import annotations

from pathlib import Path

import pytest

from support import cpu_report


def test_v1_usage_is_nanoseconds_and_v2_usage_is_the_usage_usec_line(tmp_path: Path) -> None:
    (tmp_path / "cpuacct.usage").write_text("2500000000\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    assert cpu_report.Group(tmp_path, "cpuacct.usage").seconds() == 2.5
    assert cpu_report.Group(tmp_path, "cpu.stat").seconds() == 1.5


def test_without_a_cgroup_hierarchy_it_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_report, "CGROUP_ROOT", tmp_path)  # nothing mounted there
    group, why = cpu_report.own_group("mms-tests-probe")
    assert group is None
    assert why == f"no cgroup v1 cpuacct or v2 hierarchy at {tmp_path}"
