"""The Kubeflow-shaped objects the local control plane is seeded with: what the guide reads.

- `kubeflow`: the `minio` Pod (credentials as plain env values, as the guide's cluster shows them)
  and `minio-service`, annotated with the loopback address of the S3 server behind it;
- `knative-serving`: `config-deployment`, without the two keys the guide's patches add;
- `kfserving-system` and `kserve`: `inferenceservice-config`, KFServing 0.5.1's (Kubeflow 1.3);
- `istio-system`, where the guide looks for the ingress gateway.

No kubelet runs: the Pod stays Pending and only its spec is read.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from ..constants import (
    INFERENCESERVICE_CONFIG,
    KFSERVING_GROUP,
    KNATIVE_CONFIG_DEPLOYMENT,
    KNATIVE_NAMESPACE,
    KSERVE_GROUP,
    KUBEFLOW_NAMESPACE,
    LOCAL_ADDRESS_ANNOTATION,
    MINIO_LABEL,
    MINIO_PORT,
    MINIO_SERVICE,
)
from ..k8s_apply import Client, apply_all

# Where each API group's controller reads `inferenceservice-config`.
CONFIG_NAMESPACES = {KFSERVING_GROUP: "kfserving-system", KSERVE_GROUP: "kserve"}
ISTIO_NAMESPACE = "istio-system"
MINIO_POD = "minio"
# The MinIO release Kubeflow's manifests ran for years (Kubeflow 1.3 included).
MINIO_IMAGE = "minio/minio:RELEASE.2018-02-09T22-40-05Z"
# Kubeflow 1.3 ships Knative Serving 0.17.4 and KFServing 0.5.1.
KNATIVE_RELEASE = "v0.17.4"
KFSERVING_RELEASE = "v0.5.1"

_MINIO_KEY, _MINIO_VALUE = MINIO_LABEL.split("=", 1)

# Knative's own `_example` text: documentation only, never read as settings.
KNATIVE_DEPLOYMENT_EXAMPLE = """\
################################
#                              #
#    EXAMPLE CONFIGURATION     #
#                              #
################################

# This block is not actually functional configuration,
# but serves to illustrate the available configuration
# options and document them in a way that is accessible
# to users that `kubectl edit` this config map.
#
# These sample configuration options may be copied out of
# this example block and unindented to be in the data block
# to actually change the configuration.

# List of repositories for which tag to digest resolving should be skipped
registriesSkippingTagResolving: "kind.local,ko.local,dev.local"

# ProgressDeadline is the duration we wait for the deployment to
# be ready before considering it failed.
progressDeadline: "120s"

# queueSidecarCPURequest is the requests.cpu to set for the queue proxy sidecar container.
# If omitted, a default value (currently "25m"), is used.
queueSidecarCPURequest: "25m"

# queueSidecarCPULimit is the limits.cpu to set for the queue proxy sidecar container.
# If omitted, no value is specified and the system default is used.
queueSidecarCPULimit: "1000m"

# queueSidecarMemoryRequest is the requests.memory to set for the queue proxy container.
# If omitted, no value is specified and the system default is used.
queueSidecarMemoryRequest: "400Mi"

