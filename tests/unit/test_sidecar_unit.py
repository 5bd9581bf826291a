"""Istio's sidecar in the server's pod (helpers/local/cluster/mesh.py `Injector`, `sidecar_for`, `inject`) and
the race it makes for the agent (kserve/kserve#1370): the agent's outbound connections refused until the
proxy listens (helpers/local/agent/s3config.py `refused`, downloader). No stack; the pods with a fake API."""
from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from helpers.clients.storage import StorageError
from helpers.core.constants import KFSERVING_GROUP, KSERVE_GROUP, api_group
from helpers.local.agent import release, s3config
from helpers.local.agent.downloader import SIDECAR_FIX, Downloader
from helpers.local.agent.log import Logger
from helpers.local.agent.spec import ModelSpec
from helpers.local.cluster import mesh, scheduler
from helpers.local.cluster.scheduler import Resources
from helpers.local.controller.pods import DISALLOWED_ANNOTATIONS, Pods
from helpers.local.stack import releases
from helpers.local.stack.seed import inferenceservice_config_data
from support.fakes import PodsKube

INJECTED = {mesh.INJECTION_LABEL: "enabled"}
HOLD = {mesh.PROXY_CONFIG_ANNOTATION: '{"holdApplicationUntilProxyStarts": true}'}
OLD_KIND = {mesh.NATIVE_ANNOTATION: "false"}
GI, MI = 2 ** 30, 2 ** 20


def test_each_profiles_kubeflow_has_its_istio_injector() -> None:
    by_profile = {name: mesh.INJECTORS[p.kubeflow] for name, p in releases.PROFILES.items()}
    assert {name: i.istio for name, i in by_profile.items()} == {
        "kfserving-0.5": "1.1.6", "kubeflow-1.10.0": "1.24.3", "kubeflow-1.10": "1.24.3", "kubeflow-1.11": "1.28.0"}
    guide = by_profile["kfserving-0.5"]
    assert not guide.native and not guide.reads_proxy_config  # Istio 1.1: no native sidecar, no hold
    assert guide.proxy_resources["requests"] == {"cpu": "10m", "memory": "40Mi"}
    assert all(i.native and i.reads_proxy_config for name, i in by_profile.items() if name != "kfserving-0.5")
    assert by_profile["kubeflow-1.11"].init_name == "istio-validation"  # Kubeflow 1.11's Istio has its CNI


def test_injection_follows_the_namespace_label_and_the_pods_annotations() -> None:
    assert mesh.sidecar_for("1.0.2", {}, {}) is None
    assert mesh.sidecar_for("1.0.2", INJECTED, {mesh.INJECT_ANNOTATION: "false"}) is None
    assert mesh.sidecar_for("", INJECTED, {}) is None  # no known injector
    guide = mesh.sidecar_for("1.0.2", INJECTED, HOLD)
    assert guide is not None and guide.shown and not guide.held and guide.races  # Istio 1.1 ignores the hold
    native = mesh.sidecar_for("1.10.1", INJECTED, {})
    assert native is not None and native.native and not native.shown and not native.races
    assert mesh.sidecar_for("1.10.1", INJECTED, HOLD).native  # the hold changes nothing for a native sidecar
    old = mesh.sidecar_for("1.10.1", INJECTED, OLD_KIND)
    assert old.shown and old.races and not old.held
    held = mesh.sidecar_for("1.11.0", INJECTED, {**OLD_KIND, **HOLD})
    assert held.shown and held.held and not held.races


def _pod(init: bool = False) -> dict:
    spec: dict = {"containers": [{"name": "kserve-container", "ports": [{"containerPort": 8080}]}, {"name": "agent"}]}
    if init:
        spec["initContainers"] = [{"name": "storage-initializer"}]
    return {"metadata": {"labels": {"app": "triton-mms-predictor-00001"}}, "spec": spec}


