"""`server_pod.pods_table` prints READY and RESTARTS as kubectl does, native sidecars included."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from kubernetes import client

from helpers.steps.serving import server_pod


def pod(name: str, containers: list[str], init: list[tuple[str, bool]], ready: int, restarts: int = 0) -> client.V1Pod:
    """A running pod: `init` as (name, native sidecar); the first `ready` of its running containers ready."""
    running = containers + [n for n, native in init if native]
    statuses = {n: client.V1ContainerStatus(name=n, ready=i < ready, restart_count=restarts if i == 0 else 0,
                                            image="x", image_id="") for i, n in enumerate(running)}
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, creation_timestamp=datetime.now(timezone.utc)),
        spec=client.V1PodSpec(containers=[client.V1Container(name=n) for n in containers],
                              init_containers=[client.V1Container(name=n, restart_policy="Always" if native else None)
                                               for n, native in init]),
        status=client.V1PodStatus(phase="Running",
                                  container_statuses=[statuses[n] for n in containers],
                                  init_container_statuses=[statuses.get(n) or client.V1ContainerStatus(
                                      name=n, ready=False, restart_count=0, image="x", image_id="")
                                      for n, _native in init]))


@pytest.fixture
def listed(monkeypatch: pytest.MonkeyPatch):
    def use(*pods: client.V1Pod) -> str:
        class Core:
            def __init__(self, _api) -> None:
                pass

            def list_namespaced_pod(self, _namespace: str) -> client.V1PodList:
                return client.V1PodList(items=list(pods))

        monkeypatch.setattr(server_pod.client, "CoreV1Api", Core)
        return server_pod.pods_table(object(), "mms")
    return use


def test_the_guide_s_pod_with_istio_1_1_s_proxy_is_3_of_3(listed) -> None:
    table = listed(pod("triton-mms-a", ["kfserving-container", "agent", "istio-proxy"], [("istio-init", False)], 3))
    assert table.splitlines()[1].split()[1:4] == ["3/3", "Running", "0"]


def test_a_native_sidecar_counts_in_ready_as_kubectl_counts_it(listed) -> None:
    """Kubeflow 1.10/1.11: istio-proxy is an init container with restartPolicy Always; kubectl 1.28+ shows 3/3."""
    table = listed(pod("triton-mms-b", ["kserve-container", "agent"], [("istio-init", False), ("istio-proxy", True)],
                       2, restarts=1))
    assert table.splitlines()[1].split()[1:4] == ["2/3", "Running", "1"]


def test_no_pods_reads_as_kubectl_says_it(listed) -> None:
    assert listed() == "No resources found in mms namespace."
