"""The control plane's figures (issue 4): apply -> served for a TrainedModel, step by step; N at once.

On a fresh local stack (temporary state folder, stopped at the end) the guide's steps 1-3 are
applied (Profile, S3 secret + service account, ExternalName, the multi-model InferenceService),
then:

1. one TrainedModel (the cifar10 stand-in; then, not with --quick, the inception stand-in), apply
   -> served (Triton's `/v2/models/<m>/ready`, as the guide checks it), split into
     controller   apply -> model-config ConfigMap updated (watch event) / models.json projected (mtime)
     agent sees   models.json written -> the agent's "Processing event" (inotify wakes it)
     download     "Processing event" -> "Creating successFile" (agent log)
     Triton load  successFile -> "Successfully loaded model" (agent log)
   and the overhead: apply -> served minus Triton's own load, the part that is ours. READY is
   apply -> the TrainedModel's Ready condition, which (as in KFServing/KServe, issue 9) says the
   model was handed to the server, not that it loaded, so it comes before the load;
   and compared with the guide's agent log (cifar10: event -> load done 0.645 s on a GPU cluster);
   repeated --repeats times (delete, wait until unloaded, apply again);
2. N TrainedModels applied at once (default 100) -> time until all are in models.json, all
   loaded, all Ready, with the peak resident memory of the server (tritonserver + stubs). The
   model (--many-kind): the cifar10 TorchScript stand-in (one CPU instance) when Triton's own
   pytorch backend serves TorchScript (issue 14: all in Triton's process), else a tiny
   `backend: "python"` one (numpy only, one CPU instance), as 100 torch stubs would need ~23 GB;
   uploaded under N prefixes. Then all deleted at once -> all unloaded.
3. the control plane at rest: once every server is served and nothing has changed for the
   controller's settle time, the CPU seconds per minute of kube-apiserver, etcd,
   kube-controller-manager and the controller (the controller then resyncs every
   RESYNC_AT_REST_S instead of every second; issue 23: what a stack costs while tests or a learner
   read it).

Usage: python benchmarks/bench_controlplane.py [--quick] [--inception] [-n N] [--repeats R]
       [--many-kind auto|torchscript|tiny] [--rest-window S]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))  # tests/support: the guide's steps
import _common as common
import _server
from kubernetes import client, watch
from kubernetes import config as kconfig

from helpers.clients import k8s, manifests, storage, triton
from helpers.clients.k8s import resolve_url
from helpers.core.constants import KFSERVING_GROUP, MODEL_CONFIG_FILE, api_group, model_config_map_name
from helpers.core.wait import poll_until
from helpers.local.stack import torch_backend
from helpers.local.stack.stack import Stack
from helpers.steps.models import agent_log
from helpers.steps.models.standins import write_cifar10_standin, write_inception_standin
from support.guide_steps import apply_guide_steps, guide_values

NS, SERVER, BUCKET = "bench", "triton-bench", "bench-models"
GROUP = api_group(KFSERVING_GROUP)  # the guide's API group
TINY_PREFIX = "tiny"


# --- watching the apiserver ---------------------------------------------------------------------
class Recorder:
    """Watches TrainedModels and the model-config ConfigMap in NS; records when things happened."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.ready_at: dict[str, float] = {}  # TrainedModel uid -> first time Ready (current generation)
        self.config_events: list[tuple[float, frozenset[str]]] = []  # (time, models in models.json)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(fn,), daemon=True)
                        for fn in (self._watch_models, self._watch_config)]

    def __enter__(self) -> "Recorder":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()

    def _loop(self, fn: Callable[[], None]) -> None:
        while not self.stop.is_set():
            try:
                fn()
            except Exception:  # noqa: BLE001 - a dropped watch is simply opened again
                self.stop.wait(0.2)

    def _watch_models(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        for event in watch.Watch().stream(custom.list_namespaced_custom_object, GROUP.group, GROUP.tm_version,
                                          NS, "trainedmodels", timeout_seconds=5):
            now, obj = time.time(), event["object"]
            meta, status = obj["metadata"], obj.get("status") or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            if ready and status.get("observedGeneration") == meta.get("generation"):
                with self.lock:
                    self.ready_at.setdefault(meta["uid"], now)
            if self.stop.is_set():
                return

    def _watch_config(self) -> None:
        core = client.CoreV1Api(self.api)
        selector = f"metadata.name={model_config_map_name(SERVER)}"
        for event in watch.Watch().stream(core.list_namespaced_config_map, NS, field_selector=selector,
                                          timeout_seconds=5):
            now, cm = time.time(), event["object"]
            try:
                names = frozenset(e["modelName"] for e in json.loads((cm.data or {}).get(MODEL_CONFIG_FILE, "[]")))
            except ValueError:
                continue
            with self.lock:
                if not self.config_events or self.config_events[-1][1] != names:
                    self.config_events.append((now, names))
            if self.stop.is_set():
                return

    def config_has(self, names: set[str], after: float) -> Optional[float]:
        """First time after `after` that models.json in the ConfigMap named all of `names`."""
        with self.lock:
            return next((t for t, found in self.config_events if t >= after and names <= found), None)


# --- setting up the server (the guide's steps 1-3, as tests/stack/test_controller.py does) ---------------
def start_server(stack: Stack, kube: client.ApiClient) -> tuple[str, float]:
    """Profile, S3 secret + SA, ExternalName, the ISVC; wait Ready. Returns (Triton URL, seconds to Ready)."""
    values = guide_values(stack, NS, SERVER, GROUP.group, owner="bench@example.com")
    apply_guide_steps(kube, values, server=False)
    start = time.monotonic()
    k8s.apply_all(kube, manifests.render("multi_model_triton_server.yaml", **values))
    isvc = poll_until(lambda: _ready_object(kube, "inferenceservices", SERVER), "InferenceService Ready", 180, 0.2, paced=False)
    took = time.monotonic() - start
    return resolve_url(kube, isvc["status"]["address"]["url"], NS), took


def _ready_object(kube: client.ApiClient, plural: str, name: str) -> Optional[dict]:
    version = GROUP.isvc_version if plural == "inferenceservices" else GROUP.tm_version
    obj = client.CustomObjectsApi(kube).get_namespaced_custom_object(GROUP.group, version, NS, plural, name)
    conds = (obj.get("status") or {}).get("conditions") or []
    return obj if any(c["type"] == "Ready" and c["status"] == "True" for c in conds) else None


def trained_model(name: str, uri: str, framework: str, memory: str) -> dict:
    return {"apiVersion": GROUP.tm_api_version, "kind": "TrainedModel", "metadata": {"name": name, "namespace": NS},
            "spec": {"inferenceService": SERVER,
                     "model": {"framework": framework, "storageUri": uri, "memory": memory}}}


def s3_client(stack: Stack):
    creds = stack.s3_credentials()
    return storage.connect(storage.S3Settings(stack.env()["MMS_S3_ENDPOINT"], creds.access_key, creds.secret_key))


# --- 1. one TrainedModel, step by step -----------------------------------------------------------
@dataclass
class Steps:
    """Seconds of each step of apply -> served for one TrainedModel (None: not seen)."""

    label: str
    controller: Optional[float] = None
    agent_sees: Optional[float] = None
    download: Optional[float] = None
    load: Optional[float] = None
    status: Optional[float] = None
    total: Optional[float] = None
    event_to_loaded: Optional[float] = None
    unload: Optional[float] = None

    def row(self) -> tuple:
        return (self.label, self.controller, self.agent_sees, self.download, self.load, self.status,
                self.total, self.event_to_loaded, self.unload)


def _span(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else b - a


def agent_times(stack: Stack, model: str, after: float) -> dict[str, Optional[float]]:
    """Unix times of the agent's steps for `model` since `after`, from its JSON log."""
    events = agent_log.parse((stack.logs / f"agent-{NS}.{SERVER}.log").read_text().splitlines())
    events = [e for e in events if e["ts"] >= after]

    def first(prefix: str, by_model: bool = True) -> Optional[float]:
        return next((e["ts"] for e in events if e["msg"].startswith(prefix)
                     and (not by_model or e["model"] == model)), None)

    return {"event": first("Processing event", by_model=False), "marker": first("Creating successFile"),
            "loaded": first("Successfully loaded model")}


def one_model(stack: Stack, kube: client.ApiClient, rec: Recorder, url: str, label: str, name: str,
              uri: str, framework: str) -> Steps:
    """Apply one TrainedModel, wait Ready, split the time; then delete it and wait until unloaded."""
    config_file = stack.servers_dir / f"{NS}.{SERVER}" / "configs" / MODEL_CONFIG_FILE
    t0 = time.time()
    created = k8s.apply(kube, trained_model(name, uri, framework, "1Gi"))
    uid = created["metadata"]["uid"]
    ready = poll_until(lambda: rec.ready_at.get(uid), f"TrainedModel {name} Ready", timeout=600, interval=0.05, paced=False)
    poll_until(lambda: _serving(url, name), f"{name} served by Triton", timeout=600, interval=0.01, paced=False)
    served = time.time()
    cm = rec.config_has({name}, t0)
    projected = config_file.stat().st_mtime
    try:  # Triton answers ready a moment before the agent, whose load request returns then, logs it
        agent = poll_until(lambda: (lambda found: found if found["loaded"] else None)(agent_times(stack, name, t0)),
                           f"the agent to log {name} loaded", timeout=30, interval=0.05, paced=False)
    except TimeoutError:
        agent = agent_times(stack, name, t0)
    lines = (stack.logs / f"agent-{NS}.{SERVER}.log").read_text().splitlines()
    guide_like = agent_log.timeline(lines, name)
    steps = Steps(label, controller=_span(t0, cm), agent_sees=_span(projected, agent["event"]),
                  download=_span(agent["event"], agent["marker"]), load=_span(agent["marker"], agent["loaded"]),
                  status=ready - t0, total=served - t0, event_to_loaded=guide_like["load_s"])
    start = time.time()
    client.CustomObjectsApi(kube).delete_namespaced_custom_object(GROUP.group, GROUP.tm_version, NS,
                                                                  "trainedmodels", name)
    folder = stack.servers_dir / f"{NS}.{SERVER}" / "models" / name
    poll_until(lambda: not _serving(url, name) and not folder.exists(), f"{name} unloaded", 120, 0.05, paced=False)
    steps.unload = time.time() - start
    return steps


def _serving(url: str, name: str) -> bool:
    try:
        return triton.model_ready(url, name)
    except triton.TritonError:
        return False


def guide_rows() -> list[Steps]:
    """The guide's own agent log through the same timeline helper."""
    rows = []
    for model in ("cifar10", "inception"):
        found = agent_log.timeline(agent_log.guide_log(model), model)
        rows.append(Steps(f"guide: {model} (GPU cluster)", download=found["download_s"],
                          load=_span(found["download_s"], found["load_s"]), event_to_loaded=found["load_s"]))
    return rows


def single_models(stack: Stack, kube: client.ApiClient, rec: Recorder, url: str, repeats: int,
                  inception: bool) -> None:
    """Part 1: the step table, local runs then the guide's."""
    s3 = s3_client(stack)
    with tempfile.TemporaryDirectory(prefix="mms-bench-models-") as tmp:
        write_cifar10_standin(Path(tmp) / "cifar10")
        storage.upload_folder(s3, Path(tmp) / "cifar10", BUCKET, "torchscript/cifar10", progress=False)
        if inception:
            with common.quiet_stderr():
                write_inception_standin(Path(tmp) / "inception")
            storage.upload_folder(s3, Path(tmp) / "inception", BUCKET, "models/inception_graphdef", progress=False)
    runs = [one_model(stack, kube, rec, url, f"cifar10 run {i + 1}", "cifar10",
                      f"s3://{BUCKET}/torchscript/cifar10", "pytorch") for i in range(repeats)]
    if inception:
        runs.append(one_model(stack, kube, rec, url, "inception run 1", "inception",
                              f"s3://{BUCKET}/models/inception_graphdef", "tensorflow"))
    common.heading("One TrainedModel: apply -> served, step by step (seconds)")
    common.table(["RUN", "CONTROLLER", "AGENT SEES", "DOWNLOAD", "TRITON LOAD", "READY", "SERVED",
                  "EVENT->LOADED", "DELETE->GONE"], [r.row() for r in runs + guide_rows()],
                 note="CONTROLLER: apply -> ConfigMap models.json updated (watch). AGENT SEES: models.json "
                      "projected (file mtime) ->\nagent's 'Processing event' (inotify; 10 s resync as a safety net). "
                      "DOWNLOAD: -> 'Creating successFile'. TRITON LOAD: -> 'Successfully\nloaded model'. READY: apply -> "
                      "the TrainedModel's Ready (handed to the server; not the load). SERVED: apply -> Triton's\nready.\n"
                      "EVENT->LOADED: helpers.steps.models.agent_log.timeline, the figure the guide's log gives (KFServing "
                      "0.5 logs no\nsuccessFile for cifar10, so its download and load are one span there).")
    cifar = [r for r in runs if r.label.startswith("cifar10")]
    common.figure("cifar10 apply -> served (median)", f"{statistics.median(r.total for r in cifar):.2f} s")
    loads = [r.load for r in cifar if r.load is not None]
    common.figure("cifar10 Triton load (median)", f"{statistics.median(loads):.3f} s" if loads else "n/a")
    overhead = [r.total - r.load for r in cifar if r.load is not None]
    common.figure("cifar10 apply -> served minus Triton load (median)",
                  f"{statistics.median(overhead) * 1000:.0f} ms" if overhead else "n/a")
    for label, pick in (("agent sees", lambda r: r.agent_sees), ("apply -> Ready", lambda r: r.status)):
        values = [pick(r) for r in cifar if pick(r) is not None]
        common.figure(f"cifar10 {label} (median)", f"{statistics.median(values) * 1000:.0f} ms" if values else "n/a")
    events = [r.event_to_loaded for r in cifar if r.event_to_loaded is not None]
    common.figure("cifar10 event -> loaded (median)",
                  (f"{statistics.median(events):.3f} s" if events else "n/a") + " (guide: 0.645 s on a GPU cluster)")
    for run in (r for r in runs if r.label.startswith("inception")):  # issue 25: which tensorflow backend
        common.figure("inception apply -> served", "n/a" if run.total is None else f"{run.total:.2f} s")
        common.figure("inception event -> loaded", "n/a" if run.event_to_loaded is None
                      else f"{run.event_to_loaded:.3f} s (guide: 1.52 s on a GPU cluster)")


# --- 2. N TrainedModels at once --------------------------------------------------------------------
def upload_many(stack: Stack, n: int, kind: str) -> list[str]:
    """The tiny python model, or the cifar10 TorchScript stand-in, under n prefixes; returns the names."""
    s3 = s3_client(stack)
    names = [f"{'ts' if kind == 'torchscript' else 'tiny'}-{i:03d}" for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="mms-bench-tiny-") as tmp:
        folder = _server.write_model(Path(tmp) / "tiny", kind)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda name: storage.upload_folder(s3, folder, BUCKET, f"{TINY_PREFIX}/{name}",
                                                             progress=False), names))
    return names