def test_the_proxy_goes_last_or_held_first_with_pilot_agent_wait() -> None:
    racing = mesh.inject(mesh.sidecar_for("1.10.1", INJECTED, OLD_KIND), _pod(init=True))
    assert [c["name"] for c in racing["spec"]["containers"]] == ["kserve-container", "agent", "istio-proxy"]
    assert [c["name"] for c in racing["spec"]["initContainers"]] == ["storage-initializer", "istio-init"]
    assert "lifecycle" not in racing["spec"]["containers"][-1]
    notes = racing["metadata"]["annotations"]
    assert notes["kubectl.kubernetes.io/default-container"] == "kserve-container"
    assert racing["metadata"]["labels"]["security.istio.io/tlsMode"] == "istio"
    held = mesh.inject(mesh.sidecar_for("1.10.1", INJECTED, {**OLD_KIND, **HOLD}), _pod())
    proxy = held["spec"]["containers"][0]
    assert proxy["name"] == "istio-proxy" and proxy["image"] == "gcr.io/istio-release/proxyv2:1.24.3"
    assert proxy["lifecycle"] == {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}
    cni = mesh.inject(mesh.sidecar_for("1.11.0", INJECTED, OLD_KIND), _pod(init=True))
    assert [c["name"] for c in cni["spec"]["initContainers"]] == ["istio-validation", "storage-initializer"]
    native = mesh.inject(mesh.sidecar_for("1.11.0", INJECTED, {}), _pod())
    assert [c["name"] for c in native["spec"]["containers"]] == ["kserve-container", "agent"]
    assert "initContainers" not in native["spec"]  # a native sidecar cannot be stored by Kubernetes 1.20
    guide = mesh.inject(mesh.sidecar_for("1.0.2", INJECTED, HOLD), _pod())
    proxy = guide["spec"]["containers"][-1]
    assert proxy["image"] == "docker.io/istio/proxyv2:1.1.6" and "lifecycle" not in proxy
    assert "--applicationPorts" in proxy["args"] and proxy["args"][-1] == "8080"
    assert "--serviceCluster" in proxy["args"] and "triton-mms-predictor-00001.$(POD_NAMESPACE)" in proxy["args"]
    assert guide["spec"]["initContainers"][0]["image"] == "docker.io/istio/proxy_init:1.1.6"
    assert "kubectl.kubernetes.io/default-container" not in (guide["metadata"].get("annotations") or {})


def _isvc(group: str, annotations: dict) -> dict:
    triton = {"resources": {"limits": {"cpu": "1", "memory": "16Gi"}, "requests": {"cpu": "1", "memory": "16Gi"}}}
    return {"apiVersion": f"{group}/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "triton-mms", "namespace": "mms", "uid": "u-1", "generation": 1,
                         "annotations": annotations},
            "spec": {"predictor": {"serviceAccountName": "sa", "triton": triton}}}


def _created(profile: str, group: str, annotations: dict, labels: dict = INJECTED) -> tuple[dict, object]:
    found = releases.get(profile)
    kube = PodsKube(inferenceservice_config_data(found), labels)
    _, sidecar = Pods(kube, Path("/nonexistent"), Path("/nonexistent"), kubeflow=found.kubeflow)._create(
        api_group(group), _isvc(group, annotations), [])
    return kube.created[0], sidecar


def test_the_guides_pod_gets_istio_1_1s_proxy_whose_requests_the_scheduler_counts() -> None:
    body, sidecar = _created("kfserving-0.5", KFSERVING_GROUP,
                             {**HOLD, "kubectl.kubernetes.io/last-applied-configuration": "{}"})
    assert [c["name"] for c in body["spec"]["containers"]] == ["kfserving-container", "agent", "istio-proxy"]
    assert sidecar.races  # Istio 1.1.6 does not read the hold
    notes = body["metadata"]["annotations"]
    assert notes[mesh.PROXY_CONFIG_ANNOTATION] == HOLD[mesh.PROXY_CONFIG_ANNOTATION]  # copied from the ISVC
    assert not set(DISALLOWED_ANNOTATIONS) & set(notes)
    # the guide's server (1 cpu, 16Gi), the agent (100m, 100Mi) and Istio 1.1.6's proxy (10m, 40Mi)
    assert scheduler.pod_requests(body["spec"]) == Resources(1110, 16 * GI + 140 * MI)
    bare, none = _created("kfserving-0.5", KFSERVING_GROUP, {}, labels={})
    assert none is None and [c["name"] for c in bare["spec"]["containers"]] == ["kfserving-container", "agent"]


