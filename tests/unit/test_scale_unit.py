"""07_one_server_many_models's helpers without a cluster: what a pod costs, what a learner may not read, the
limits' arithmetic, Triton's /metrics lines."""
from __future__ import annotations

import json
from types import SimpleNamespace as NS
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.core.constants import api_group
from helpers.core.errors import SetupError
from helpers.steps.scale import ceilings, footprint, packing

KFS = api_group("serving.kubeflow.org")


def refused(*_args: Any, **_kwargs: Any) -> Any:
    raise ApiException(status=403, reason="Forbidden")


def missing(*_args: Any, **_kwargs: Any) -> Any:
    raise ApiException(status=404, reason="Not Found")


def container(name: str, cpu: str, memory: str) -> Any:
    return NS(name=name, resources=NS(requests={"cpu": cpu, "memory": memory}))


SERVER_POD = NS(metadata=NS(name="triton-mms-predictor-0", deletion_timestamp=None),
                spec=NS(containers=[container("kfserving-container", "1", "16Gi"), container("agent", "100m", "100Mi")]))
CONFIG = {"agent": json.dumps({"cpuRequest": "100m", "memoryRequest": "100Mi"}),
          "storageInitializer": json.dumps({"cpuRequest": "100m", "memoryRequest": "100Mi"})}
NODE = NS(metadata=NS(name="node-a"), spec=NS(unschedulable=None),
          status=NS(allocatable={"pods": "110", "cpu": "8", "memory": "32Gi"}))


class Core:
    """CoreV1Api as footprint reads it: the learner's own pod always; the rest as `admin` allows."""

    def __init__(self, admin: bool) -> None:
        self.admin = admin

    def list_namespaced_pod(self, namespace: str, label_selector: str = "") -> Any:
        return NS(items=[SERVER_POD])

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        if not self.admin:
            refused()
        if name == "inferenceservice-config" and namespace == "kfserving-system":
            return NS(metadata=NS(namespace=namespace), data=CONFIG)
        if name == "config-deployment":
            return NS(metadata=NS(namespace=namespace), data={"progressDeadline": "600s"})
        missing()

    def list_node(self) -> Any:
        return NS(items=[NODE]) if self.admin else refused()


def test_quantities_read_and_print_as_kubernetes_writes_them() -> None:
    assert footprint.cores("100m") == 0.1 and footprint.cores(None) == 0.0 and footprint.nbytes("2Gi") == 2 * 2**30
    assert [footprint.cpu_text(v) for v in (1, 0.025, 2.5, 0)] == ["1", "25m", "2.5", "-"]
    assert [footprint.memory_text(v) for v in (16 * 2**30, 100 * 2**20, 0)] == ["16Gi", "100Mi", "-"]


def test_an_admin_reads_every_part_and_the_nodes(monkeypatch) -> None:
    monkeypatch.setattr(client, "CoreV1Api", lambda api: Core(admin=True))
    fp = footprint.read(None, KFS, "triton-mms", "mms")
    got = {(p.container, p.model_pod, p.server_pod, p.init): (p.cpu, p.memory) for p in fp.parts}
    assert got == {("kfserving-container", False, True, False): (1.0, 16 * 2**30),
                   ("agent", False, True, False): (0.1, 100 * 2**20),
                   ("storage-initializer", True, False, True): (0.1, 100 * 2**20),
                   ("kfserving-container", True, False, False): (1.0, 2 * 2**30),  # KServe's default predictor
                   ("queue-proxy", True, True, False): (0.025, 0)}  # Knative's default: the ConfigMap says nothing
    assert fp.unread == [] and len(fp.absent) == 1 and "istio-proxy" in fp.absent[0]
    assert fp.nodes == [footprint.NodeRoom("node-a", 110, 8.0, 32 * 2**30)]
    assert any(line.startswith("kubectl get nodes") for line in fp.commands)
    cost = footprint.compare(fp, 5)
    # one-model pod: 1 + 25m cpu, 2Gi (the init container asks less than the rest together)
    assert cost["model_pod"] == {"cpu": 1.025, "memory": 2 * 2**30}
    assert cost["per_model"] == {"pods": 5, "cpu": 5.125, "memory": 10 * 2**30}
    assert cost["one_server"] == {"pods": 1, "cpu": 1.125, "memory": 16 * 2**30 + 100 * 2**20}
    assert cost["even_memory"] == 9 and cost["even_cpu"] == 2
    assert cost["fits"] == 7  # 8 cpu / 1.025 a pod, before memory (16 pods) or the pod count (110)
    table = footprint.comparison_table(cost)
    assert "from 9 models on" in table and "at most 7 one-model InferenceServices fit" in table


def test_a_learner_is_told_what_was_refused_and_gets_the_rest(monkeypatch) -> None:
    monkeypatch.setattr(client, "CoreV1Api", lambda api: Core(admin=False))
    fp = footprint.read(None, KFS, "triton-mms", "mms")
    assert [p.container for p in fp.parts] == ["kfserving-container", "agent", "kfserving-container"]
    assert len(fp.unread) == 4 and all("403" in line for line in fp.unread)
    assert any("inferenceservice-config" in line for line in fp.unread)
    assert fp.nodes == [] and fp.absent == []
    assert "not read: " in footprint.table(fp)
    assert "the nodes' room is unknown" in footprint.comparison_table(footprint.compare(fp, 3))


