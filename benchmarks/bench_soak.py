"""The soak (issue 13): N create/delete cycles of TrainedModels against one server; what is left over.

On a fresh local stack (temporary state folder, stopped at the end) the guide's steps 1-3 are
applied (as bench_controlplane does), then N cycles (default 1000) of: apply a TrainedModel
(the tiny numpy `backend: "python"` model, names rotating over four), wait until it is Ready,
infer once, delete it, wait until Triton no longer serves it and its folder is gone. Two
warm-up cycles come first. Before and after the N cycles the stack is measured:

- models Triton holds READY, entries in Triton's repository index, files and folders in the
  server's model repository (all should be back to 0);
- processes of the stack (the supervisor and all its descendants: components, Triton, stubs,
  agent), their open file descriptors and inet sockets;
- resident memory of Triton (with its stubs), the agent, the controller, the apiserver, etcd.

Usage: python benchmarks/bench_soak.py [--quick] [-n CYCLES] [--keep]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
import bench_controlplane as cp
from kubernetes import client
from kubernetes import config as kconfig

from helpers.clients import triton
from helpers.core.wait import poll_until
from helpers.local.stack.stack import Stack

NAMES = [f"soak-{i}" for i in range(4)]


@dataclass
class Snapshot:
    triton_ready: int
    triton_index: int
    repo_entries: int
    processes: int
    fds: int
    sockets: int
    rss: dict[str, float]  # role -> MiB


def _stack_processes(stack: Stack) -> list[psutil.Process]:
    sup = stack.supervisor_record()
    root = psutil.Process(sup.pid)
    return [root] + root.children(recursive=True)


def _rss(pid: Optional[int], tree: bool = False) -> float:
    if not pid or not psutil.pid_exists(pid):
        return 0.0
    return common.mib(common.tree_memory(pid, with_pss=False).rss if tree else psutil.Process(pid).memory_info().rss)


def snapshot(stack: Stack, url: str) -> Snapshot:
    index = triton.repository_index(url)
    repo = stack.servers_dir / f"{cp.NS}.{cp.SERVER}" / "models"
    procs = _stack_processes(stack)
    fds = sockets = 0
    for proc in procs:
        try:
            fds += proc.num_fds()
            sockets += len(proc.net_connections(kind="inet"))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    records = stack.records()
    servers = json.loads((stack.servers_dir / f"{cp.NS}.{cp.SERVER}" / "processes.json").read_text())
    rss = {"triton + stubs": _rss(servers["triton"]["pid"], tree=True), "agent": _rss(servers["agent"]["pid"]),
           "controller": _rss(records["controller"].pid), "kube-apiserver": _rss(records["kube-apiserver"].pid),
           "etcd": _rss(records["etcd"].pid), "s3": _rss(records["s3"].pid, tree=True)}
    return Snapshot(sum(m["state"] == "READY" for m in index), len(index), len(list(repo.iterdir())),
                    len(procs), fds, sockets, rss)


def cycle(stack: Stack, kube: client.ApiClient, rec: cp.Recorder, url: str, name: str, custom) -> float:
    """One create -> Ready -> infer -> delete -> gone; returns its seconds."""
    start = time.monotonic()
    obj = cp.trained_model(name, f"s3://{cp.BUCKET}/{cp.TINY_PREFIX}/tiny-000", "triton", "16Mi")
    uid = custom.create_namespaced_custom_object(cp.GROUP.group, cp.GROUP.tm_version, cp.NS, "trainedmodels",
                                                 obj)["metadata"]["uid"]
    poll_until(lambda: rec.ready_at.get(uid), f"TrainedModel {name} Ready", timeout=300, interval=0.02)
    # Ready says the model was handed to the server (as in KServe); Triton says when it is loaded.
    poll_until(lambda: cp._serving(url, name), f"{name} served", timeout=300, interval=0.02)
    out = triton.infer(url, name, np.ones(4, dtype=np.float32))["OUTPUT0"]
    assert out.tolist() == [2.0] * 4, out
    custom.delete_namespaced_custom_object(cp.GROUP.group, cp.GROUP.tm_version, cp.NS, "trainedmodels", name)
    folder = stack.servers_dir / f"{cp.NS}.{cp.SERVER}" / "models" / name
    poll_until(lambda: not folder.exists() and not cp._serving(url, name), f"{name} gone", timeout=300, interval=0.02)
    return time.monotonic() - start


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 cycles")
    parser.add_argument("-n", "--cycles", type=int, default=None, help="create/delete cycles (default 1000; quick 20)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state folder (logs)")
    args = parser.parse_args(argv)
    n = args.cycles or (20 if args.quick else 1000)

    print("bench_soak: create/delete cycles against one server (issue 13)" + (" [quick]" if args.quick else ""))
    common.print_machine()
    started = time.monotonic()
    with common.scratch_env("mms-bench-soak-", keep=args.keep) as root:
        with common.running_stack(root) as (stack, _up_s):
            kube = kconfig.new_client_from_config(config_file=str(stack.kubeconfig))
            custom = client.CustomObjectsApi(kube)
            with cp.Recorder(kube) as rec:
                url, _ = cp.start_server(stack, kube)
                cp.upload_tiny(stack, 1)
                for i in range(2):  # warm-up: first stub start, first client connections
                    cycle(stack, kube, rec, url, NAMES[i], custom)
                before = snapshot(stack, url)
                times = []
                for i in range(n):
                    times.append(cycle(stack, kube, rec, url, NAMES[i % len(NAMES)], custom))
                    if (i + 1) % 100 == 0:
                        print(f"  {i + 1}/{n} cycles, last {times[-1]:.2f} s", flush=True)
                after = snapshot(stack, url)
                triton.forget_clients()

    common.heading(f"Soak: {n} TrainedModel create -> Ready -> infer -> delete -> gone cycles, one server")
    rows = [("models READY in Triton", before.triton_ready, after.triton_ready),
            ("entries in Triton's repository index", before.triton_index, after.triton_index),
            ("files/folders in the model repository", before.repo_entries, after.repo_entries),
            ("processes (supervisor and descendants)", before.processes, after.processes),
            ("open file descriptors (same processes)", before.fds, after.fds),
            ("inet sockets (same processes)", before.sockets, after.sockets)]
    rows += [(f"RSS MiB {role}", round(before.rss[role], 1), round(after.rss[role], 1)) for role in before.rss]
    common.table(["MEASURE", "BEFORE", "AFTER"], [(m, b, a) for m, b, a in rows],
                 note="BEFORE: after two warm-up cycles. Stubs come and go with their model, so 'triton + stubs' "
                      "counts only\nwhat is loaded at that moment (nothing, at both ends).")
    common.figure("soak cycles", str(n))
    common.figure("soak cycle time p50 / p99", f"{statistics.median(times):.2f} s / "
                                               f"{sorted(times)[min(len(times) - 1, int(len(times) * 0.99))]:.2f} s")
    common.figure("soak leaked models (Triton READY, repository)", f"{after.triton_ready} / {after.repo_entries}")
    common.figure("soak process / socket / fd delta", f"{after.processes - before.processes:+d} / "
                                                      f"{after.sockets - before.sockets:+d} / {after.fds - before.fds:+d}")
    for role in ("triton + stubs", "agent", "controller"):
        common.figure(f"soak RSS {role} before -> after", f"{before.rss[role]:.0f} -> {after.rss[role]:.0f} MiB")
    common.figure("bench_soak wall time", f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
