"""An InferenceService whose storageUri holds a whole Triton model repository, on the real apiserver, S3
server and tritonserver: the storage-initializer init container copies the prefix, Triton loads every
model in it at start, and what a learner sees is the release's (kubectl get pod/logs/top, status, what
a TrainedModel added to it gets). A missing prefix fails in the init container and harms nothing else.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.clients import k8s, manifests, storage, triton
from helpers.clients.k8s import resolve_url
from helpers.core.constants import KFSERVING_GROUP, KSERVE_GROUP, LOCAL_ADDRESS_ANNOTATION, api_group
from helpers.core.wait import poll_until
from helpers.local.stack import process
from helpers.local.stack.controlplane import NODE_NAME
from helpers.local.stack.stack import Stack
from helpers.steps.models.standins import write_cifar10_standin
from support.guide_steps import apply_guide_steps, guide_values

pytestmark = pytest.mark.controlplane
NS, SERVER, MISSING, BUCKET = "repo", "triton-repo", "triton-nothing", "repo-models"
MODELS = ("cifar10", "cifar10-b")  # what the repository under torchscript/ holds
POD_ADDRESS = LOCAL_ADDRESS_ANNOTATION.replace("address", "pod-address")


def kubectl(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["kubectl", "--kubeconfig", str(stack.kubeconfig), *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 or not check, done.stderr
    return done


def isvc_of(kube, name: str, group: str = KFSERVING_GROUP, ns: str = NS) -> dict:
    return client.CustomObjectsApi(kube).get_namespaced_custom_object(group, "v1beta1", ns, "inferenceservices", name)


def condition(obj: dict, kind: str = "Ready") -> dict:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}.get(kind) or {}


def wait_ready(kube, name: str, group: str = KFSERVING_GROUP, ns: str = NS, timeout: float = 300) -> dict:
    def ready():
        obj = isvc_of(kube, name, group, ns)
        return obj if condition(obj).get("status") == "True" else None
    try:
        return poll_until(ready, f"{name} Ready", timeout=timeout, interval=0.5)
    except TimeoutError:
        raise AssertionError(f"{name}: {isvc_of(kube, name, group, ns).get('status')}") from None


def pod_of(stack: Stack, name: str, group: str = KFSERVING_GROUP, ns: str = NS) -> dict:
    def found():
        items = json.loads(kubectl(stack, "get", "pods", "-n", ns, "-l", f"{api_group(group).isvc_label}={name}",
                                   "-o", "json").stdout)["items"]
        return next((p for p in items if not p["metadata"].get("deletionTimestamp")), None)
    return poll_until(found, f"the pod of {name}", timeout=60, interval=0.3)


def pod_row(stack: Stack, pod: str, ns: str = NS) -> list[str]:
    """`kubectl get pod`'s columns: NAME READY STATUS RESTARTS AGE."""
    return kubectl(stack, "get", "pod", pod, "-n", ns, "--no-headers").stdout.split()


def repository_server(values: dict, name: str, uri: str = "") -> list[dict]:
    docs = manifests.render("triton_repository_server", **{**values, "server_name": name, "server_cpu": "1",
                                                           "server_memory": "2Gi"})
    if uri:
        docs[0]["spec"]["predictor"]["triton"]["storageUri"] = uri
    return docs


def delete_isvc(stack: Stack, kube, name: str, group: str = KFSERVING_GROUP, ns: str = NS) -> None:
    try:
        client.CustomObjectsApi(kube).delete_namespaced_custom_object(group, "v1beta1", ns, "inferenceservices", name)
    except ApiException as exc:
        if exc.status != 404:
            raise
    label = f"{api_group(group).isvc_label}={name}"
    poll_until(lambda: not json.loads(kubectl(stack, "get", "pods", "-n", ns, "-l", label, "-o", "json").stdout)["items"],
               f"the pod of {name} to be gone", timeout=120, interval=0.5)