def test_a_kubeflow_1_10_pod_holds_for_its_proxy_only_when_it_asks_for_the_old_kind_and_the_hold() -> None:
    native, sidecar = _created("kubeflow-1.10", KSERVE_GROUP, HOLD)
    assert sidecar.native and [c["name"] for c in native["spec"]["containers"]] == ["kserve-container", "agent"]
    held, sidecar = _created("kubeflow-1.10", KSERVE_GROUP, {**OLD_KIND, **HOLD})
    assert sidecar.held and held["spec"]["containers"][0]["name"] == "istio-proxy"
    racing, sidecar = _created("kubeflow-1.10", KSERVE_GROUP, OLD_KIND)
    assert sidecar.races and racing["spec"]["containers"][-1]["name"] == "istio-proxy"


def test_only_a_new_pods_racing_agent_gets_an_outbound_delay() -> None:
    racing = {"sidecar": mesh.sidecar_for("1.0.2", INJECTED, {}).to_json(), "containers": {}}
    assert Pods._outbound_delay(racing) == mesh.PROXY_STARTUP_S
    assert Pods._outbound_delay({**racing, "containers": {"agent": [{"pid": 1}]}}) is None  # restarted in its pod
    assert Pods._outbound_delay({**racing, "storageUri": "s3://b/p"}) is None  # no agent
    held = {"sidecar": mesh.sidecar_for("1.10.1", INJECTED, {**OLD_KIND, **HOLD}).to_json(), "containers": {}}
    native = {"sidecar": mesh.sidecar_for("1.10.1", INJECTED, {}).to_json(), "containers": {}}
    assert Pods._outbound_delay(held) is None and Pods._outbound_delay(native) is None
    assert Pods._outbound_delay({"containers": {}}) is None


# --- the agent's side of the race -------------------------------------------------------------------------
ENV = {"AWS_ENDPOINT_URL": "http://minio-service.kubeflow:9000", "AWS_ACCESS_KEY_ID": "k",
       "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1", "S3_USER_VIRTUAL_BUCKET": "false"}


def _agent_s3(refused_for: float) -> s3config.AgentS3:
    env = {**ENV, s3config.OUTBOUND_REFUSED_ENV: str(refused_for)} if refused_for else ENV
    return s3config.from_env(env, resolve=lambda address: "127.0.0.1:1",
                             cluster_address=lambda host: "10.0.0.12:9000")


def test_the_agents_calls_are_refused_until_the_proxy_listens() -> None:
    s3 = _agent_s3(0.6)
    said = s3.refused("http://minio-service.kubeflow:9000/triton?prefix=m%2Fa")
    assert said == ('RequestError: send request failed\ncaused by: Get "http://minio-service.kubeflow:9000/triton?'
                    'prefix=m%2Fa": dial tcp 10.0.0.12:9000: connect: connection refused')
    time.sleep(0.7)
    assert s3.refused("http://minio-service.kubeflow:9000/triton") is None
    assert _agent_s3(0).refused("http://minio-service.kubeflow:9000/triton") is None  # no proxy racing it


@pytest.mark.parametrize("behaviour", [release.RELEASES["v0.5.1"], release.RELEASES["v0.15.2"]],
                         ids=["v0.5.1", "v0.15.2"])
def test_a_release_agents_listing_fails_as_kserve_1370_reports_it(tmp_path: Path, behaviour) -> None:
    d = Downloader(tmp_path, _agent_s3(30), Logger("test", io.StringIO()), behaviour=behaviour)
    d._client = lambda bucket: None  # type: ignore[assignment]  # no S3 request is made before the refusal
    with pytest.raises(StorageError) as caught:
        d.download("a", ModelSpec("s3://triton/m/a"))
    assert caught.value.cause == (
        "failed to download model: failed to download model: unable to get batch objects RequestError: send request "
        'failed\ncaused by: Get "http://minio-service.kubeflow:9000/triton?prefix=m%2Fa": dial tcp 10.0.0.12:9000: '
        "connect: connection refused")
    assert caught.value.fix == SIDECAR_FIX
