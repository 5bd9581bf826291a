"""Run every benchmark with its default sizes and print everything (`make bench`).

Each script runs in its own Python process, one after the other (so torch and TensorFlow
loaded by one do not weigh on the next), on its own throw-away local stack. A summary of what
ran, how long it took and whether it finished comes last. Figures are printed, never asserted.

Usage: python benchmarks/run_all.py [--quick] [--only stack controlplane scale walkthrough torch tf chaos soak]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as common

SCRIPTS = {
    "stack": "bench_stack.py",  # issue 3
    "controlplane": "bench_controlplane.py",  # issue 4
    "scale": "bench_scale.py",  # issue 24 (10, 100, 1000 TrainedModels)
    "walkthrough": "bench_walkthrough.py",  # issue 5
    "torch": "bench_torch_backend.py",  # issue 14
    "tf": "bench_tf_backend.py",  # issue 25
    "chaos": "bench_chaos.py",  # issue 13
    "soak": "bench_soak.py",  # issue 13 (1000 cycles by default: the longest by far)
}


def run_script(name: str, quick: bool) -> tuple[int, float]:
    """Run one benchmark script, its output going straight to ours; returns (exit code, seconds)."""
    argv = [sys.executable, str(HERE / SCRIPTS[name])] + (["--quick"] if quick else [])
    print(f"\n{'#' * 100}\n# {' '.join(Path(a).name if i < 2 else a for i, a in enumerate(argv))}\n{'#' * 100}",
          flush=True)
    start = time.monotonic()
    code = subprocess.call(argv, cwd=HERE.parent)
    return code, time.monotonic() - start


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small N, fewer iterations (each script's --quick)")
    parser.add_argument("--only", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS),
                        help="which benchmarks to run (default: all, in this order)")
    args = parser.parse_args(argv)
    results = [(name, *run_script(name, args.quick)) for name in args.only]
    common.heading("Benchmarks run" + (" (quick)" if args.quick else ""))
    common.table(["BENCHMARK", "SCRIPT", "RESULT", "SECONDS"],
                 [(name, SCRIPTS[name], "ok" if code == 0 else f"FAILED (exit {code})", secs)
                  for name, code, secs in results])
    return 0 if all(code == 0 for _n, code, _s in results) else 1


if __name__ == "__main__":
    sys.exit(main())
