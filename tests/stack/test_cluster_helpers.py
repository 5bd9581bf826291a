"""preflight, inference, knative, endpoint and kubeflow_minio against the real apiserver of the session's local stack:
what they find, and the messages (with fixes) they give when something is missing."""
from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers.clients import inference
from helpers.clients.k8s import apply
from helpers.clients.target import Endpoint, Local
from helpers.core.constants import KFSERVING_GROUP, KSERVE_GROUP, ApiGroup, api_group
from helpers.core.errors import SetupError
from helpers.core.wait import poll_until
from helpers.steps.models import agent_log
from helpers.steps.objectstore import kubeflow_minio
from helpers.steps.prep import knative, preflight
from helpers.steps.serving.endpoint import curl

NAMESPACE = "helpers-test"


@pytest.fixture(scope="module")
def ns(kube) -> str:
    apply(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    return NAMESPACE


# --- preflight ---------------------------------------------------------------------------------


@pytest.mark.stack
@pytest.mark.parametrize("profile, group", [("kfserving-0.5", KFSERVING_GROUP), ("kubeflow-1.10", KSERVE_GROUP)])
def test_preflight_passes_on_the_local_stack(request, profile: str, group: str) -> None:
    kube = request.getfixturevalue("kube" if profile == "kfserving-0.5" else "kserve_kube")
    ns = NAMESPACE
    assert preflight.served_api_group(kube) == group
    checks = preflight.run(kube, api_group(group), ns)
    assert [c.name for c in checks if c.ok is not True] == []
    assert len(checks) == 1 + 3 + 1 + len(preflight.permissions_needed(api_group(group), ns))
    preflight.require_ok(checks)
    table = preflight.render(checks)
    assert "multiModelServer" in table and f"trainedmodels.{group}" in table


@pytest.mark.stack
def test_preflight_names_the_multi_model_server_fix(kube) -> None:
    core = client.CoreV1Api(kube)
    cm = core.read_namespaced_config_map("inferenceservice-config", "kfserving-system")
    original = cm.data["predictors"]
    predictors = json.loads(original)
    predictors["triton"]["multiModelServer"] = False  # as KFServing 0.5.1 ships it
    core.patch_namespaced_config_map("inferenceservice-config", "kfserving-system",
                                     {"data": {"predictors": json.dumps(predictors)}})
    try:
        check = preflight.check_multi_model_server(kube, api_group(KFSERVING_GROUP))
        assert check.ok is False and "false" in check.message and "0.5.1" in check.message
        assert "kubectl edit cm inferenceservice-config -n kfserving-system" in check.fix
        with pytest.raises(SetupError) as err:
            preflight.require_ok([check])
        assert "kubectl edit cm" in err.value.fix
    finally:
        core.patch_namespaced_config_map("inferenceservice-config", "kfserving-system",
                                         {"data": {"predictors": original}})


@pytest.mark.stack
def test_preflight_on_kserve_has_nothing_to_switch_on(kserve_kube) -> None:
    check = preflight.check_multi_model_server(kserve_kube, api_group(KSERVE_GROUP))
    assert check.ok is True and "kubeflow/inferenceservice-config" in check.message and "0.10" in check.message


@pytest.mark.stack
def test_preflight_names_the_group_the_cluster_serves(kserve_kube) -> None:
    checks = preflight.check_crds(kserve_kube, api_group(KFSERVING_GROUP))
    assert [c.ok for c in checks] == [True, False, False]
    assert "this cluster serves serving.kserve.io instead" in checks[1].fix


@pytest.mark.stack
def test_preflight_missing_crds_suggest_the_other_group(kube) -> None:
    checks = preflight.check_crds(kube, ApiGroup("serving.example.io", "v1beta1", "v1alpha1"))
    assert [c.ok for c in checks] == [True, False, False]
    assert "serving.kubeflow.org" in checks[1].fix


@pytest.mark.stack
def test_preflight_permissions_of_an_account_with_no_roles(kube, ns: str) -> None:
    core = client.CoreV1Api(kube)
    apply(kube, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody", "namespace": ns}})

    def token() -> str:
        for secret in core.list_namespaced_secret(ns).items:
            if secret.type == "kubernetes.io/service-account-token" and \
                    (secret.metadata.annotations or {}).get("kubernetes.io/service-account.name") == "nobody":
                return base64.b64decode(secret.data["token"]).decode()
        return ""

    bearer = poll_until(token, "a token for service account nobody", timeout=30)
    config = client.Configuration(host=kube.configuration.host)
    config.ssl_ca_cert = kube.configuration.ssl_ca_cert
    config.api_key = {"authorization": f"Bearer {bearer}"}
    restricted = client.ApiClient(config)
    checks = preflight.check_permissions(restricted, api_group(KFSERVING_GROUP), ns)
    denied = [c for c in checks if c.ok is False]
    assert len(denied) == len(checks)
    assert all("ask the cluster's admin" in c.fix for c in denied if not c.admin_step)
    assert any("KServe 0.15" in c.fix for c in denied if "trainedmodels" in c.name)
    # The Profile, the Knative patches and the trainedmodels Role are an admin's: they never stop 00,
    # they are handed over.
    assert {c.admin_step for c in denied if c.admin_step} == {"profile", "knative", "trainedmodels"}
    assert not preflight.may(checks, "profile") and not preflight.may(checks, "knative")
    with pytest.raises(SetupError) as err:
        preflight.require_ok(checks)
    assert "profiles" not in err.value.cause and "can create secrets" in err.value.cause
    assert preflight.require_ok([c for c in checks if c.admin_step]) == ["knative", "profile", "trainedmodels"]


# --- knative, inference, endpoint -----------------------------------------------------------------------------------


@pytest.mark.stack
def test_knative_patches_are_idempotent(kube) -> None:
    from helpers.clients import manifests

    patches = manifests.render("knative_config_deployment_patch")
    first = knative.patch_config_deployment(kube, patches)
    assert [(c.key, c.after) for c in first] == [("registriesSkippingTagResolving", "nvcr.io"),
                                                  ("progressDeadline", "600s")]
    again = knative.patch_config_deployment(kube, patches)
    assert [c.changed for c in again] == [False, False]
    assert "already set, unchanged" in knative.describe_changes(again)
    # the guide's own lines, character for character (its JSON spacing differs between the two)
    assert knative.knative_patch_commands(patches).splitlines() == [
        "kubectl patch cm config-deployment --patch '{\"data\":{\"registriesSkippingTagResolving\":\"nvcr.io\"}}' "
        "-n knative-serving",
        "kubectl patch cm config-deployment --patch '{\"data\":{\"progressDeadline\": \"600s\"}}' -n knative-serving"]
    # the values found before the first change are saved once, come back, and the saved copy goes
    notes = client.CoreV1Api(kube).read_namespaced_config_map("config-deployment", "knative-serving").metadata.annotations
    saved = json.loads((notes or {}).get(knative.SAVED_ANNOTATION, "null"))
    if any(c.changed for c in first):
        assert saved == {c.key: c.before for c in first}
    restored = knative.restore_config_deployment(kube)
    assert {c.key: c.after for c in restored} == (saved or {})
    if restored:
        assert "--type merge" in knative.restore_command(restored)
    assert knative.restore_config_deployment(kube) == []


@pytest.mark.stack
def test_wait_ready_gives_up_with_the_conditions_and_their_fix(kube, ns: str) -> None:
    group = api_group(KFSERVING_GROUP)
    # A server whose service account is missing never gets Ready; nor does a TrainedModel on it.
    apply(kube, {"apiVersion": group.isvc_api_version, "kind": "InferenceService",
                 "metadata": {"name": "no-account", "namespace": ns},
                 "spec": {"predictor": {"serviceAccountName": "missing", "triton": {"runtimeVersion": "20.08-py3"}}}})
    tm = {"apiVersion": group.tm_api_version, "kind": "TrainedModel", "metadata": {"name": "waiting", "namespace": ns},
          "spec": {"inferenceService": "no-account",
                   "model": {"framework": "pytorch", "storageUri": "s3://b/p", "memory": "1Gi"}}}
    apply(kube, tm)
    with pytest.raises(SetupError) as err:
        inference.wait_ready(kube, group, inference.TM, "waiting", ns, timeout=60, false_grace=2, progress=False)
    assert "InferenceServiceNotReady" in err.value.cause and "Ready=False" in err.value.cause
    assert "02_server" in err.value.fix and "no-account" in err.value.fix
    with pytest.raises(SetupError) as missing:
        inference.wait_ready(kube, group, inference.ISVC, "never-made", ns, timeout=1, progress=False)
    assert "does not exist" in missing.value.cause
    with pytest.raises(SetupError) as needed:
        inference.require_ready(kube, group, inference.ISVC, "never-made", ns, "02_server")
    assert needed.value.fix == "run 02_server first, with the same settings"
    assert inference.delete(kube, group, inference.TM, "waiting", ns) is True
    assert inference.delete(kube, group, inference.ISVC, "no-account", ns) is True


def test_curl_through_the_ingress_uses_the_guides_variables(tmp_path) -> None:
    gateway = Endpoint("http://127.0.0.1", {"Host": "triton-mms.mms.example.com"})
    assert curl(gateway, "/v2/models/cifar10/ready").splitlines() == [
        "MODEL_NAME=cifar10", "# the guide's command, through the ingress gateway:",
        'curl -v -H "Host: ${SERVICE_HOSTNAME}" http://${CLUSTER_IP}/v2/models/${MODEL_NAME}/ready']
    request = tmp_path / "req" / "cifar10.json"
    infer = curl(gateway, "/v2/models/cifar10/infer", "POST", str(request)).splitlines()
    assert infer[0] == "MODEL_NAME=cifar10" and infer[2] == f"cd {request.parent}  # where this notebook wrote cifar10.json"
    assert infer[-1] == ('curl -v -X POST -H "Content-Type: application/json" -H "Host: ${SERVICE_HOSTNAME}" '
                         'http://${CLUSTER_IP}/v2/models/${MODEL_NAME}/infer -d @./${MODEL_NAME}.json')
    other_port = curl(Endpoint("http://127.0.0.1:8081", {"Host": "h"}), "/v2").splitlines()
    assert other_port[-1] == 'curl -v -H "Host: ${SERVICE_HOSTNAME}" ${MMS_INGRESS_URL}/v2'
    assert "http://127.0.0.1:8081" in other_port[-2]


def test_curl_and_agent_events() -> None:
    endpoint = Endpoint("http://10.0.0.1", {"Host": "triton-mms.mms.example.com"})
    assert curl(endpoint, "/v2/models/cifar10/infer", "POST", "./cifar10.json", guide=False) == (
        'curl -X POST -H "Content-Type: application/json" -H "Host: triton-mms.mms.example.com" '
        'http://10.0.0.1/v2/models/cifar10/infer -d @./cifar10.json')
    both = curl(Endpoint("http://127.0.0.1:8000", {}), "/v2").splitlines()
    assert both == ["# the guide, through the ingress:", 'curl -v -H "Host: ${SERVICE_HOSTNAME}" http://${CLUSTER_IP}/v2',
                    "# the same request on this target:", "curl http://127.0.0.1:8000/v2"]
    lines = [
        '{"level":"info","ts":100.0,"logger":"Watcher","msg":"Processing event","event":"CREATE"}',
        '{"level":"info","ts":100.1,"logger":"modelWatcher","msg":"adding model","modelName":"cifar10"}',
        '{"level":"info","ts":100.5,"logger":"Downloader","msg":"Creating successFile","modelName":"cifar10",'
        '"successFile":"/m/cifar10/SUCCESS.ab"}',
        '{"level":"info","ts":101.25,"logger":"modelProcessor","msg":"Successfully loaded model","modelName":"cifar10"}',
        '{"level":"info","ts":101.3,"logger":"modelWatcher","msg":"adding model","modelName":"other"}',
    ]
    text = agent_log.agent_events(lines, "cifar10")
    assert text.splitlines()[0].startswith("+  0.000s  Watcher")
    assert "+  1.250s  modelProcessor  Successfully loaded model" in text and "other" not in text
    assert [t["model"] for t in agent_log.timelines(lines, ["cifar10", "absent"])] == ["cifar10"]
    long = '{"level":"info","ts":100.6,"logger":"Downloader","msg":"x","modelName":"cifar10","dir":"/srv/a/b/c/models"}'
    assert "dir=.../c/models" in agent_log.agent_events(lines[:2] + [long] + lines[3:4], "cifar10")


# --- kubeflow_minio ---------------------------------------------------------------------------------


@pytest.mark.stack
def test_minio_credentials_and_service_as_the_guide_reads_them(kube, stack) -> None:
    creds = kubeflow_minio.minio_credentials(kube)
    expected = stack.s3_credentials()
    assert (creds.access_key, creds.secret_key) == (expected.access_key, expected.secret_key)
    assert expected.secret_key not in repr(creds) and "MINIO_ACCESS_KEY" in creds.source
    service = kubeflow_minio.minio_service(kube)
    assert service.address == "minio-service.kubeflow:9000"
    settings = kubeflow_minio.settings(kube, Local(stack.root), creds, service.address)
    assert settings.endpoint.startswith("127.0.0.1:") and expected.secret_key not in repr(settings)


@pytest.mark.stack
def test_missing_secret_says_to_run_01_minio(kube, stack, ns: str) -> None:
    with pytest.raises(SetupError) as err:
        kubeflow_minio.from_secret(kube, Local(stack.root), api_group(KFSERVING_GROUP), ns, "mysecret")
    assert "01_minio" in err.value.fix
    try:
        client.CoreV1Api(kube).read_namespaced_secret("mysecret", ns)
    except ApiException as exc:
        assert exc.status == 404
