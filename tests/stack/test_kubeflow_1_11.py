"""Kubeflow 1.11 (KServe 0.15.2, SeaweedFS): the walkthrough as its learner, whose S3 key may use only
its namespace's folders of bucket `mlpipeline` (Kubeflow Pipelines' sync.py), and what the cluster
stores. One stack of the profile for the file; 00-04 run once, the tests read what they left."""
from __future__ import annotations

import base64
import io
import os
import signal
from pathlib import Path
from typing import Iterator

import pytest
from kubernetes import client
from kubernetes import config as kconfig

from helpers.clients import storage
from helpers.core.constants import KSERVE_GROUP
from helpers.core.wait import poll_until
from helpers.local.stack import seaweedfs
from helpers.local.stack.stack import Stack
from support import releases

pytestmark = pytest.mark.stack
NS = "mms"  # the guide's namespace: the walkthrough's default


@pytest.fixture(scope="module")
def stack111(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with releases.release_stack(Path(tmp_path_factory.mktemp("kubeflow-1.11")), "kubeflow-1.11") as local:
        yield local


@pytest.fixture(scope="module")
def admin(stack111: Stack) -> client.ApiClient:
    return kconfig.new_client_from_config(config_file=str(stack111.kubeconfig))


@pytest.fixture(scope="module")
def runs(stack111: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return releases.run_guide(tmp_path_factory.mktemp("walkthrough-1.11"), {"preset": "small"})


def namespace_key(admin: client.ApiClient, stack: Stack, namespace: str) -> storage.Minio:
    secret = client.CoreV1Api(admin).read_namespaced_secret("mlpipeline-minio-artifact", namespace)
    data = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
    assert data["accesskey"] != stack.s3_credentials().access_key  # its own key, not the admin's
    return storage.connect(storage.S3Settings(stack.env()["MMS_S3_ENDPOINT"], data["accesskey"], data["secretkey"]))


def test_the_walkthrough_runs_as_the_learner_in_its_own_folder(runs: dict) -> None:
    found = releases.results(runs, "01_minio")
    assert found["settings"]["bucket"] == f"mlpipeline/private/{NS}" and found["settings"]["identity"] == "learner"
    assert found["bucket_reachable"] and found["bucket_created"] is False  # a folder of the shared bucket
    assert "mlpipeline/private/mms/torchscript/cifar10" in str(releases.results(runs, "03_cifar10"))


def test_the_stored_inferenceservice_is_kserves_shape(runs: dict, admin: client.ApiClient) -> None:
    isvc = client.CustomObjectsApi(admin).get_namespaced_custom_object(
        KSERVE_GROUP, "v1beta1", NS, "inferenceservices", "triton-mms")
    predictor = isvc["spec"]["predictor"]
    assert "triton" not in predictor
    assert predictor["model"]["modelFormat"] == {"name": "triton"} and predictor["model"]["protocolVersion"] == "v2"
    pod = [p for p in client.CoreV1Api(admin).list_namespaced_pod(NS).items
           if (p.metadata.labels or {}).get("serving.kserve.io/inferenceservice") == "triton-mms"][0]
    server, agent = pod.spec.containers
    assert server.name == "kserve-container" and server.args[-1] == "--model-control-mode=explicit"
    assert {e.name for e in agent.env} >= {"AWS_DEFAULT_REGION", "S3_USER_VIRTUAL_BUCKET"}
    assert "AWS_REGION" not in {e.name for e in agent.env}
    models = client.CustomObjectsApi(admin).list_namespaced_custom_object(
        KSERVE_GROUP, "v1alpha1", NS, "trainedmodels")["items"]
    assert {m["spec"]["model"]["storageUri"] for m in models} == {
        "s3://mlpipeline/private/mms/torchscript/cifar10", "s3://mlpipeline/private/mms/models/inception_graphdef"}


def test_a_bucket_outside_the_learners_prefix_is_refused(runs: dict, stack111: Stack, admin: client.ApiClient) -> None:
    s3 = namespace_key(admin, stack111, NS)
    with pytest.raises(storage.StorageError, match="AccessDenied"):
        storage.ensure_bucket(s3, "triton")  # the guide's `mc mb myminio/triton`
    with pytest.raises(storage.StorageError, match="AccessDenied"):
        with storage.s3_errors(s3, "mlpipeline"):
            s3.put_object("mlpipeline", "private/someone-else/x", io.BytesIO(b"x"), 1)
    with storage.s3_errors(s3, "mlpipeline"):
        s3.put_object("mlpipeline", f"{seaweedfs.namespace_prefix(NS)}/probe", io.BytesIO(b"x"), 1)
    assert ("probe", 1) in storage.list_objects(s3, f"mlpipeline/private/{NS}")


def test_the_doctor_is_quiet_on_the_healthy_server(runs: dict, stack111: Stack) -> None:
    code, findings = releases.doctor(stack111, NS, "triton-mms", f"mlpipeline/private/{NS}")
    assert code == 0, [f for f in findings if f["result"] == "problem"]


def test_seaweedfs_killed_comes_back_with_its_objects_and_keys(runs: dict, stack111: Stack,
                                                               admin: client.ApiClient) -> None:
    """The supervisor restarts `weed` over its kept data: the postStart runs again (the bucket exists,
    which it must tolerate), and the learner's key and models are still there."""
    before = stack111.records()["s3"]
    os.killpg(before.pid, signal.SIGKILL)

    def back() -> bool:
        row = {s.name: s for s in stack111.status()}["s3"]
        return row.healthy and row.pid != before.pid and row.restarts == before.restarts + 1

    poll_until(back, "SeaweedFS to be restarted by the supervisor", timeout=120)
    listed = storage.list_objects(namespace_key(admin, stack111, NS), f"mlpipeline/private/{NS}/torchscript/cifar10")
    assert any(name.endswith("model.pt") for name, _size in listed), listed


# Istio's policies at the predictor on this release (support/mesh_cases.py), on this file's stack.
from support.mesh_cases import *  # noqa: E402,F403 - the cases, collected here after this file's own
from support.mesh_cases import Routes, mesh_routes  # noqa: E402


@pytest.fixture(scope="module")
def routes(stack111: Stack) -> Iterator[Routes]:
    with mesh_routes(stack111) as found:
        yield found
