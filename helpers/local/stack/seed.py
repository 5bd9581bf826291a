"""The Kubeflow-shaped objects the local control plane is seeded with: what the guide reads.

- `kubeflow`: the object store's Pod and `minio-service`, annotated with the loopback address of
  the S3 server behind it. The profile's object store decides how the keys show: as plain env
  values of the `minio` pod (Kubeflow <= 1.6, the guide's cluster), through Secret
  `mlpipeline-minio-artifact` with a Service that has no `app=minio` label (Kubeflow 1.7-1.10),
  or SeaweedFS (Kubeflow 1.11: a `seaweedfs` pod taking that Secret with `envFrom`, and
  `minio-service` selecting it);
- `knative-serving`: `config-deployment`, without the two keys the guide's patches add;
- `inferenceservice-config` where the profile's install keeps it (KFServing 0.5.1's own YAML:
  `kfserving-system`; Kubeflow's KServe bundle: `kubeflow`), with that release's keys;
- `istio-system`, where the guide looks for the ingress gateway;
- Kubeflow's aggregated ClusterRoles with the release's serving roles (`rbac`), which a
  Profile's `default-editor` / `default-viewer` / owner are bound to;
- metrics-server's `system:aggregated-metrics-reader` (the controller serves the metrics API and
  points its APIService at it: `helpers.local.cluster.metrics`).

No kubelet runs: the Pod stays Pending and only its spec is read.
"""
from __future__ import annotations

import json
from typing import Any

from helpers.core.constants import (
    INFERENCESERVICE_CONFIG,
    KNATIVE_CONFIG_DEPLOYMENT,
    KNATIVE_NAMESPACE,
    KUBEFLOW_NAMESPACE,
    LOCAL_ADDRESS_ANNOTATION,
    MINIO_LABEL,
    MINIO_PORT,
    MINIO_SERVICE,
)
from helpers.local.cluster.metrics import metrics_reader_role
from helpers.local.cluster.rbac import role_manifests
from helpers.local.stack.controlplane import NODE_NAME
from helpers.local.stack.releases import Profile

ISTIO_NAMESPACE = "istio-system"
MINIO_POD = "minio"
# The MinIO release Kubeflow's manifests ran for years (Kubeflow 1.3 included).
MINIO_IMAGE = "minio/minio:RELEASE.2018-02-09T22-40-05Z"
# Kubeflow 1.7+ (Pipelines' manifests): the keys live in this Secret, under these keys.
MINIO_ARTIFACT_SECRET = "mlpipeline-minio-artifact"
MINIO_NEW_IMAGE = "gcr.io/ml-pipeline/minio:RELEASE.2019-08-14T20-37-41Z-license-compliance"
PIPELINES_LABEL = {"application-crd-id": "kubeflow-pipelines"}
# Kubeflow 1.3 ships Knative Serving 0.17.4 and KFServing 0.5.1.
KNATIVE_RELEASE = "v0.17.4"

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


