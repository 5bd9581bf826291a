"""The metrics API's pure parts, without any process: quantities, CPU rates, process trees read
from a fake /proc, the JSON `kubectl top` reads, label selectors, the APIService."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers.local.cluster import metrics

PAGE = 4096
CLOCK = 100  # clock ticks per second


def stat_line(pid: int, name: str, ppid: int, utime: int, stime: int, rss_pages: int,
              cutime: int = 0, cstime: int = 0) -> str:
    """A /proc/<pid>/stat line as Linux writes it (52 fields)."""
    fields = ["S", ppid, pid, pid, 0, -1, 4194560, 0, 0, 0, 0, utime, stime, cutime, cstime, 20, 0, 1, 0, 100,
              rss_pages * PAGE, rss_pages] + [0] * 30
    return f"{pid} ({name}) " + " ".join(str(f) for f in fields) + "\n"


def fake_proc(root: Path, processes: dict[int, tuple[str, int, int, int]], busy: int, used_kib: int) -> Path:
    """A /proc with `processes` {pid: (name, ppid, cpu ticks, rss pages)}, the node's busy ticks and memory."""
    for pid, (name, ppid, ticks, pages) in processes.items():
        (root / str(pid)).mkdir(parents=True, exist_ok=True)
        (root / str(pid) / "stat").write_text(stat_line(pid, name, ppid, ticks, 0, pages))
    (root / "self").mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text(f"cpu  {busy} 0 0 5000 7 0 0 0 0 0\ncpu0 {busy} 0 0 5000 7 0 0 0 0 0\n")
    (root / "meminfo").write_text(f"MemTotal:       16000000 kB\nMemFree:         1000 kB\n"
                                  f"MemAvailable:   {16000000 - used_kib} kB\nHugePages_Total:       0\n")
    return root


def test_quantities_are_written_as_resource_quantity_writes_them() -> None:
    assert [metrics.cpu_quantity(n) for n in (0, 1234567, 1500, 3000, 5_000_000, 2_000_000_000)] == \
        ["0", "1234567n", "1500n", "3u", "5m", "2"]
    assert [metrics.memory_quantity(b) for b in (0, 1000, 123456 * 1024, 20 << 20, 1 << 30, 1536)] == \
        ["0", "1000", "123456Ki", "20Mi", "1Gi", "1536"]
    assert [metrics.duration(s) for s in (5.0, 5.0021, 10.5)] == ["5s", "5.002s", "10.5s"]


def test_cpu_rate_is_nanocores_between_two_readings() -> None:
    assert metrics.cpu_rate(100, 150, 1.0, CLOCK) == 500_000_000  # half a core
    assert metrics.cpu_rate(100, 400, 2.0, CLOCK) == 1_500_000_000
    assert metrics.cpu_rate(400, 100, 2.0, CLOCK) == 0  # a process that left the tree: never negative
    assert metrics.cpu_rate(100, 150, 0.0, CLOCK) == 0


def test_stat_counts_own_and_reaped_childrens_time_and_survives_odd_names() -> None:
    line = stat_line(42, "tritonserver (stub) x", 7, 10, 5, 3, cutime=2, cstime=1)
    assert metrics.parse_stat(line, PAGE) == metrics.ProcStat(ppid=7, ticks=18, rss=3 * PAGE)


def test_a_container_is_its_process_and_every_descendant(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {1: ("init", 0, 0, 1), 10: ("tritonserver", 1, 100, 1000),
                                11: ("triton_python_backend_stub", 10, 30, 500), 12: ("python", 11, 5, 50),
                                20: ("agent", 1, 7, 300)}, busy=1000, used_kib=4000000)
    processes = metrics.read_processes(proc, PAGE)
    assert set(processes) == {1, 10, 11, 12, 20}
    assert metrics.tree_usage(processes, 10) == (135, 1550 * PAGE)
    assert metrics.tree_usage(processes, 20) == (7, 300 * PAGE)
    assert metrics.tree_usage(processes, 99) is None


def test_node_usage_is_busy_time_and_memory_not_available() -> None:
    assert metrics.node_busy_ticks("cpu  10 2 3 100 50 4 5 6 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n") == 30
    assert metrics.node_memory_used("MemTotal: 1000 kB\nMemFree: 10 kB\nMemAvailable: 400 kB\n") == 600 * 1024


POD = metrics.PodProcesses("ns1", "server-pod", {"app": "triton", "tier": "serving"},
                           (("kfserving-container", 10), ("agent", 20)))
SEED = metrics.PodProcesses("kubeflow", "minio", {"app": "minio"}, (("minio", 30),))
IDLE = metrics.PodProcesses("ns1", "no-processes", {}, ())


@pytest.fixture
def sampler(tmp_path: Path) -> metrics.Sampler:
    """Two samples 5 s apart: Triton's tree used 1 core, the agent 0.2, the node 1.5 cores."""
    first = {10: ("tritonserver", 1, 100, 2000), 11: ("stub", 10, 0, 1000), 20: ("agent", 1, 50, 400),
             30: ("weed", 1, 0, 100)}
    second = {**first, 10: ("tritonserver", 1, 400, 2000), 11: ("stub", 10, 200, 1000), 20: ("agent", 1, 150, 400)}
    found = metrics.Sampler(lambda: [POD, SEED, IDLE], "mms-local-node")
    found.clock_ticks = CLOCK
    before = metrics.take_sample([POD, SEED, IDLE], fake_proc(tmp_path / "a", first, 1000, 1000), 1000.0, PAGE)
    after = metrics.take_sample([POD, SEED, IDLE], fake_proc(tmp_path / "b", second, 1750, 2048), 1005.0, PAGE)
    found.samples = (before, after)
    return found


