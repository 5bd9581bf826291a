"""The local controller and agent against the real apiserver, S3 server and tritonserver.

One InferenceService (the default kfserving-0.5 profile, as in the guide) serves every model of this
module; each test adds or breaks something and checks what a user would see: status, Events,
Triton, the agent log. As on KFServing 0.5.1, a TrainedModel's Ready says it was handed to the
server; Triton's own readiness says it is loaded.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess

import numpy as np
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.clients import k8s, manifests, storage, triton
from helpers.clients.k8s import resolve_url
from helpers.core.constants import KFSERVING_GROUP, api_group
from helpers.core.wait import poll_until
from helpers.local.stack.stack import Stack
from helpers.steps.models.standins import write_cifar10_standin, write_inception_standin
from support.guide_steps import apply_guide_steps, guide_values

pytestmark = pytest.mark.controlplane
NS, SERVER, BUCKET = "ctl", "triton-ctl", "ctl-models"


def custom(kube) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube)


def get(kube, kind: str, name: str, group: str = KFSERVING_GROUP, ns: str = NS) -> dict:
    g = api_group(group)
    version = g.isvc_version if kind == "inferenceservices" else g.tm_version
    return custom(kube).get_namespaced_custom_object(g.group, version, ns, kind, name)


def condition(obj: dict, kind: str = "Ready") -> dict:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return cond
    return {}


def wait_ready(kube, kind: str, name: str, group: str = KFSERVING_GROUP, ns: str = NS, timeout: float = 180) -> dict:
    def ready():
        obj = get(kube, kind, name, group, ns)
        current = obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]
        return obj if current and condition(obj).get("status") == "True" else None
    try:
        return poll_until(ready, f"{kind}/{name} Ready", timeout=timeout, interval=0.5)
    except TimeoutError:
        raise AssertionError(f"{kind}/{name} not Ready: {get(kube, kind, name, group, ns).get('status')}") from None


def wait_failed(kube, kind: str, name: str, text: str, group: str = KFSERVING_GROUP, ns: str = NS,
                timeout: float = 120) -> dict:
    def failed():
        cond = condition(get(kube, kind, name, group, ns))
        return cond if cond.get("status") == "False" and text in cond.get("message", "") else None
    try:
        return poll_until(failed, f"{kind}/{name} to fail with {text!r}", timeout=timeout, interval=0.5)
    except TimeoutError:
        raise AssertionError(f"{kind}/{name}: {get(kube, kind, name, group, ns).get('status')}") from None


def wait_deleted(kube, kind: str, name: str, timeout: float = 60) -> None:
    def gone() -> bool:
        try:
            get(kube, kind, name)
        except ApiException as exc:
            return exc.status == 404
        return False
    poll_until(gone, f"{kind}/{name} deleted", timeout=timeout, interval=0.2)


def wait_loaded(server: str, name: str, timeout: float = 300) -> None:
    poll_until(lambda: triton.model_ready(server, name), f"{name} loaded in Triton", timeout=timeout, interval=0.2)


def wait_event(kube, obj_name: str, reason: str, text: str = "", timeout: float = 180) -> client.CoreV1Event:
    """The Event `kubectl describe` shows for `obj_name` with `reason` (and `text` in its message)."""
    def found():
        for event in client.CoreV1Api(kube).list_namespaced_event(NS).items:
            if event.involved_object.name == obj_name and event.reason == reason and text in (event.message or ""):
                return event
        return None
    return poll_until(found, f"event {reason} on {obj_name}", timeout=timeout, interval=0.5)


def agent_events(kube, obj_name: str) -> list[str]:
    """Reasons of the Events only the friendly agent's controller records (ModelLoaded, ModelLoadFailed)."""
    return [e.reason for e in client.CoreV1Api(kube).list_namespaced_event(NS).items
            if e.involved_object.name == obj_name and e.reason in ("ModelLoaded", "ModelLoadFailed")]


def trained_model(name: str, uri: str, framework: str = "pytorch", group: str = KFSERVING_GROUP) -> dict:
    return {"apiVersion": api_group(group).tm_api_version, "kind": "TrainedModel",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"inferenceService": SERVER, "model": {"framework": framework, "storageUri": uri, "memory": "256Mi"}}}


