"""KServe's own Python SDK against a `kubeflow-1.10`-profile stack (KServe 0.15.0): a client nobody here wrote.

The SDK always sends `triton: {name: ""}` (which a Go 1.19 build of the apiserver refused until
scripts/build-kube.sh patched it), creates the InferenceService and TrainedModel through KServe's
webhooks and CRDs, and waits with its own `wait_isvc_ready`. Then the model must load in Triton.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import venv
from pathlib import Path

import pytest
from kubernetes import client

from helpers.clients import k8s, manifests, storage, triton
from helpers.clients.k8s import resolve_url
from helpers.core.config import cache_dir
from helpers.core.constants import KSERVE_GROUP
from helpers.core.wait import poll_until
from helpers.steps.models.standins import write_cifar10_standin
from support.guide_steps import guide_values

pytestmark = pytest.mark.stack
HERE = Path(__file__).resolve().parent.parent / "support" / "sdk"
NS, BUCKET = "sdk", "sdk-models"


@pytest.fixture(scope="module")
def sdk_python() -> Path:
    """A virtualenv with the pinned SDK, made once per requirements file (in the cache folder)."""
    requirements = HERE / "requirements.txt"
    key = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    folder = cache_dir() / f"kserve-sdk-{key}"
    python = folder / "bin" / "python"
    if not (folder / ".installed").exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(folder)
        # --no-compile: the one test imports a small part of what this installs, and compiles that itself
        result = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                 "--no-compile", "-r", str(requirements)], capture_output=True, text=True,
                                timeout=900)
        if result.returncode != 0:
            pytest.skip(f"could not install KServe's SDK from PyPI: {result.stderr.strip()[-400:]}")
        (folder / ".installed").touch()
    return python


def test_kserve_sdk_creates_a_multi_model_server_and_a_trained_model(kserve_stack, kserve_kube, sdk_python,
                                                                       tmp_path: Path) -> None:
    creds = kserve_stack.s3_credentials()
    values = guide_values(kserve_stack, NS, "sdk-triton", KSERVE_GROUP)
    k8s.apply(kserve_kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    poll_until(lambda: client.CoreV1Api(kserve_kube).read_namespaced_service_account("default", NS),
               "the namespace's default service account", timeout=60)
    k8s.apply_all(kserve_kube, manifests.render("s3_secret.yaml", **values))
    # Kubeflow 1.10's global-deny-all refuses every request to a predictor no policy opens (tests/support/mesh_cases.py)
    k8s.apply_all(kserve_kube, manifests.render("predictor_authorization_policy", namespace=NS))
    s3 = storage.connect(storage.S3Settings(kserve_stack.env()["MMS_S3_ENDPOINT"], creds.access_key,
                                            creds.secret_key))
    storage.ensure_bucket(s3, BUCKET)
    folder = write_cifar10_standin(tmp_path / "sdk-cifar10")
    config = folder / "config.pbtxt"  # the name must be the TrainedModel's, which is Triton's folder name
    config.write_text(config.read_text().replace('name: "cifar10"', 'name: "sdk-cifar10"'))
    storage.upload_folder(s3, tmp_path / "sdk-cifar10", BUCKET, "torchscript/sdk-cifar10", progress=False)

    result = subprocess.run([str(sdk_python), str(HERE / "kserve_sdk_client.py"), str(kserve_stack.kubeconfig), NS,
                             f"s3://{BUCKET}/torchscript/sdk-cifar10"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["isvc_ready"] is True and seen["url"] == f"http://sdk-triton.{NS}.example.com"
    # The SDK sends `name: ""` (which a Go 1.19 apiserver refused before the patch); as on a cluster,
    # KServe 0.15's defaulter stores the Triton predictor as predictor.model and adds nothing else.
    assert "triton" not in seen["predictor"]
    model = seen["predictor"]["model"]
    assert model["modelFormat"] == {"name": "triton"} and model["protocolVersion"] == "v2" and model["name"] == ""
    assert model["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}

    custom = client.CustomObjectsApi(kserve_kube)

    def ready() -> bool:
        tm = custom.get_namespaced_custom_object(KSERVE_GROUP, "v1alpha1", NS, "trainedmodels", "sdk-cifar10")
        conditions = {c["type"]: c["status"] for c in (tm.get("status") or {}).get("conditions", [])}
        return conditions == {"InferenceServiceReady": "True", "IsMMSPredictor": "True",
                              "MemoryResourceAvailable": "True", "Ready": "True"}
    poll_until(ready, "the SDK's TrainedModel Ready with KServe's conditions", timeout=120)
    isvc = custom.get_namespaced_custom_object(KSERVE_GROUP, "v1beta1", NS, "inferenceservices", "sdk-triton")
    url = resolve_url(kserve_kube, isvc["status"]["address"]["url"], NS)
    poll_until(lambda: triton.model_ready(url, "sdk-cifar10"), "sdk-cifar10 loaded in Triton", timeout=300)
    custom.delete_namespaced_custom_object(KSERVE_GROUP, "v1beta1", NS, "inferenceservices", "sdk-triton")
    poll_until(lambda: not (kserve_stack.servers_dir / f"{NS}.sdk-triton" / "processes.json").exists(),
               "the SDK's server stopped", timeout=120)
