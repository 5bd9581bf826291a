"""One multi-model server on a local stack of any profile, for the chaos and soak benchmarks.

The guide's steps 1-3 in the stack's own API group (Profile, S3 Secret and service account,
ExternalName, the InferenceService), the models uploaded once, and what both benchmarks ask of
it: apply or delete a TrainedModel, is it Ready, does Triton serve it, and one inference through
the ingress gateway (nginx, with the admin's session where the profile's gateway asks for one),
as a client outside the cluster sends it. Not a benchmark itself (imported by its bare name).
"""
from __future__ import annotations

import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import requests
from kubernetes import client
from kubernetes import config as kconfig

sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))  # tests/support: the guide's steps

from helpers.clients import k8s, manifests, storage, triton
from helpers.core.constants import ApiGroup, api_group
from helpers.core.wait import poll_until
from helpers.local.stack import torch_backend
from helpers.local.stack.stack import Stack
from helpers.steps.models.standins import write_cifar10_standin
from support.guide_steps import apply_guide_steps, guide_values

NS, SERVER, BUCKET = "bench", "triton-bench", "bench-models"
TINY_CONFIG = """\
# A tiny python-backend model: numpy only, one CPU instance (one stub).
backend: "python"
max_batch_size: 0
input [{ name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] }]
output [{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] }]
instance_group [{ count: 1, kind: KIND_CPU }]
"""
TINY_MODEL = '''\
"""Doubles its input: a model whose python-backend stub stays light (numpy, no torch)."""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", (pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() * 2).astype(np.float32))])
            for r in requests]
'''


def write_model(folder: Path, kind: str) -> Path:
    """A model folder for the benchmarks' TrainedModels: `torchscript`, the cifar10 stand-in with one CPU
    instance and no `name` (the TrainedModel names it), or `tiny`, the numpy model above."""
    if kind == "torchscript":
        write_cifar10_standin(folder)
        config = folder / "config.pbtxt"
        text = re.sub(r'(?m)^name:.*\n', "", config.read_text())
        config.write_text(text + "\ninstance_group [{ count: 1, kind: KIND_CPU }]\n")
    else:
        (folder / "1").mkdir(parents=True)
        (folder / "config.pbtxt").write_text(TINY_CONFIG)
        (folder / "1" / "model.py").write_text(TINY_MODEL)
    return folder


@dataclass(frozen=True)
class Model:
    """What a cycle applies: where its files are, its framework, and one request with the answer expected."""

    uri: str
    framework: str
    memory: str
    input_name: str
    output_name: str
    shape: tuple[int, ...]

    def request(self) -> np.ndarray:
        return np.ones(self.shape, np.float32)

    def answered(self, out: np.ndarray) -> bool:
        return out.shape[-1] == 10 if self.framework == "pytorch" else out.tolist() == [2.0] * self.shape[0]


