"""The CRD templates and seed objects, checked without a server (tests/stack/test_crds_apiserver.py uses a real one)."""
from __future__ import annotations

import json
import re
from typing import Any, Iterator

import pytest

from helpers.core.constants import (
    INFERENCESERVICE_CONFIG,
    KNATIVE_CONFIG_DEPLOYMENT,
    LOCAL_ADDRESS_ANNOTATION,
    MINIO_SERVICE,
    api_group,
)
from helpers.local.crds import crd_manifests, profile_crd, serving_crds
from helpers.local.stack.releases import PROFILES
from helpers.local.stack.releases import get as get_profile
from helpers.local.stack.seed import MINIO_ARTIFACT_SECRET, seed_manifests

KFSERVING = get_profile("kfserving-0.5")
KSERVE = get_profile("kubeflow-1.10")

QUANTITY_ANYOF = [{"type": "integer"}, {"type": "string"}]
# Keys a structural schema node may carry (apiextensions v1, as apiserver 1.20 checks them).
ALLOWED_KEYS = {
    "type", "description", "properties", "items", "additionalProperties", "required", "format",
    "pattern", "minimum", "maximum", "minLength", "maxLength", "enum", "anyOf", "nullable",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
}


def schema_nodes(node: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every schema node below `node`, with a path like `.spec.model.storageUri`."""
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}{{}}")


def crd_schema(crd: dict) -> dict:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def by_name() -> dict[str, dict]:
    return {crd["metadata"]["name"]: crd for profile in PROFILES.values() for crd in crd_manifests(profile)}


@pytest.mark.parametrize("profile", PROFILES.values(), ids=list(PROFILES))
def test_one_api_group_per_profile(profile) -> None:
    names = {crd["metadata"]["name"] for crd in crd_manifests(profile)}
    mesh = {"authorizationpolicies.security.istio.io"} if profile.mesh else set()  # Istio's kind, Kubeflow 1.10+
    assert names == {"profiles.kubeflow.org", f"inferenceservices.{profile.group}", f"trainedmodels.{profile.group}",
                     *mesh}


@pytest.mark.parametrize("name", sorted(by_name()))
def test_crd_is_structural(name: str) -> None:
    crd = by_name()[name]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert name == f"{crd['spec']['names']['plural']}.{crd['spec']['group']}"
    (version,) = crd["spec"]["versions"]
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    schema = crd_schema(crd)
    assert schema["properties"]["metadata"] == {"type": "object"}  # structural: nothing more at the root
    for path, node in schema_nodes(schema):
        assert set(node) <= ALLOWED_KEYS, f"{name}{path}: unexpected keys {set(node) - ALLOWED_KEYS}"
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node and node["anyOf"] == QUANTITY_ANYOF, f"{name}{path}"
            continue
        assert "anyOf" not in node, f"{name}{path}: anyOf only for int-or-string"
        assert node.get("type") in ("object", "array", "string", "integer", "boolean", "number"), f"{name}{path}"
        if "properties" in node or "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields"):
            assert node["type"] == "object", f"{name}{path}"
        assert not ("properties" in node and "additionalProperties" in node), f"{name}{path}"
        if node["type"] == "array":
            assert isinstance(node.get("items"), dict), f"{name}{path}: arrays need one items schema"
        for field in node.get("required", []):
            assert field in node.get("properties", {}), f"{name}{path}: required {field} is not a property"


@pytest.mark.parametrize("profile", PROFILES.values(), ids=list(PROFILES))
def test_templates_render_for_each_profile(profile) -> None:
    isvc, tm = serving_crds(profile)
    assert "__GROUP__" not in json.dumps([isvc, tm])
    versions = api_group(profile.group)
    assert (isvc["spec"]["group"], isvc["spec"]["versions"][0]["name"]) == (profile.group, versions.isvc_version)
    assert (tm["spec"]["group"], tm["spec"]["versions"][0]["name"]) == (profile.group, versions.tm_version)
    assert isvc["spec"]["names"]["shortNames"] == ["isvc"] and tm["spec"]["names"]["shortNames"] == ["tm"]
    assert isvc["spec"]["scope"] == tm["spec"]["scope"] == "Namespaced"


def test_rendered_copies_share_nothing() -> None:
    first = serving_crds(KFSERVING)[0]
    predictor = crd_schema(first)["properties"]["spec"]["properties"]["predictor"]["properties"]
    predictor["triton"]["properties"]["storageUri"]["type"] = "integer"
    # The frameworks share one YAML anchor; an edit to one must not reach another, nor the next render.
    assert predictor["pytorch"]["properties"]["storageUri"]["type"] == "string"
    again = crd_schema(serving_crds(KFSERVING)[0])["properties"]["spec"]["properties"]["predictor"]
    assert again["properties"]["triton"]["properties"]["storageUri"]["type"] == "string"


def test_kfserving_keeps_unknown_fields_as_its_v1beta1_crds_did() -> None:
    for crd in serving_crds(KFSERVING):
        props = crd_schema(crd)["properties"]
        assert props["spec"]["x-kubernetes-preserve-unknown-fields"] is True
        assert props["status"]["x-kubernetes-preserve-unknown-fields"] is True


def test_kserve_prunes_with_a_full_pod_spec_and_container() -> None:
    isvc = crd_schema(serving_crds(KSERVE)[0])
    predictor = isvc["properties"]["spec"]["properties"]["predictor"]
    assert "x-kubernetes-preserve-unknown-fields" not in predictor
    assert {"nodeSelector", "tolerations", "volumes", "serviceAccountName", "affinity"} <= set(predictor["properties"])
    triton = predictor["properties"]["triton"]
    assert "x-kubernetes-preserve-unknown-fields" not in triton
    assert {"storageUri", "runtimeVersion", "args", "env", "resources", "volumeMounts", "livenessProbe"} \
        <= set(triton["properties"])
    limits = triton["properties"]["resources"]["properties"]["limits"]["additionalProperties"]
    assert limits["x-kubernetes-int-or-string"] is True
    containers = predictor["properties"]["containers"]["items"]["properties"]
    assert containers["env"]["items"]["properties"]["valueFrom"]["type"] == "object"


def test_inferenceservice_fields_the_guide_uses() -> None:
    schema = crd_schema(serving_crds(KFSERVING)[0])
    predictor = schema["properties"]["spec"]["properties"]["predictor"]["properties"]
    for field, kind in (("serviceAccountName", "string"), ("minReplicas", "integer"), ("maxReplicas", "integer"),
                        ("timeout", "integer"), ("containerConcurrency", "integer")):
        assert predictor[field]["type"] == kind
    for framework in ("triton", "tensorflow", "pytorch", "sklearn", "xgboost", "onnx"):
        spec = predictor[framework]["properties"]
        assert {"storageUri", "runtimeVersion", "protocolVersion", "resources", "args", "env", "image"} <= set(spec)
    status = schema["properties"]["status"]["properties"]
    assert status["url"]["type"] == "string" and status["address"]["properties"]["url"]["type"] == "string"
    assert set(status["conditions"]["items"]["required"]) == {"type", "status"}


def test_printer_columns_like_kserve() -> None:
    isvc, tm = serving_crds(KSERVE)
    shown = [c["name"] for c in isvc["spec"]["versions"][0]["additionalPrinterColumns"] if not c.get("priority")]
    assert shown == ["URL", "Ready", "Prev", "Latest", "Age"]
    ready = next(c for c in isvc["spec"]["versions"][0]["additionalPrinterColumns"] if c["name"] == "Ready")
    assert ready["jsonPath"] == ".status.conditions[?(@.type=='Ready')].status"
    assert [c["name"] for c in tm["spec"]["versions"][0]["additionalPrinterColumns"]] == ["URL", "Ready", "Age"]


def test_trainedmodel_requires_what_kserve_requires() -> None:
    schema = crd_schema(serving_crds(KFSERVING)[1])
    spec = schema["properties"]["spec"]
    assert set(spec["required"]) == {"inferenceService", "model"}
    model = spec["properties"]["model"]
    assert set(model["required"]) == {"storageUri", "framework", "memory"}
    assert "pattern" not in model["properties"]["storageUri"]  # KServe checks it in its webhook, as here
    memory = model["properties"]["memory"]
    for good in ("1Gi", "512Mi", "100M", "1.5G", "2e3"):
        assert re.match(memory["pattern"], good), good
    for bad in ("lots", "1 Gi", "1GB"):
        assert not re.match(memory["pattern"], bad), bad


def test_profile_crd() -> None:
    crd = profile_crd()
    assert crd["spec"]["scope"] == "Cluster" and crd["spec"]["group"] == "kubeflow.org"
    spec = crd_schema(crd)["properties"]["spec"]
    assert spec["required"] == ["owner"]
    assert set(spec["properties"]["owner"]["required"]) == {"kind", "name"}
    assert spec["properties"]["resourceQuotaSpec"]["x-kubernetes-preserve-unknown-fields"] is True


# --- the seed objects ---------------------------------------------------------------------------

def seeds(profile=KFSERVING, **kwargs: Any) -> dict[tuple[str, str, str], dict]:
    manifests = seed_manifests(profile, "mms-key", "mms-secret", "127.0.0.1:19000", **kwargs)
    return {(m["kind"], m["metadata"].get("namespace", ""), m["metadata"]["name"]): m for m in manifests}


@pytest.mark.parametrize("profile", PROFILES.values(), ids=list(PROFILES))
def test_seed_namespaces_come_first(profile) -> None:
    manifests = seed_manifests(profile, "k", "s", "127.0.0.1:1")
    kinds = [m["kind"] for m in manifests]
    assert kinds[:kinds.count("Namespace")] == ["Namespace"] * kinds.count("Namespace")
    names = {m["metadata"]["name"] for m in manifests if m["kind"] == "Namespace"}
    assert names == {"kubeflow", "knative-serving", "istio-system", profile.config_namespace}


def test_seed_minio_pod_and_service_as_kubeflow_1_3() -> None:
    objects = seeds()
    pod = objects[("Pod", "kubeflow", "minio")]
    assert pod["metadata"]["labels"] == {"app": "minio"}
    (container,) = pod["spec"]["containers"]
    assert container["env"] == [{"name": "MINIO_ACCESS_KEY", "value": "mms-key"},
                                {"name": "MINIO_SECRET_KEY", "value": "mms-secret"}]
    assert container["ports"][0]["containerPort"] == 9000
    service = objects[("Service", "kubeflow", MINIO_SERVICE)]
    assert service["metadata"]["annotations"] == {LOCAL_ADDRESS_ANNOTATION: "127.0.0.1:19000"}
    assert service["spec"]["selector"] == {"app": "minio"} and service["spec"]["ports"][0]["port"] == 9000


def test_seed_minio_as_kubeflow_1_7_keeps_keys_in_a_secret() -> None:
    objects = seeds(KSERVE)
    secret = objects[("Secret", "kubeflow", MINIO_ARTIFACT_SECRET)]
    assert secret["stringData"] == {"accesskey": "mms-key", "secretkey": "mms-secret"}
    (container,) = objects[("Pod", "kubeflow", "minio")]["spec"]["containers"]
    assert all("value" not in e and e["valueFrom"]["secretKeyRef"]["name"] == MINIO_ARTIFACT_SECRET
               for e in container["env"])
    service = objects[("Service", "kubeflow", MINIO_SERVICE)]
    assert "app" not in service["metadata"]["labels"]


def test_seed_knative_config_before_the_guides_patches() -> None:
    data = seeds()[("ConfigMap", "knative-serving", KNATIVE_CONFIG_DEPLOYMENT)]["data"]
    assert set(data) == {"_example", "queueSidecarImage"}


@pytest.mark.parametrize("multi", [True, False])
def test_seed_kfserving_inferenceservice_config(multi: bool) -> None:
    data = seeds(multi_model_server=multi)[("ConfigMap", "kfserving-system", INFERENCESERVICE_CONFIG)]["data"]
    assert {"agent", "storageInitializer", "credentials", "ingress", "predictors"} <= set(data)
    predictors = json.loads(data["predictors"])
    assert predictors["triton"]["multiModelServer"] is multi
    assert predictors["tensorflow"]["multiModelServer"] is False
    s3 = json.loads(data["credentials"])["s3"]
    assert s3 == {"s3AccessKeyIDName": "AWS_ACCESS_KEY_ID", "s3SecretAccessKeyName": "AWS_SECRET_ACCESS_KEY"}
    assert json.loads(data["agent"])["image"] == "kfserving/agent:v0.5.1"


def test_seed_kserve_inferenceservice_config_has_no_multi_model_switch() -> None:
    data = seeds(KSERVE)[("ConfigMap", "kubeflow", INFERENCESERVICE_CONFIG)]["data"]
    assert "predictors" not in data and "resource" not in data
    assert json.loads(data["agent"])["image"] == "kserve/agent:v0.15.0"
    assert json.loads(data["ingress"])["ingressGateway"] == "kubeflow/kubeflow-gateway"


def test_seed_seaweedfs_as_kubeflow_1_11() -> None:
    """Kubeflow 1.11: no minio pod; minio-service selects the seaweedfs pod, which takes the admin's
    keys from mlpipeline-minio-artifact with envFrom."""
    objects = seeds(get_profile("kubeflow-1.11"))
    assert not [k for k in objects if k[0] == "Pod" and k[2] == "minio"]
    (pod,) = [v for k, v in objects.items() if k[0] == "Pod" and k[2].startswith("seaweedfs-")]
    assert pod["metadata"]["labels"]["app"] == "seaweedfs"
    assert pod["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": MINIO_ARTIFACT_SECRET}}]
    service = objects[("Service", "kubeflow", MINIO_SERVICE)]
    assert service["spec"]["selector"] == {"app": "seaweedfs"} and service["spec"]["ports"][0]["targetPort"] == 8333
