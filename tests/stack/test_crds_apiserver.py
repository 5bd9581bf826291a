"""The CRDs and seed objects against a real etcd + kube-apiserver 1.20 (+ controller manager).

What a cluster would do with them: 422 for invalid TrainedModels, 409 for duplicates, printer
columns in `kubectl get`, the status subresource, pruning as each release's CRDs prune, and
`k8s.apply` being idempotent. A bare control plane, no controller: the CRDs of both profiles are
installed side by side here only to compare them (a stack serves one; see test_profiles.py).
"""
from __future__ import annotations

import json
from typing import Iterator

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from helpers.clients import k8s
from helpers.core.constants import (
    API_GROUPS,
    INFERENCESERVICE_CONFIG,
    KFSERVING_GROUP,
    KNATIVE_CONFIG_DEPLOYMENT,
    KNATIVE_NAMESPACE,
    KSERVE_GROUP,
    KUBEFLOW_NAMESPACE,
    LOCAL_ADDRESS_ANNOTATION,
    MINIO_SERVICE,
    api_group,
)
from helpers.core.errors import SetupError
from helpers.local.crds import crd_manifests
from helpers.local.stack.releases import PROFILES
from helpers.local.stack.releases import get as get_profile
from helpers.local.stack.seed import seed_manifests
from support.parts import ControlPlanePart, Parts

KFSERVING = get_profile("kfserving-0.5")


def all_crds() -> list[dict]:
    # The three Kubeflow-bundled KServe profiles share their CRDs: each once.
    return list({crd["metadata"]["name"]: crd for profile in PROFILES.values() for crd in crd_manifests(profile)}.values())


def seeds(access_key: str = "mms-test-key", secret_key: str = "mms-test-secret",
          address: str = "127.0.0.1:19000") -> list[dict]:
    return seed_manifests(KFSERVING, access_key, secret_key, address)

pytestmark = pytest.mark.controlplane

NAMESPACE = "mms"
ACCESS_KEY, SECRET_KEY, S3_ADDRESS = "mms-test-key", "mms-test-secret", "127.0.0.1:19000"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlanePart]:
    """etcd + kube-apiserver + kube-controller-manager with every release's CRDs and the seed objects."""
    with Parts(tmp_path_factory.mktemp("controlplane")) as parts:
        cluster = parts.controlplane()
        k8s.apply_all(cluster.api, all_crds())
        k8s.apply_all(cluster.api, seeds(ACCESS_KEY, SECRET_KEY, S3_ADDRESS))
        k8s.apply(cluster.api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        yield cluster


def trained_model(group: str, name: str, **model: object) -> dict:
    spec = {"storageUri": "s3://triton/torchscript/cifar10", "framework": "pytorch", "memory": "1Gi", **model}
    return {"apiVersion": api_group(group).tm_api_version, "kind": "TrainedModel",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"inferenceService": "triton-mms", "model": {k: v for k, v in spec.items() if v is not None}}}


def inference_service(group: str, name: str) -> dict:
    return {"apiVersion": api_group(group).isvc_api_version, "kind": "InferenceService",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"predictor": {"serviceAccountName": "sa", "minReplicas": 1,
                                   "triton": {"runtimeVersion": "20.08-py3", "args": ["--strict-model-config=false"],
                                              "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
                                              "resources": {"limits": {"cpu": "1", "memory": "8Gi"}}}}}}


def create_custom(api: ApiClient, manifest: dict) -> dict:
    group, version = manifest["apiVersion"].split("/")
    plural = manifest["kind"].lower() + "s"
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        group, version, manifest["metadata"]["namespace"], plural, manifest)


# --- installing -----------------------------------------------------------------------------------

def test_crds_are_established(cluster: ControlPlanePart) -> None:
    crds = client.ApiextensionsV1Api(cluster.api).list_custom_resource_definition().items
    wanted = {crd["metadata"]["name"] for crd in all_crds()}
    established = {crd.metadata.name for crd in crds
                   if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)}
    assert wanted <= established


