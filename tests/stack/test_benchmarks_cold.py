"""The benchmarks that start their own servers, in their quickest mode: each prints its figure lines.

`bench_stack.py --quick` measures a cold start of one release's stack (every release's in `make
bench`) and tritonserver, in a temporary state folder on free ports, all stopped at the end;
`bench_torch_backend` and `bench_tf_backend` run bare tritonservers, Triton's own backend beside
the Python-based one. Nothing about the figures' values is asserted (test_benchmarks.py says why).
"""
from __future__ import annotations

import re

import pytest

from support.benchmarks import run_benchmark

pytestmark = pytest.mark.stack

FIGURES = ("stack cold start total", "tritonserver version (GET /v2)", "load time cifar10", "load time inception",
           "memory cifar10 (RSS / PSS added)", "memory inception (RSS / PSS added)",
           "latency in-process (torch.jit, 1 thread)", "latency HTTP binary (tritonclient)",
           "latency gRPC (tritonclient)", "latency HTTP JSON (tritonclient)", "bench_stack wall time")


def test_bench_stack_quick_prints_every_figure() -> None:
    stdout = run_benchmark("bench_stack.py", "--quick", "-n", "20", "--profiles", "kfserving-0.5", timeout=300)
    missing = [label for label in FIGURES
               if not re.search(rf"^{re.escape(label)}\s+\S*\d", stdout, re.MULTILINE)]
    assert not missing, f"figure lines missing: {missing}\n{stdout}"


def test_bench_torch_backend_quick_prints_both_columns() -> None:
    from helpers.local.stack import torch_backend

    stdout = run_benchmark("bench_torch_backend.py", "--quick", "--models", "1", "-n", "10", timeout=300)
    kinds = ["native", "python"] if torch_backend.choose().native else ["python"]
    line = re.search(r"^cifar10 first load \(s\)\s+((?:native|python) .*)$", stdout, re.MULTILINE)
    assert line and all(f"{kind} " in line.group(1) for kind in kinds), stdout
    assert re.search(r"^bench_torch_backend wall time\s+\d", stdout, re.MULTILINE), stdout


def test_bench_tf_backend_quick_prints_both_columns() -> None:
    from helpers.local.stack import tf_backend

    stdout = run_benchmark("bench_tf_backend.py", "--quick", "--models", "1", "-n", "10", timeout=300)
    kinds = ["native", "python"] if tf_backend.choose().native else ["python"]
    for label in ("inception first load (s)", "inception reload (s)", "PSS with inception (MiB)",
                  "HTTP binary p99 (ms)"):
        line = re.search(rf"^{re.escape(label)}\s+((?:native|python) .*)$", stdout, re.MULTILINE)
        assert line and all(f"{kind} " in line.group(1) for kind in kinds), stdout
    assert re.search(r"^bench_tf_backend wall time\s+\d", stdout, re.MULTILINE), stdout