def controller_log(stack: Stack) -> str:
    return (stack.logs / "controller.log").read_text()


def agent_log(stack: Stack) -> str:
    return (stack.logs / f"agent-{NS}.{SERVER}.log").read_text()


@pytest.fixture(scope="module")
def s3(stack: Stack):
    creds = stack.s3_credentials()
    return storage.connect(storage.S3Settings(stack.env()["MMS_S3_ENDPOINT"], creds.access_key, creds.secret_key))


@pytest.fixture(scope="module")
def models(s3, tmp_path_factory) -> dict[str, str]:
    """The two guide models as stand-ins, uploaded where the guide puts them."""
    root = tmp_path_factory.mktemp("models")
    write_cifar10_standin(root / "cifar10")
    write_inception_standin(root / "inception_graphdef")
    storage.upload_folder(s3, root / "cifar10", BUCKET, "torchscript/cifar10", progress=False)
    storage.upload_folder(s3, root / "cifar10", BUCKET, "torchscript/cifar10-v2", progress=False)
    storage.upload_folder(s3, root / "inception_graphdef", BUCKET, "models/inception_graphdef", progress=False)
    corrupt = root / "corrupt"
    shutil.copytree(root / "cifar10", corrupt)
    (corrupt / "1" / "model.pt").write_bytes(b"this is not a TorchScript archive")
    storage.upload_folder(s3, corrupt, BUCKET, "torchscript/corrupt", progress=False)
    return {"cifar10": f"s3://{BUCKET}/torchscript/cifar10", "cifar10-v2": f"s3://{BUCKET}/torchscript/cifar10-v2",
            "inception": f"s3://{BUCKET}/models/inception_graphdef", "corrupt": f"s3://{BUCKET}/torchscript/corrupt"}


@pytest.fixture(scope="module")
def server(stack: Stack, kube, models) -> str:
    """The guide's steps 1-3 in namespace `ctl`: Profile, S3 secret + SA, ExternalName, the ISVC. Returns its URL."""
    apply_guide_steps(kube, guide_values(stack, NS, SERVER, KFSERVING_GROUP))
    isvc = wait_ready(kube, "inferenceservices", SERVER)
    return resolve_url(kube, isvc["status"]["address"]["url"], NS)


def test_profile_makes_namespace_service_accounts_and_status(kube, server) -> None:
    core = client.CoreV1Api(kube)
    ns = core.read_namespace(NS)
    assert ns.metadata.labels["serving.kubeflow.org/inferenceservice"] == "enabled"
    assert ns.metadata.owner_references[0].kind == "Profile"
    assert {sa.metadata.name for sa in core.list_namespaced_service_account(NS).items} >= {
        "default", "default-editor", "default-viewer", "sa"}
    profile = custom(kube).get_cluster_custom_object("kubeflow.org", "v1", "profiles", NS)
    assert condition(profile, "Successful")["status"] == "True"


def test_inferenceservice_ready_with_kserve_style_status(kube, server) -> None:
    isvc = get(kube, "inferenceservices", SERVER)
    assert isvc["status"]["url"] == f"http://{SERVER}.{NS}.example.com"
    assert isvc["status"]["address"]["url"] == f"http://{SERVER}.{NS}.svc.cluster.local"
    assert server.startswith("http://127.0.0.1:")
    assert triton.server_metadata(server)["name"] == "triton"
    cm = client.CoreV1Api(kube).read_namespaced_config_map(f"modelconfig-{SERVER}-0", NS)
    assert "models.json" in cm.data


def test_kubectl_shows_url_and_ready_columns(stack: Stack, server) -> None:
    out = subprocess.run(["kubectl", "--kubeconfig", str(stack.kubeconfig), "get", f"inferenceservices.{KFSERVING_GROUP}", SERVER,
                          "-n", NS], capture_output=True, text=True, timeout=60)
    header, row = out.stdout.splitlines()[:2]
    assert "URL" in header and "READY" in header
    assert f"http://{SERVER}.{NS}.example.com" in row and "True" in row