def inferenceservice_config_data(profile: Profile, multi_model_server: bool = True) -> dict[str, str]:
    """The `data` of the profile's `inferenceservice-config`.

    KFServing 0.5.1 ships Triton's `multiModelServer` false; the guide's first warning is to make
    it true, and the seed does as the guide says unless `multi_model_server` is False. KServe
    0.10+ has no `predictors` key at all: runtimes are ServingRuntimes, and any predictor without
    a storageUri is multi-model.
    """
    if not profile.multi_model_key:
        return _kserve_config_data(profile.release)
    release = profile.release
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
    return {
        **_sidecars(f"kfserving/agent:{release}", f"gcr.io/kfserving/storage-initializer:{release}"),
        "credentials": _json({
            "gcs": {"gcsCredentialFileName": "gcloud-application-credentials.json"},
            "s3": _S3_CREDENTIAL_KEYS,
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
        "predictors": _json(predictors),
        "transformers": _json({}),
    }


_S3_CREDENTIAL_KEYS = {"s3AccessKeyIDName": "AWS_ACCESS_KEY_ID", "s3SecretAccessKeyName": "AWS_SECRET_ACCESS_KEY"}


def _sidecars(agent_image: str, storage_initializer_image: str) -> dict[str, str]:
    """The agent, batcher, logger and storage-initializer keys, which both releases shape alike."""
    sidecar = {"image": agent_image, "memoryRequest": "100Mi", "memoryLimit": "1Gi",
               "cpuRequest": "100m", "cpuLimit": "1"}
    return {"agent": _json(sidecar),
            "batcher": _json({**sidecar, "memoryRequest": "1Gi", "cpuRequest": "1"}),
            "logger": _json({**sidecar, "defaultUrl": "http://default-broker"}),
            "storageInitializer": _json({**sidecar, "image": storage_initializer_image})}


def _kserve_config_data(release: str) -> dict[str, str]:
    """`inferenceservice-config` as Kubeflow's KServe bundle has it (kserve_kubeflow.yaml at v1.10.0,
    v1.10.1, v1.11.0): the keys this walkthrough's objects touch. No `predictors` (runtimes are
    ClusterServingRuntimes) and no `resource`."""
    return {
        **_sidecars(f"kserve/agent:{release}", f"kserve/storage-initializer:{release}"),
        "credentials": _json({
            "storageSpecSecretName": "storage-config",
            "storageSecretNameAnnotation": "serving.kserve.io/storageSecretName",
            "gcs": {"gcsCredentialFileName": "gcloud-application-credentials.json"},
            "s3": {**_S3_CREDENTIAL_KEYS, "s3Endpoint": "", "s3UseHttps": "", "s3Region": "", "s3VerifySSL": "",
                   "s3UseVirtualBucket": "", "s3UseAccelerate": "", "s3UseAnonymousCredential": "", "s3CABundle": ""},
        }),
        "deploy": _json({"defaultDeploymentMode": "Serverless"}),
        "ingress": _json({
            "ingressGateway": "kubeflow/kubeflow-gateway",
            "localGateway": "knative-serving/knative-local-gateway",
            "localGatewayService": "knative-local-gateway.istio-system.svc.cluster.local",
            "ingressDomain": "example.com",
            "ingressClassName": "istio",
            "domainTemplate": "{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}",
            "urlScheme": "http",
            "disableIstioVirtualHost": False,
            "disableIngressCreation": False,
        }),
    }


def minio_manifests(s3_access_key: str, s3_secret_key: str, s3_address: str,
                    layout: str = "pod-env") -> list[dict]:
    """The `minio` Pod and `minio-service` in `kubeflow` (and, in the `secret` layout, the Secret
    holding the keys); the Service points at `s3_address` (host:port)."""
    labels = {_MINIO_KEY: _MINIO_VALUE}
    objects: list[dict] = []
    if layout == "seaweedfs":
        return seaweedfs_manifests(s3_access_key, s3_secret_key, s3_address)
    if layout == "secret":
        objects.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": {"name": MINIO_ARTIFACT_SECRET, "namespace": KUBEFLOW_NAMESPACE,
                                     "labels": PIPELINES_LABEL},
                        "stringData": {"accesskey": s3_access_key, "secretkey": s3_secret_key}})
        env = [{"name": name, "valueFrom": {"secretKeyRef": {"name": MINIO_ARTIFACT_SECRET, "key": key}}}
               for name, key in (("MINIO_ACCESS_KEY", "accesskey"), ("MINIO_SECRET_KEY", "secretkey"))]
        pod_labels, service_labels, image = {**labels, **PIPELINES_LABEL}, dict(PIPELINES_LABEL), MINIO_NEW_IMAGE
    elif layout == "pod-env":
        env = [{"name": "MINIO_ACCESS_KEY", "value": s3_access_key},
               {"name": "MINIO_SECRET_KEY", "value": s3_secret_key}]
        pod_labels, service_labels, image = labels, labels, MINIO_IMAGE
    else:
        raise ValueError(f"unknown MinIO layout {layout!r}")
    objects.append({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": MINIO_POD, "namespace": KUBEFLOW_NAMESPACE, "labels": pod_labels},
        "spec": {"nodeName": NODE_NAME, "containers": [{
            "name": "minio",
            "image": image,
            "args": ["server", "/data"],
            "env": env,
            "ports": [{"containerPort": MINIO_PORT}],
        }]},
    })
    objects.append({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": MINIO_SERVICE, "namespace": KUBEFLOW_NAMESPACE, "labels": service_labels,
                     "annotations": {LOCAL_ADDRESS_ANNOTATION: s3_address}},
        "spec": {"ports": [{"name": "http", "port": MINIO_PORT, "protocol": "TCP", "targetPort": MINIO_PORT}],
                 "selector": labels},
    })
    return objects


