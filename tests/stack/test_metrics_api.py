"""`kubectl top` on the local stack: the metrics API (`helpers.local.cluster.metrics`) behind the
apiserver's aggregator, with the real processes' CPU and memory grouped as the Pods they stand for.

The learner is a Profile's `default-editor`, bound to `kubeflow-edit`. metrics-server's own role
(`system:aggregated-metrics-reader`) is aggregated into the built-in view/edit/admin roles only, so
on Kubeflow a learner may not read pod metrics until a platform team grants it; the test grants it
as one would: a ClusterRole aggregated into `kubeflow-view`.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Optional

import pytest
from kubernetes import client

from helpers.clients import k8s
from helpers.core.config import identity_dir
from helpers.core.constants import AGENT_CONTAINER, KFSERVING_GROUP, KUBEFLOW_NAMESPACE, api_group
from helpers.core.wait import poll_until
from helpers.local.cluster import metrics
from helpers.local.cluster.rbac import AGGREGATE
from helpers.local.stack.controlplane import NODE_NAME
from helpers.local.stack.stack import Stack
from support.guide_steps import apply_guide_steps, guide_values

pytestmark = pytest.mark.controlplane
NS, SERVER = "top", "triton-top"
MI = re.compile(r"^(\d+)Mi$")
MILLICORES = re.compile(r"^\d+m$")


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=60)


def rows(kubeconfig: Path, *args: str) -> Optional[list[list[str]]]:
    """The table `kubectl top ...` prints, without its header; None while it fails (no metrics yet)."""
    done = kubectl(kubeconfig, "top", *args)
    if done.returncode != 0:
        return None
    return [line.split() for line in done.stdout.splitlines()[1:]] or None


def wait_rows(kubeconfig: Path, *args: str, timeout: float = 60) -> list[list[str]]:
    """Polls: a new pod shows from the sampler's second sample on (metrics.RESOLUTION seconds)."""
    return poll_until(lambda: rows(kubeconfig, *args), f"kubectl top {' '.join(args)}", timeout=timeout, interval=1)


@pytest.fixture(scope="module")
def server_pod(stack: Stack, kube) -> str:
    """The guide's steps 1-3 in namespace `top`; returns the name of the server's Pod once it runs."""
    apply_guide_steps(kube, guide_values(stack, NS, SERVER, KFSERVING_GROUP))

    def running() -> Optional[str]:
        pods = client.CoreV1Api(kube).list_namespaced_pod(NS).items
        return next((p.metadata.name for p in pods if p.status.phase == "Running" and p.status.container_statuses
                     and all(c.ready for c in p.status.container_statuses)), None)

    return poll_until(running, f"the pod of {SERVER}", timeout=180, interval=0.5)


def test_the_apiservice_is_available_through_an_externalname_service(stack: Stack, kube) -> None:
    def available() -> Optional[dict]:
        found = k8s.dynamic_client(kube).resources.get(api_version="apiregistration.k8s.io/v1", kind="APIService") \
            .get(name=metrics.APISERVICE).to_dict()
        conditions = {c["type"]: c for c in (found.get("status") or {}).get("conditions") or []}
        return found if conditions.get("Available", {}).get("status") == "True" else None

    apiservice = poll_until(available, "APIService v1beta1.metrics.k8s.io Available", timeout=60, interval=0.5)
    port = int((stack.root / "metrics.port").read_text())
    assert apiservice["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system", "port": port}
    service = client.CoreV1Api(kube).read_namespaced_service("metrics-server", "kube-system")
    assert (service.spec.type, service.spec.external_name) == ("ExternalName", "127.0.0.1")
    part = next(row for row in stack.status() if row.name == "metrics API")
    assert part.healthy and part.address == f"https://127.0.0.1:{port}"


def test_top_node_shows_the_machine_against_the_nodes_allocatable(stack: Stack) -> None:
    (row,) = wait_rows(stack.kubeconfig, "node")
    name, cpu, cpu_percent, memory, memory_percent = row
    assert name == NODE_NAME
    assert MILLICORES.match(cpu) and cpu_percent.endswith("%")
    assert int(MI.match(memory).group(1)) > 100 and memory_percent.endswith("%")  # kubectl read status.allocatable


def test_top_pod_shows_the_servers_processes_as_its_pod(stack: Stack, server_pod: str) -> None:
    table = {row[0]: row[1:] for row in wait_rows(stack.kubeconfig, "pod", "-n", NS)}
    cpu, memory = table[server_pod]
    assert MILLICORES.match(cpu)
    assert int(MI.match(memory).group(1)) >= 20  # Triton's and the agent's resident memory

    containers = {row[1]: row[2:] for row in wait_rows(stack.kubeconfig, "pod", server_pod, "-n", NS, "--containers")}
    server = api_group(KFSERVING_GROUP).server_container
    assert set(containers) == {server, AGENT_CONTAINER}
    assert int(MI.match(containers[server][1]).group(1)) >= 10  # tritonserver's RSS
    assert int(MI.match(containers[AGENT_CONTAINER][1]).group(1)) >= 10  # a Python process
    assert all(MILLICORES.match(cpu) for cpu, _memory in containers.values())


def test_the_object_store_pod_is_the_s3_server(stack: Stack) -> None:
    table = {row[0]: row[1:] for row in wait_rows(stack.kubeconfig, "pod", "-n", KUBEFLOW_NAMESPACE)}
    assert int(MI.match(table["minio"][1]).group(1)) > 0


def test_a_pod_without_metrics_is_named(stack: Stack, server_pod: str) -> None:
    missing = kubectl(stack.kubeconfig, "top", "pod", "no-such-pod", "-n", NS)
    assert missing.returncode != 0 and 'pods "no-such-pod" not found' in missing.stderr


@pytest.fixture
def metrics_for_kubeflow_view(kube):
    """What a platform team applies so that Kubeflow's profiles may read pod metrics."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "kubeflow-metrics-view", "labels": {f"{AGGREGATE}kubeflow-view": "true"}},
            "rules": [{"apiGroups": [metrics.GROUP], "resources": ["pods"], "verbs": ["get", "list"]}]}
    k8s.apply(kube, role)
    yield
    client.RbacAuthorizationV1Api(kube).delete_cluster_role("kubeflow-metrics-view")


def test_the_learner_reads_pod_metrics_once_kubeflow_view_grants_them(stack: Stack, server_pod: str,
                                                                      request) -> None:
    learner = identity_dir("learner", NS, stack.root) / "kubeconfig"
    poll_until(learner.exists, f"the learner identity of {NS}", timeout=60, interval=0.2)
    denied = kubectl(learner, "top", "pod", "-n", NS)
    assert denied.returncode != 0
    assert (f'pods.metrics.k8s.io is forbidden: User "system:serviceaccount:{NS}:default-editor" cannot list '
            f'resource "pods" in API group "metrics.k8s.io" in the namespace "{NS}"') in denied.stderr

    request.getfixturevalue("metrics_for_kubeflow_view")
    table = {row[0]: row[1:] for row in wait_rows(learner, "pod", "-n", NS)}  # kube-controller-manager aggregates
    assert MI.match(table[server_pod][1])
    elsewhere = kubectl(learner, "top", "pod", "-n", KUBEFLOW_NAMESPACE)
    assert elsewhere.returncode != 0 and "forbidden" in elsewhere.stderr