def upload_repository(stack: Stack, tmp_path_factory, bucket: str) -> None:
    """cifar10 where 03 puts it (torchscript/cifar10), and a second model beside it (a config without `name`)."""
    creds = stack.s3_credentials()
    s3 = storage.connect(storage.S3Settings(stack.env()["MMS_S3_ENDPOINT"], creds.access_key, creds.secret_key))
    storage.ensure_bucket(s3, bucket)
    root = tmp_path_factory.mktemp("repository")
    write_cifar10_standin(root / "cifar10")
    shutil.copytree(root / "cifar10", root / "cifar10-b")
    config = root / "cifar10-b" / "config.pbtxt"
    config.write_text("\n".join(line for line in config.read_text().splitlines() if not line.startswith("name:")))
    for model in MODELS:
        storage.upload_folder(s3, root / model, bucket, f"torchscript/{model}", progress=False)


@pytest.fixture(scope="module")
def values(stack: Stack, kube, tmp_path_factory) -> dict:
    found = guide_values(stack, NS, SERVER, KFSERVING_GROUP, bucket=BUCKET)
    apply_guide_steps(kube, found, server=False)
    upload_repository(stack, tmp_path_factory, BUCKET)
    return found


@pytest.fixture(scope="module")
def served(stack: Stack, kube, values: dict) -> str:
    """The repository server of manifests/triton_repository_server.yaml, Ready; its URL."""
    k8s.apply_all(kube, repository_server(values, SERVER))
    isvc = wait_ready(kube, SERVER)
    return resolve_url(kube, isvc["status"]["address"]["url"], NS)


