"""The node has a size: a server that does not fit stays Pending, one over its memory limit is OOMKilled.

On the session's stack (the guide's `kfserving-0.5` release, whose Kubernetes words FailedScheduling
without a preemption verdict). Servers are sized from what the node has left when the test runs,
so servers other files left behind change nothing; each test deletes its servers and gives the
node its size back.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import pytest
import requests
from kubernetes import client

from helpers.clients import k8s, manifests
from helpers.core.constants import KFSERVING_GROUP, KSERVE_GROUP
from helpers.core.wait import poll_until
from helpers.local.cluster import cgroups, scheduler
from helpers.local.stack import torch_backend
from helpers.local.stack.controlplane import NODE_NAME
from helpers.local.stack.stack import Stack
from support.guide_steps import apply_guide_steps, guide_values

pytestmark = pytest.mark.controlplane
NS = "sized"
GI = 2 ** 30
PENDING = "0/1 nodes are available: 1 Insufficient memory."


def kubectl(stack: Stack, *args: str) -> str:
    done = subprocess.run(["kubectl", "--kubeconfig", str(stack.kubeconfig), *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def values(stack: Stack, kube) -> dict:
    """The guide's Profile, S3 secret, service account and ExternalName in `sized`; servers come per test."""
    found = guide_values(stack, NS, "unused", KFSERVING_GROUP)
    apply_guide_steps(kube, found, server=False)
    return found


def create_server(kube, values: dict, name: str, memory: str) -> None:
    k8s.apply_all(kube, manifests.render("multi_model_triton_server.yaml",
                                         **{**values, "server_name": name, "server_memory": memory, "server_cpu": "1"}))


def delete_server(stack: Stack, kube, name: str) -> None:
    try:
        client.CustomObjectsApi(kube).delete_namespaced_custom_object(KFSERVING_GROUP, "v1beta1", NS,
                                                                      "inferenceservices", name)
    except client.exceptions.ApiException as exc:
        if exc.status != 404:
            raise
    # Gone, not only terminating: until then the scheduler counts what they ask, as kube-scheduler does.
    poll_until(lambda: not pods_of(stack, name, terminating=True), f"the pods of {name} to be gone", timeout=120,
               interval=0.5)


def pods_of(stack: Stack, name: str, terminating: bool = False) -> list[dict]:
    found = json.loads(kubectl(stack, "get", "pods", "-n", NS, "-l",
                               f"serving.kubeflow.org/inferenceservice={name}", "-o", "json"))["items"]
    return [p for p in found if terminating or not p["metadata"].get("deletionTimestamp")]


def the_pod(stack: Stack, name: str) -> dict:
    return poll_until(lambda: (pods_of(stack, name) or [None])[0], f"a pod for {name}", timeout=60, interval=0.3)


def settled_node(stack: Stack) -> dict:
    """The Node once its status shows the size the state folder asks for (the controller writes it on its next pass)."""
    wanted = stack.node_size().memory

    def written():
        node = json.loads(kubectl(stack, "get", "node", NODE_NAME, "-o", "json"))
        return node if node["status"]["allocatable"]["memory"] == wanted else None
    return poll_until(written, f"the node's allocatable memory to be {wanted}", timeout=60, interval=0.3)


def free_memory(stack: Stack) -> int:
    """Allocatable memory minus what pods bound to the node request, as the scheduler counts it."""
    node = settled_node(stack)
    pods = json.loads(kubectl(stack, "get", "pods", "-A", "-o", "json"))["items"]
    held = sum((scheduler.pod_requests(p["spec"]) for p in pods if scheduler.holds_resources(p, NODE_NAME)),
               scheduler.Resources())
    return scheduler.memory_bytes(node["status"]["allocatable"]["memory"]) - held.memory