def test_trained_model_loads_serves_and_unloads(stack: Stack, kube, server, models) -> None:
    k8s.apply(kube, trained_model("cifar10", models["cifar10"]))
    tm = wait_ready(kube, "trainedmodels", "cifar10")
    assert tm["status"]["url"] == f"http://{SERVER}.{NS}.example.com/v2/models/cifar10/infer"
    assert [c["type"] for c in tm["status"]["conditions"]] == ["InferenceServiceReady", "Ready"]  # KFServing 0.5.1's
    assert "trainedmodel.finalizer" in tm["metadata"]["finalizers"]
    assert tm["metadata"]["labels"]["inferenceservice"] == SERVER
    wait_loaded(server, "cifar10")
    assert not agent_events(kube, "cifar10")  # KFServing 0.5.1's controller records none of what its agent did
    out = triton.infer(server, "cifar10", {"INPUT__0": np.zeros((1, 3, 32, 32), np.float32)})
    assert out["OUTPUT__0"].shape == (1, 10) and out["OUTPUT__0"].dtype == np.float32
    log = agent_log(stack)
    assert "Downloading model" in log and "Creating successFile" in log and "Successfully loaded model" in log
    # Event-driven on both sides: inotify woke the agent (not its 10 s resync), and the agent's
    # status file woke the controller's pass for this server (the one that writes TrainedModel status).
    assert '"wokenBy":"event"' in log
    # Under load the TrainedModel's own event may reach the same pass first; either way not a resync.
    assert re.search(rf"server {NS}\.{SERVER}: TrainedModels reconciled \(via (agent status|trainedmodel event)\)",
                     controller_log(stack))

    custom(kube).delete_namespaced_custom_object(KFSERVING_GROUP, "v1alpha1", NS, "trainedmodels", "cifar10")
    poll_until(lambda: not triton.model_ready(server, "cifar10"), "cifar10 unloaded", timeout=60)
    models_dir = stack.servers_dir / f"{NS}.{SERVER}" / "models"
    poll_until(lambda: not (models_dir / "cifar10").exists(), "cifar10 folder removed", timeout=30)


def test_two_models_in_one_server_and_spec_update_reloads(stack: Stack, kube, server, models) -> None:
    k8s.apply(kube, trained_model("cifar10", models["cifar10"]))
    k8s.apply(kube, trained_model("inception", models["inception"], framework="tensorflow"))
    wait_ready(kube, "trainedmodels", "cifar10")
    wait_ready(kube, "trainedmodels", "inception")
    wait_loaded(server, "cifar10")
    wait_loaded(server, "inception")
    top = triton.classify(server, "inception", np.zeros((1, 299, 299, 3), np.float32), top_k=5)
    assert len(top[0]) == 5 and all(isinstance(label, str) and label for _s, _i, label in top[0])

    downloads = agent_log(stack).count("Creating successFile")
    k8s.apply(kube, trained_model("cifar10", models["cifar10-v2"]))
    poll_until(lambda: agent_log(stack).count("Creating successFile") > downloads, "a new download", timeout=60)
    wait_ready(kube, "trainedmodels", "cifar10")
    wait_loaded(server, "cifar10")
    assert triton.model_ready(server, "inception")


def test_missing_bucket_and_corrupt_model_show_in_the_agent_log_others_keep_serving(stack: Stack, kube, server,
                                                                                    models) -> None:
    k8s.apply(kube, trained_model("cifar10", models["cifar10"]))
    wait_loaded(server, "cifar10")
    k8s.apply(kube, trained_model("nobucket", "s3://no-such-bucket/torchscript/cifar10"))
    k8s.apply(kube, trained_model("corrupt", models["corrupt"]))
    # As KFServing 0.5.1's agent: tried once, said in its log only, in the Go agent's words.
    poll_until(lambda: "Failed to download model nobucket with err failed to download model: " in agent_log(stack),
               "the agent to give up on nobucket", timeout=180)
    poll_until(lambda: "Failed to load model corrupt with status [400] and resp:[" in agent_log(stack),
               "Triton to refuse corrupt", timeout=180)
    # As on KFServing 0.5.1, Ready says nothing about the load (it is the InferenceService's readiness),
    # and no Event says what the agent did.
    assert condition(get(kube, "trainedmodels", "corrupt")).get("status") == "True"
    assert not agent_events(kube, "nobucket") and not agent_events(kube, "corrupt")
    wait_loaded(server, "cifar10", timeout=60)  # it may be reloading the spec an earlier test changed
    assert triton.server_ready(server)
    for name in ("nobucket", "corrupt"):
        custom(kube).delete_namespaced_custom_object(KFSERVING_GROUP, "v1alpha1", NS, "trainedmodels", name)


