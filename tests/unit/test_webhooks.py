"""The admission rules of each profile's release, as pure functions (no server).

The same functions answer the apiserver's AdmissionReviews (tests/stack/test_controller.py shows a
rejection end to end, through `kubectl`'s path); here each rule shows its message.
"""
from __future__ import annotations

import copy

import pytest

from helpers.local.controller.webhooks import (
    default_inferenceservice,
    review_inferenceservice,
    review_trainedmodel,
    webhook_names,
)
from helpers.local.stack.releases import get

KFSERVING, KSERVE = get("kfserving-0.5"), get("kubeflow-1.10")


def tm(name: str = "cifar10", uri: str = "s3://triton/torchscript/cifar10", memory: str = "1Gi") -> dict:
    return {"metadata": {"name": name}, "spec": {"inferenceService": "triton-mms",
                                                 "model": {"framework": "pytorch", "storageUri": uri, "memory": memory}}}


def isvc(name: str = "triton-mms", **predictor: object) -> dict:
    return {"apiVersion": "serving.kubeflow.org/v1beta1", "metadata": {"name": name},
            "spec": {"predictor": predictor or {"triton": {"runtimeVersion": "20.08-py3"}}}}


@pytest.mark.parametrize("profile", [KFSERVING, KSERVE], ids=["kfserving-0.5", "kubeflow-1.10"])
def test_the_guides_objects_are_admitted(profile) -> None:
    assert review_trainedmodel(profile, tm()) is None
    assert review_trainedmodel(profile, tm(), old=tm()) is None
    assert review_inferenceservice(profile, isvc()) is None


def test_trainedmodel_names() -> None:
    assert "must consist of lower case alphanumeric" in review_trainedmodel(KFSERVING, tm("1cifar"))
    assert "must consist of lower case alphanumeric" in review_trainedmodel(KFSERVING, tm("cifar_10"))
    assert review_trainedmodel(KSERVE, tm("cifar_10")) is None  # KServe relaxed it
    assert "alphanumeric characters, '_', or '-'" in review_trainedmodel(KSERVE, tm("cifar.10"))


def test_trainedmodel_storage_uri_prefixes() -> None:
    message = review_trainedmodel(KFSERVING, tm(uri="https://host/cifar10"))
    assert message == ('the Trained Model "cifar10" storageUri field is invalid. The storage uri must start with one '
                       'of the prefixes: s3://, gs://. (the storage uri given is "https://host/cifar10")')
    assert review_trainedmodel(KSERVE, tm(uri="https://host/cifar10")) is None
    assert "s3://, gs://, https://, http://" in review_trainedmodel(KSERVE, tm(uri="pvc://claim/m"))
    assert review_trainedmodel(KFSERVING, tm(uri="minio://triton/x")) is not None


@pytest.mark.parametrize("profile", [KFSERVING, KSERVE], ids=["kfserving-0.5", "kubeflow-1.10"])
def test_trainedmodel_memory_is_immutable(profile) -> None:
    message = review_trainedmodel(profile, tm(memory="2Gi"), old=tm(memory="1Gi"))
    assert message == 'the Trained Model "cifar10" memory field is immutable. The memory was "1Gi" but it is updated to "2Gi"'
    assert review_trainedmodel(profile, tm(memory="1024Mi"), old=tm(memory="1Gi")) is None  # the same quantity