def test_the_configmap_size_is_measured_per_entry_and_extrapolated(monkeypatch) -> None:
    entry = {"modelName": "cifar10-01", "modelSpec": {"storageUri": "s3://triton/scale/cifar10",
                                                       "framework": "pytorch", "memory": "1Gi"}}
    text = json.dumps([entry] * 4, separators=(",", ":"))
    core = NS(read_namespaced_config_map=lambda name, ns: NS(data={"models.json": text}))
    monkeypatch.setattr(client, "CoreV1Api", lambda api: core)
    size = ceilings.configmap_size(None, "triton-mms", "mms")
    per = len(json.dumps(entry, separators=(",", ":"))) + 1  # and its comma
    assert size["entries"] == 4 and size["per_entry"] == per and size["compact"]
    assert size["largest"] == (ceilings.MAX_CONFIGMAP_BYTES - len("models.json") - 1) // per
    assert "TrainedModels" in ceilings.describe_configmap(size)


def test_names_are_bounded_and_metrics_lines_kept_per_model() -> None:
    assert packing.names(3) == ["cifar10-01", "cifar10-02", "cifar10-03"]
    with pytest.raises(SetupError):
        packing.names(0)
    text = "\n".join(['# HELP nv_inference_count x', 'nv_inference_count{model="cifar10-01",version="1"} 1',
                      'nv_inference_count{model="cifar10",version="1"} 5', 'nv_cpu_memory_used_bytes 123'])
    assert packing.metric_lines(text, ["cifar10-01"]) == ['nv_inference_count{model="cifar10-01",version="1"} 1',
                                                          "nv_cpu_memory_used_bytes 123"]


def test_kubectl_top_refused_is_said_once_and_no_figures_are_made_up(monkeypatch) -> None:
    calls = []

    def get(*args: Any) -> Any:
        calls.append(args)
        refused()

    monkeypatch.setattr(client, "CustomObjectsApi", lambda api: NS(get_namespaced_custom_object=get))
    top = packing.Top(None, "mms", "pod-0")
    assert top.after(0.0, timeout=1) is None and top.now() is None
    assert len(calls) == 1 and "pods.metrics.k8s.io" in top.unread and "403" in top.unread
    added = [packing.Added("cifar10-01", 0.0, served_s=0.2)]
    assert packing.per_model(None, added, KFS) is None
    assert "no memory figures" in packing.describe(None, added, KFS, top)


def test_memory_per_model_is_the_growth_over_the_models_served() -> None:
    before = packing.Usage(0.0, "5s", {"kfserving-container": 150 * 2**20, "agent": 100 * 2**20})
    added = [packing.Added(f"cifar10-0{i}", 0.0, served_s=0.1, triton_memory=(150 + i) * 2**20) for i in (1, 2)]
    added.append(packing.Added("cifar10-03", 0.0, refused="not enough memory"))
    assert packing.per_model(before, added, KFS) == 2**20
    table = packing.table(before, added, KFS)
    assert "refused: not enough memory" in table and "(before)" in table


def test_a_pod_without_a_sample_yet_is_waited_for_and_a_cluster_without_the_api_is_said(monkeypatch) -> None:
    answers = [ApiException(status=404, reason="Not Found"), {"timestamp": "2026-12-05T03:00:10Z", "window": "5s",
                                                               "containers": [{"name": "kfserving-container",
                                                                               "usage": {"memory": "100Mi"}}]}]
    answers[0].body = json.dumps({"message": 'pods "pod-0" not found'})

    def get(*_args: Any) -> Any:
        found = answers.pop(0)
        if isinstance(found, Exception):
            raise found
        return found

    monkeypatch.setattr(client, "CustomObjectsApi", lambda api: NS(get_namespaced_custom_object=get))
    usage = packing.Top(None, "mms", "pod-0").after(0.0, timeout=5)
    assert usage is not None and usage.memory == {"kfserving-container": 100 * 2**20} and not answers
    none = ApiException(status=404, reason="Not Found")
    none.body = json.dumps({"message": "the server could not find the requested resource"})
    answers.append(none)
    monkeypatch.setattr(client, "CustomObjectsApi", lambda api: NS(get_namespaced_custom_object=get))
    top = packing.Top(None, "mms", "pod-0")
    assert top.now() is None and "serves none" in top.unread


def test_an_earlier_runs_unloaded_copy_is_waited_for_a_load_error_is_not(monkeypatch) -> None:
    from helpers.clients import inference, triton

    rows = {"now": [{"name": "cifar10-01", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}]}
    monkeypatch.setattr(triton, "repository_index", lambda url, headers=None: rows["now"])
    monkeypatch.setattr(inference, "get", lambda *args: {"status": {"conditions": []}})
    endpoint = NS(base_url="http://x", headers={})
    assert packing._decided(None, KFS, "cifar10-01", "mms", endpoint) == ""  # not decided: wait
    rows["now"] = [{"name": "cifar10-01", "version": "1", "state": "UNAVAILABLE", "reason": "failed to load"}]
    assert packing._decided(None, KFS, "cifar10-01", "mms", endpoint) == "failed: failed to load"
    rows["now"] = [{"name": "cifar10-01", "version": "1", "state": "READY", "reason": ""}]
    assert packing._decided(None, KFS, "cifar10-01", "mms", endpoint) == "served"