def test_the_pod_is_the_one_kfserving_0_5_makes_for_a_storage_uri(stack: Stack, kube, served: str) -> None:
    pod = pod_of(stack, SERVER)
    spec = pod["spec"]
    # Istio 1.1.6 appends its istio-init after KFServing's init container, which so still reaches S3 directly
    init, istio_init = spec["initContainers"]
    assert istio_init["name"] == "istio-init"
    assert init["name"] == "storage-initializer" and init["args"] == [f"s3://{BUCKET}/torchscript", "/mnt/models"]
    assert init["image"] == "gcr.io/kfserving/storage-initializer:v0.5.1"  # inferenceservice-config's storageInitializer
    assert init["resources"] == {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "100Mi"}}
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # The credential builder's env, as the agent's would be: the keys as references to the Secret only.
    env = {e["name"]: e for e in init["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "mysecret"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio-service.kubeflow:9000"
    # (the apiserver's ServiceAccount admission adds the token's volume and mounts after these)
    assert init["volumeMounts"][0] == {"name": "kfserving-provision-location", "mountPath": "/mnt/models"}
    assert spec["volumes"][0] == {"name": "kfserving-provision-location", "emptyDir": {}}
    server, proxy = spec["containers"]  # no agent: nothing loads models into it after the start
    assert proxy["name"] == "istio-proxy"
    assert server["name"] == "kfserving-container" and "--model-control-mode=explicit" not in server["args"]
    assert server["args"][:2] == ["tritonserver", "--model-store=/mnt/models"]
    assert server["volumeMounts"][0] == {"name": "kfserving-provision-location", "mountPath": "/mnt/models",
                                         "readOnly": True}
    assert pod["metadata"]["annotations"]["internal.serving.kubeflow.org/storage-initializer-sourceuri"] == \
        f"s3://{BUCKET}/torchscript"
    done, _ = pod["status"]["initContainerStatuses"]
    assert done["state"]["terminated"]["reason"] == "Completed" and done["state"]["terminated"]["exitCode"] == 0
    name, ready, status, restarts = pod_row(stack, pod["metadata"]["name"])[:4]
    assert (ready, status, restarts) == ("2/2", "Running", "0")
    assert spec["nodeName"] == NODE_NAME  # bound by the scheduler: its requests count on the node
    # Done for the pod's life: `python -m helpers.local status` lists its Triton, no initializer to restart.
    assert {k for k in stack.server_records() if k.startswith(f"{NS}/{SERVER}/")} == {f"{NS}/{SERVER}/triton"}
    # No model config: KServe makes modelconfig-<isvc>-0 only for a multi-model server.
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(kube).read_namespaced_config_map(f"modelconfig-{SERVER}-0", NS)
    assert err.value.status == 404


def test_triton_loaded_every_model_of_the_repository_at_start(stack: Stack, served: str) -> None:
    index = {m["name"]: m for m in triton.repository_index(served)}
    assert set(index) == set(MODELS) and all(m.get("state") == "READY" for m in index.values()), index
    out = triton.infer(served, "cifar10-b", {"INPUT__0": np.zeros((1, 3, 32, 32), np.float32)})
    assert out["OUTPUT__0"].shape == (1, 10)
    # Default model control: the repository API refuses what the agent would ask.
    refused = requests.post(f"{served}/v2/repository/models/cifar10/unload", timeout=10)
    assert refused.status_code >= 400 and "explicit model load / unload is not allowed" in refused.text
    assert "--model-control-mode" not in (stack.logs / f"triton-{NS}.{SERVER}.log").read_text().split("starting")[-1]


def test_kubectl_logs_shows_the_storage_initializer_and_top_counts_the_pod(stack: Stack, served: str) -> None:
    pod = pod_of(stack, SERVER)["metadata"]["name"]
    logs = kubectl(stack, "logs", pod, "-n", NS, "-c", "storage-initializer")
    assert logs.stdout == ""  # KFServing 0.5.1's initializer logs to an unconfigured root logger: nothing on success
    assert "successfully loaded 'cifar10-b'" in kubectl(stack, "logs", pod, "-n", NS, "-c", "kfserving-container").stdout

    def topped():
        done = kubectl(stack, "top", "pod", pod, "-n", NS, "--containers", "--no-headers", check=False)
        return done.stdout if done.returncode == 0 and done.stdout.strip() else None
    rows = poll_until(topped, "kubectl top to show the pod", timeout=90, interval=2)
    assert [line.split()[1] for line in rows.splitlines()] == ["kfserving-container"]


def test_a_trained_model_added_to_it_is_ready_on_kfserving_0_5_but_never_served(stack: Stack, kube, served: str) -> None:
    body = {"apiVersion": api_group(KFSERVING_GROUP).tm_api_version, "kind": "TrainedModel",
            "metadata": {"name": "extra", "namespace": NS},
            "spec": {"inferenceService": SERVER, "model": {"framework": "pytorch", "memory": "256Mi",
                                                           "storageUri": f"s3://{BUCKET}/torchscript/cifar10"}}}
    api = client.CustomObjectsApi(kube)
    k8s.apply(kube, body)
    try:
        # KFServing 0.5.1 has only InferenceServiceReady: Ready, then its ModelConfigReconciler finds no ConfigMap.
        tm = poll_until(lambda: (lambda t: t if condition(t).get("status") == "True" else None)(
            api.get_namespaced_custom_object(KFSERVING_GROUP, "v1alpha1", NS, "trainedmodels", "extra")),
            "the TrainedModel's Ready", timeout=60, interval=0.5)
        assert [c["type"] for c in tm["status"]["conditions"]] == ["InferenceServiceReady", "Ready"]
        poll_until(lambda: f'configmaps "modelconfig-{SERVER}-0" not found' in (stack.logs / "controller.log").read_text(),
                   "the controller's Reconciler error", timeout=30, interval=0.5)
        assert not triton.model_ready(served, "extra")
        # Deleting it waits for the same ConfigMap: it stays Terminating while the server lives.
        api.delete_namespaced_custom_object(KFSERVING_GROUP, "v1alpha1", NS, "trainedmodels", "extra")
        stuck = poll_until(lambda: (lambda t: t if t["metadata"].get("deletionTimestamp") else None)(
            api.get_namespaced_custom_object(KFSERVING_GROUP, "v1alpha1", NS, "trainedmodels", "extra")),
            "the deletion to start", timeout=30, interval=0.3)
        assert stuck["metadata"]["finalizers"] == ["trainedmodel.finalizer"]
    finally:
        try:
            api.patch_namespaced_custom_object(KFSERVING_GROUP, "v1alpha1", NS, "trainedmodels", "extra",
                                               {"metadata": {"finalizers": None}})
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_a_missing_prefix_fails_in_the_init_container_and_harms_nothing_else(stack: Stack, kube, values: dict,
                                                                             served: str) -> None:
    uri = f"s3://{BUCKET}/nothing-here"
    k8s.apply_all(kube, repository_server(values, MISSING, uri))
    try:
        pod = pod_of(stack, MISSING)["metadata"]["name"]
        statuses = poll_until(lambda: (lambda r: r if r[2] in ("Init:Error", "Init:CrashLoopBackOff") else None)(
            pod_row(stack, pod)), "the init container to fail", timeout=120, interval=0.5)
        assert statuses[1] == "0/2"  # Triton and Istio's proxy
        logs = kubectl(stack, "logs", pod, "-n", NS, "-c", "storage-initializer").stdout
        assert logs.startswith("Traceback (most recent call last):")
        assert logs.rstrip().endswith(f"RuntimeError: Failed to fetch model. The path or model {uri} does not exist.")
        # It runs again with back-off, as a kubelet restarts a failed init container.
        poll_until(lambda: int(pod_row(stack, pod)[3]) >= 1, "a second run", timeout=120, interval=0.5)
        obj = json.loads(kubectl(stack, "get", "pod", pod, "-n", NS, "-o", "json").stdout)
        assert obj["status"]["phase"] == "Pending"
        assert condition(obj, "Initialized")["reason"] == "ContainersNotInitialized"
        isvc = isvc_of(kube, MISSING)
        ready = condition(isvc)
        assert ready["status"] == "Unknown" and ready["reason"] == "RevisionMissing"
        assert ready["message"] == f'Configuration "{MISSING}-predictor-default" is waiting for a Revision to become ready.'
        assert "url" not in isvc["status"]
        # The other server kept serving, and no Triton ever started for this one.
        assert triton.model_ready(served, "cifar10")
        assert not (stack.logs / f"triton-{NS}.{MISSING}.log").exists()
    finally:
        delete_isvc(stack, kube, MISSING)
    # The pod can be gone a pass before its folder: a pass that listed the InferenceService just before its
    # deletion confirms the pod's deletion (as for a pod to replace), and the next pass removes the rest.
    poll_until(lambda: not (stack.servers_dir / f"{NS}.{MISSING}").exists(), "its folder to go", timeout=60)
    assert triton.server_ready(served)


@pytest.mark.parametrize("release, bucket, keys, last", [
    ("v0.5.1", "no-such-bucket", "good", "minio.error.NoSuchBucket: NoSuchBucket: message: The specified bucket does not exist."),
    ("v0.5.1", BUCKET, "bad secret", "minio.error.SignatureDoesNotMatch: SignatureDoesNotMatch: message: The request "
                                     "signature we calculated does not match the signature you provided."),
    ("v0.15.2", "no-such-bucket", "good", "botocore.errorfactory.NoSuchBucket: An error occurred (NoSuchBucket) when "
                                          "calling the ListObjects operation: The specified bucket does not exist"),
    ("v0.15.2", BUCKET, "bad key", "botocore.exceptions.ClientError: An error occurred (InvalidAccessKeyId) when calling "
                                   "the ListObjects operation: "),
], ids=["0.5.1-no-bucket", "0.5.1-bad-secret", "0.15.2-no-bucket", "0.15.2-bad-key"])
def test_the_initializer_says_a_missing_bucket_or_bad_keys_in_its_library_s_words(
        stack: Stack, values: dict, tmp_path, release: str, bucket: str, keys: str, last: str) -> None:
    """Against the real S3 server, with the env the credential builder writes (keys as the Secret holds them)."""
    creds = stack.s3_credentials()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))},
           "AWS_ENDPOINT_URL": f"http://{stack.env()['MMS_S3_ENDPOINT']}",
           "AWS_ACCESS_KEY_ID": "not-a-key" if keys == "bad key" else creds.access_key,
           "AWS_SECRET_ACCESS_KEY": "not-the-secret" if keys == "bad secret" else creds.secret_key}
    done = subprocess.run(process.python_argv("helpers.local.initializer", f"s3://{bucket}/torchscript",
                                              str(tmp_path / "models"), "--release", release),
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("Traceback (most recent call last):")
    assert done.stderr.rstrip().splitlines()[-1].startswith(last), done.stderr
    assert creds.secret_key not in done.stdout + done.stderr


def test_deleting_it_stops_triton_and_removes_its_pod_and_copy(stack: Stack, kube, served: str) -> None:
    record = json.loads((stack.servers_dir / f"{NS}.{SERVER}" / "processes.json").read_text())["triton"]
    delete_isvc(stack, kube, SERVER)
    poll_until(lambda: not (stack.servers_dir / f"{NS}.{SERVER}").exists(), "its folder to go", timeout=60)
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{record['ports']['http']}/v2/health/ready", timeout=2)
    assert re.search(rf"stopped triton for {NS}\.{SERVER}", (stack.logs / "controller.log").read_text())


# --- KServe (Kubeflow 1.10.1: KServe 0.15.0) ------------------------------------------------------
def test_on_kserve_the_initializer_logs_each_file_and_a_trained_model_is_refused(kserve_stack: Stack, kserve_kube,
                                                                                  tmp_path_factory) -> None:
    ns, name, bucket = "repo-ks", "triton-repo", "repo-ks-models"
    found = guide_values(kserve_stack, ns, name, KSERVE_GROUP, bucket=bucket)
    apply_guide_steps(kserve_kube, found, server=False)
    upload_repository(kserve_stack, tmp_path_factory, bucket)
    k8s.apply_all(kserve_kube, repository_server(found, name))
    api = client.CustomObjectsApi(kserve_kube)
    try:
        isvc = wait_ready(kserve_kube, name, KSERVE_GROUP, ns)
        stored = isvc["spec"]["predictor"]  # KServe's defaulter stores predictor.triton as predictor.model
        assert stored["model"]["modelFormat"] == {"name": "triton"}
        assert stored["model"]["storageUri"] == f"s3://{bucket}/torchscript"
        assert isvc["status"]["modelStatus"]["states"] == {"activeModelState": "Loaded", "targetModelState": "Loaded"}
        pod = pod_of(kserve_stack, name, KSERVE_GROUP, ns)
        (init,) = pod["spec"]["initContainers"]
        assert init["image"] == "kserve/storage-initializer:v0.15.0"
        assert pod["spec"]["volumes"][0] == {"name": "kserve-provision-location", "emptyDir": {}}
        assert "--model-control-mode=explicit" not in pod["spec"]["containers"][0]["args"]
        logs = kubectl(kserve_stack, "logs", pod["metadata"]["name"], "-n", ns, "-c", "storage-initializer").stdout
        assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} 1 kserve INFO \[initializer-entrypoint:<module>\(\):16\] "
                         rf"Initializing, args: src_uri \[s3://{bucket}/torchscript\] dest_path\[ \[/mnt/models\]$",
                         logs, re.M)
        assert "Downloaded object torchscript/cifar10/config.pbtxt to /mnt/models/cifar10/config.pbtxt" in logs
        assert f"Successfully copied s3://{bucket}/torchscript to /mnt/models" in logs
        # The pod's own port, as `kubectl port-forward` reaches it (the mesh guards the Service's).
        svc = client.CoreV1Api(kserve_kube).read_namespaced_service(name, ns)
        address = (svc.metadata.annotations or {}).get(POD_ADDRESS) or svc.metadata.annotations[LOCAL_ADDRESS_ANNOTATION]
        index = triton.repository_index(f"http://{address}")
        assert sorted(m["name"] for m in index if m.get("state") == "READY") == sorted(MODELS)

        body = {"apiVersion": api_group(KSERVE_GROUP).tm_api_version, "kind": "TrainedModel",
                "metadata": {"name": "extra", "namespace": ns},
                "spec": {"inferenceService": name, "model": {"framework": "pytorch", "memory": "256Mi",
                                                             "storageUri": f"s3://{bucket}/torchscript/cifar10"}}}
        k8s.apply(kserve_kube, body)

        def refused():
            tm = api.get_namespaced_custom_object(KSERVE_GROUP, "v1alpha1", ns, "trainedmodels", "extra")
            return tm if condition(tm, "IsMMSPredictor").get("status") == "False" else None
        tm = poll_until(refused, "IsMMSPredictor False", timeout=60, interval=0.5)
        assert condition(tm, "IsMMSPredictor") | {"lastTransitionTime": None} == {
            "type": "IsMMSPredictor", "status": "False", "reason": "IsNotMMSPredictor",
            "message": "Inference Service predictor is not configured for multi-model serving", "lastTransitionTime": None}
        assert condition(tm)["status"] == "False"
    finally:
        try:
            api.patch_namespaced_custom_object(KSERVE_GROUP, "v1alpha1", ns, "trainedmodels", "extra",
                                               {"metadata": {"finalizers": None}})
            api.delete_namespaced_custom_object(KSERVE_GROUP, "v1alpha1", ns, "trainedmodels", "extra")
        except ApiException as exc:
            if exc.status != 404:
                raise
        delete_isvc(kserve_stack, kserve_kube, name, KSERVE_GROUP, ns)
