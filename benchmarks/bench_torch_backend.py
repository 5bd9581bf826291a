"""TorchScript through Triton's own pytorch backend vs the Python-based one, side by side (issue 14).

Prints, in one run, for each backend (`native`: libtriton_pytorch.so from `make setup`;
`python`: helpers/local/backends/pytorch/model.py in python stub processes), each on its own bare
tritonserver in explicit model control:

1. the cifar10 stand-in with the guide's config unmodified: first load on a fresh server (cold),
   then unload + load (reload), the CPU instances Triton made, the stub processes it started;
2. p50/p99 latency of one [1,3,32,32] request over a persistent HTTP binary client, and the largest
   difference of the logits from the TorchScript module run in this process;
3. memory (RSS and PSS of tritonserver and its descendants) with 1, 10 and 100 TorchScript models
   (copies of the stand-in, one CPU instance each), and how long loading them took;
4. (not with --quick or --skip-stack) apply -> served of the cifar10 TrainedModel on a whole local
   stack and the walkthrough's wall time: `bench_controlplane.py --quick` and
   `bench_walkthrough.py --quick` run once per backend (MMS_TORCH_BACKEND), their figures quoted.

Figures are printed, never asserted. Without a built library only the python column is filled,
and the reason is printed. Every process started here is stopped at the end.
Usage: python benchmarks/bench_torch_backend.py [--quick] [-n N] [--models 1 10 100] [--python-max 10] [--skip-stack]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as common

from helpers.clients import triton
from helpers.local.stack import process, torch_backend, tritonserver
from helpers.steps.models.standins import write_cifar10_standin

CIFAR10 = "cifar10"
SHAPE = (1, 3, 32, 32)
KINDS = (torch_backend.NATIVE, torch_backend.PYTHON)
ONE_INSTANCE = "\ninstance_group [{ count: 1, kind: KIND_CPU }]\n"
STACK_FIGURES = {  # start of a line another script prints -> row label here (its first number)
    "bench_controlplane.py": [("cifar10 apply -> served (median)", "cifar10 apply -> served (s)"),
                              ("cifar10 event -> loaded (median)", "cifar10 event -> loaded (s)")],
    "bench_walkthrough.py": [("03_cifar10 ", "notebook 03_cifar10, cold (s)"),
                             ("walkthrough cold (", "walkthrough, cold (s)")],  # "(00-06)": the notebooks run
}


@dataclass
class Column:
    """The figures of one backend; None where not measured."""

    kind: str
    figures: dict[str, object] = field(default_factory=dict)
    note: str = ""


def _with_backend(kind: str) -> dict[str, str]:
    return {**os.environ, "MMS_TORCH_BACKEND": kind}


def _start(kind: str, root: Path, repo: Path) -> process.ProcessRecord:
    saved = os.environ.get("MMS_TORCH_BACKEND")
    os.environ["MMS_TORCH_BACKEND"] = kind  # what prepare_backends reads
    try:
        backends = tritonserver.prepare_backends(root / "backends")
    finally:
        if saved is None:
            os.environ.pop("MMS_TORCH_BACKEND", None)
        else:
            os.environ["MMS_TORCH_BACKEND"] = saved
    ports = {k: process.free_port() for k in ("http", "grpc", "metrics")}
    return tritonserver.start(f"bench-{kind}", repo, backends, ports, root / "triton.log")


def _stubs(pid: int) -> int:
    return common.tree_memory(pid, with_pss=False).processes - 1


def guide_model(kind: str, root: Path, col: Column, n: int, warmup: int) -> None:
    """Parts 1 and 2 on a fresh server holding the cifar10 stand-in with the guide's config."""
    import torch
    import tritonclient.http as httpclient

    repo = root / "models"
    write_cifar10_standin(repo / CIFAR10)
    record = _start(kind, root, repo)
    try:
        url = tritonserver.http_url(record)
        start = time.monotonic()
        triton.load_model(url, CIFAR10)
        col.figures["cifar10 first load (s)"] = time.monotonic() - start
        config = triton.model_config(url, CIFAR10)
        col.figures["config backend / runtime"] = f"{config.get('backend')} / {config.get('runtime') or '-'}"
        col.figures["CPU instances (guide's config)"] = sum(int(g.get("count", 1))
                                                            for g in config.get("instance_group", []))
        col.figures["stub processes"] = _stubs(record.pid)
        mem = common.tree_memory(record.pid)
        col.figures["RSS with cifar10 (MiB)"] = common.mib(mem.rss)
        col.figures["PSS with cifar10 (MiB)"] = common.mib(mem.pss)
        triton.unload_model(url, CIFAR10)
        start = time.monotonic()
        triton.load_model(url, CIFAR10)
        col.figures["cifar10 reload (s)"] = time.monotonic() - start

        x = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
        client = httpclient.InferenceServerClient(url.split("://", 1)[1])
        tensor = httpclient.InferInput("INPUT__0", list(SHAPE), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        wanted = [httpclient.InferRequestedOutput("OUTPUT__0", binary_data=True)]
        answer = client.infer(CIFAR10, [tensor], outputs=wanted).as_numpy("OUTPUT__0")
        module = torch.jit.load(str(repo / CIFAR10 / "1" / "model.pt"), map_location="cpu").eval()
        with torch.inference_mode():
            expected = module(torch.from_numpy(x)).numpy()
        col.figures["max |diff| vs torch.jit"] = float(np.max(np.abs(answer - expected)))
        stats = common.Latency.of(common.timed_calls(lambda: client.infer(CIFAR10, [tensor], outputs=wanted),
                                                     n, warmup))
        col.figures["HTTP binary p50 (ms)"] = stats.p50
        col.figures["HTTP binary p99 (ms)"] = stats.p99
        client.close()
    finally:
        process.stop(record)


def many_models(kind: str, root: Path, col: Column, counts: list[int], python_max: int) -> None:
    """Part 3: memory and load time with N TorchScript models (one instance each), N growing on one server."""
    template = write_cifar10_standin(root / "template" / CIFAR10)
    repo = root / "models"
    top = max(counts)
    for i in range(top):
        folder = repo / f"ts{i:03d}"
        shutil.copytree(template, folder)
        config = folder / "config.pbtxt"
        config.write_text(re.sub(r'(?m)^name:.*$', f'name: "{folder.name}"', config.read_text()) + ONE_INSTANCE)
    record = _start(kind, root, repo)
    try:
        url = tritonserver.http_url(record)
        loaded, load_s = 0, 0.0
        for count in counts:
            if kind == torch_backend.PYTHON and count > python_max:
                col.note = (f"python: not run beyond {python_max} models (each is a ~234 MiB stub process; "
                            f"--python-max raises it)")
                break
            start = time.monotonic()
            for i in range(loaded, count):
                triton.load_model(url, f"ts{i:03d}")
            load_s += time.monotonic() - start
            loaded = count
            mem = common.tree_memory(record.pid)
            col.figures[f"{count} models: RSS (MiB)"] = common.mib(mem.rss)
            col.figures[f"{count} models: PSS (MiB)"] = common.mib(mem.pss)
            col.figures[f"{count} models: processes"] = mem.processes
            col.figures[f"{count} models: total load (s)"] = load_s
    finally:
        process.stop(record)


def stack_figures(kind: str, col: Column) -> None:
    """Part 4: the other benchmarks' quick runs with this backend, their figure lines quoted."""
    for script, wanted in STACK_FIGURES.items():
        argv = [sys.executable, str(HERE / script), "--quick"]
        start = time.monotonic()
        done = subprocess.run(argv, cwd=HERE.parent, env=_with_backend(kind), capture_output=True, text=True)
        if done.returncode != 0:
            col.note += f" {script} failed (exit {done.returncode})."
            continue
        for label, row in wanted:
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith(label)), "")
            rest = line[len(label):]
            if label.endswith("("):  # a label that goes on with a parenthesis of its own, e.g. "(00-06)"
                rest = rest.split(")", 1)[-1]
            number = re.search(r"(\d+(?:\.\d+)?)", rest)
            col.figures[row] = float(number.group(1)) if number else None
        col.figures[f"{script} --quick wall (s)"] = time.monotonic() - start


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few requests, 1 and 10 models, no whole-stack runs")
    parser.add_argument("-n", "--requests", type=int, default=None, help="timed requests (default 1000; quick 50)")
    parser.add_argument("--models", type=int, nargs="+", default=None, help="model counts (default 1 10 100)")
    parser.add_argument("--python-max", type=int, default=10,
                        help="most models for the Python-based backend (each is a stub process; default 10)")
    parser.add_argument("--skip-stack", action="store_true", help="leave out apply -> served and the walkthrough")
    args = parser.parse_args(argv)
    n = args.requests or (50 if args.quick else 1000)
    counts = sorted(set(args.models or ([1, 10] if args.quick else [1, 10, 100])))

    print("bench_torch_backend: Triton's pytorch backend vs the Python-based one (issue 14)"
          + (" [quick]" if args.quick else ""))
    common.print_machine()
    started = time.monotonic()
    saved = os.environ.pop("MMS_TORCH_BACKEND", None)
    built = torch_backend.choose()
    if saved is not None:
        os.environ["MMS_TORCH_BACKEND"] = saved
    kinds = KINDS if built.native else (torch_backend.PYTHON,)
    common.figure("native backend", str(built.library) if built.native else f"not available: {built.reason}")

    columns = []
    for kind in kinds:
        col = Column(kind)
        columns.append(col)
        print(f"measuring {kind} ...", flush=True)
        with common.scratch_env(f"mms-bench-{kind}-") as root:
            with common.quiet_stderr():
                guide_model(kind, root / "guide", col, n, 5 if args.quick else 50)
                many_models(kind, root / "many", col, counts, args.python_max)
        if not (args.quick or args.skip_stack):
            stack_figures(kind, col)

    common.heading(f"TorchScript on Triton: native vs Python-based ({n} requests for latency)")
    labels = list(dict.fromkeys(label for col in columns for label in col.figures))
    common.table(["FIGURE"] + [col.kind.upper() for col in columns],
                 [[label] + [col.figures.get(label) for col in columns] for label in labels],
                 note="\n".join(col.note.strip() for col in columns if col.note))
    for label in labels:
        if label.endswith(("load (s)", "reload (s)", "p50 (ms)", "p99 (ms)", "PSS (MiB)", "-> Ready (s)", "cold (s)")):
            common.figure(label, "  ".join(f"{col.kind} {common._cell(col.figures.get(label))}" for col in columns))
    print()
    common.figure("bench_torch_backend wall time", f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