# queueSidecarMemoryLimit is the limits.memory to set for the queue proxy container.
# If omitted, no value is specified and the system default is used.
queueSidecarMemoryLimit: "800Mi"
"""


def _namespace(name: str, labels: dict[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def _json(value: Any) -> str:
    return json.dumps(value, indent=4)


def _predictor(image: str, version: str, frameworks: list[str], **extra: Any) -> dict:
    return {"image": image, "defaultImageVersion": version, **extra,
            "supportedFrameworks": frameworks, "multiModelServer": False}


def inferenceservice_config_data(multi_model_server: bool = True) -> dict[str, str]:
    """The `data` of KFServing 0.5.1's `inferenceservice-config`, with Triton's `multiModelServer` set.

    KFServing 0.5.1 ships it false; the guide's first warning is to make it true.
    """
    release = KFSERVING_RELEASE
    triton = _predictor("nvcr.io/nvidia/tritonserver", "20.08-py3",
                        ["tensorrt", "tensorflow", "onnx", "pytorch", "caffe2"])
    triton["multiModelServer"] = multi_model_server
    predictors = {
        "tensorflow": _predictor("tensorflow/serving", "1.14.0", ["tensorflow"],
                                 defaultGpuImageVersion="1.14.0-gpu", defaultTimeout="60"),
        "onnx": _predictor("mcr.microsoft.com/onnxruntime/server", "v1.0.0", ["onnx"]),
        "sklearn": {"v1": _predictor("gcr.io/kfserving/sklearnserver", release, ["sklearn"]),
                    "v2": _predictor("docker.io/seldonio/mlserver", "0.2.1", ["sklearn"])},
        "xgboost": {"v1": _predictor("gcr.io/kfserving/xgbserver", release, ["xgboost"]),
                    "v2": _predictor("docker.io/seldonio/mlserver", "0.2.1", ["xgboost"])},
        "pytorch": {"v1": _predictor("gcr.io/kfserving/pytorchserver", release, ["pytorch"],
                                     defaultGpuImageVersion=f"{release}-gpu"),
                    "v2": _predictor("kfserving/torchserve-kfs", "0.3.0", ["pytorch"],
                                     defaultGpuImageVersion="0.3.0-gpu")},
        "triton": triton,
        "pmml": _predictor("kfserving/pmmlserver", release, ["pmml"]),
        "lightgbm": _predictor("kfserving/lgbserver", release, ["lightgbm"]),
    }
    sidecar = {"image": f"kfserving/agent:{release}", "memoryRequest": "100Mi", "memoryLimit": "1Gi",
               "cpuRequest": "100m", "cpuLimit": "1"}
    return {
        "agent": _json(sidecar),
        "batcher": _json({**sidecar, "memoryRequest": "1Gi", "cpuRequest": "1"}),
        "credentials": _json({
            "gcs": {"gcsCredentialFileName": "gcloud-application-credentials.json"},
            "s3": {"s3AccessKeyIDName": "AWS_ACCESS_KEY_ID", "s3SecretAccessKeyName": "AWS_SECRET_ACCESS_KEY"},
        }),
        "explainers": _json({
            "alibi": {"image": "gcr.io/kfserving/alibi-explainer", "defaultImageVersion": release},
            "aix": {"image": "kfserving/aix-explainer", "defaultImageVersion": release},
            "art": {"image": "kfserving/art-explainer", "defaultImageVersion": release},
        }),
        "ingress": _json({
            "ingressGateway": "knative-ingress-gateway.knative-serving",
            "ingressService": "istio-ingressgateway.istio-system.svc.cluster.local",
            "localGateway": "cluster-local-gateway.knative-serving",
            "localGatewayService": "cluster-local-gateway.istio-system.svc.cluster.local",
        }),
        "logger": _json({**sidecar, "defaultUrl": "http://default-broker"}),
        "predictors": _json(predictors),
        "storageInitializer": _json({**sidecar, "image": f"gcr.io/kfserving/storage-initializer:{release}"}),
        "transformers": _json({}),
    }


def minio_manifests(s3_access_key: str, s3_secret_key: str, s3_address: str) -> list[dict]:
    """The `minio` Pod and `minio-service` in `kubeflow`; the Service points at `s3_address` (host:port)."""
    labels = {_MINIO_KEY: _MINIO_VALUE}
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": MINIO_POD, "namespace": KUBEFLOW_NAMESPACE, "labels": labels},
        "spec": {"containers": [{
            "name": "minio",
            "image": MINIO_IMAGE,
            "args": ["server", "/data"],
            "env": [{"name": "MINIO_ACCESS_KEY", "value": s3_access_key},
                    {"name": "MINIO_SECRET_KEY", "value": s3_secret_key}],
            "ports": [{"containerPort": MINIO_PORT}],
        }]},
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": MINIO_SERVICE, "namespace": KUBEFLOW_NAMESPACE, "labels": labels,
                     "annotations": {LOCAL_ADDRESS_ANNOTATION: s3_address}},
        "spec": {"ports": [{"name": "http", "port": MINIO_PORT, "protocol": "TCP", "targetPort": MINIO_PORT}],
                 "selector": labels},
    }
    return [pod, service]


def knative_config_deployment() -> dict:
    """Knative Serving 0.17's `config-deployment`, before the guide's two patches."""
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": KNATIVE_CONFIG_DEPLOYMENT, "namespace": KNATIVE_NAMESPACE,
                     "labels": {"serving.knative.dev/release": KNATIVE_RELEASE}},
        "data": {
            "_example": KNATIVE_DEPLOYMENT_EXAMPLE,
            "queueSidecarImage": f"gcr.io/knative-releases/knative.dev/serving/cmd/queue:{KNATIVE_RELEASE}",
        },
    }


def seed_manifests(s3_access_key: str, s3_secret_key: str, s3_address: str,
                   multi_model_server: bool = True) -> list[dict]:
    """Every seed object, namespaces first, in the order to apply them."""
    config_data = inferenceservice_config_data(multi_model_server)
    namespaces = [
        _namespace(KUBEFLOW_NAMESPACE, {"control-plane": "kubeflow", "istio-injection": "enabled"}),
        _namespace(KNATIVE_NAMESPACE, {"serving.knative.dev/release": KNATIVE_RELEASE}),
        *(_namespace(ns, {"control-plane": "kfserving-controller-manager", "istio-injection": "disabled"})
          for ns in CONFIG_NAMESPACES.values()),
        _namespace(ISTIO_NAMESPACE),
    ]
    configs = [{"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": INFERENCESERVICE_CONFIG, "namespace": ns}, "data": dict(config_data)}
               for ns in CONFIG_NAMESPACES.values()]
    return [*namespaces, *minio_manifests(s3_access_key, s3_secret_key, s3_address),
            knative_config_deployment(), *configs]


def apply_manifests(api_client: Client, manifests: Iterable[dict]) -> None:
    """Create or update each manifest (idempotent); CRDs are Established before this returns."""
    apply_all(api_client, manifests)
