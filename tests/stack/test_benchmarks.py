"""Every benchmark script runs in its quickest mode and prints its figure lines (issue 26: benchmarks
that cannot rot). Nothing about the figures' values is asserted: a renamed helper (`upload_tiny`)
or a label that no longer says what it measures fails here instead of in `make bench`.

The benchmarks that start their own servers are in test_benchmarks_cold.py (so that under xdist
they run beside these). The ones here run on the session's stack (`--stack-dir`), in their own
namespace (`bench`, and `bench-walk` for the notebooks), and leave it running and healthy:
the chaos smoke kills only the gateway's nginx and the agent, and waits until they are back.
"""
from __future__ import annotations

import re

import pytest

from helpers.core.config import project_root
from helpers.local.stack.stack import ORDER, Stack
from support.benchmarks import run_benchmark

pytestmark = pytest.mark.stack

def _missing(stdout: str, labels: list[str]) -> list[str]:
    """Labels with no figure line: the label at a line's start, a number after it."""
    return [label for label in labels if not re.search(rf"^{re.escape(label)}.*\d", stdout, re.MULTILINE)]


def test_run_all_knows_every_benchmark_script() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_all", project_root() / "benchmarks" / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    scripts = {p.name for p in (project_root() / "benchmarks").glob("bench_*.py")}
    assert set(run_all.SCRIPTS.values()) == scripts


def test_bench_controlplane_smoke_prints_every_figure(stack: Stack) -> None:
    out = run_benchmark("bench_controlplane.py", "--smoke", "--stack-dir", str(stack.root))
    labels = ["InferenceService apply -> Ready", "cifar10 apply -> served (median)", "cifar10 Triton load (median)",
              "cifar10 apply -> served minus Triton load (median)", "cifar10 agent sees (median)",
              "cifar10 apply -> Ready (median)", "cifar10 event -> loaded (median)", "2 TrainedModels apply -> all Ready",
              "server peak RSS with 2 models", "control plane at rest, CPU s per minute", "bench_controlplane wall time"]
    assert not _missing(out, labels), f"{_missing(out, labels)}\n{out}"


def test_bench_scale_smoke_prints_every_column_and_the_limit(stack: Stack) -> None:
    out = run_benchmark("bench_scale.py", "--smoke", "--stack-dir", str(stack.root))
    labels = ["models.json bytes per TrainedModel", "largest N whose models.json fits 1 MiB",
              "3 TrainedModels: apply -> all served", "bench_scale wall time"]
    assert not _missing(out, labels), f"{_missing(out, labels)}\n{out}"
    row = re.search(r"^ ?3 +[\d.]+ +(\S+) ", out, re.MULTILINE)
    assert row and row.group(1) == "1", out  # one load per model: the count waits for the agent's lines


def test_bench_walkthrough_smoke_prints_wall_times_and_ratios(stack: Stack) -> None:
    out = run_benchmark("bench_walkthrough.py", "--smoke", "--stack-dir", str(stack.root), "--namespace", "bench-walk",
               "--server-name", "triton-walk", "--bucket", "bench-walk")
    labels = ["walkthrough cold (00-03)", "notebook/raw cifar10 binary", "notebook/raw cifar10 JSON",
              "bench_walkthrough wall time"]
    assert not _missing(out, labels), f"{_missing(out, labels)}\n{out}"
    assert "FAIL" not in out, out


def test_bench_chaos_smoke_brings_back_what_it_kills(stack: Stack) -> None:
    out = run_benchmark("bench_chaos.py", "--smoke", "--stack-dir", str(stack.root))
    profile = stack.profile().name
    labels = [f"chaos {profile} gateway: back / applied / serving", f"chaos {profile} agent: back / applied / serving",
              "bench_chaos wall time"]
    assert not _missing(out, labels), f"{_missing(out, labels)}\n{out}"
    assert all(r.healthy for r in stack.status()[:len(ORDER)])


def test_bench_soak_smoke_prints_the_leaks_at_start_and_end(stack: Stack) -> None:
    out = run_benchmark("bench_soak.py", "--smoke", "--stack-dir", str(stack.root))
    labels = ["soak cycles", "soak cycle time p50 / p99", "soak leaked models", "soak leaked files",
              "soak process / fd / socket delta", "soak RSS agent start -> end", "bench_soak wall time"]
    assert not _missing(out, labels), f"{_missing(out, labels)}\n{out}"
    assert re.search(r"^MEASURE\s+START\s+END", out, re.MULTILINE), out