@dataclass
class AgentLoads:
    """What the agent's log says about a batch of loads, seconds from the first apply."""

    all_once: Optional[float]  # every model loaded at least once
    last: Optional[float]  # the last "Successfully loaded model" (a reload included)
    loads: int
    restarts: int  # "Triton restarted: reloading models from disk"
    unreachable: int  # "Triton is unreachable" (its index request failed or timed out)


def agent_loads(stack: Stack, names: set[str], t0: float) -> AgentLoads:
    events = [e for e in agent_log.parse((stack.logs / f"agent-{NS}.{SERVER}.log").read_text().splitlines())
              if e["ts"] >= t0]
    loaded = [e for e in events if e["msg"].startswith("Successfully loaded model") and e["model"] in names]
    first: dict[str, float] = {}
    for event in loaded:
        first.setdefault(event["model"], event["ts"])
    return AgentLoads(max(first.values()) - t0 if len(first) == len(names) else None,
                      max(e["ts"] for e in loaded) - t0 if loaded else None, len(loaded),
                      sum(e["msg"].startswith("Triton restarted") for e in events),
                      sum(e["msg"].startswith("Triton is unreachable") for e in events))


def triton_pid(stack: Stack) -> int:
    return json.loads((stack.servers_dir / f"{NS}.{SERVER}" / "processes.json").read_text())["triton"]["pid"]