@dataclass
class Server:
    """The guide's multi-model server in namespace NS of `stack`, in the stack's API group."""

    stack: Stack
    group: ApiGroup = field(init=False)
    kube: client.ApiClient = field(init=False)

    def __post_init__(self) -> None:
        self.group = api_group(self.stack.profile().group)
        self.kube = self.new_client()

    def new_client(self) -> client.ApiClient:
        """A new client from the kubeconfig, as a new notebook kernel would make (the apiserver may have moved)."""
        return kconfig.new_client_from_config(config_file=str(self.stack.kubeconfig))

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.kube)

    # --- setting up -------------------------------------------------------------------------------
    def start(self, timeout: float = 300) -> float:
        """Profile, S3 Secret + SA, ExternalName, the InferenceService; waits Ready; returns the seconds."""
        values = guide_values(self.stack, NS, SERVER, self.group.group, owner="bench@example.com")
        apply_guide_steps(self.kube, values, server=False)
        start = time.monotonic()
        k8s.apply_all(self.kube, manifests.render("multi_model_triton_server.yaml", **values))
        poll_until(lambda: self.ready("inferenceservices", SERVER), "InferenceService Ready", timeout, 0.2, paced=False)
        return time.monotonic() - start

    def s3(self):
        creds = self.stack.s3_credentials()
        return storage.connect(storage.S3Settings(self.stack.env()["MMS_S3_ENDPOINT"], creds.access_key,
                                                  creds.secret_key))

    def upload(self, kind: str = "auto") -> Model:
        """The model the cycles apply, uploaded once: the cifar10 TorchScript stand-in (one CPU instance)
        when Triton's own pytorch backend serves it (no stub process, loads in ms), else the tiny numpy one."""
        if kind == "auto":
            kind = "torchscript" if torch_backend.choose().native else "tiny"
        prefix = f"soak/{kind}"
        with tempfile.TemporaryDirectory(prefix="mms-bench-model-") as tmp:
            folder = write_model(Path(tmp) / kind, kind)
            storage.upload_folder(self.s3(), folder, BUCKET, prefix, progress=False)
        if kind == "torchscript":
            return Model(f"s3://{BUCKET}/{prefix}", "pytorch", "64Mi", "INPUT__0", "OUTPUT__0", (1, 3, 32, 32))
        return Model(f"s3://{BUCKET}/{prefix}", "triton", "16Mi", "INPUT0", "OUTPUT0", (4,))

    def upload_cifar10(self) -> Model:
        """The guide's cifar10 (stand-in, the guide's config) under `torchscript/cifar10`."""
        with tempfile.TemporaryDirectory(prefix="mms-bench-cifar10-") as tmp:
            write_cifar10_standin(Path(tmp) / "cifar10")
            storage.upload_folder(self.s3(), Path(tmp) / "cifar10", BUCKET, "torchscript/cifar10", progress=False)
        return Model(f"s3://{BUCKET}/torchscript/cifar10", "pytorch", "1Gi", "INPUT__0", "OUTPUT__0", (1, 3, 32, 32))

    # --- TrainedModels ----------------------------------------------------------------------------------
    def trained_model(self, name: str, model: Model) -> dict:
        return {"apiVersion": self.group.tm_api_version, "kind": "TrainedModel",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"inferenceService": SERVER,
                         "model": {"framework": model.framework, "storageUri": model.uri, "memory": model.memory}}}

    def apply(self, name: str, model: Model, kube: Optional[client.ApiClient] = None) -> str:
        """Create the TrainedModel; returns its uid."""
        return client.CustomObjectsApi(kube or self.kube).create_namespaced_custom_object(
            self.group.group, self.group.tm_version, NS, "trainedmodels", self.trained_model(name, model),
            _request_timeout=(3, 10))["metadata"]["uid"]

    def delete(self, name: str) -> bool:
        try:
            self.custom.delete_namespaced_custom_object(self.group.group, self.group.tm_version, NS, "trainedmodels",
                                                        name, _request_timeout=(3, 10))
        except client.exceptions.ApiException as exc:
            if k8s.not_found(exc):
                return False
            raise
        return True

    def exists(self, name: str) -> bool:
        try:
            self.custom.get_namespaced_custom_object(self.group.group, self.group.tm_version, NS, "trainedmodels",
                                                     name, _request_timeout=(3, 10))
        except client.exceptions.ApiException as exc:
            if k8s.not_found(exc):
                return False
            raise
        return True

    def ready(self, plural: str, name: str, kube: Optional[client.ApiClient] = None) -> Optional[dict]:
        """The object if its Ready condition is True for its current generation, else None."""
        version = self.group.isvc_version if plural == "inferenceservices" else self.group.tm_version
        obj = client.CustomObjectsApi(kube or self.kube).get_namespaced_custom_object(
            self.group.group, version, NS, plural, name, _request_timeout=(3, 10))
        status = obj.get("status") or {}
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
        current = status.get("observedGeneration", obj["metadata"].get("generation")) == obj["metadata"].get("generation")
        return obj if ok and current else None

    def trained_models(self, kube: Optional[client.ApiClient] = None) -> list[dict]:
        return client.CustomObjectsApi(kube or self.kube).list_namespaced_custom_object(
            self.group.group, self.group.tm_version, NS, "trainedmodels", _request_timeout=(3, 10))["items"]

    # --- Triton, directly and through the gateway ---------------------------------------------------------
    def triton_url(self) -> str:
        """Triton's own address, resolved again each time (it may have moved after a restart)."""
        isvc = self.custom.get_namespaced_custom_object(self.group.group, self.group.isvc_version, NS,
                                                        "inferenceservices", SERVER, _request_timeout=(3, 10))
        return k8s.resolve_url(self.kube, isvc["status"]["address"]["url"], NS)

    def served(self, url: str, name: str) -> bool:
        try:
            return triton.model_ready(url, name)
        except triton.TritonError:
            return False

    def ready_models(self, url: str) -> set[str]:
        """Models Triton holds READY now."""
        return {m["name"] for m in triton.repository_index(url) if m.get("state") == "READY"}

    def gateway(self) -> tuple[str, dict[str, str]]:
        """The ingress gateway's address and the headers a client outside the cluster sends: the
        InferenceService's Host and, where the gateway asks for one, the admin's session."""
        return (self.stack.env()["MMS_INGRESS_URL"],
                {"Host": f"{SERVER}.{NS}.example.com", **self.stack.gateway_headers()})

    def infer_through_gateway(self, name: str, model: Model, timeout: float = 5.0) -> bool:
        """One request to `name` through the gateway; True if it answered as the model does."""
        base, headers = self.gateway()
        body = {"inputs": [{"name": model.input_name, "shape": list(model.shape), "datatype": "FP32",
                            "data": model.request().ravel().tolist()}]}
        answer = requests.post(f"{base}/v2/models/{name}/infer", json=body, headers=headers, timeout=timeout,
                               allow_redirects=False)
        if answer.status_code != 200:
            return False
        out = next(o for o in answer.json()["outputs"] if o["name"] == model.output_name)
        return model.answered(np.asarray(out["data"], np.float32).reshape(out["shape"]))
