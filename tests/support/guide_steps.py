"""The guide's steps 1-3 (Profile, S3 Secret + service account, ExternalName, the multi-model
InferenceService; on Kubeflow 1.10+ also 00's AuthorizationPolicy for the predictors) applied to a
local stack in one call: what tests and benchmarks set up before they add TrainedModels.
The notebooks do the same steps one cell at a time (00-02).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client

from helpers.clients import k8s, manifests
from helpers.core.wait import poll_until
from helpers.local.stack.stack import Stack


def guide_values(stack: Stack, namespace: str, server_name: str, api_group: str, **overrides: Any) -> dict:
    """Manifest values for the guide's objects in `namespace`, with the stack's S3 keys."""
    creds = stack.s3_credentials()
    return {**manifests.DEFAULTS, "namespace": namespace, "owner": "learner@example.com", "api_group": api_group,
            "access_key": creds.access_key, "secret_key": creds.secret_key, "server_name": server_name,
            **overrides}


def _serves_authorization_policies(kube: client.ApiClient) -> bool:
    try:
        client.ApiextensionsV1Api(kube).read_custom_resource_definition("authorizationpolicies.security.istio.io")
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def apply_guide_steps(kube: client.ApiClient, values: dict, server: bool = True) -> None:
    """The Profile (waiting for its namespace's `default` service account), the S3 Secret and service
    account, the ExternalName Service and, with `server`, the InferenceService."""
    k8s.apply_all(kube, manifests.render("profile.yaml", **values))
    poll_until(lambda: client.CoreV1Api(kube).read_namespaced_service_account("default", values["namespace"]),
               "namespace", 60)
    if _serves_authorization_policies(kube):  # Kubeflow 1.10+: 00's opening for the namespace's predictors
        k8s.apply_all(kube, manifests.render("predictor_authorization_policy", **values))
    names = ["s3_secret.yaml", "external_service.yaml"] + (["multi_model_triton_server.yaml"] if server else [])
    for name in names:
        k8s.apply_all(kube, manifests.render(name, **values))


def stack_s3(stack: Stack, bucket: str):
    """A Minio client for the stack's S3 server, with `bucket` made if missing."""
    from helpers.clients import storage

    creds = stack.s3_credentials()
    s3 = storage.connect(storage.S3Settings(stack.env()["MMS_S3_ENDPOINT"], creds.access_key, creds.secret_key))
    storage.ensure_bucket(s3, bucket)
    return s3


def upload_cifar10_as(s3, folder: Path, bucket: str, prefix: str, model: str) -> None:
    """The cifar10 stand-in written to `folder`, named `model` in its config.pbtxt, uploaded under `prefix`."""
    from helpers.clients import storage
    from helpers.steps.models.standins import write_cifar10_standin

    write_cifar10_standin(folder)
    config = folder / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "cifar10"', f'name: "{model}"'))
    storage.upload_folder(s3, folder, bucket, prefix, progress=False)


def trained_model(group, name: str, namespace: str, server: str, uri: str, memory: str = "256Mi") -> dict:
    """A pytorch TrainedModel of `group` (an ApiGroup) for `server`, its files at `uri`."""
    return {"apiVersion": group.tm_api_version, "kind": "TrainedModel", "metadata": {"name": name, "namespace": namespace},
            "spec": {"inferenceService": server, "model": {"framework": "pytorch", "storageUri": uri, "memory": memory}}}

