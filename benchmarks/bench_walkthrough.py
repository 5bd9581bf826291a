"""The walkthrough's figures (issue 5): every notebook's wall time, cold and warm; notebook vs raw inference.

On a throw-away local stack (temporary state and build folders; stopped at the end):

1. cold: `Stack.up` on a fresh state folder, then the notebooks (00-06) with papermill
   (helpers.tools.walkthrough.run_all, the guide's settings), as `make demo` does on a new machine
   once `make setup` is done (setup itself is not timed; the model cache in MMS_CACHE_DIR is
   used as it is);
2. warm, new names (not with --quick): the same stack, a second walkthrough with another
   namespace, server name and bucket, so every object and model is made again;
3. warm, rerun: the guide's settings again, everything already there;
4. one request, the notebook's way (helpers.clients.triton.infer / classify through the URL resolved
   by helpers.serving.server_url, as 03 and 04 call them) vs raw tritonclient with one
   persistent client, same input: p50, p99 and their ratio.

`--smoke` is the shortest run that still prints every kind of figure line: 00-03 cold only, 5
requests per call (what `tests/stack/test_benchmarks.py` runs, on the test session's stack, given by
`--stack-dir`, with other names than the guide's: `--namespace`, `--server-name`, `--bucket`).

Usage: python benchmarks/bench_walkthrough.py [--quick | --smoke] [-n N] [--offline] [--stack-dir DIR]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

from helpers.tools import walkthrough

DEFAULTS = {"namespace": "mms", "server_name": "triton-mms", "bucket": "triton"}
OTHER = {"namespace": "bench-b", "server_name": "triton-b", "bucket": "models-b"}


# --- 1-3. wall time ------------------------------------------------------------------------------
def run_walkthrough(label: str, params: dict[str, Any], out_dir: Path,
                    only: Optional[list[str]] = None) -> dict[str, walkthrough.Run]:
    """Run the notebooks (those of `only`, else all) and return their runs by notebook; a failure is printed, not raised."""
    print(f"walkthrough: {label} ...", flush=True)
    # Kernels' warnings go to <out_dir>/kernels.log; failures are in the runs.
    runs = {run.notebook: run for run in walkthrough.run_all(params, out_dir, only=only)}
    for run in runs.values():
        if not run.ok:
            print(f"  {run.notebook} FAILED: {run.error} (see {run.output})")
    return runs


def span(names: list[str]) -> str:
    """`00-06` for notebooks 00_... to 06_...: what a total covers, read from the names."""
    return f"{names[0][:2]}-{names[-1][:2]}" if names else "none"


def wall_time_table(up_s: Optional[float], columns: list[tuple[str, dict[str, walkthrough.Run]]],
                    names: list[str]) -> None:
    """Per notebook, seconds per run; then the totals."""
    rows: list[tuple] = [("stack up (python -m helpers.local up)", up_s) + (None,) * (len(columns) - 1)]
    for name in names:
        row: list[Optional[float] | str] = [name]
        for _label, runs in columns:
            run = runs.get(name)
            row.append(None if run is None else run.seconds if run.ok else f"FAIL {run.seconds:.1f}")
        rows.append(tuple(row))
    totals = ["total, notebooks"] + [sum(r.seconds for r in runs.values()) for _l, runs in columns]
    rows.append(tuple(totals))
    rows.append(("total, with stack up", None if up_s is None else up_s + totals[1]) + (None,) * (len(columns) - 1))
    common.heading("Walkthrough wall time per notebook (seconds, papermill)")
    common.table(["NOTEBOOK"] + [label for label, _r in columns], rows,
                 note="COLD: fresh state folder (stack up, first server, first model loads). WARM NEW: same stack, "
                      "other namespace,\nserver and bucket. RERUN: the guide's settings again (objects exist, "
                      "models loaded). Each notebook runs in a\nnew kernel (papermill); kernel start and imports "
                      "are part of its time.")
    for label, runs in columns:
        ok = all(r.ok for r in runs.values()) and len(runs) == len(names)
        common.figure(f"walkthrough {label.lower()} ({span(names)})",
                      f"{sum(r.seconds for r in runs.values()):.1f} s" + ("" if ok else " (with failures)"))


# --- 4. notebook-style vs raw inference ----------------------------------------------------------
def compare_inference(n: int, warmup: int, names: dict[str, str], inception: bool = True) -> None:
    """The notebooks' helper calls vs raw tritonclient, same request, same server (`names`: the
    namespace and server the walkthrough used); inception's row only when 04 ran."""
    import tritonclient.http as httpclient

    from helpers.clients import triton
    from helpers.clients.target import Local
    from helpers.core.constants import KFSERVING_GROUP, api_group
    from helpers.steps.models import images
    from helpers.steps.models.standins import INCEPTION_INPUT, INCEPTION_OUTPUT
    from helpers.steps.serving.endpoint import server_url

    local = Local()
    endpoint = server_url(local.api_client(), local, api_group(KFSERVING_GROUP), names["server_name"],
                          names["namespace"])
    base = endpoint.base_url
    raw = httpclient.InferenceServerClient(base.split("://", 1)[1])
    one = images.cifar10_batch(images.sample_images(images.CIFAR10_SAMPLES).values())[:1]
    batch = images.inception_batch(images.sample_images(images.INCEPTION_SAMPLES).values())  # 04's four photos

    def raw_infer(model: str, name: str, x: np.ndarray, out: str, binary: bool, classes: int = 0) -> Callable:
        tensor = httpclient.InferInput(name, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        wanted = [httpclient.InferRequestedOutput(out, binary_data=binary, class_count=classes)]
        # A fresh dict per call: tritonclient writes Inference-Header-Content-Length into the one it gets.
        return lambda: raw.infer(model, [tensor], outputs=wanted, headers=endpoint.headers).as_numpy(out)

    n_inception = max(5, n // 5)
    pairs = [
        ("cifar10 binary", "cifar10 [1,3,32,32], binary (03's loop)", n,
         lambda: triton.infer(base, "cifar10", one, headers=endpoint.headers),
         raw_infer("cifar10", "INPUT__0", one, "OUTPUT__0", True)),
        ("cifar10 JSON", "cifar10 [1,3,32,32], JSON (03's first call)", n,
         lambda: triton.infer(base, "cifar10", one, binary=False, headers=endpoint.headers),
         raw_infer("cifar10", "INPUT__0", one, "OUTPUT__0", False)),
        ("inception classify", f"inception {list(batch.shape)}, classify top-5 (04)", n_inception,
         lambda: triton.classify(base, "inception", batch, top_k=5, headers=endpoint.headers),
         raw_infer("inception", INCEPTION_INPUT, batch, INCEPTION_OUTPUT, True, classes=5)),
    ][:3 if inception else 2]
    rows: list[tuple] = []
    keys: list[str] = []
    try:
        for key, label, count, notebook_call, raw_call in pairs:
            nb_times, raw_times = common.timed_pairs(notebook_call, raw_call, count, warmup)
            nb, rw = common.Latency.of(nb_times), common.Latency.of(raw_times)
            rows.append((label, count, nb.p50, rw.p50, nb.p50 / rw.p50, nb.p99, rw.p99))
            keys.append(key)
    finally:
        raw.close()  # an open keep-alive connection makes Triton's shutdown wait
    common.heading(f"Notebook-style inference vs raw tritonclient (same request, {base})")
    common.table(["REQUEST", "N", "NOTEBOOK P50 MS", "RAW P50 MS", "RATIO", "NOTEBOOK P99 MS", "RAW P99 MS"], rows,
                 note="NOTEBOOK: helpers.clients.triton.infer/classify as 03 and 04 call them (a reused client and "
                      "cached model metadata;\ninputs are still checked before sending). RAW: one persistent "
                      "tritonclient HTTP client, infer only. The two alternate, call by call. RATIO: p50 / p50.")
    for key, (_label, _n, nb50, rw50, ratio, _a, _b) in zip(keys, rows):
        common.figure(f"notebook/raw {key}", f"{ratio:.2f}x ({nb50:.2f} ms vs {rw50:.2f} ms)")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="cold run and rerun only; fewer requests")
    parser.add_argument("--smoke", action="store_true", help="00-03 cold only, 5 requests per call (the test's run)")
    parser.add_argument("-n", "--requests", type=int, default=None,
                        help="timed requests per call (default 300; quick 30; smoke 5)")
    parser.add_argument("--offline", action="store_true", help="notebooks never try to download models (offline=True)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (executed notebooks, logs)")
    parser.add_argument("--stack-dir", type=Path, default=None,
                        help="run on the stack of this state folder (started if needed, left running)")
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", default=value, help=f"the walkthrough's {key} (default {value})")
    args = parser.parse_args(argv)
    n = args.requests or (5 if args.smoke else 30 if args.quick else 300)
    extra = {"offline": True} if args.offline else {}
    names = {key: getattr(args, key) for key in DEFAULTS}
    params = {**names, **extra} if names != DEFAULTS else dict(extra)
    only = ["00", "01", "02", "03"] if args.smoke else None
    planned = [p.stem for p in walkthrough.notebooks() if not only or p.stem[:2] in only]

    mode = " [smoke]" if args.smoke else " [quick]" if args.quick else ""
    print(f"bench_walkthrough: notebooks {span(planned)} (issues 5, 23){mode}")
    common.print_machine()
    if not planned:
        print("no notebooks in notebooks/ yet: nothing to time")
        return 0
    started = time.monotonic()
    with common.scratch_env("mms-bench-walk-", keep=args.keep) as root:
        with common.stack_for(root, args.stack_dir) as (_stack, up_s):
            cold = run_walkthrough("cold", params, root / "cold", only)
            columns = [("COLD", cold)]
            if not args.quick and not args.smoke:
                columns.append(("WARM NEW", run_walkthrough("warm, new names", {**OTHER, **extra}, root / "warm")))
            if not args.smoke:
                columns.append(("RERUN", run_walkthrough("rerun", params, root / "rerun", only)))
            wall_time_table(up_s, columns, planned)
            served = [name for name in planned if name[:2] in ("00", "01", "02", "03")]
            if served and all(name in cold and cold[name].ok for name in served):
                compare_inference(n, warmup=max(3, n // 20), names=names,
                                  inception=any(name[:2] == "04" and run.ok for name, run in cold.items()))
            else:
                print("\nnotebook vs raw inference: skipped (00-03 did not all pass in the cold run)")
            if args.stack_dir:  # a shared stack: leave no server running (99_cleanup's teardown)
                print(f"cleaned up: {', '.join(walkthrough.clean_namespace({**names, **extra})) or 'nothing'}")
    print()
    common.figure("bench_walkthrough wall time", f"{time.monotonic() - started:.1f} s")
    failed = [name for _label, runs in columns for name, run in runs.items() if not run.ok]
    return 1 if failed or any(name not in cold for name in planned) else 0


if __name__ == "__main__":
    sys.exit(main())