def rejected(kube, body: dict) -> str:
    """The apiserver's message for a refused create."""
    with pytest.raises(ApiException) as err:
        custom(kube).create_namespaced_custom_object(KFSERVING_GROUP, "v1alpha1", NS, "trainedmodels", body)
    assert err.value.status in (400, 422), err.value.body
    return json.loads(err.value.body)["message"]


def test_bad_trained_models_are_rejected_as_kfserving_0_5_rejects_them(kube, server) -> None:
    nouri = trained_model("nouri", "s3://x/y")
    del nouri["spec"]["model"]["storageUri"]
    assert "spec.model.storageUri" in rejected(kube, nouri)
    message = rejected(kube, trained_model("cifar.10", "s3://x/y"))  # a valid object name, not a model name
    assert 'admission webhook "trainedmodel.kfserving-webhook-server.validator" denied the request' in message
    assert "a Trained Model name must consist of lower case" in message
    message = rejected(kube, trained_model("over-https", "https://host/model"))
    assert "The storage uri must start with one of the prefixes: s3://, gs://" in message
    k8s.apply(kube, trained_model("fixed-memory", "s3://x/y"))
    bigger = trained_model("fixed-memory", "s3://x/y")
    bigger["spec"]["model"]["memory"] = "2Gi"
    with pytest.raises(k8s.ManifestRejected, match="memory field is immutable"):
        k8s.apply(kube, bigger)
    custom(kube).delete_namespaced_custom_object(KFSERVING_GROUP, "v1alpha1", NS, "trainedmodels", "fixed-memory")


def test_trained_model_without_its_server_is_deleted(kube, server) -> None:
    orphan = trained_model("orphan", "s3://x/y")
    orphan["spec"]["inferenceService"] = "no-such-server"
    k8s.apply(kube, orphan)
    wait_deleted(kube, "trainedmodels", "orphan")


def _server_pids(stack: Stack) -> dict:
    return json.loads((stack.servers_dir / f"{NS}.{SERVER}" / "processes.json").read_text())


def test_triton_killed_comes_back_and_its_models_stay_unloaded_until_reapplied(
        stack: Stack, kube, server, models) -> None:
    """As on a cluster of every modelled release: the kubelet restarts Triton's container, the agent (no
    watch on Triton) does not load the model again, its TrainedModel stays Ready, the doctor names it, and
    the doctor's second fix, deleting and re-applying the TrainedModel, loads it again. (Its first, deleting
    the pod, is what `benchmarks/bench_chaos.py` does after a Triton kill.)"""
    import sys

    k8s.apply(kube, trained_model("cifar10", models["cifar10"]))
    wait_loaded(server, "cifar10")
    old = _server_pids(stack)["triton"]
    os.killpg(old["pid"], signal.SIGKILL)
    poll_until(lambda: _server_pids(stack)["triton"]["pid"] != old["pid"], "triton restarted", timeout=60)
    new = _server_pids(stack)["triton"]
    assert new["restarts"] == old.get("restarts", 0) + 1 and new["last_exit"] == "killed by SIGKILL"
    assert new["ports"] == old["ports"]  # the Service address does not move with the process
    assert f"triton for {NS}.{SERVER} (pid {old['pid']}) ended: killed by SIGKILL" in controller_log(stack)
    poll_until(lambda: triton.server_ready(server), "the restarted Triton to answer", timeout=60)
    wait_ready(kube, "trainedmodels", "cifar10")
    assert not triton.model_ready(server, "cifar10")
    assert "Triton restarted: reloading models from disk" not in agent_log(stack)

    done = subprocess.run([sys.executable, "-m", "helpers.doctor", "--namespace", NS, "--server", SERVER,
                           "--bucket", BUCKET, "--json"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **stack.env()})
    found = {f["check"]: f for f in json.loads(done.stdout)}["Ready TrainedModels served by Triton"]
    assert found["result"] == "problem" and "cifar10" in found["evidence"], found
    assert "restarted 1x" in found["evidence"] and "kubectl delete pod" in found["fix"]

    custom(kube).delete_namespaced_custom_object(KFSERVING_GROUP, "v1alpha1", NS, "trainedmodels", "cifar10")
    wait_deleted(kube, "trainedmodels", "cifar10")
    k8s.apply(kube, trained_model("cifar10", models["cifar10"]))
    wait_loaded(server, "cifar10", timeout=120)


