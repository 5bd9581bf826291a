"""Many TrainedModels on one server (issue 24): 10, 100 and 1,000 side by side, and where models.json stops.

On a fresh local stack (temporary state folder, stopped at the end) the guide's steps 1-3 make the
server; then, for each N in --sizes (default 10 100 1000), one batch:

1. N TrainedModels applied at once (8 parallel creates), all pointing at the cifar10 TorchScript
   stand-in (Triton's own pytorch backend; the tiny python model where it is not built), each
   under its own name, so Triton loads N models;
2. time from the first apply until Triton serves all N (`/v2/repository/index`, READY), and how
   many loads the agent logged per model (exactly one each is right; the count waits for the
   agent's "Successfully loaded model" lines, which come a moment after Triton answers);
3. the server's memory (tritonserver and its children, RSS) per model;
4. apply -> served of one more model while the N are loaded (--probes times, p50);
5. CPU seconds the controller and the server's agent spent on the batch (/proc, user + system);
6. the bytes of `models.json` in the ConfigMap with N entries, per entry;
then all N deleted at once, until none is served.

Last, the largest N whose `models.json` fits a ConfigMap (the API server refuses more than
1,048,576 bytes of data with 422 `Too long`), from the measured bytes per entry; what happens
beyond it is shown by tests/stack/test_model_config_limit.py, as upstream does it.

Figures are printed, never asserted. Usage:
  python benchmarks/bench_scale.py [--sizes 10 100 1000] [--quick | --smoke] [--probes 5] [--stack-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
import _server
import bench_controlplane as cp
from kubernetes import client
from kubernetes import config as kconfig

from helpers.clients import storage, triton
from helpers.core.constants import MODEL_CONFIG_FILE, model_config_map_name
from helpers.core.wait import poll_until
from helpers.local.stack import torch_backend
from helpers.local.stack.stack import Stack
from helpers.steps.models import agent_log

CONFIGMAP_LIMIT = 1024 * 1024  # bytes of data: k8s.io/apiserver validation (MaxSecretSize, also for ConfigMaps)
PREFIX = "scale/model"


@dataclass
class Batch:
    """What one batch of N TrainedModels measured."""

    n: int
    served_s: float
    loads_min: int
    loads_max: int
    memory_per_model_mib: float
    probe_p50_s: Optional[float]
    controller_cpu_s: float
    agent_cpu_s: float
    config_bytes: int
    delete_s: float

    def row(self) -> tuple:
        return (self.n, self.served_s, f"{self.loads_min}-{self.loads_max}" if self.loads_min != self.loads_max
                else self.loads_min, self.memory_per_model_mib, self.probe_p50_s, self.controller_cpu_s,
                self.agent_cpu_s, self.config_bytes, self.config_bytes / self.n)


def cpu_seconds(pid: Optional[int]) -> float:
    """User + system CPU seconds of one process so far (0 when it is gone)."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids(stack: Stack) -> dict[str, Optional[int]]:
    """The controller's pid, and the server's agent and Triton pids (from its processes record)."""
    records = stack.records()
    server = json.loads((stack.servers_dir / f"{cp.NS}.{cp.SERVER}" / "processes.json").read_text())
    controller = records.get("controller")
    return {"controller": controller.pid if controller else None,
            "agent": (server.get("agent") or {}).get("pid"), "triton": (server.get("triton") or {}).get("pid")}


def served(url: str) -> set[str]:
    return {m["name"] for m in triton.repository_index(url) if m.get("state") == "READY"}


def loads_per_model(stack: Stack, names: list[str], after: float, timeout: float) -> dict[str, int]:
    """"Successfully loaded model" lines per name since `after`, once every name has at least one."""
    log = stack.logs / f"agent-{cp.NS}.{cp.SERVER}.log"
    wanted = set(names)

    def counted() -> Optional[dict[str, int]]:
        found = dict.fromkeys(names, 0)
        for event in agent_log.parse(log.read_text().splitlines()):
            if event["ts"] >= after and event["model"] in wanted and event["msg"].startswith("Successfully loaded"):
                found[event["model"]] += 1
        return found if min(found.values()) > 0 else None

    try:
        return poll_until(counted, f"the agent to log {len(names)} loads", timeout, 0.5, paced=False)
    except TimeoutError:
        return counted() or {}


def config_bytes(kube: client.ApiClient) -> int:
    cm = client.CoreV1Api(kube).read_namespaced_config_map(model_config_map_name(cp.SERVER), cp.NS)
    return len((cm.data or {}).get(MODEL_CONFIG_FILE, "").encode())


def probe(kube: client.ApiClient, url: str, uri: str, framework: str, runs: int, timeout: float) -> Optional[float]:
    """apply -> served of one more model, `runs` times (deleted after each); the median."""
    custom, times = client.CustomObjectsApi(kube), []
    for i in range(runs):
        name = f"probe-{i}"
        start = time.monotonic()
        custom.create_namespaced_custom_object(cp.GROUP.group, cp.GROUP.tm_version, cp.NS, "trainedmodels",
                                               cp.trained_model(name, uri, framework, "1Mi"))
        poll_until(lambda: cp._serving(url, name), f"{name} served", timeout, 0.02, paced=False)
        times.append(time.monotonic() - start)
        custom.delete_namespaced_custom_object(cp.GROUP.group, cp.GROUP.tm_version, cp.NS, "trainedmodels", name)
        poll_until(lambda: not cp._serving(url, name), f"{name} unloaded", timeout, 0.05, paced=False)
    return statistics.median(times) if times else None


