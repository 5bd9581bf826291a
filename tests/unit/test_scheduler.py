"""The node's size and the scheduler's arithmetic: quantities, a pod's requests, the fit, the message."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.core.constants import KFSERVING_GROUP, KSERVE_GROUP, api_group
from helpers.core.errors import SetupError
from helpers.local.cluster import cgroups, node, scheduler
from helpers.local.cluster.scheduler import Allocatable, Resources
from helpers.local.controller.pods import Pods
from helpers.local.stack import releases
from helpers.local.stack.seed import inferenceservice_config_data
from support.fakes import PodsKube

GI = 2 ** 30


def test_quantities_read_as_resource_quantity_reads_them() -> None:
    assert scheduler.millicores("1") == 1000 and scheduler.millicores("100m") == 100
    assert scheduler.millicores("0.5") == 500 and scheduler.millicores("1.0001") == 1001  # rounded up
    assert scheduler.memory_bytes("16Gi") == 16 * GI and scheduler.memory_bytes("100Mi") == 100 * 2 ** 20
    assert scheduler.memory_bytes("1G") == 10 ** 9 and scheduler.memory_bytes("1e3") == 1000
    assert scheduler.memory_bytes("128974848") == 128974848
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        scheduler.memory_bytes("16GB")


def test_a_pods_requests_sum_its_containers_and_take_limits_where_no_request_is_given() -> None:
    spec = {"containers": [
        {"name": "kfserving-container", "resources": {"requests": {"cpu": "1", "memory": "16Gi"}}},
        {"name": "agent", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m"}}},
        {"name": "queue-proxy", "resources": {"requests": {"cpu": "25m"}}},
        {"name": "bare"}]}
    assert scheduler.pod_requests(spec) == Resources(1125, 17 * GI)


def test_init_containers_count_as_their_largest_and_overhead_is_added() -> None:
    spec = {"containers": [{"name": "a", "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}}}],
            "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "2", "memory": "512Mi"}}}],
            "overhead": {"cpu": "10m", "memory": "1Mi"}}
    assert scheduler.pod_requests(spec) == Resources(2010, GI + 2 ** 20)


def test_the_fit_counts_what_bound_pods_hold() -> None:
    node_size = Allocatable(cpu=4000, memory=32 * GI, pods=110)
    guide = Resources(1100, 16 * GI + 100 * 2 ** 20)
    assert scheduler.insufficient(guide, node_size, []) == []
    assert scheduler.insufficient(guide, node_size, [guide]) == ["Insufficient memory"]
    assert scheduler.insufficient(Resources(4000, 17 * GI), node_size, [guide]) == ["Insufficient cpu",
                                                                                  "Insufficient memory"]
    assert scheduler.insufficient(Resources(), Allocatable(0, 0, pods=1), [Resources()]) == ["Too many pods"]
    assert scheduler.insufficient(Resources(), node_size, [guide, guide, guide]) == []  # asks nothing: fits


def test_only_pods_bound_to_the_node_and_not_ended_hold_resources() -> None:
    assert scheduler.holds_resources({"spec": {"nodeName": "n"}, "status": {"phase": "Running"}}, "n")
    assert scheduler.holds_resources({"spec": {"nodeName": "n"}, "status": {"phase": "Pending"}}, "n")
    assert not scheduler.holds_resources({"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}}, "n")
    assert not scheduler.holds_resources({"spec": {}, "status": {"phase": "Pending"}}, "n")


def test_the_message_is_kube_schedulers() -> None:
    assert scheduler.fit_error(["Insufficient memory"]) == "0/1 nodes are available: 1 Insufficient memory."
    assert scheduler.fit_error(["Insufficient memory", "Insufficient cpu"]) == \
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
    assert scheduler.fit_error(["Insufficient memory"], preemption=True) == (
        "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: "
        "1 No preemption victims found for incoming pod.")
    assert scheduler.scheduled_message("mms", "p", "node") == "Successfully assigned mms/p to node"


def test_each_release_words_it_as_its_kubernetes_did() -> None:
    assert not releases.get("kfserving-0.5").scheduler_preemption_message
    assert all(releases.get(name).scheduler_preemption_message
               for name in ("kubeflow-1.10.0", "kubeflow-1.10", "kubeflow-1.11"))


def _isvc(group: str) -> dict:
    triton = {"resources": {"limits": {"cpu": "1", "memory": "16Gi"}, "requests": {"cpu": "1", "memory": "16Gi"}}}
    return {"apiVersion": f"{group}/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "triton-mms", "namespace": "mms", "uid": "u-1", "generation": 1},
            "spec": {"predictor": {"serviceAccountName": "sa", "triton": triton}}}


@pytest.mark.parametrize("profile,group", [("kfserving-0.5", KFSERVING_GROUP), ("kubeflow-1.10", KSERVE_GROUP)])
def test_the_pod_the_controller_makes_asks_for_the_server_and_its_agent(tmp_path: Path, profile: str,
                                                                        group: str) -> None:
    kube = PodsKube(inferenceservice_config_data(releases.get(profile)))
    Pods(kube, tmp_path, tmp_path)._create(api_group(group), _isvc(group), [])
    body = kube.created[0]
    assert "nodeName" not in body["spec"]  # left to the scheduler
    agent = body["spec"]["containers"][1]
    assert agent["resources"] == {"limits": {"cpu": "1", "memory": "1Gi"},
                                  "requests": {"cpu": "100m", "memory": "100Mi"}}
    # The guide's server (1 cpu, 16Gi) and the agent injector's sidecar (100m, 100Mi).
    assert scheduler.pod_requests(body["spec"]) == Resources(1100, 16 * GI + 100 * 2 ** 20)


def test_the_node_size_comes_from_flags_then_env_then_the_state_folder_then_the_release(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(node.CPU_ENV, raising=False)
    monkeypatch.delenv(node.MEMORY_ENV, raising=False)
    profile = releases.get("kfserving-0.5")
    assert node.current(tmp_path, profile) == node.NodeSize("32", "256Gi", "kfserving-0.5 default")
    mixed = "cpu from kfserving-0.5 default, memory from --node-memory"
    assert node.choose(tmp_path, profile, memory="32Gi") == node.NodeSize("32", "32Gi", mixed)
    assert node.current(tmp_path, profile).memory == "32Gi"  # kept
    monkeypatch.setenv(node.CPU_ENV, "8")
    assert node.choose(tmp_path, profile).cpu == "8" and node.choose(tmp_path, profile).memory == "32Gi"
    assert node.choose(tmp_path, profile, cpu="4").cpu == "4"
    assert json.loads((tmp_path / node.FILE).read_text())["cpu"] == "4"
    with pytest.raises(SetupError, match="not a positive Kubernetes quantity"):
        node.choose(tmp_path, profile, memory="lots")


def test_capacity_is_allocatable_plus_the_kubelets_hard_eviction_threshold() -> None:
    size = node.NodeSize("8", "32Gi")
    assert size.allocatable() == {"cpu": "8", "memory": "32Gi", "pods": "110"}
    assert size.capacity() == {"cpu": "8", "memory": f"{(32 * GI + 100 * 2 ** 20) // 1024}Ki", "pods": "110"}


def test_cgroup_layouts_are_found_from_proc_self_cgroup(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    v1 = cgroups.find(tmp_path, "4:memory:/process_api/abc\n0::/\n")
    assert v1 == cgroups.Hierarchy("v1", tmp_path / "memory" / "process_api" / "abc")
    assert v1.limit_file == "memory.limit_in_bytes"
    unified = tmp_path / "v2"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("cpu io memory pids\n")
    assert cgroups.find(unified, "0::/user.slice/x\n") == cgroups.Hierarchy("v2", unified / "user.slice" / "x")
    assert cgroups.find(tmp_path / "nothing", "0::/\n") is None


def test_oom_kills_are_read_from_either_layout(tmp_path: Path) -> None:
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cgroups.oom_kills(tmp_path) == 2
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cgroups.oom_kills(v2) == 1
    assert cgroups.oom_kills(tmp_path / "none") == 0


def test_the_status_line_says_whether_limits_are_enforced() -> None:
    assert "NOT enforced (not root: only root may make cgroups here)" in cgroups.Probe(None, "not-root").line()
    assert "NOT enforced (cannot write /x: Permission denied)" in cgroups.Probe(None, "cannot-write", "/x",
                                                                               "Permission denied").line()
    assert cgroups.Probe(cgroups.Hierarchy("v1", Path("/x"))).line().startswith("memory limits: enforced (cgroup v1")