# Kubeflow 1.11 (applications/pipeline/upstream/third-party/seaweedfs/base/seaweedfs at v1.11.0).
SEAWEEDFS_POD = "seaweedfs-6d9f8c7b54-q2x7k"
SEAWEEDFS_IMAGE = "chrislusf/seaweedfs:4.00"
SEAWEEDFS_LABELS = {"app": "seaweedfs"}
SEAWEEDFS_S3_PORT = 8333


def seaweedfs_manifests(s3_access_key: str, s3_secret_key: str, s3_address: str) -> list[dict]:
    """Kubeflow 1.11's SeaweedFS: Secret `mlpipeline-minio-artifact` (the admin's keys), the
    `seaweedfs` Deployment's pod (`envFrom` that Secret; postStart makes bucket `mlpipeline` and the
    `kubeflow-admin` identity), `minio-service` (labels app=seaweedfs, component=minio-compatibility,
    port 9000 -> 8333) and the `seaweedfs` Service with its own ports."""
    pod_labels = {**SEAWEEDFS_LABELS, **PIPELINES_LABEL}
    return [
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": MINIO_ARTIFACT_SECRET, "namespace": KUBEFLOW_NAMESPACE},
         "stringData": {"accesskey": s3_access_key, "secretkey": s3_secret_key}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": SEAWEEDFS_POD, "namespace": KUBEFLOW_NAMESPACE, "labels": pod_labels},
         "spec": {"nodeName": NODE_NAME, "serviceAccountName": "default", "containers": [{
             "name": "seaweedfs", "image": SEAWEEDFS_IMAGE,
             "envFrom": [{"secretRef": {"name": MINIO_ARTIFACT_SECRET}}],
             "args": ["server", "-dir=/data", "-s3", "-iam", "-filer", "-master.volumePreallocate=false"],
             "ports": [{"containerPort": p} for p in (SEAWEEDFS_S3_PORT, 8111, 9333, 19333, 8888)]}]}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": MINIO_SERVICE, "namespace": KUBEFLOW_NAMESPACE,
                      "labels": {**SEAWEEDFS_LABELS, "component": "minio-compatibility"},
                      "annotations": {LOCAL_ADDRESS_ANNOTATION: s3_address}},
         "spec": {"ports": [{"name": "http", "port": MINIO_PORT, "protocol": "TCP", "targetPort": SEAWEEDFS_S3_PORT}],
                  "selector": SEAWEEDFS_LABELS}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "seaweedfs", "namespace": KUBEFLOW_NAMESPACE,
                      "annotations": {LOCAL_ADDRESS_ANNOTATION: s3_address}},
         "spec": {"ports": [{"name": "http-s3", "port": SEAWEEDFS_S3_PORT, "protocol": "TCP",
                             "targetPort": SEAWEEDFS_S3_PORT}],
                  "selector": SEAWEEDFS_LABELS}},
    ]


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


def seed_manifests(profile: Profile, s3_access_key: str, s3_secret_key: str, s3_address: str,
                   multi_model_server: bool = True) -> list[dict]:
    """Every seed object of `profile`, namespaces first, in the order to apply them."""
    namespaces = [
        _namespace(KUBEFLOW_NAMESPACE, {"control-plane": "kubeflow", "istio-injection": "enabled"}),
        _namespace(KNATIVE_NAMESPACE, {"serving.knative.dev/release": KNATIVE_RELEASE}),
        _namespace(ISTIO_NAMESPACE),
    ]
    if profile.config_namespace != KUBEFLOW_NAMESPACE:  # KFServing's own YAML: kfserving-system
        namespaces.append(_namespace(profile.config_namespace,
                                     {"control-plane": "kfserving-controller-manager", "istio-injection": "disabled"}))
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": INFERENCESERVICE_CONFIG, "namespace": profile.config_namespace},
              "data": inferenceservice_config_data(profile, multi_model_server)}
    return [*namespaces, *minio_manifests(s3_access_key, s3_secret_key, s3_address, profile.object_store),
            knative_config_deployment(), config, *role_manifests(profile), metrics_reader_role()]