def unschedulable(stack: Stack, name: str, message: str) -> dict:
    def pending():
        pod = the_pod(stack, name)
        cond = {c["type"]: c for c in pod["status"].get("conditions") or []}.get("PodScheduled") or {}
        return pod if cond.get("status") == "False" and cond.get("message") == message else None
    return poll_until(pending, f"{name}'s pod to be Unschedulable", timeout=60, interval=0.5)


def running(stack: Stack, name: str, timeout: float = 300) -> dict:
    def up():
        pod = the_pod(stack, name)
        statuses = pod["status"].get("containerStatuses") or []
        # Triton and the agent, and Istio's proxy where the release injects one into the pod's spec
        ok = pod["status"].get("phase") == "Running" and len(statuses) == len(pod["spec"]["containers"]) >= 2 \
            and all(s["ready"] for s in statuses)
        return pod if ok else None
    return poll_until(up, f"{name}'s pod to run with every container ready", timeout=timeout, interval=0.5)


def events(stack: Stack, pod: str) -> list[dict]:
    return json.loads(kubectl(stack, "get", "events", "-n", NS, "--field-selector",
                              f"involvedObject.name={pod}", "-o", "json"))["items"]


def test_status_and_kubectl_show_the_nodes_size_and_whether_limits_hold(stack: Stack) -> None:
    size = stack.node_size()
    settled_node(stack)
    env = {**os.environ, "MMS_STATE_DIR": str(stack.root)}
    status = subprocess.run([sys.executable, "-m", "helpers.local", "status"], env=env, capture_output=True,
                            text=True, timeout=60).stdout
    assert f"node:         {size.cpu} cpu, {size.memory} allocatable" in status, status
    assert re.search(r"memory limits: (enforced \(cgroup v[12]|NOT enforced \()", status), status
    node = json.loads(kubectl(stack, "get", "node", NODE_NAME, "-o", "json"))["status"]
    assert node["allocatable"] == {"cpu": size.cpu, "memory": size.memory, "pods": "110"}
    assert scheduler.memory_bytes(node["capacity"]["memory"]) == scheduler.memory_bytes(size.memory) + 100 * 2 ** 20
    described = kubectl(stack, "describe", "node", NODE_NAME)
    assert re.search(rf"Allocatable:\s+cpu:\s+{size.cpu}\s+memory:\s+{size.memory}", described), described


