"""Contract names shared with KServe/KFServing, the guide and the local stack.

One place for every name that two parts of the system must agree on.
"""
from __future__ import annotations

from dataclasses import dataclass

# KServe's model agent contract (pkg/agent, pkg/constants).
MODEL_CONFIG_FILE = "models.json"
SUCCESS_MARKER_PREFIX = "SUCCESS."


def model_config_map_name(isvc: str, shard: int = 0) -> str:
    """Name of the ConfigMap the agent watches for an InferenceService (`modelconfig-<isvc>-<shard>`)."""
    return f"modelconfig-{isvc}-{shard}"


# The multi-model server's pod (KFServing 0.5.1's predictor and agent injector; KServe's are alike).
AGENT_CONTAINER = "agent"
MODEL_DIR = "/mnt/models"  # the agent writes each model's folder here; Triton's --model-repository
CONFIG_DIR = "/mnt/configs"  # the model-config ConfigMap, mounted into the agent
TRITON_HTTP_PORT = 8080  # Triton's --http-port in the predictor container


# Kubeflow and Knative objects the guide reads or patches.
KUBEFLOW_NAMESPACE = "kubeflow"
MINIO_LABEL = "app=minio"
MINIO_SERVICE = "minio-service"
MINIO_PORT = 9000
KNATIVE_NAMESPACE = "knative-serving"
ISTIO_NAMESPACE = "istio-system"
INGRESS_GATEWAY = "istio-ingressgateway"  # the Service in ISTIO_NAMESPACE that routes by Host
KNATIVE_CONFIG_DEPLOYMENT = "config-deployment"
INFERENCESERVICE_CONFIG = "inferenceservice-config"
PROFILE_GROUP, PROFILE_VERSION, PROFILE_PLURAL = "kubeflow.org", "v1", "profiles"

# Defaults the guide uses; every notebook takes them as parameters.
DEFAULT_NAMESPACE = "mms"
DEFAULT_SERVER_NAME = "triton-mms"
DEFAULT_BUCKET = "triton"

KFSERVING_GROUP = "serving.kubeflow.org"
KSERVE_GROUP = "serving.kserve.io"
API_GROUPS = (KFSERVING_GROUP, KSERVE_GROUP)


@dataclass(frozen=True)
class ApiGroup:
    """Versions and annotation names that differ between KFServing (guide) and KServe (today)."""

    group: str
    isvc_version: str
    tm_version: str

    @property
    def s3_endpoint(self) -> str:
        return f"{self.group}/s3-endpoint"

    @property
    def s3_usehttps(self) -> str:
        return f"{self.group}/s3-usehttps"

    @property
    def s3_region(self) -> str:
        return f"{self.group}/s3-region"

    @property
    def s3_verifyssl(self) -> str:
        return f"{self.group}/s3-verifyssl"

    @property
    def s3_usevirtualbucket(self) -> str:
        return f"{self.group}/s3-usevirtualbucket"

    @property
    def isvc_label(self) -> str:
        """Pod label that names the InferenceService (the guide's `-l serving.kubeflow.org/inferenceservice=`)."""
        return f"{self.group}/inferenceservice"

    @property
    def server_container(self) -> str:
        """The server container's name in the pod (the guide: `kubectl logs $SERVER kfserving-container`)."""
        return "kfserving-container" if self.group == KFSERVING_GROUP else "kserve-container"

    @property
    def isvc_resource(self) -> str:
        """`inferenceservices.<group>`: kubectl's name for it when both API groups are installed."""
        return f"inferenceservices.{self.group}"

    @property
    def tm_resource(self) -> str:
        """`trainedmodels.<group>`, as `isvc_resource`."""
        return f"trainedmodels.{self.group}"

    @property
    def isvc_api_version(self) -> str:
        return f"{self.group}/{self.isvc_version}"

    @property
    def tm_api_version(self) -> str:
        return f"{self.group}/{self.tm_version}"


def api_group(group: str) -> ApiGroup:
    """The ApiGroup for `serving.kubeflow.org` or `serving.kserve.io`."""
    if group == KFSERVING_GROUP:
        return ApiGroup(KFSERVING_GROUP, "v1beta1", "v1alpha1")
    if group == KSERVE_GROUP:
        return ApiGroup(KSERVE_GROUP, "v1beta1", "v1alpha1")
    raise ValueError(f"unknown API group {group!r}: use one of {', '.join(API_GROUPS)}")


# Frameworks a TrainedModel may name, and the Triton platform each maps to.
TRITON_FRAMEWORKS = {
    "pytorch": "pytorch_libtorch",
    "tensorflow": "tensorflow_graphdef",
    "onnx": "onnxruntime_onnx",
    "tensorrt": "tensorrt_plan",
    "triton": "",
}

# Annotation by which the local stack maps a Service to the loopback address behind it.
LOCAL_ADDRESS_ANNOTATION = "mms-notebooks.local/address"