def test_kserve_lets_a_deletion_through() -> None:
    leaving = tm(memory="2Gi")
    leaving["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    assert review_trainedmodel(KSERVE, leaving, old=tm()) is None
    assert review_trainedmodel(KFSERVING, leaving, old=tm()) is not None


@pytest.mark.parametrize("profile", [KFSERVING, KSERVE], ids=["kfserving-0.5", "kubeflow-1.10"])
def test_inferenceservice_rules(profile) -> None:
    assert "a InferenceService name must consist of lower case" in review_inferenceservice(profile, isvc("1triton"))
    both = isvc(triton={}, sklearn={})
    assert "Exactly one of [SKLearn, XGBoost, Tensorflow, PyTorch, Triton" in review_inferenceservice(profile, both)
    assert "must be specified in PredictorSpec" in review_inferenceservice(profile, isvc(serviceAccountName="sa"))
    assert review_inferenceservice(profile, isvc(triton={}, minReplicas=-1)) == "MinReplicas cannot be less than 0."
    assert review_inferenceservice(profile, isvc(triton={}, minReplicas=3, maxReplicas=2)) == \
        "MinReplicas cannot be greater than MaxReplicas."
    assert review_inferenceservice(profile, isvc(triton={}, containerConcurrency=-1)) == \
        "Parallelism cannot be less than 0."
    assert review_inferenceservice(profile, isvc(triton={}, logger={"mode": "everything"})) == "Invalid logger type"
    message = review_inferenceservice(profile, isvc(triton={"storageUri": "minio://triton/x"}))
    assert message.startswith("storageUri, must be one of: [gs://, s3://, pvc://, file://, https://, http://]")
    assert review_inferenceservice(profile, isvc(triton={"storageUri": "/mnt/models"})) is None  # a local path


def test_rules_do_not_change_what_they_read() -> None:
    body = isvc(triton={"runtimeVersion": "20.08-py3"})
    before = copy.deepcopy(body)
    review_inferenceservice(KSERVE, body)
    assert body == before


def test_webhook_names_are_the_releases() -> None:
    assert webhook_names(KFSERVING) == {"trainedmodels": "trainedmodel.kfserving-webhook-server.validator",
                                        "inferenceservices": "inferenceservice.kfserving-webhook-server.v1beta1.validator"}
    assert webhook_names(KSERVE)["trainedmodels"] == "trainedmodel.kserve-webhook-server.validator"


def test_kfserving_defaulter_names_the_container_and_fills_resources_and_version() -> None:
    config = {"predictors": '{"triton": {"defaultImageVersion": "20.08-py3", "multiModelServer": true}}'}
    body = isvc(triton={"name": "", "resources": {"limits": {"memory": "16Gi"}}})
    spec = default_inferenceservice(KFSERVING, body, config)
    triton = spec["predictor"]["triton"]
    assert triton["name"] == "kfserving-container" and triton["runtimeVersion"] == "20.08-py3"
    assert triton["resources"] == {"limits": {"memory": "16Gi", "cpu": "1"}, "requests": {"cpu": "1", "memory": "2Gi"}}
    assert body["spec"]["predictor"]["triton"] == {"name": "", "resources": {"limits": {"memory": "16Gi"}}}


def test_kserve_defaulter_stores_triton_as_a_model_with_v2_and_nothing_else() -> None:
    """KServe 0.14/0.15 (inference_service_defaults.go assignTritonRuntime; ModelSpec.Default adds nothing)."""
    given = {"runtimeVersion": "20.08-py3", "args": ["--log-verbose=1"], "resources": {"limits": {"memory": "16Gi"}}}
    for profile in (get("kubeflow-1.10.0"), KSERVE, get("kubeflow-1.11")):
        predictor = default_inferenceservice(profile, isvc(triton=dict(given)), {})["predictor"]
        assert "triton" not in predictor
        assert predictor["model"] == {"modelFormat": {"name": "triton"}, "protocolVersion": "v2", **given}
    kept = default_inferenceservice(KSERVE, isvc(triton={"protocolVersion": "grpc-v2"}), {})["predictor"]["model"]
    assert kept["protocolVersion"] == "grpc-v2"
    stored = {"model": {"modelFormat": {"name": "triton"}, "protocolVersion": "v2"}}
    assert default_inferenceservice(KSERVE, isvc(**stored), {})["predictor"] == stored  # an update: unchanged
    # The guide's manifest merged over the stored object: triton replaces the stored model, as in KServe.
    merged = default_inferenceservice(KSERVE, isvc(triton={"args": ["-v"]}, **stored), {})["predictor"]
    assert merged == {"model": {"modelFormat": {"name": "triton"}, "protocolVersion": "v2", "args": ["-v"]}}
    two = default_inferenceservice(KSERVE, isvc(triton={}, sklearn={}), {})["predictor"]
    assert set(two) == {"triton", "model"}  # sklearn comes first in KServe's switch: the validator refuses the rest
    assert review_inferenceservice(KSERVE, {"metadata": {"name": "x"}, "spec": {"predictor": two}})
