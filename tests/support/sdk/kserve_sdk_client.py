"""Run by KServe's own Python SDK, in its own virtualenv (see tests/stack/test_kserve_sdk.py).

Usage: python kserve_sdk_client.py KUBECONFIG NAMESPACE STORAGE_URI. Creates a Triton
InferenceService without storageUri and a TrainedModel the way the SDK's docs do, waits with the
SDK's own `wait_isvc_ready`, and prints one JSON line with what the SDK read back.
"""
import json
import sys

from kserve import (
                    KServeClient,
                    V1alpha1ModelSpec,
                    V1alpha1TrainedModel,
                    V1alpha1TrainedModelSpec,
                    V1beta1InferenceService,
                    V1beta1InferenceServiceSpec,
                    V1beta1PredictorSpec,
                    V1beta1TritonSpec,
                    constants,
)
from kubernetes.client import V1ObjectMeta, V1ResourceRequirements

kubeconfig, namespace, storage_uri = sys.argv[1:4]
sdk = KServeClient(config_file=kubeconfig)
isvc = V1beta1InferenceService(
    api_version=constants.KSERVE_V1BETA1, kind=constants.KSERVE_KIND_INFERENCESERVICE,
    metadata=V1ObjectMeta(name="sdk-triton", namespace=namespace),
    spec=V1beta1InferenceServiceSpec(predictor=V1beta1PredictorSpec(
        service_account_name="sa", triton=V1beta1TritonSpec(
            runtime_version="20.08-py3",
            # KServe 0.10+ stores this as predictor.model and adds no resources: without a memory limit
            # every TrainedModel is refused (MemoryResourceAvailable=False).
            resources=V1ResourceRequirements(limits={"cpu": "1", "memory": "2Gi"},
                                             requests={"cpu": "1", "memory": "2Gi"})))))
sdk.create(isvc)
sdk.wait_isvc_ready("sdk-triton", namespace=namespace, timeout_seconds=120, polling_interval=1)
tm = V1alpha1TrainedModel(
    api_version=constants.KSERVE_V1ALPHA1, kind=constants.KSERVE_KIND_TRAINEDMODEL,
    metadata=V1ObjectMeta(name="sdk-cifar10", namespace=namespace),
    spec=V1alpha1TrainedModelSpec(inference_service="sdk-triton", model=V1alpha1ModelSpec(
        storage_uri=storage_uri, framework="pytorch", memory="1Gi")))
sdk.create_trained_model(tm, namespace)
got = sdk.get("sdk-triton", namespace=namespace)
print(json.dumps({"isvc_ready": sdk.is_isvc_ready("sdk-triton", namespace=namespace),
                  "url": got["status"]["url"], "predictor": got["spec"]["predictor"]}))
