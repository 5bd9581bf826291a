"""The serving stack's figures (issue 3): cold start, model load per format, latency per protocol, memory.

Prints, in one run:

1. stack cold start: `Stack.up` on a fresh state folder, split per component (S3, etcd,
   kube-apiserver, controller manager, seeding, controller), then `down`, and (not with
   --quick) a warm restart on the same folder;
2. on a bare tritonserver (explicit model control, the stack's backend folder): server start,
   then load time of the guide's two layouts, unmodified configs: the TorchScript cifar10
   stand-in (`pytorch_libtorch`: Triton's own pytorch backend when `make setup` built it, else
   the Python-based one; `bench_torch_backend.py` compares the two) and the GraphDef inception
   stand-in (`tensorflow_graphdef`: Triton's own tensorflow backend when built, else the
   Python-based one; `bench_tf_backend.py` compares the two);
3. resident memory of tritonserver plus its python-backend stub children, before and after
   each load (psutil; RSS sums count shared libraries once per process, PSS splits them);
4. p50/p99 latency of one cifar10-shaped request [1,3,32,32]: the TorchScript module called
   in-process, and through Triton with persistent tritonclient clients over HTTP binary, gRPC
   and HTTP JSON; plus the helpers' `triton.infer` (what the notebooks call).

Figures are printed, never asserted. Every process started here is stopped at the end.
Usage: python benchmarks/bench_stack.py [--quick] [-n N] [--skip-cold-start]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

from helpers.clients import triton
from helpers.local.stack import process, tf_backend, torch_backend, tritonserver
from helpers.local.stack.releases import PROFILES
from helpers.local.stack.stack import Stack
from helpers.steps.models.standins import write_cifar10_standin, write_inception_standin

CIFAR10, INCEPTION = "cifar10", "inception"
CIFAR10_SHAPE = (1, 3, 32, 32)


@dataclass
class Triton:
    """A bare tritonserver started for the benchmark."""

    record: process.ProcessRecord
    http: str  # host:port
    grpc: str  # host:port
    repo: Path


# --- 1. cold start -------------------------------------------------------------------------------
def cold_start(warm_restart: bool, profile: str) -> None:
    """Stack.up on a fresh state folder, per component; down; optionally up again (warm)."""
    common.heading(f"Stack cold start (Stack.up on a fresh state folder, profile {profile})")
    with common.scratch_env("mms-bench-stack-") as root:
        stack = Stack(root / "state")
        try:
            clock = common.PhaseClock()
            stack.up(say=clock.say, profile=profile)
            end = time.monotonic()
            rows = clock.phases(end) + [("total (cold start)", end - clock.start)]
            common.table(["PHASE", "SECONDS"], rows)
            start = time.monotonic()
            stack.down(say=lambda _m: None)
            common.figure("stack down (stop every component)", f"{time.monotonic() - start:.2f} s")
            if warm_restart:
                start = time.monotonic()
                stack.up(say=lambda _m: None)
                common.figure("stack warm restart (same state folder)", f"{time.monotonic() - start:.2f} s")
        finally:
            stack.down(say=lambda _m: None)
    common.figure(f"stack cold start total ({profile})", f"{end - clock.start:.2f} s")


# --- 2. bare tritonserver, loads, memory -----------------------------------------------------------
def start_triton(root: Path) -> tuple[Triton, float, float]:
    """Write both stand-ins, assemble the backends, start tritonserver; returns (server, prep s, start s)."""
    repo = root / "models"
    write_cifar10_standin(repo / CIFAR10)
    with common.quiet_stderr():  # TensorFlow's start-up chatter
        write_inception_standin(repo / INCEPTION)  # folder named as the TrainedModel; its config has no name
    start = time.monotonic()
    backends = tritonserver.prepare_backends(root / "backends")
    prepared = time.monotonic() - start
    ports = {k: process.free_port() for k in ("http", "grpc", "metrics")}
    start = time.monotonic()
    record = tritonserver.start("bench-triton", repo, backends, ports, root / "triton.log")
    started = time.monotonic() - start
    return Triton(record, f"127.0.0.1:{ports['http']}", f"127.0.0.1:{ports['grpc']}", repo), prepared, started


def load_and_measure(server: Triton, models: list[tuple[str, str]], reload: bool) -> None:
    """Load each model, timing it and measuring the tree's memory before and after."""
    common.heading("Model load per format (bare tritonserver, guide's configs unmodified)")
    url = f"http://{server.http}"
    memory = [("tritonserver, no model", common.tree_memory(server.record.pid))]
    rows = []
    for name, fmt in models:
        before = memory[-1][1]
        start = time.monotonic()
        triton.load_model(url, name)
        load_s = time.monotonic() - start
        after = common.tree_memory(server.record.pid)
        memory.append((f"+ {name}", after))
        again = None
        if reload:
            triton.unload_model(url, name)
            start = time.monotonic()
            triton.load_model(url, name)
            again = time.monotonic() - start
        instances = sum(int(g.get("count", 1)) for g in triton.model_config(url, name).get("instance_group", []))
        rows.append((name, fmt, instances, after.processes - before.processes, load_s, again))
    common.table(["MODEL", "FORMAT (BACKEND)", "INSTANCES", "STUBS", "FIRST LOAD S", "RELOAD S"], rows,
                 note="INSTANCES: CPU instances Triton chose (the guide's configs set no instance_group); STUBS: "
                      "python-backend\nstub processes the load started (one per instance). RELOAD: unload, then "
                      "load again (files in the page cache).")
    for name, _fmt, _i, _s, load_s, _again in rows:
        common.figure(f"load time {name}", f"{load_s:.2f} s")

    common.heading("Resident memory (tritonserver + python-backend stubs, psutil)")
    mem_rows = []
    for i, (label, mem) in enumerate(memory):
        prev = memory[i - 1][1] if i else None
        mem_rows.append((label, mem.processes, common.mib(mem.rss), common.mib(mem.pss),
                         common.mib(mem.rss - prev.rss) if prev else None,
                         common.mib(mem.pss - prev.pss) if prev else None))
    common.table(["STATE", "PROCS", "RSS MIB", "PSS MIB", "+RSS MIB", "+PSS MIB"], mem_rows,
                 note="RSS sums count shared pages (libpython, torch, TF) once per process; PSS shares them out.")
    for label, _p, _r, _s, d_rss, d_pss in mem_rows[1:]:
        common.figure(f"memory {label.removeprefix('+ ')} (RSS / PSS added)", f"{d_rss:.1f} / {d_pss:.1f} MiB")


