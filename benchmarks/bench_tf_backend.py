"""TensorFlow GraphDef through Triton's own tensorflow backend vs the Python-based one, side by side (issue 25).

Prints, in one run, for each backend (`native`: libtriton_tensorflow.so from `make setup`;
`python`: helpers/local/backends/tensorflow/model.py in python stub processes), each on its own
bare tritonserver in explicit model control:

1. the inception stand-in with the guide's config unmodified (2 CPU instances): first load on a
   fresh server (cold), then unload + load (reload), the CPU instances Triton made, the stub
   processes it started, and RSS/PSS of tritonserver and its descendants with the model;
2. p50/p99 latency of one [1,299,299,3] request over a persistent HTTP binary client, and the
   largest difference of the softmax from the same GraphDef run by TensorFlow in this process;
3. memory (RSS and PSS) with 1 and 10 GraphDef models (copies of the stand-in, one CPU instance
   each), and how long loading them took;
4. (not with --quick or --skip-stack) the inception TrainedModel on a whole local stack and the
   walkthrough's wall time: `bench_controlplane.py --quick --inception -n 2` and
   `bench_walkthrough.py --quick` run once per backend (MMS_TF_BACKEND), their figures quoted.

Figures are printed, never asserted. Without a built library only the python column is filled,
and the reason is printed. Every process started here is stopped at the end.
Usage: python benchmarks/bench_tf_backend.py [--quick] [-n N] [--models 1 10] [--python-max 10] [--skip-stack]
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
from helpers.local.stack import process, tf_backend, tritonserver
from helpers.steps.models.standins import INCEPTION_INPUT, INCEPTION_OUTPUT, INCEPTION_SIZE, write_inception_standin

INCEPTION = "inception"
SHAPE = (1, INCEPTION_SIZE, INCEPTION_SIZE, 3)
KINDS = (tf_backend.NATIVE, tf_backend.PYTHON)
ONE_INSTANCE = "\ninstance_group [{ count: 1, kind: KIND_CPU }]\n"
STACK_FIGURES = {  # script and its arguments -> (start of a line it prints, row label here: its first number)
    ("bench_controlplane.py", "--quick", "--inception", "-n", "2"): [
        ("inception apply -> served", "inception apply -> served (s)"),
        ("inception event -> loaded", "inception event -> loaded (s)")],
    ("bench_walkthrough.py", "--quick"): [
        ("04_inception ", "notebook 04_inception, cold (s)"),
        ("walkthrough cold (00-04)", "walkthrough 00-04, cold (s)")],
}


@dataclass
class Column:
    """The figures of one backend; None where not measured."""

    kind: str
    figures: dict[str, object] = field(default_factory=dict)
    note: str = ""


def _start(kind: str, root: Path, repo: Path) -> process.ProcessRecord:
    saved = os.environ.get(tf_backend.BACKEND_ENV)
    os.environ[tf_backend.BACKEND_ENV] = kind  # what prepare_backends reads
    try:
        backends = tritonserver.prepare_backends(root / "backends")
    finally:
        if saved is None:
            os.environ.pop(tf_backend.BACKEND_ENV, None)
        else:
            os.environ[tf_backend.BACKEND_ENV] = saved
    ports = {k: process.free_port() for k in ("http", "grpc", "metrics")}
    return tritonserver.start(f"bench-{kind}", repo, backends, ports, root / "triton.log")


def _stubs(pid: int) -> int:
    return common.tree_memory(pid, with_pss=False).processes - 1


def _in_process(graphdef: Path, x: np.ndarray) -> np.ndarray:
    """The GraphDef run by TensorFlow in this process, one intra-op thread (as both backends here)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graphdef.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        return session.run(f"{INCEPTION_OUTPUT}:0", {f"{INCEPTION_INPUT}:0": x})