def many_models(stack: Stack, kube: client.ApiClient, rec: Recorder, url: str, n: int, timeout: float,
                kind: str) -> None:
    """Part 2: n TrainedModels applied at once; times to all-in-config, all loaded, all Ready; peak RSS."""
    start = time.monotonic()
    names = upload_many(stack, n, kind)
    uploaded = time.monotonic() - start
    pid = triton_pid(stack)
    baseline = common.tree_memory(pid)
    custom = client.CustomObjectsApi(kube)

    def create(name: str) -> str:
        obj = trained_model(name, f"s3://{BUCKET}/{TINY_PREFIX}/{name}",
                            "pytorch" if kind == "torchscript" else "triton", "16Mi")
        return custom.create_namespaced_custom_object(GROUP.group, GROUP.tm_version, NS, "trainedmodels", obj)[
            "metadata"]["uid"]

    with common.PeakSampler(pid) as sampler:
        t0 = time.time()
        with ThreadPoolExecutor(max_workers=8) as pool:
            uids = list(pool.map(create, names))
        applied = time.time() - t0
        poll_until(lambda: all(u in rec.ready_at for u in uids), f"{n} TrainedModels Ready", timeout, 0.2, paced=False)
        # Ready means handed to the server (issue 9), not loaded: wait for Triton to serve all of them.
        poll_until(lambda: set(names) <= {m["name"] for m in triton.repository_index(url) if m["state"] == "READY"},
                   f"{n} models served by Triton", timeout, 0.2, paced=False)
        sampler.sample()
    ready_times = sorted(rec.ready_at[u] - t0 for u in uids)
    in_config = rec.config_has(set(names), t0)
    # Triton answers READY a moment before the agent's load call returns and it logs the load: wait
    # for its lines, else a count read now misses the last loads ("83 loads for 100 models").
    try:
        agent = poll_until(lambda: (lambda found: found if found.all_once is not None else None)(
            agent_loads(stack, set(names), t0)), f"the agent to log {n} loads", 60, 0.25, paced=False)
    except TimeoutError:
        agent = agent_loads(stack, set(names), t0)
    final = common.tree_memory(pid)
    if kind == "torchscript":
        sample_ok = triton.infer(url, names[-1], np.ones((1, 3, 32, 32), dtype=np.float32))["OUTPUT__0"].shape
        check = f"{names[-1]} answers [1,3,32,32] with {list(sample_ok)} logits"
    else:
        sample_ok = triton.infer(url, names[-1], np.ones(4, dtype=np.float32))["OUTPUT0"]
        check = f"{names[-1]} doubles [1,1,1,1] -> {sample_ok.tolist()}"

    start = time.time()
    for name in names:
        custom.delete_namespaced_custom_object(GROUP.group, GROUP.tm_version, NS, "trainedmodels", name)
    poll_until(lambda: not any(m["state"] == "READY" for m in triton.repository_index(url) if m["name"] in names),
               f"{n} models unloaded", timeout, 0.5, paced=False)
    unloaded = time.time() - start

    common.heading(f"{n} TrainedModels applied at once -> all Ready")
    model = ("the cifar10 TorchScript stand-in (Triton's own pytorch backend" if kind == "torchscript"
             else "tiny `backend: \"python\"` model (numpy only")
    print(f"model: {model}, instance_group count 1 KIND_CPU), uploaded under {n} prefixes "
          f"s3://{BUCKET}/{TINY_PREFIX}/<name>")
    rows = [("upload (not timed below)", uploaded),
            ("all applied (8 parallel creates)", applied),
            (f"all {n} in the ConfigMap's models.json", _span(t0, in_config)),
            (f"all {n} loaded once (agent log, 'Successfully loaded')", agent.all_once),
            ("last load done (agent log; reloads included)", agent.last),
            ("first TrainedModel Ready", ready_times[0]),
            ("median TrainedModel Ready", statistics.median(ready_times)),
            (f"all {n} TrainedModels Ready", ready_times[-1]),
            (f"delete all {n} -> none served", unloaded)]
    common.table(["STEP (seconds from the first apply)", "SECONDS"], rows,
                 note=f"agent: {agent.loads} loads for {n} models; {agent.restarts} 'Triton restarted: reloading "
                      f"models from disk' pass(es), {agent.unreachable} 'Triton is unreachable'.")
    common.table(["SERVER MEMORY (tritonserver + stubs)", "PROCS", "RSS MIB"],
                 [("before", baseline.processes, common.mib(baseline.rss)),
                  ("peak while loading (sampled every 0.25 s)", sampler.peak.processes, common.mib(sampler.peak.rss)),
                  ("all loaded", final.processes, common.mib(final.rss)),
                  ("per model ((all loaded - before) / N)", None, common.mib((final.rss - baseline.rss) / n))],
                 note=f"check: {check}")
    common.figure(f"{n} TrainedModels apply -> all Ready", f"{ready_times[-1]:.1f} s")
    common.figure(f"server peak RSS with {n} models", f"{common.mib(sampler.peak.rss):.0f} MiB")