def test_seed_reads_like_the_guide(cluster: ControlPlanePart) -> None:
    env = cluster.kubectl("get", "pods", "-l", "app=minio", "-o", "jsonpath={.items[0].spec.containers[0].env}",
                          "-n", KUBEFLOW_NAMESPACE)
    assert json.loads(env) == [{"name": "MINIO_ACCESS_KEY", "value": ACCESS_KEY},
                               {"name": "MINIO_SECRET_KEY", "value": SECRET_KEY}]
    port = cluster.kubectl("get", "pod", "-l", "app=minio", "-n", KUBEFLOW_NAMESPACE,
                           "-o", "jsonpath={.items[0].spec.containers[0].ports[0].containerPort}")
    assert port == "9000"
    assert cluster.kubectl("get", "svc", "-l", "app=minio", "-o", "name", "-n", KUBEFLOW_NAMESPACE).split() == [
        f"service/{MINIO_SERVICE}"]
    data = client.CoreV1Api(cluster.api).read_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE).data
    assert "registriesSkippingTagResolving" not in data and "progressDeadline" not in data
    config = client.CoreV1Api(cluster.api).read_namespaced_config_map(INFERENCESERVICE_CONFIG, KFSERVING.config_namespace)
    assert json.loads(config.data["predictors"])["triton"]["multiModelServer"] is True


# --- k8s.apply ----------------------------------------------------------------------------------------

def test_apply_again_changes_nothing(cluster: ControlPlanePart) -> None:
    first = k8s.apply_all(cluster.api, all_crds() + seeds(ACCESS_KEY, SECRET_KEY, S3_ADDRESS))
    again = k8s.apply_all(cluster.api, all_crds() + seeds(ACCESS_KEY, SECRET_KEY, S3_ADDRESS))
    assert [o["metadata"]["resourceVersion"] for o in first] == [o["metadata"]["resourceVersion"] for o in again]


def test_apply_keeps_the_learners_patches(cluster: ControlPlanePart) -> None:
    cluster.kubectl("patch", "cm", KNATIVE_CONFIG_DEPLOYMENT, "--patch",
                    '{"data":{"registriesSkippingTagResolving":"nvcr.io"}}', "-n", KNATIVE_NAMESPACE)
    k8s.apply_all(cluster.api, seeds(ACCESS_KEY, SECRET_KEY, S3_ADDRESS))
    data = client.CoreV1Api(cluster.api).read_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE).data
    assert data["registriesSkippingTagResolving"] == "nvcr.io" and "queueSidecarImage" in data


def test_apply_updates_what_changed(cluster: ControlPlanePart) -> None:
    core = client.CoreV1Api(cluster.api)
    old_pod = core.read_namespaced_pod("minio", KUBEFLOW_NAMESPACE)
    try:
        k8s.apply_all(cluster.api, seeds("new-key", "new-secret", "127.0.0.1:19001"))
        service = core.read_namespaced_service(MINIO_SERVICE, KUBEFLOW_NAMESPACE)
        assert service.metadata.annotations[LOCAL_ADDRESS_ANNOTATION] == "127.0.0.1:19001"
        pod = core.read_namespaced_pod("minio", KUBEFLOW_NAMESPACE)
        # A Pod's env cannot change: the Pod is made again.
        assert pod.metadata.uid != old_pod.metadata.uid
        assert [e.value for e in pod.spec.containers[0].env] == ["new-key", "new-secret"]
    finally:
        k8s.apply_all(cluster.api, seeds(ACCESS_KEY, SECRET_KEY, S3_ADDRESS))
    assert [e.value for e in core.read_namespaced_pod("minio", KUBEFLOW_NAMESPACE).spec.containers[0].env] == [
        ACCESS_KEY, SECRET_KEY]


def test_apply_names_the_invalid_field(cluster: ControlPlanePart) -> None:
    with pytest.raises(k8s.ManifestRejected) as caught:
        k8s.apply(cluster.api, trained_model(KSERVE_GROUP, "no-uri", storageUri=None))
    assert caught.value.status == 422
    assert "spec.model.storageUri" in caught.value.message
    assert isinstance(caught.value, SetupError) and caught.value.fix


def test_apply_unknown_kind_says_what_to_install(cluster: ControlPlanePart) -> None:
    with pytest.raises(SetupError, match="does not serve Widget"):
        k8s.apply(cluster.api, {"apiVersion": "serving.example.com/v1", "kind": "Widget",
                                      "metadata": {"name": "w", "namespace": NAMESPACE}})


# --- validation -------------------------------------------------------------------------------------