def guide_model(kind: str, root: Path, template: Path, col: Column, n: int, warmup: int) -> None:
    """Parts 1 and 2 on a fresh server holding the inception stand-in with the guide's config."""
    import tritonclient.http as httpclient

    repo = root / "models"
    shutil.copytree(template, repo / INCEPTION)
    record = _start(kind, root, repo)
    try:
        url = tritonserver.http_url(record)
        start = time.monotonic()
        triton.load_model(url, INCEPTION)
        col.figures["inception first load (s)"] = time.monotonic() - start
        config = triton.model_config(url, INCEPTION)
        col.figures["config backend / runtime"] = f"{config.get('backend')} / {config.get('runtime') or '-'}"
        col.figures["CPU instances (guide's config)"] = sum(int(g.get("count", 1))
                                                            for g in config.get("instance_group", []))
        col.figures["stub processes"] = _stubs(record.pid)
        mem = common.tree_memory(record.pid)
        col.figures["RSS with inception (MiB)"] = common.mib(mem.rss)
        col.figures["PSS with inception (MiB)"] = common.mib(mem.pss)
        triton.unload_model(url, INCEPTION)
        start = time.monotonic()
        triton.load_model(url, INCEPTION)
        col.figures["inception reload (s)"] = time.monotonic() - start

        x = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
        client = httpclient.InferenceServerClient(url.split("://", 1)[1])
        tensor = httpclient.InferInput(INCEPTION_INPUT, list(SHAPE), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        wanted = [httpclient.InferRequestedOutput(INCEPTION_OUTPUT, binary_data=True)]
        answer = client.infer(INCEPTION, [tensor], outputs=wanted).as_numpy(INCEPTION_OUTPUT)
        expected = _in_process(repo / INCEPTION / "1" / "model.graphdef", x)
        col.figures["max |diff| vs TensorFlow in process"] = float(np.max(np.abs(answer - expected)))
        stats = common.Latency.of(common.timed_calls(lambda: client.infer(INCEPTION, [tensor], outputs=wanted),
                                                     n, warmup))
        col.figures["HTTP binary p50 (ms)"] = stats.p50
        col.figures["HTTP binary p99 (ms)"] = stats.p99
        client.close()
    finally:
        process.stop(record)


def many_models(kind: str, root: Path, template: Path, col: Column, counts: list[int], python_max: int) -> None:
    """Part 3: memory and load time with N GraphDef models (one instance each), N growing on one server."""
    repo = root / "models"
    for i in range(max(counts)):
        folder = repo / f"tf{i:03d}"
        shutil.copytree(template, folder)
        config = folder / "config.pbtxt"
        config.write_text(config.read_text() + ONE_INSTANCE)
    record = _start(kind, root, repo)
    try:
        url = tritonserver.http_url(record)
        loaded, load_s = 0, 0.0
        for count in counts:
            if kind == tf_backend.PYTHON and count > python_max:
                col.note = (f"python: not run beyond {python_max} models (each is a ~635 MiB stub process; "
                            f"--python-max raises it)")
                break
            start = time.monotonic()
            for i in range(loaded, count):
                triton.load_model(url, f"tf{i:03d}")
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
    for argv_tail, wanted in STACK_FIGURES.items():
        script = argv_tail[0]
        start = time.monotonic()
        done = subprocess.run([sys.executable, str(HERE / script), *argv_tail[1:]], cwd=HERE.parent,
                              env={**os.environ, tf_backend.BACKEND_ENV: kind}, capture_output=True, text=True)
        if done.returncode != 0:  # the figures it printed before failing still count
            last = (done.stderr.strip().splitlines() or ["no output on stderr"])[-1]
            col.note += f" {col.kind}: {script} failed (exit {done.returncode}: {last[:150]})."
        for label, row in wanted:
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith(label)), "")
            number = re.search(r"(\d+(?:\.\d+)?)", line[len(label):])
            col.figures[row] = float(number.group(1)) if number else None
        col.figures[f"{script} --quick wall (s)"] = time.monotonic() - start


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="50 requests, 1 and 10 models (python: 2), no whole-stack runs (about a minute)")
    parser.add_argument("-n", "--requests", type=int, default=None, help="timed requests (default 1000; quick 50)")
    parser.add_argument("--models", type=int, nargs="+", default=None, help="model counts (default 1 10)")
    parser.add_argument("--python-max", type=int, default=None,
                        help="most models for the Python-based backend (each is a stub process; default 10, quick 2)")
    parser.add_argument("--skip-stack", action="store_true", help="leave out the TrainedModel and walkthrough runs")
    args = parser.parse_args(argv)
    n = args.requests or (50 if args.quick else 1000)
    counts = sorted(set(args.models or [1, 10]))
    python_max = args.python_max if args.python_max is not None else (2 if args.quick else 10)

    print("bench_tf_backend: Triton's tensorflow backend vs the Python-based one (issue 25)"
          + (" [quick]" if args.quick else ""))
    common.print_machine()
    started = time.monotonic()
    saved = os.environ.pop(tf_backend.BACKEND_ENV, None)
    built = tf_backend.choose()
    if saved is not None:
        os.environ[tf_backend.BACKEND_ENV] = saved
    kinds = KINDS if built.native else (tf_backend.PYTHON,)
    common.figure("native backend", str(built.library) if built.native else f"not available: {built.reason}")
    common.figure("TensorFlow math threads (MMS_TF_THREADS)", os.environ.get("MMS_TF_THREADS", "1"))

    columns = []
    with common.scratch_env("mms-bench-tf-") as scratch:
        template = scratch / "template" / INCEPTION
        with common.quiet_stderr():
            write_inception_standin(template)
        for kind in kinds:
            col = Column(kind)
            columns.append(col)
            print(f"measuring {kind} ...", flush=True)
            with common.quiet_stderr():
                guide_model(kind, scratch / kind / "guide", template, col, n, 5 if args.quick else 50)
                many_models(kind, scratch / kind / "many", template, col, counts, python_max)
            if not (args.quick or args.skip_stack):
                stack_figures(kind, col)

    common.heading(f"TensorFlow GraphDef on Triton: native vs Python-based ({n} requests for latency)")
    labels = list(dict.fromkeys(label for col in columns for label in col.figures))
    common.table(["FIGURE"] + [col.kind.upper() for col in columns],
                 [[label] + [col.figures.get(label) for col in columns] for label in labels],
                 note="\n".join(col.note.strip() for col in columns if col.note))
    for label in labels:
        if label.endswith(("load (s)", "reload (s)", "p50 (ms)", "p99 (ms)", "(MiB)", "loaded (s)", "served (s)",
                           "cold (s)")):
            common.figure(label, "  ".join(f"{col.kind} {common._cell(col.figures.get(label))}" for col in columns))
    print()
    common.figure("bench_tf_backend wall time", f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