def test_agent_restarted_reconciles_from_markers(stack: Stack, kube, server, models) -> None:
    k8s.apply(kube, trained_model("cifar10", models["cifar10"]))
    wait_loaded(server, "cifar10")
    downloads = agent_log(stack).count("Creating successFile")
    old = _server_pids(stack)["agent"]
    os.killpg(old["pid"], signal.SIGKILL)
    poll_until(lambda: _server_pids(stack)["agent"]["pid"] != old["pid"], "agent restarted", timeout=60)
    wait_ready(kube, "trainedmodels", "cifar10")
    wait_loaded(server, "cifar10")
    assert agent_log(stack).count("Creating successFile") == downloads
    new = _server_pids(stack)["agent"]
    assert new["restarts"] == old.get("restarts", 0) + 1 and new["last_exit"] == "killed by SIGKILL"


def test_server_problems_show_where_a_cluster_shows_them(stack: Stack, kube, server, models) -> None:
    creds = stack.s3_credentials()
    values = guide_values(stack, NS, "bad-creds", KFSERVING_GROUP, secret_name="wrongsecret",
                          service_account="wrong-sa", secret_key="not-the-key")
    k8s.apply_all(kube, manifests.render("s3_secret.yaml", **values))
    k8s.apply_all(kube, manifests.render("multi_model_triton_server.yaml", **values))
    # A cluster runs the pod anyway: the server is Ready, the agent fails at download time. The
    # local stack also says why, in an Event on the InferenceService.
    wait_ready(kube, "inferenceservices", "bad-creds")
    wait_event(kube, "bad-creds", "S3CredentialsProblem", "refused the credentials")

    values.update(server_name="no-sa", service_account="missing-sa")
    k8s.apply_all(kube, manifests.render("multi_model_triton_server.yaml", **values))
    wait_failed(kube, "inferenceservices", "no-sa", "not found")

    # Fixing the Secret is not enough, as with a pod: its env was taken when the server started.
    values.update(service_account="wrong-sa", secret_key=creds.secret_key)
    k8s.apply_all(kube, manifests.render("s3_secret.yaml", **values))
    bad = trained_model("via-bad-creds", models["cifar10"])
    bad["spec"]["inferenceService"] = "bad-creds"
    k8s.apply(kube, bad)
    poll_until(lambda: "Failed to download model via-bad-creds with err" in
               (stack.logs / f"agent-{NS}.bad-creds.log").read_text(), "the agent to give up on via-bad-creds", 180)
    # A new pod (here: the InferenceService made again) takes the fixed Secret.
    custom(kube).delete_namespaced_custom_object(KFSERVING_GROUP, "v1beta1", NS, "inferenceservices", "bad-creds")
    poll_until(lambda: not (stack.servers_dir / f"{NS}.bad-creds").exists(), "bad-creds server stopped", 60)
    wait_deleted(kube, "trainedmodels", "via-bad-creds")  # KServe deletes it with its InferenceService
    values.update(server_name="bad-creds")
    k8s.apply_all(kube, manifests.render("multi_model_triton_server.yaml", **values))
    wait_ready(kube, "inferenceservices", "bad-creds")
    k8s.apply(kube, bad)
    log = stack.logs / f"agent-{NS}.bad-creds.log"
    poll_until(lambda: '"successFile"' in log.read_text() and "via-bad-creds/SUCCESS." in log.read_text(),
               "the download with the fixed Secret", timeout=120)

    for name in ("bad-creds", "no-sa"):
        custom(kube).delete_namespaced_custom_object(KFSERVING_GROUP, "v1beta1", NS, "inferenceservices", name)
    poll_until(lambda: not (stack.servers_dir / f"{NS}.bad-creds").exists(), "bad-creds server stopped", 60)