@pytest.mark.parametrize("group", API_GROUPS)
@pytest.mark.parametrize("model, field", [
    ({"storageUri": None}, "spec.model.storageUri"),
    ({"framework": None}, "spec.model.framework"),
    ({"memory": None}, "spec.model.memory"),
    ({"memory": "lots"}, "spec.model.memory"),
])
def test_invalid_trainedmodel_gets_422(cluster: ControlPlanePart, group: str, model: dict, field: str) -> None:
    with pytest.raises(ApiException) as caught:
        create_custom(cluster.api, trained_model(group, "invalid", **model))
    assert caught.value.status == 422
    assert field in json.loads(caught.value.body)["message"]


@pytest.mark.parametrize("group", API_GROUPS)
def test_second_create_gets_409(cluster: ControlPlanePart, group: str) -> None:
    name = f"cifar10-{group.split('.')[1]}"
    create_custom(cluster.api, trained_model(group, name))
    with pytest.raises(ApiException) as caught:
        create_custom(cluster.api, trained_model(group, name))
    assert caught.value.status == 409


def test_second_configmap_create_gets_409(cluster: ControlPlanePart) -> None:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="twice"), data={"a": "1"})
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_config_map(NAMESPACE, body)
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(NAMESPACE, body)
    assert caught.value.status == 409


def test_profile_needs_an_owner(cluster: ControlPlanePart) -> None:
    profile = {"apiVersion": "kubeflow.org/v1", "kind": "Profile", "metadata": {"name": "mms-profile"},
               "spec": {"owner": {"kind": "User", "name": "user@example.com"}}}
    stored = k8s.apply(cluster.api, profile)
    assert "namespace" not in stored["metadata"]  # cluster-scoped
    with pytest.raises(k8s.ManifestRejected) as caught:
        k8s.apply(cluster.api, {**profile, "metadata": {"name": "ownerless"}, "spec": {}})
    assert caught.value.status == 422 and "spec.owner" in caught.value.message


# --- status and printer columns ------------------------------------------------------------------

def ready_status(url: str) -> dict:
    return {"status": {
        "url": url, "address": {"url": url},
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2021-02-25T06:05:52Z"}],
        "components": {"predictor": {"url": url, "latestReadyRevision": "triton-mms-predictor-default-00001",
                                     "traffic": [{"revisionName": "triton-mms-predictor-default-00001",
                                                  "percent": 100, "latestRevision": True}]}},
        "observedGeneration": 1,
    }}


@pytest.mark.parametrize("group", API_GROUPS)
def test_status_subresource(cluster: ControlPlanePart, group: str) -> None:
    custom = client.CustomObjectsApi(cluster.api)
    name = f"status-{group.split('.')[1]}"
    created = create_custom(cluster.api, {**inference_service(group, name), **ready_status("http://ignored")})
    assert "status" not in created  # status is not taken on create
    version = api_group(group).isvc_version
    patched = custom.patch_namespaced_custom_object_status(
        group, version, NAMESPACE, "inferenceservices", name, ready_status("http://x.mms.example.com"))
    assert patched["status"]["url"] == "http://x.mms.example.com"
    assert patched["metadata"]["generation"] == created["metadata"]["generation"]
    # An update of the object itself leaves status alone and bumps the generation.
    patched["spec"]["predictor"]["minReplicas"] = 2
    patched["status"]["url"] = "http://changed"
    updated = custom.replace_namespaced_custom_object(group, version, NAMESPACE, "inferenceservices", name, patched)
    assert updated["status"]["url"] == "http://x.mms.example.com"
    assert updated["metadata"]["generation"] == created["metadata"]["generation"] + 1


@pytest.mark.parametrize("group", API_GROUPS)
def test_kubectl_printer_columns(cluster: ControlPlanePart, group: str) -> None:
    name = f"triton-{group.split('.')[1]}"
    url = f"http://{name}.{NAMESPACE}.example.com"
    create_custom(cluster.api, inference_service(group, name))
    client.CustomObjectsApi(cluster.api).patch_namespaced_custom_object_status(
        group, api_group(group).isvc_version, NAMESPACE, "inferenceservices", name, ready_status(url))
    header, *rows = cluster.kubectl("get", f"inferenceservices.{group}", name, "-n", NAMESPACE).splitlines()
    assert header.split() == ["NAME", "URL", "READY", "PREV", "LATEST", "AGE"]
    assert rows[0].split()[:3] == [name, url, "True"] and rows[0].split()[3] == "100"  # PREV is empty
    wide = cluster.kubectl("get", f"inferenceservices.{group}", name, "-n", NAMESPACE, "-o", "wide").splitlines()[0]
    assert "LATESTREADYREVISION" in wide.split()

    tm = f"tm-{group.split('.')[1]}"
    create_custom(cluster.api, trained_model(group, tm))
    header, *rows = cluster.kubectl("get", f"trainedmodels.{group}", tm, "-n", NAMESPACE).splitlines()
    assert header.split() == ["NAME", "URL", "READY", "AGE"]