# --- 3. latency ----------------------------------------------------------------------------------
def latency_calls(server: Triton, x: np.ndarray) -> dict[str, Callable[[], np.ndarray]]:
    """One callable per way of running the cifar10 request; each returns the [1,10] logits."""
    import torch
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    torch.set_num_threads(int(os.environ.get("MMS_TORCH_THREADS", "1")))  # as the pytorch backend does
    module = torch.jit.load(str(server.repo / CIFAR10 / "1" / "model.pt"), map_location="cpu").eval()

    def in_process() -> np.ndarray:
        with torch.inference_mode():
            return module(torch.tensor(x)).numpy()

    http = httpclient.InferenceServerClient(server.http)
    grpc = grpcclient.InferenceServerClient(server.grpc)

    def http_call(binary: bool) -> Callable[[], np.ndarray]:
        tensor = httpclient.InferInput("INPUT__0", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        wanted = [httpclient.InferRequestedOutput("OUTPUT__0", binary_data=binary)]
        return lambda: http.infer(CIFAR10, [tensor], outputs=wanted).as_numpy("OUTPUT__0")

    gtensor = grpcclient.InferInput("INPUT__0", list(x.shape), "FP32")
    gtensor.set_data_from_numpy(x)
    gwanted = [grpcclient.InferRequestedOutput("OUTPUT__0")]
    return {
        "in-process (torch.jit, 1 thread)": in_process,
        "HTTP binary (tritonclient)": http_call(True),
        "gRPC (tritonclient)": lambda: grpc.infer(CIFAR10, [gtensor], outputs=gwanted).as_numpy("OUTPUT__0"),
        "HTTP JSON (tritonclient)": http_call(False),
        "HTTP binary via helpers.clients.triton.infer": lambda: triton.infer(f"http://{server.http}", CIFAR10, x)["OUTPUT__0"],
    }


def measure_latency(server: Triton, n: int, warmup: int) -> None:
    """p50/p99 per way of calling, same input; checks (prints) that every way gives the same logits."""
    common.heading(f"Latency, cifar10-shaped model, one request {list(CIFAR10_SHAPE)} FP32 "
                   f"({n} requests each after {warmup} warm-up)")
    x = np.random.default_rng(0).random(CIFAR10_SHAPE, dtype=np.float32)
    calls = latency_calls(server, x)
    reference: Optional[np.ndarray] = None
    rows = []
    for label, call in calls.items():
        out = np.asarray(call())
        reference = out if reference is None else reference
        diff = float(np.max(np.abs(out - reference)))
        stats = common.Latency.of(common.timed_calls(call, n, warmup))
        rows.append((label, stats.n, stats.p50, stats.p99, stats.mean, diff))
    common.table(["PATH", "N", "P50 MS", "P99 MS", "MEAN MS", "MAX|DIFF|"], rows,
                 note="MAX|DIFF|: largest difference of the logits from the in-process result (same model, "
                      "same input).\nhelpers.clients.triton.infer reuses one client and the model's metadata per URL and model "
                      "(inputs still checked).")
    for label, _n, p50, p99, _mean, _d in rows:
        common.figure(f"latency {label}", f"p50 {p50:.3f} ms  p99 {p99:.3f} ms")


def bare_triton(n: int, warmup: int, reload: bool, inception: bool) -> None:
    """Parts 2-4 on one tritonserver in a scratch folder, stopped at the end."""
    with common.scratch_env("mms-bench-triton-") as root:
        server, prepared, started = start_triton(root)
        try:
            common.heading("Bare tritonserver")
            meta = triton.server_metadata(f"http://{server.http}")
            common.figure("tritonserver version (GET /v2)", str(meta.get("version")))
            common.figure("prepare_backends (copy stub + backends)", f"{prepared:.2f} s")
            common.figure("tritonserver start to ready (empty repository)", f"{started:.2f} s")
            served = "pytorch, native" if torch_backend.in_folder(root / "backends") == "native" else "python pytorch"
            models = [(CIFAR10, f"TorchScript (pytorch_libtorch -> {served})")]
            if inception:
                tf_served = "tensorflow, native" if tf_backend.in_folder(root / "backends") == "native" \
                    else "python tensorflow"
                models.append((INCEPTION, f"GraphDef (tensorflow_graphdef -> {tf_served})"))
            load_and_measure(server, models, reload)
            measure_latency(server, n, warmup)
        finally:
            process.stop(server.record)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few requests, no warm restart, no reloads")
    parser.add_argument("-n", "--requests", type=int, default=None,
                        help="timed requests per path (default 1000; quick 50)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up requests per path (default 50; quick 5)")
    parser.add_argument("--skip-cold-start", action="store_true", help="leave out the stack cold start")
    parser.add_argument("--skip-inception", action="store_true", help="load the cifar10 stand-in only")
    parser.add_argument("--profiles", nargs="+", default=sorted(PROFILES), choices=sorted(PROFILES),
                        help="version profiles to cold-start (default: all)")
    args = parser.parse_args(argv)
    n = args.requests or (50 if args.quick else 1000)
    warmup = args.warmup if args.warmup is not None else (5 if args.quick else 50)

    print("bench_stack: the serving stack (issue 3)" + (" [quick]" if args.quick else ""))
    common.print_machine()
    started = time.monotonic()
    if not args.skip_cold_start:
        for profile in args.profiles:
            cold_start(warm_restart=not args.quick, profile=profile)
    bare_triton(n, warmup, reload=not args.quick, inception=not args.skip_inception)
    print()
    common.figure("bench_stack wall time", f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
