"""The chaos run (issue 13): kill each component once, in turn, mid-walkthrough; time to recover; nothing lost.

On a fresh local stack (temporary state folder, stopped at the end) the guide's steps 1-4 are
applied as in bench_controlplane (Profile, S3 secret + service account, ExternalName, the
multi-model InferenceService, the cifar10 TrainedModel). Then, for each of S3, etcd,
kube-apiserver, kube-controller-manager, the controller, the server's Triton and its agent:

1. the objects and data are listed (TrainedModels, InferenceServices, Profiles; ConfigMaps,
   Secrets, ServiceAccounts and Services of the namespace; the bucket's objects);
2. its process group gets SIGKILL (`kill -9`), nobody runs `up`;
3. BACK: kill -> a new process runs and answers its health check (the supervisor, or the
   controller for Triton and the agent, restarted it); for the apiserver also: it serves
   TrainedModels again (its `/readyz` says ok before its CRD handlers are rebuilt);
4. NEW TM READY: kill -> a TrainedModel applied right after the kill is Ready (what a learner
   doing the walkthrough would notice);
5. SERVING: kill -> every TrainedModel Ready again and cifar10 answers through the
   InferenceService's address, resolved again as the notebooks do;
6. LOST: objects or S3 keys listed before that are gone now (should be none).

Usage: python benchmarks/bench_chaos.py [--quick] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
import bench_controlplane as cp
from kubernetes import client
from kubernetes import config as kconfig

from helpers.clients import k8s, storage, triton
from helpers.core.wait import WaitTimeout, poll_until
from helpers.local.stack.stack import ORDER, Stack
from helpers.steps.models.standins import write_cifar10_standin

SERVER_ROLES = ("triton", "agent")


def inventory(stack: Stack, kube: client.ApiClient) -> set[str]:
    """Names of everything the walkthrough made, as `kind/name` (and `s3/key`)."""
    custom, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)
    found = set()
    for plural, version in (("trainedmodels", cp.GROUP.tm_version), ("inferenceservices", cp.GROUP.isvc_version)):
        for obj in custom.list_namespaced_custom_object(cp.GROUP.group, version, cp.NS, plural)["items"]:
            found.add(f"{plural}/{obj['metadata']['name']}")
    for obj in custom.list_cluster_custom_object("kubeflow.org", "v1", "profiles")["items"]:
        found.add(f"profiles/{obj['metadata']['name']}")
    for kind, lister in (("configmaps", core.list_namespaced_config_map), ("secrets", core.list_namespaced_secret),
                         ("serviceaccounts", core.list_namespaced_service_account),
                         ("services", core.list_namespaced_service)):
        found |= {f"{kind}/{item.metadata.name}" for item in lister(cp.NS).items
                  if not item.metadata.name.startswith(("default-token", "kube-root-ca"))}
    s3 = cp.s3_client(stack)
    found |= {f"s3/{o.object_name}" for o in s3.list_objects(cp.BUCKET, recursive=True)}
    return found


def _server_record(stack: Stack, role: str) -> dict:
    return json.loads((stack.servers_dir / f"{cp.NS}.{cp.SERVER}" / "processes.json").read_text())[role]


def _pid(stack: Stack, target: str) -> int:
    return _server_record(stack, target)["pid"] if target in SERVER_ROLES else stack.records()[target].pid


def _back(stack: Stack, target: str, old: int) -> Callable[[], bool]:
    def check() -> bool:
        if target in SERVER_ROLES:
            record = _server_record(stack, target)
            if record["pid"] == old:
                return False
            return target != "triton" or triton.server_ready(f"http://127.0.0.1:{record['ports']['http']}")
        row = next(r for r in stack.status() if r.name == target)
        if target == "kube-apiserver" and row.pid != old and row.healthy:
            return _serves_trained_models(stack)  # /readyz says ok before the CRDs are served again
        return row.pid != old and row.healthy
    return check


def _serves_trained_models(stack: Stack) -> bool:
    api = kconfig.new_client_from_config(config_file=str(stack.kubeconfig))
    client.CustomObjectsApi(api).list_namespaced_custom_object(
        cp.GROUP.group, cp.GROUP.tm_version, cp.NS, "trainedmodels", limit=1, _request_timeout=(2, 2))
    return True


def _all_ready(kube: client.ApiClient) -> bool:
    items = client.CustomObjectsApi(kube).list_namespaced_custom_object(
        cp.GROUP.group, cp.GROUP.tm_version, cp.NS, "trainedmodels")["items"]
    return bool(items) and all(any(c["type"] == "Ready" and c["status"] == "True"
                                   for c in (tm.get("status") or {}).get("conditions") or []) for tm in items)


def _serving(stack: Stack) -> bool:
    kube = kconfig.new_client_from_config(config_file=str(stack.kubeconfig))  # as a new notebook kernel would
    if not _all_ready(kube):
        return False
    isvc = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        cp.GROUP.group, cp.GROUP.isvc_version, cp.NS, "inferenceservices", cp.SERVER)
    url = k8s.resolve_url(kube, isvc["status"]["address"]["url"], cp.NS)
    try:  # Ready says "handed to the server" (as in KServe): the model may still be loading
        out = triton.infer(url, "cifar10", np.zeros((1, 3, 32, 32), np.float32))["OUTPUT__0"]
    except triton.TritonError:
        return False
    return out.shape == (1, 10)


def kill_one(stack: Stack, target: str, timeout: float) -> tuple:
    """Kill `target`, measure its recovery; returns a table row."""
    kube = kconfig.new_client_from_config(config_file=str(stack.kubeconfig))
    before = inventory(stack, kube)
    old = _pid(stack, target)
    t0 = time.monotonic()
    os.killpg(old, signal.SIGKILL)
    name = f"after-{target}"
    body = cp.trained_model(name, f"s3://{cp.BUCKET}/{cp.TINY_PREFIX}/tiny-000", "triton", "16Mi")

    def applied() -> bool:
        api = kconfig.new_client_from_config(config_file=str(stack.kubeconfig))
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            cp.GROUP.group, cp.GROUP.tm_version, cp.NS, "trainedmodels", body)
        return True

    def new_ready() -> bool:
        api = kconfig.new_client_from_config(config_file=str(stack.kubeconfig))
        return cp._ready_object(api, "trainedmodels", name) is not None

    times: dict[str, Optional[float]] = {}
    try:
        poll_until(applied, f"{name} applied", timeout=timeout, interval=0.05)  # retried while the API is away
        for label, check in (("back", _back(stack, target, old)), ("new tm", new_ready), ("serving", lambda: _serving(stack))):
            poll_until(check, f"{target}: {label}", timeout=timeout, interval=0.05)
            times[label] = time.monotonic() - t0
    except WaitTimeout as exc:
        print(f"  {target}: {exc}", flush=True)
    after = inventory(stack, kconfig.new_client_from_config(config_file=str(stack.kubeconfig)))
    lost = sorted(before - after)
    record = (_server_record(stack, target) if target in SERVER_ROLES
              else stack.records()[target].to_json())
    print(f"  {target}: back {times.get('back')}, lost {lost or 'nothing'}", flush=True)
    return (target, record.get("restarts", 0), record.get("last_exit", ""), times.get("back"),
            times.get("new tm"), times.get("serving"), len(lost))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the same run (it is short already)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for each recovery step")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state folder (logs)")
    args = parser.parse_args(argv)

    print("bench_chaos: kill each component once, mid-walkthrough (issue 13)" + (" [quick]" if args.quick else ""))
    common.print_machine()
    started = time.monotonic()
    rows = []
    with common.scratch_env("mms-bench-chaos-", keep=args.keep) as root:
        with common.running_stack(root) as (stack, _up_s):
            kube = kconfig.new_client_from_config(config_file=str(stack.kubeconfig))
            url, _ = cp.start_server(stack, kube)
            s3 = cp.s3_client(stack)
            with tempfile.TemporaryDirectory(prefix="mms-bench-models-") as tmp:
                write_cifar10_standin(Path(tmp) / "cifar10")
                storage.upload_folder(s3, Path(tmp) / "cifar10", cp.BUCKET, "torchscript/cifar10", progress=False)
            cp.upload_tiny(stack, 1)
            client.CustomObjectsApi(kube).create_namespaced_custom_object(
                cp.GROUP.group, cp.GROUP.tm_version, cp.NS, "trainedmodels",
                cp.trained_model("cifar10", f"s3://{cp.BUCKET}/torchscript/cifar10", "pytorch", "1Gi"))
            poll_until(lambda: _serving(stack), "cifar10 serving", timeout=300, interval=0.2)
            for target in (*ORDER, *SERVER_ROLES):
                rows.append(kill_one(stack, target, args.timeout))
            triton.forget_clients()

    common.heading("Chaos: each component killed once (SIGKILL to its process group), nobody runs `up`")
    common.table(["KILLED", "RESTARTS", "LAST EXIT", "BACK S", "NEW TM READY S", "SERVING S", "LOST"], rows,
                 note="BACK: kill -> a new process answers its health check. NEW TM READY: kill -> a TrainedModel "
                      "applied right after\nthe kill is Ready. SERVING: kill -> every TrainedModel Ready and cifar10 "
                      "answers through the ISVC's address.\nLOST: objects or S3 keys listed before the kill that are "
                      "gone after it.")
    for target, _r, _e, back, new_tm, serving, lost in rows:
        common.figure(f"chaos {target}: back / new TM Ready / serving",
                      " / ".join("n/a" if v is None else f"{v:.1f} s" for v in (back, new_tm, serving))
                      + f"; lost {lost}")
    common.figure("bench_chaos wall time", f"{time.monotonic() - started:.1f} s")
    return 0 if all(r[3] is not None and r[5] is not None and r[6] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