def test_a_server_bigger_than_the_node_stays_pending_until_the_node_grows(stack: Stack, kube, values: dict) -> None:
    before = stack.node_size()
    asked = scheduler.memory_bytes(before.memory) // GI + 1
    held = -(-(scheduler.memory_bytes(before.memory) - free_memory(stack)) // GI)  # servers other files left
    create_server(kube, values, "too-big", f"{asked}Gi")
    try:
        pod = unschedulable(stack, "too-big", PENDING)
        assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
        cond = {c["type"]: c for c in pod["status"]["conditions"]}["PodScheduled"]
        assert cond["reason"] == "Unschedulable"
        failed = [e for e in events(stack, pod["metadata"]["name"]) if e["reason"] == "FailedScheduling"]
        assert failed and failed[0]["type"] == "Warning" and failed[0]["message"] == PENDING
        assert failed[0]["source"]["component"] == "default-scheduler"
        described = kubectl(stack, "describe", "pod", pod["metadata"]["name"], "-n", NS)
        assert "FailedScheduling" in described and PENDING in described
        isvc = client.CustomObjectsApi(kube).get_namespaced_custom_object(KFSERVING_GROUP, "v1beta1", NS,
                                                                          "inferenceservices", "too-big")
        ready = {c["type"]: c for c in isvc["status"]["conditions"]}["Ready"]
        assert ready["status"] == "False" and PENDING in ready["message"]
        records = json.loads((stack.servers_dir / f"{NS}.too-big" / "processes.json").read_text())
        assert "triton" not in records and "agent" not in records  # nothing runs for a Pending pod

        grown = f"{asked + held + 2}Gi"
        stack.up(say=lambda _msg: None, node_memory=grown)  # the node grows: the pod is retried
        assert settled_node(stack)["status"]["allocatable"]["memory"] == grown
        pod = running(stack, "too-big")
        assert pod["spec"]["nodeName"] == NODE_NAME
        scheduled = [e for e in events(stack, pod["metadata"]["name"]) if e["reason"] == "Scheduled"]
        assert scheduled and scheduled[0]["message"] == f"Successfully assigned {NS}/{pod['metadata']['name']} " \
                                                        f"to {NODE_NAME}"
    finally:
        delete_server(stack, kube, "too-big")
        stack.up(say=lambda _msg: None, node_memory=before.memory)
        settled_node(stack)
    assert stack.node_size().memory == before.memory


def test_lowering_a_pending_servers_requests_gives_it_a_new_pod_that_runs(stack: Stack, kube, values: dict) -> None:
    """The doctor's fix for a Pending server: the changed InferenceService is a new revision, with a new pod."""
    asked = scheduler.memory_bytes(stack.node_size().memory) // GI + 1
    create_server(kube, values, "lowered", f"{asked}Gi")
    try:
        old = unschedulable(stack, "lowered", PENDING)["metadata"]["name"]
        create_server(kube, values, "lowered", "2Gi")
        pod = running(stack, "lowered")
        assert pod["metadata"]["name"] != old
        assert pod["spec"]["containers"][0]["resources"]["requests"]["memory"] == "2Gi"
        assert [p["metadata"]["name"] for p in pods_of(stack, "lowered", terminating=True)] == [pod["metadata"]["name"]]
    finally:
        delete_server(stack, kube, "lowered")


def test_the_doctor_names_a_pending_server(stack: Stack, kube, values: dict) -> None:
    asked = scheduler.memory_bytes(stack.node_size().memory) // GI + 1
    create_server(kube, values, "too-big", f"{asked}Gi")
    try:
        unschedulable(stack, "too-big", PENDING)
        doctor = subprocess.run([sys.executable, "-m", "helpers.doctor", "--namespace", NS, "--server", "too-big",
                                 "--target", "local", "--json"], env={**os.environ, "MMS_STATE_DIR": str(stack.root)},
                                capture_output=True, text=True, timeout=180)
        assert doctor.stdout.startswith("["), doctor.stdout + doctor.stderr
        named = [f for f in json.loads(doctor.stdout) if f["check"].startswith("server pod scheduled")]
        assert named and named[0]["result"] == "problem" and PENDING in named[0]["evidence"], doctor.stdout
    finally:
        delete_server(stack, kube, "too-big")


def test_a_pending_server_starts_when_another_is_deleted(stack: Stack, kube, values: dict) -> None:
    free = free_memory(stack) // GI
    assert free >= 8, f"the node has {free}Gi free: other servers hold the rest"
    create_server(kube, values, "first", f"{free - 2}Gi")  # leaves less than 2Gi: its agent asks 100Mi
    try:
        running(stack, "first")
        create_server(kube, values, "second", "3Gi")
        unschedulable(stack, "second", PENDING)
        delete_server(stack, kube, "first")
        pod = running(stack, "second")
        assert [e["reason"] for e in events(stack, pod["metadata"]["name"])].count("Scheduled") == 1
    finally:
        delete_server(stack, kube, "first")
        delete_server(stack, kube, "second")


def write_big_model(folder) -> None:
    """A TorchScript model whose 192MiB of weights Triton's own pytorch backend reads into its own memory."""
    import torch

    class Big(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = torch.nn.Parameter(torch.ones(48 * 2 ** 20))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.weights[:4]

    (folder / "1").mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # torch 2.x deprecates TorchScript; Triton's pytorch backend still reads it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(Big()), str(folder / "1" / "model.pt"))
    (folder / "config.pbtxt").write_text(
        'name: "big"\nplatform: "pytorch_libtorch"\nmax_batch_size: 0\n'
        'input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        'output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        'instance_group [ { kind: KIND_CPU count: 1 } ]\n')


def test_triton_over_its_memory_limit_is_oomkilled_and_restarted(stack: Stack, kube, values: dict) -> None:
    found = cgroups.published(stack.root)
    if not found.get("usable"):
        pytest.skip(f"memory cgroups are not writable here, so limits are not enforced: {found.get('line')}")
    if torch_backend.choose().kind != torch_backend.NATIVE:
        pytest.skip("Triton's own pytorch backend is not built here (`make setup`): the Python-based one loads "
                    "models in a stub process, which the OOM killer would end instead of Triton")
    create_server(kube, values, "small-limit", "400Mi")
    try:
        pod = running(stack, "small-limit")
        assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "400Mi"
        where = stack.servers_dir / f"{NS}.small-limit"
        group = json.loads(json.loads((where / "processes.json").read_text())["triton-cgroup"])
        assert group["limit"] == 400 * 2 ** 20
        write_big_model(where / "models" / "big")
        port = json.loads((where / "processes.json").read_text())["triton"]["ports"]["http"]
        try:  # what the agent does for a TrainedModel: Triton dies while loading it
            requests.post(f"http://127.0.0.1:{port}/v2/repository/models/big/load", timeout=120)
        except requests.ConnectionError:
            pass

        def oom_killed():
            statuses = {s["name"]: s for s in the_pod(stack, "small-limit")["status"].get("containerStatuses") or []}
            triton = statuses.get("kfserving-container") or {}
            last = (triton.get("lastState") or {}).get("terminated") or {}
            return triton if triton.get("restartCount") == 1 and last.get("reason") == "OOMKilled" else None
        triton = poll_until(oom_killed, "kfserving-container to show OOMKilled with one restart", timeout=120,
                            interval=0.5)
        assert triton["lastState"]["terminated"]["exitCode"] == 137
        shutil.rmtree(where / "models" / "big")
        running(stack, "small-limit")  # restarted, and it serves again
        table = kubectl(stack, "get", "pods", "-n", NS, "-l", "serving.kubeflow.org/inferenceservice=small-limit")
        assert re.search(r"\s(\d)/\1\s+Running\s+1\s", table), table  # all ready, RESTARTS 1
    finally:
        delete_server(stack, kube, "small-limit")



def test_on_kubeflow_the_scheduler_adds_its_preemption_verdict(kserve_stack: Stack, kserve_kube) -> None:
    """Kubeflow 1.10's Kubernetes words FailedScheduling with DefaultPreemption's part after the fit's."""
    found = guide_values(kserve_stack, NS, "unused", KSERVE_GROUP)
    apply_guide_steps(kserve_kube, found, server=False)
    asked = scheduler.memory_bytes(kserve_stack.node_size().memory) // GI + 1
    k8s.apply_all(kserve_kube, manifests.render("multi_model_triton_server.yaml", **{
        **found, "server_name": "too-big", "server_memory": f"{asked}Gi", "server_cpu": "1"}))
    try:
        message = PENDING + " preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."

        def pending():
            pods = json.loads(kubectl(kserve_stack, "get", "pods", "-n", NS, "-l",
                                      "serving.kserve.io/inferenceservice=too-big", "-o", "json"))["items"]
            conds = [c for p in pods for c in p["status"].get("conditions") or [] if c["type"] == "PodScheduled"]
            return pods[0] if conds and conds[0].get("message") == message else None
        pod = poll_until(pending, "the pod to be Unschedulable with the preemption verdict", timeout=90, interval=0.5)
        failed = [e for e in json.loads(kubectl(kserve_stack, "get", "events", "-n", NS, "--field-selector",
                                                f"involvedObject.name={pod['metadata']['name']}", "-o", "json"))["items"]
                  if e["reason"] == "FailedScheduling"]
        assert failed and failed[0]["message"] == message
    finally:
        client.CustomObjectsApi(kserve_kube).delete_namespaced_custom_object(KSERVE_GROUP, "v1beta1", NS,
                                                                             "inferenceservices", "too-big")