def batch(stack: Stack, kube: client.ApiClient, url: str, n: int, uri: str, framework: str, probes: int,
          timeout: float) -> Batch:
    """Apply n TrainedModels at once; measure; delete them all."""
    custom = client.CustomObjectsApi(kube)
    names = [f"m{n}-{i:05d}" for i in range(n)]
    before = pids(stack)
    cpu0 = {k: cpu_seconds(before[k]) for k in ("controller", "agent")}
    memory0 = common.tree_memory(before["triton"], with_pss=False).rss
    t0, wall0 = time.time(), time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda name: custom.create_namespaced_custom_object(
            cp.GROUP.group, cp.GROUP.tm_version, cp.NS, "trainedmodels",
            cp.trained_model(name, uri, framework, "1Mi")), names))
    poll_until(lambda: set(names) <= served(url), f"{n} models served by Triton", timeout, 0.25, paced=False)
    served_s = time.monotonic() - wall0
    loads = loads_per_model(stack, names, t0, 60)
    memory = common.tree_memory(pids(stack)["triton"], with_pss=False).rss
    size = config_bytes(kube)
    p50 = probe(kube, url, uri, framework, probes, timeout) if probes else None
    after = pids(stack)
    cpu = {k: cpu_seconds(after[k]) - cpu0[k] if after[k] == before[k] else float("nan")
           for k in ("controller", "agent")}
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda name: custom.delete_namespaced_custom_object(
            cp.GROUP.group, cp.GROUP.tm_version, cp.NS, "trainedmodels", name), names))
    poll_until(lambda: not (set(names) & served(url)), f"{n} models unloaded", timeout, 0.5, paced=False)
    return Batch(n, served_s, min(loads.values(), default=0), max(loads.values(), default=0),
                 common.mib((memory - memory0) / n), p50, cpu["controller"], cpu["agent"], size,
                 time.monotonic() - start)


def upload(stack: Stack, kind: str) -> tuple[str, str]:
    """The one model every TrainedModel points at; returns (storageUri, framework)."""
    with tempfile.TemporaryDirectory(prefix="mms-bench-scale-") as tmp:
        folder = _server.write_model(Path(tmp) / "model", kind)
        storage.upload_folder(cp.s3_client(stack), folder, cp.BUCKET, PREFIX, progress=False)
    return f"s3://{cp.BUCKET}/{PREFIX}", "pytorch" if kind == "torchscript" else "triton"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="batch sizes (default 10 100 1000)")
    parser.add_argument("--quick", action="store_true", help="sizes 5 20, one probe (the test's run)")
    parser.add_argument("--smoke", action="store_true", help="one batch of 3, one probe (the suite's run)")
    parser.add_argument("--probes", type=int, default=None, help="one-more-model runs per batch (default 5)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for a batch")
    parser.add_argument("--stack-dir", type=Path, default=None,
                        help="run on the stack of this state folder (started if needed, left running)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state folder (logs)")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([3] if args.smoke else [5, 20] if args.quick else [10, 100, 1000])
    probes = args.probes if args.probes is not None else (1 if args.quick or args.smoke else 5)
    kind = "torchscript" if torch_backend.choose().native else "tiny"

    print("bench_scale: many TrainedModels on one server (issue 24)" + (" [quick]" if args.quick else ""))
    common.print_machine()
    started = time.monotonic()
    with common.scratch_env("mms-bench-scale-", keep=args.keep) as root:
        with common.stack_for(root, args.stack_dir) as (stack, _up_s):
            kube = kconfig.new_client_from_config(config_file=str(stack.kubeconfig))
            url, _isvc_s = cp.start_server(stack, kube)
            uri, framework = upload(stack, kind)
            batches = [batch(stack, kube, url, n, uri, framework, probes, args.timeout) for n in sorted(sizes)]
    model = ("the cifar10 TorchScript stand-in (Triton's own pytorch backend)" if kind == "torchscript"
             else "the tiny `backend: \"python\"` model (one stub process each)")
    common.heading("N TrainedModels on one server, each batch applied at once")
    print(f"model: {model}, one storageUri for all ({uri}), each TrainedModel its own name")
    common.table(["N", "APPLY->ALL SERVED S", "LOADS/MODEL", "MIB/MODEL", "ONE MORE P50 S", "CONTROLLER CPU S",
                  "AGENT CPU S", "MODELS.JSON BYTES", "BYTES/ENTRY"], [b.row() for b in batches],
                 note="LOADS/MODEL: 'Successfully loaded model' lines per model in the agent's log (1 is right). "
                      "MIB/MODEL: (server RSS with N - before) / N.\nONE MORE: apply -> served of one more "
                      "TrainedModel while N are loaded. CPU: user + system seconds over the batch (/proc).")
    largest = max(batches, key=lambda b: b.n)
    per_entry = largest.config_bytes / largest.n
    fits = int((CONFIGMAP_LIMIT - 2) // per_entry)  # the list's brackets
    common.figure("models.json bytes per TrainedModel", f"{per_entry:.0f} B (names like {largest.n} batch's)")
    common.figure("largest N whose models.json fits 1 MiB", f"about {fits:,} TrainedModels on one server")
    for b in batches:
        common.figure(f"{b.n} TrainedModels: apply -> all served", f"{b.served_s:.1f} s")
    print()
    common.figure("bench_scale wall time", f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