RESYNC_S_MARGIN = 2.0  # past the settle time, so the first at-rest resync has begun

# --- 3. at rest ----------------------------------------------------------------------------------
AT_REST_PARTS = ("kube-apiserver", "etcd", "kube-controller-manager", "controller", "supervisor")


def at_rest(stack: Stack, window: float) -> None:
    """CPU seconds per minute of the control plane's processes over `window` s, once the controller is at rest."""
    from helpers.local.controller import RESYNC_AT_REST_S, SETTLE_S

    common.heading(f"The control plane at rest (after {SETTLE_S:.0f} s without a change, over {window:.0f} s)")
    time.sleep(SETTLE_S + RESYNC_S_MARGIN)
    records = {**stack.records(), "supervisor": stack.supervisor_record()}
    procs = {name: psutil.Process(records[name].pid) for name in AT_REST_PARTS
             if records.get(name) and records[name].alive()}

    def cpu() -> dict[str, float]:
        return {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}

    before, start = cpu(), time.monotonic()
    time.sleep(window)
    after, spent = cpu(), time.monotonic() - start
    rows = [(name, f"{(after[name] - before[name]) * 60 / spent:.2f}") for name in procs]
    common.table(["PROCESS", "CPU S PER MINUTE"], rows,
                 note=f"the controller's full pass: every {RESYNC_AT_REST_S:.0f} s at rest, every second while anything moves")
    total = sum(after[name] - before[name] for name in procs) * 60 / spent
    common.figure("control plane at rest, CPU s per minute", f"{total:.2f} s")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N=10, one cifar10 run, no inception")
    parser.add_argument("--inception", action="store_true", help="the inception run even with --quick")
    parser.add_argument("--smoke", action="store_true", help="N=2, one cifar10 run, no inception (the test's run)")
    parser.add_argument("--stack-dir", type=Path, default=None,
                        help="run on the stack of this state folder (started if needed, left running)")
    parser.add_argument("-n", "--models", type=int, default=None,
                        help="TrainedModels applied at once (default 100; quick 10)")
    parser.add_argument("--repeats", type=int, default=None, help="cifar10 apply -> served runs (default 3; quick 1)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the N models")
    parser.add_argument("--rest-window", type=float, default=None,
                        help="seconds of CPU measured at rest (default 60; quick 20; smoke 5)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state folder (logs)")
    parser.add_argument("--many-kind", choices=("auto", "torchscript", "tiny"), default="auto",
                        help="the N models: auto = torchscript when Triton's own pytorch backend serves it, else tiny")
    args = parser.parse_args(argv)
    kind = args.many_kind
    if kind == "auto":
        kind = "torchscript" if torch_backend.choose().native else "tiny"
    n = args.models or (2 if args.smoke else 10 if args.quick else 100)
    args.quick = args.quick or args.smoke
    repeats = args.repeats or (1 if args.quick else 3)

    print("bench_controlplane: the control plane (issue 4)" + (" [quick]" if args.quick else ""))
    common.print_machine()
    started = time.monotonic()
    with common.scratch_env("mms-bench-cp-", keep=args.keep) as root:
        with common.stack_for(root, args.stack_dir) as (stack, up_s):
            common.heading("Stack and server")
            common.figure("stack cold start", "n/a (a running stack)" if up_s is None else f"{up_s:.2f} s")
            kube = kconfig.new_client_from_config(config_file=str(stack.kubeconfig))
            with Recorder(kube) as rec:
                url, isvc_s = start_server(stack, kube)
                common.figure("InferenceService apply -> Ready (Triton up)", f"{isvc_s:.2f} s")
                single_models(stack, kube, rec, url, repeats, inception=args.inception or not args.quick)
                many_models(stack, kube, rec, url, n, args.timeout, kind)
            at_rest(stack, args.rest_window or (5 if args.smoke else 20 if args.quick else 60))
    print()
    common.figure("bench_controlplane wall time", f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
