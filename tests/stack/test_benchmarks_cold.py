"""The benchmarks that start their own servers, in their quickest mode: each prints its figure lines.

`bench_stack.py --quick` measures a cold start of one release's stack (every release's in `make
bench`) and tritonserver, in a temporary state folder on free ports, all stopped at the end;
`bench_torch_backend` and `bench_tf_backend` run bare tritonservers, Triton's own backend beside
the Python-based one. Nothing about the figures' values is asserted (test_benchmarks.py says why).
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from helpers.core.config import project_root

pytestmark = pytest.mark.stack

FIGURES = ("stack cold start total", "tritonserver version (GET /v2)", "load time cifar10", "load time inception",
           "memory cifar10 (RSS / PSS added)", "memory inception (RSS / PSS added)",
           "latency in-process (torch.jit, 1 thread)", "latency HTTP binary (tritonclient)",
           "latency gRPC (tritonclient)", "latency HTTP JSON (tritonclient)", "bench_stack wall time")


def test_bench_stack_quick_prints_every_figure() -> None:
    script = project_root() / "benchmarks" / "bench_stack.py"
    run = subprocess.run([sys.executable, str(script), "--quick", "-n", "20", "--profiles", "kfserving-0.5"], cwd=project_root(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    missing = [label for label in FIGURES
               if not re.search(rf"^{re.escape(label)}\s+\S*\d", run.stdout, re.MULTILINE)]
    assert not missing, f"figure lines missing: {missing}\n{run.stdout}"


def test_bench_torch_backend_quick_prints_both_columns() -> None:
    from helpers.local.stack import torch_backend

    script = project_root() / "benchmarks" / "bench_torch_backend.py"
    run = subprocess.run([sys.executable, str(script), "--quick", "--models", "1", "-n", "10"], cwd=project_root(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    kinds = ["native", "python"] if torch_backend.choose().native else ["python"]
    line = re.search(r"^cifar10 first load \(s\)\s+((?:native|python) .*)$", run.stdout, re.MULTILINE)
    assert line and all(f"{kind} " in line.group(1) for kind in kinds), run.stdout
    assert re.search(r"^bench_torch_backend wall time\s+\d", run.stdout, re.MULTILINE), run.stdout


def test_bench_tf_backend_quick_prints_both_columns() -> None:
    from helpers.local.stack import tf_backend

    script = project_root() / "benchmarks" / "bench_tf_backend.py"
    run = subprocess.run([sys.executable, str(script), "--quick", "--models", "1", "-n", "10"], cwd=project_root(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    kinds = ["native", "python"] if tf_backend.choose().native else ["python"]
    for label in ("inception first load (s)", "inception reload (s)", "PSS with inception (MiB)",
                  "HTTP binary p99 (ms)"):
        line = re.search(rf"^{re.escape(label)}\s+((?:native|python) .*)$", run.stdout, re.MULTILINE)
        assert line and all(f"{kind} " in line.group(1) for kind in kinds), run.stdout
    assert re.search(r"^bench_tf_backend wall time\s+\d", run.stdout, re.MULTILINE), run.stdout
