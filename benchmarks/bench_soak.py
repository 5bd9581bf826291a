"""The soak (issues 13, 26): N create/delete cycles of TrainedModels against one server; what is left over.

On a fresh local stack (temporary state folder, stopped at the end; or the running stack of
`--stack-dir`) the guide's steps 1-3 are applied, then N cycles (default 1000) of: apply a
TrainedModel, wait until it is Ready, until Triton serves it, infer once through the ingress
gateway, delete it, wait until Triton no longer serves it and its folder is gone. Each cycle's
TrainedModel has a name of its own (`soak-0001`, ...), as a workshop's learners make new ones, so
what the stack keeps per model name (a thread, a client) shows as a leak. The model is the
cifar10 TorchScript stand-in when Triton's own pytorch backend serves it (no stub process), else
a tiny numpy `backend: "python"` one. A cycle that fails (a timeout, an error) is counted and
cleaned up, and the soak goes on: it runs to the end and says what failed.

Two warm-up cycles come first. At the start (after them) and at the end, the leaks:

- models: READY in Triton, entries in Triton's repository index, TrainedModels left, entries in
  the server's `models.json`;
- files: files and folders in the server's model repository, and all files of the server's folder;
- processes of the stack (the supervisor and all its descendants: components, nginx, Triton,
  stubs, agent), their open file descriptors and inet sockets;
- resident memory of Triton (with its stubs), the agent, the controller, the apiserver, etcd, S3
  and nginx.

Usage: python benchmarks/bench_soak.py [--quick | --smoke] [-n CYCLES] [--keep] [--stack-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import psutil
from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
import _server

from helpers.clients import triton
from helpers.core.constants import MODEL_CONFIG_FILE, model_config_map_name
from helpers.core.wait import poll_until
from helpers.local.stack.stack import Stack


def name_of(cycle_number: int, warmup: bool = False) -> str:
    return f"soak-warmup-{cycle_number}" if warmup else f"soak-{cycle_number:04d}"


@dataclass
class Snapshot:
    triton_ready: int
    triton_index: int
    trained_models: int
    models_json: int
    repo_entries: int
    server_files: int
    server_bytes: int
    processes: int
    fds: int
    sockets: int
    rss: dict[str, float]  # role -> MiB


def _stack_processes(stack: Stack) -> list[psutil.Process]:
    root = psutil.Process(stack.supervisor_record().pid)
    return [root] + root.children(recursive=True)


def _rss(pid: Optional[int], tree: bool = False) -> float:
    if not pid or not psutil.pid_exists(pid):
        return 0.0
    return common.mib(common.tree_memory(pid, with_pss=False).rss if tree else psutil.Process(pid).memory_info().rss)


def server_dir(stack: Stack) -> Path:
    return stack.servers_dir / f"{_server.NS}.{_server.SERVER}"


def snapshot(server: _server.Server, url: str) -> Snapshot:
    stack = server.stack
    index = triton.repository_index(url)
    procs = _stack_processes(stack)
    fds = sockets = 0
    for proc in procs:
        try:
            fds += proc.num_fds()
            sockets += len(proc.net_connections(kind="inet"))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    records = stack.records()
    roles = json.loads((server_dir(stack) / "processes.json").read_text())
    rss = {"triton + stubs": _rss(roles["triton"]["pid"], tree=True), "agent": _rss(roles["agent"]["pid"])}
    for name in ("controller", "kube-apiserver", "etcd", "s3", "gateway"):
        rss[name] = _rss(records[name].pid, tree=name in ("s3", "gateway")) if name in records else 0.0
    cm = client.CoreV1Api(server.kube).read_namespaced_config_map(model_config_map_name(_server.SERVER), _server.NS)
    entries = json.loads((cm.data or {}).get(MODEL_CONFIG_FILE, "[]"))
    folder = server_dir(stack)
    sizes = _file_sizes(folder)
    return Snapshot(sum(m["state"] == "READY" for m in index), len(index), len(server.trained_models()),
                    len(entries), len(list((folder / "models").iterdir())), len(sizes),
                    sum(sizes), len(procs), fds, sockets, rss)


def _file_sizes(folder: Path) -> list[int]:
    """The size of each file under `folder`; one the controller renamed or removed meanwhile (its
    atomic writes go through a `.tmp` file) is left out, as a later listing would not show it."""
    sizes = []
    for parent, _dirs, names in os.walk(folder):  # a folder removed meanwhile is skipped, not raised
        for name in names:
            try:
                sizes.append(os.stat(os.path.join(parent, name)).st_size)
            except FileNotFoundError:
                continue
    return sizes


def cycle(server: _server.Server, url: str, name: str, model: _server.Model, timeout: float) -> float:
    """One create -> Ready -> served -> infer through the gateway -> delete -> gone; returns its seconds."""
    start = time.monotonic()
    server.apply(name, model)
    poll_until(lambda: server.ready("trainedmodels", name), f"TrainedModel {name} Ready", timeout, 0.02, paced=False)
    # Ready says the model was handed to the server (as in KServe); Triton says when it is loaded.
    poll_until(lambda: server.served(url, name), f"{name} served", timeout, 0.02, paced=False)
    if not server.infer_through_gateway(name, model):
        raise RuntimeError(f"{name}: the gateway's answer was not the model's")
    server.delete(name)
    gone = server_dir(server.stack) / "models" / name
    poll_until(lambda: not gone.exists() and not server.served(url, name) and not server.exists(name),
               f"{name} gone", timeout, 0.02, paced=False)
    return time.monotonic() - start


def clean_up(server: _server.Server, url: str, name: str, timeout: float) -> None:
    """After a failed cycle: the TrainedModel deleted and gone, whatever state it was left in."""
    try:
        server.delete(name)
        poll_until(lambda: not server.exists(name) and not server.served(url, name), f"{name} cleaned up",
                   timeout, 0.1, paced=False)
    except Exception as exc:  # noqa: BLE001 - reported; the next cycle uses another name
        print(f"  cleaning up {name} failed: {type(exc).__name__}: {exc}", flush=True)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 cycles")
    parser.add_argument("--smoke", action="store_true", help="3 cycles, one warm-up (the test's run)")
    parser.add_argument("-n", "--cycles", type=int, default=None, help="create/delete cycles (default 1000; quick 20)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds for each step of a cycle")
    parser.add_argument("--model", choices=("auto", "torchscript", "tiny"), default="auto",
                        help="auto: TorchScript when Triton's own pytorch backend serves it, else the tiny numpy one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state folder (logs)")
    parser.add_argument("--stack-dir", type=Path, default=None,
                        help="run on the stack of this state folder (started if needed, left running)")
    args = parser.parse_args(argv)
    n = args.cycles or (3 if args.smoke else 20 if args.quick else 1000)
    warmups = 1 if args.smoke else 2

    mode = " [smoke]" if args.smoke else " [quick]" if args.quick else ""
    print(f"bench_soak: {n} create/delete cycles against one server (issues 13, 26){mode}")
    common.print_machine()
    started = time.monotonic()
    failures: list[str] = []
    times: list[float] = []
    with common.scratch_env("mms-bench-soak-", keep=args.keep) as root:
        with common.stack_for(root, args.stack_dir) as (stack, _up_s):
            server = _server.Server(stack)
            server.start()
            model = server.upload(args.model)
            url = server.triton_url()
            print(f"model: {model.uri} ({model.framework}); server {url}; gateway {server.gateway()[0]}", flush=True)
            for i in range(warmups):  # first stub start, first client connections
                cycle(server, url, name_of(i, warmup=True), model, args.timeout)
            before = snapshot(server, url)
            for i in range(n):
                name = name_of(i + 1)
                try:
                    times.append(cycle(server, url, name, model, args.timeout))
                except Exception as exc:  # noqa: BLE001 - counted, cleaned up, and the soak goes on
                    failures.append(f"cycle {i + 1} ({name}): {type(exc).__name__}: {exc}")
                    print(f"  {failures[-1]}", flush=True)
                    clean_up(server, url, name, args.timeout)
                    url = server.triton_url()
                if (i + 1) % 100 == 0:  # the trend, not only both ends: a leak grows cycle after cycle
                    now = snapshot(server, url)
                    print(f"  {i + 1}/{n} cycles, last {times[-1] if times else 0:.2f} s, {len(failures)} failed, "
                          f"{time.strftime('%H:%M:%S')}; fds {now.fds}, sockets {now.sockets}, processes "
                          f"{now.processes}, server folder {now.server_bytes} B, RSS MiB "
                          + ", ".join(f"{role} {mib:.1f}" for role, mib in now.rss.items()), flush=True)
            poll_until(lambda: not server.trained_models(), "every TrainedModel gone", args.timeout, 0.1, paced=False)
            after = snapshot(server, url)
            triton.forget_clients()

    common.heading(f"Soak: {n} TrainedModel create -> Ready -> served -> infer (gateway) -> delete -> gone cycles")
    rows = [("models READY in Triton", before.triton_ready, after.triton_ready),
            ("entries in Triton's repository index", before.triton_index, after.triton_index),
            ("TrainedModels left", before.trained_models, after.trained_models),
            ("entries in models.json (ConfigMap)", before.models_json, after.models_json),
            ("files/folders in the model repository", before.repo_entries, after.repo_entries),
            ("files in the server's folder", before.server_files, after.server_files),
            ("bytes in the server's folder", before.server_bytes, after.server_bytes),
            ("processes (supervisor and descendants)", before.processes, after.processes),
            ("open file descriptors (same processes)", before.fds, after.fds),
            ("inet sockets (same processes)", before.sockets, after.sockets)]
    rows += [(f"RSS MiB {role}", round(before.rss[role], 1), round(after.rss[role], 1)) for role in before.rss]
    common.table(["MEASURE", "START", "END"], [(m, b, a) for m, b, a in rows],
                 note="START: after the warm-up cycles. Stubs come and go with their model, so 'triton + stubs' "
                      "counts only\nwhat is loaded at that moment (nothing, at both ends).")
    common.figure("soak cycles", f"{n} ({len(failures)} failed)")
    for line in failures[:20]:
        print(f"  failed: {line}")
    if times:
        common.figure("soak cycle time p50 / p99", f"{statistics.median(times):.2f} s / "
                                                   f"{sorted(times)[min(len(times) - 1, int(len(times) * 0.99))]:.2f} s")
    common.figure("soak leaked models (Triton READY, index, TrainedModels, models.json)",
                  f"{after.triton_ready} / {after.triton_index} / {after.trained_models} / {after.models_json}",
                  width=72)
    common.figure("soak leaked files (repository entries, server folder files / bytes)",
                  f"{after.repo_entries - before.repo_entries:+d} / {after.server_files - before.server_files:+d} / "
                  f"{after.server_bytes - before.server_bytes:+d}", width=72)
    common.figure("soak process / fd / socket delta", f"{after.processes - before.processes:+d} / "
                                                      f"{after.fds - before.fds:+d} / {after.sockets - before.sockets:+d}",
                  width=72)
    for role in before.rss:
        common.figure(f"soak RSS {role} start -> end", f"{before.rss[role]:.1f} -> {after.rss[role]:.1f} MiB", width=72)
    common.figure("bench_soak wall time", f"{time.monotonic() - started:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
