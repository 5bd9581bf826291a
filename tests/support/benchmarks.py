"""Running a benchmark script from a test, as `make bench` does, and failing with its output."""
from __future__ import annotations

import subprocess
import sys

from helpers.core.config import project_root


def run_benchmark(script: str, *args: str, timeout: int = 600) -> str:
    """`python benchmarks/<script> <args>` from the project root; its stdout, or a failure naming its exit."""
    run = subprocess.run([sys.executable, str(project_root() / "benchmarks" / script), *args], cwd=project_root(),
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, f"{script} exit {run.returncode}\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    return run.stdout