def test_pod_metrics_are_what_metrics_server_returns(sampler: metrics.Sampler) -> None:
    pod = sampler.answer("/apis/metrics.k8s.io/v1beta1/namespaces/ns1/pods/server-pod", "")
    assert pod["kind"] == "PodMetrics" and pod["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert pod["metadata"]["labels"] == {"app": "triton", "tier": "serving"}
    assert pod["timestamp"] == "1970-01-01T00:16:45Z" and pod["window"] == "5s"
    assert pod["containers"] == [
        {"name": "kfserving-container", "usage": {"cpu": "1", "memory": "12000Ki"}},  # 500 ticks in 5 s; 3000 pages
        {"name": "agent", "usage": {"cpu": "200m", "memory": "1600Ki"}}]


def test_lists_filter_by_namespace_and_labels_and_leave_out_pods_without_processes(sampler: metrics.Sampler) -> None:
    def names(path: str, query: str = "") -> list[str]:
        answer = sampler.answer(path, query)
        assert answer["kind"] == "PodMetricsList"
        return [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in answer["items"]]

    assert names("/apis/metrics.k8s.io/v1beta1/pods") == ["kubeflow/minio", "ns1/server-pod"]
    assert names("/apis/metrics.k8s.io/v1beta1/namespaces/ns1/pods") == ["ns1/server-pod"]
    assert names("/apis/metrics.k8s.io/v1beta1/namespaces/ns1/pods", "labelSelector=app%3Dminio") == []
    assert names("/apis/metrics.k8s.io/v1beta1/pods", "labelSelector=app%21%3Dtriton") == ["kubeflow/minio"]
    with pytest.raises(metrics.ApiError) as bad:
        names("/apis/metrics.k8s.io/v1beta1/pods", "labelSelector=app+in+%28a%29")
    assert bad.value.code == 400


def test_not_found_says_which_as_metrics_server_does(sampler: metrics.Sampler) -> None:
    with pytest.raises(metrics.ApiError) as missing:
        sampler.answer("/apis/metrics.k8s.io/v1beta1/namespaces/ns1/pods/nope", "")
    assert (missing.value.code, str(missing.value)) == (404, 'pods "nope" not found')
    with pytest.raises(metrics.ApiError) as unmeasured:
        sampler.answer("/apis/metrics.k8s.io/v1beta1/namespaces/ns1/pods/no-processes", "")
    assert str(unmeasured.value) == 'podmetrics.metrics.k8s.io "ns1/no-processes" not found'
    assert unmeasured.value.status()["reason"] == "NotFound"
    with pytest.raises(metrics.ApiError):
        sampler.answer("/apis/metrics.k8s.io/v1beta1/nodes/other-node", "")


def test_node_metrics_and_discovery(sampler: metrics.Sampler) -> None:
    node = sampler.answer("/apis/metrics.k8s.io/v1beta1/nodes/mms-local-node", "")
    assert node["usage"] == {"cpu": "1500m", "memory": "2Mi"}
    assert sampler.answer("/apis/metrics.k8s.io/v1beta1/nodes", "")["items"] == [node]
    resources = sampler.answer("/apis/metrics.k8s.io/v1beta1", "")
    assert resources["groupVersion"] == "metrics.k8s.io/v1beta1"
    assert {(r["name"], r["kind"], r["namespaced"]) for r in resources["resources"]} == {
        ("nodes", "NodeMetrics", False), ("pods", "PodMetrics", True)}
    assert sampler.answer("/apis/metrics.k8s.io", "")["preferredVersion"]["version"] == "v1beta1"
    assert sampler.answer("/openapi/v2", "")["swagger"] == "2.0"  # the aggregator merges it (a 404 it logs as an error)
    with pytest.raises(metrics.ApiError):
        sampler.answer("/apis/metrics.k8s.io/v1beta1/namespaces/ns1/services", "")


def test_with_one_sample_nothing_is_measured_yet(sampler: metrics.Sampler) -> None:
    sampler.samples = (None, sampler.samples[1])
    assert sampler.answer("/apis/metrics.k8s.io/v1beta1/nodes", "")["items"] == []
    assert sampler.answer("/apis/metrics.k8s.io/v1beta1/pods", "")["items"] == []


def test_label_selectors() -> None:
    labels = {"app": "triton", "tier": "serving"}
    for selector, expected in (("", True), ("app=triton", True), ("app==triton,tier", True), ("app!=triton", False),
                               ("!tier", False), ("!other", True), ("other", False), ("app=agent", False)):
        assert metrics.selector_matches(selector, labels) is expected, selector
    with pytest.raises(ValueError):
        metrics.selector_matches("app notin (a)", labels)


def test_the_apiservice_reaches_127_0_0_1_through_an_externalname_service() -> None:
    service, apiservice = metrics.api_manifests(4443)
    assert service["spec"] == {"type": "ExternalName", "externalName": "127.0.0.1"}
    assert (service["metadata"]["namespace"], service["metadata"]["name"]) == ("kube-system", "metrics-server")
    assert apiservice["metadata"]["name"] == "v1beta1.metrics.k8s.io"
    assert apiservice["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system", "port": 4443}
    assert apiservice["spec"]["insecureSkipTLSVerify"] is True
    role = metrics.metrics_reader_role()
    assert role["metadata"]["name"] == "system:aggregated-metrics-reader"
    assert set(role["metadata"]["labels"]) == {f"rbac.authorization.k8s.io/aggregate-to-{r}" for r in ("view", "edit", "admin")}