def test_empty_strings_are_strings(cluster: ControlPlanePart) -> None:
    # KServe's SDK always sends `name: ""` in the predictor; Go 1.19 builds without the patch in
    # scripts/build-kube.sh answered 422 'must be of type string: "null"' for any "".
    for group in API_GROUPS:
        manifest = inference_service(group, "empty")
        manifest["spec"]["predictor"]["triton"]["name"] = ""
        stored = k8s.apply(cluster.api, manifest)
        assert stored["spec"]["predictor"]["triton"]["name"] == ""
    profile = {"apiVersion": "kubeflow.org/v1", "kind": "Profile", "metadata": {"name": "empty-owner"},
               "spec": {"owner": {"kind": "User", "name": ""}}}
    assert k8s.apply(cluster.api, profile)["spec"]["owner"]["name"] == ""


def test_kfserving_keeps_unknown_fields_as_its_v1beta1_crds(cluster: ControlPlanePart) -> None:
    manifest = inference_service(KFSERVING_GROUP, "fields")
    manifest["spec"]["predictor"]["serviceAcountName"] = "typo"  # kept, and ignored, as on KFServing 0.5.1
    stored = k8s.apply(cluster.api, manifest)
    assert stored["spec"]["predictor"]["serviceAcountName"] == "typo"


def test_kserve_prunes_unknown_fields_and_keeps_pod_fields(cluster: ControlPlanePart) -> None:
    manifest = inference_service(KSERVE_GROUP, "fields")
    manifest["spec"]["predictor"]["nodeSelector"] = {"gpu": "true"}  # a PodSpec field: kept
    manifest["spec"]["predictor"]["triton"]["livenessProbe"] = {"initialDelaySeconds": 5}  # a Container field
    manifest["spec"]["predictor"]["serviceAcountName"] = "typo"  # pruned, as KServe's v1 CRDs do
    manifest["spec"]["typo"] = "dropped"
    stored = k8s.apply(cluster.api, manifest)
    assert stored["spec"]["predictor"]["nodeSelector"] == {"gpu": "true"}
    assert stored["spec"]["predictor"]["triton"]["livenessProbe"] == {"initialDelaySeconds": 5}
    assert "serviceAcountName" not in stored["spec"]["predictor"] and "typo" not in stored["spec"]
    bad = inference_service(KSERVE_GROUP, "negative")
    bad["spec"]["predictor"]["minReplicas"] = -1
    with pytest.raises(k8s.ManifestRejected, match="spec.predictor.minReplicas"):
        k8s.apply(cluster.api, bad)


def test_memory_may_be_a_number(cluster: ControlPlanePart) -> None:
    stored = k8s.apply(cluster.api, trained_model(KSERVE_GROUP, "bytes", memory=1073741824))
    assert stored["spec"]["model"]["memory"] == 1073741824


def test_apply_waits_for_the_namespaces_service_account(cluster: ControlPlanePart) -> None:
    # Right after a namespace is made its `default` service account has no token yet (a 500).
    namespace = "fresh"
    k8s.apply(cluster.api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    pod = k8s.apply(cluster.api, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace},
                                        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    assert pod["spec"]["serviceAccountName"] == "default"


def test_refused_pod_update_keeps_the_old_pod(cluster: ControlPlanePart) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "keep", "namespace": NAMESPACE},
           "spec": {"containers": [{"name": "c", "image": "busybox", "env": [{"name": "A", "value": "1"}]}]}}
    k8s.apply(cluster.api, pod)
    invalid = json.loads(json.dumps(pod))
    invalid["spec"]["containers"][0].update(name="Not_A_Name", env=[{"name": "A", "value": "2"}])
    with pytest.raises(k8s.ManifestRejected) as caught:
        k8s.apply(cluster.api, invalid)
    assert caught.value.status == 422
    kept = client.CoreV1Api(cluster.api).read_namespaced_pod("keep", NAMESPACE)
    assert [(c.name, c.env[0].value) for c in kept.spec.containers] == [("c", "1")]