def test_multi_model_server_flag_off_is_reported(stack: Stack, kube, server) -> None:
    core = client.CoreV1Api(kube)
    cm = core.read_namespaced_config_map("inferenceservice-config", "kfserving-system")
    original = cm.data["predictors"]
    flipped = json.loads(original)
    flipped["triton"]["multiModelServer"] = False
    core.patch_namespaced_config_map("inferenceservice-config", "kfserving-system", {"data": {"predictors": json.dumps(flipped)}})
    try:
        values = guide_values(stack, NS, "flag-off", KFSERVING_GROUP)
        k8s.apply_all(kube, manifests.render("multi_model_triton_server.yaml", **values))
        message = wait_failed(kube, "inferenceservices", "flag-off", "multiModelServer")["message"]
        assert "kubectl edit cm inferenceservice-config -n kfserving-system" in message
    finally:
        core.patch_namespaced_config_map("inferenceservice-config", "kfserving-system", {"data": {"predictors": original}})
        custom(kube).delete_namespaced_custom_object(KFSERVING_GROUP, "v1beta1", NS, "inferenceservices", "flag-off")


def test_models_json_past_one_mib_is_refused_and_the_agent_keeps_the_last_good_list(stack: Stack, kube,
                                                                                    server) -> None:
    """As every release does (issue 24): the controller writes the whole list, the API server refuses a
    ConfigMap over 1 MiB (422, `Too long`), the controller logs the error and tries again, no Event or
    condition says so, the TrainedModel still reads Ready (its conditions are set before the write), and
    the agent's file keeps the last list the ConfigMap held. Two 600 KB storageUris make it happen."""
    config_file = stack.servers_dir / f"{NS}.{SERVER}" / "configs" / "models.json"
    cm_name = f"modelconfig-{SERVER}-0"
    core = client.CoreV1Api(kube)

    def in_config(name: str) -> bool:
        data = core.read_namespaced_config_map(cm_name, NS).data or {}
        return name in {e["modelName"] for e in json.loads(data.get("models.json", "[]"))}

    padding = "p" * 600_000
    first, second = "huge-first", "huge-second"
    custom(kube).create_namespaced_custom_object(KFSERVING_GROUP, "v1alpha1", NS, "trainedmodels",
                                                 trained_model(first, f"s3://{BUCKET}/{padding}-1"))
    poll_until(lambda: in_config(first), f"{first} in models.json", 60, 0.2)
    try:
        custom(kube).create_namespaced_custom_object(KFSERVING_GROUP, "v1alpha1", NS, "trainedmodels",
                                                     trained_model(second, f"s3://{BUCKET}/{padding}-2"))
        wait_ready(kube, "trainedmodels", second, timeout=60)  # Ready: handed over, as upstream says it
        refused = poll_until(lambda: "Too long: must have at most 1048576 bytes" in controller_log(stack),
                             "the controller to log the refused ConfigMap", 60, 0.2)
        assert refused
        assert not in_config(second) and in_config(first)
        agent_list = {e["modelName"] for e in json.loads(config_file.read_text())}
        assert second not in agent_list and first in agent_list
        assert core.read_namespaced_config_map(cm_name, NS).data["models.json"].startswith('[{"modelName":')
        told = [e for e in core.list_namespaced_event(NS).items if e.involved_object.name == second]
        assert told == []  # no release records this failure as an Event
    finally:
        for name in (second, first):
            try:
                custom(kube).delete_namespaced_custom_object(KFSERVING_GROUP, "v1alpha1", NS, "trainedmodels", name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        for name in (second, first):
            wait_deleted(kube, "trainedmodels", name)
    assert not in_config(first) and not in_config(second)
