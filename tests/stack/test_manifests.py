"""helpers.clients.manifests: the guide's YAML rendered for any namespace, names and API group, masked for
display, and applied (idempotently) to the real apiserver for both API groups."""
from __future__ import annotations

import pytest
import yaml
from kubernetes import client

from helpers.clients import manifests
from helpers.core.constants import API_GROUPS, KFSERVING_GROUP, KSERVE_GROUP, api_group
from helpers.core.errors import SetupError

ACCESS, SECRET = "AKIA:#weird key", "0123"  # YAML-hostile and number-like on purpose


def values(group: str, namespace: str = "team-a", **extra: str) -> dict:
    return {"namespace": namespace, "server_name": "tri-server", "bucket": "models-bkt", "api_group": group,
            "access_key": ACCESS, "secret_key": SECRET, **extra}


def all_docs(group: str, namespace: str = "team-a") -> dict[str, list[dict]]:
    out = {}
    for name in manifests.names():
        model = manifests.MODEL_NAMES.get(name)
        out[name] = manifests.render(name, **values(group, namespace, **({"model_name": model} if model else {})))
    return out


def test_every_manifest_is_listed() -> None:
    assert manifests.names() == ["external_service", "knative_config_deployment_patch", "multi_model_triton_server",
                                 "predictor_authorization_policy", "profile", "s3_secret", "trained_model1",
                                 "trained_model2", "trainedmodel_editor", "triton_repository_server"]


@pytest.mark.parametrize("group", API_GROUPS)
def test_render_every_manifest_for_each_group(group: str) -> None:
    docs = all_docs(group)
    ag = api_group(group)
    (isvc,) = docs["multi_model_triton_server"]
    assert isvc["apiVersion"] == ag.isvc_api_version and isvc["metadata"] == {
        "name": "tri-server", "namespace": "team-a",
        # Istio starts the app only once its proxy is up (the sidecar race, kserve/kserve#1370)
        "annotations": {"proxy.istio.io/config": '{"holdApplicationUntilProxyStarts": true}'}}
    assert "storageUri" not in isvc["spec"]["predictor"]["triton"]
    (repository,) = docs["triton_repository_server"]  # a server of the models it starts with: the folder 03 fills
    assert repository["spec"]["predictor"]["triton"]["storageUri"] == "s3://models-bkt/torchscript"
    assert repository["spec"]["predictor"]["serviceAccountName"] == manifests.DEFAULTS["service_account"]
    assert repository["apiVersion"] == ag.isvc_api_version and repository["metadata"]["name"] == "tri-server"
    assert isvc["spec"]["predictor"]["serviceAccountName"] == manifests.DEFAULTS["service_account"]
    secret, account = docs["s3_secret"]
    notes = secret["metadata"]["annotations"]
    assert set(notes) == {ag.s3_endpoint, ag.s3_usehttps, ag.s3_region, ag.s3_usevirtualbucket}
    # What KServe's agent needs on every release: a region (MissingRegion otherwise) and path-style
    # addressing (<bucket>.minio-service.kubeflow does not resolve).
    assert notes[ag.s3_region] == "us-east-1" and notes[ag.s3_usevirtualbucket] == "false"
    assert secret["metadata"]["annotations"][ag.s3_usehttps] == "0"
    assert secret["stringData"] == {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET}
    assert account["secrets"] == [{"name": secret["metadata"]["name"]}]
    tm1, tm2 = docs["trained_model1"][0], docs["trained_model2"][0]
    assert tm1["apiVersion"] == ag.tm_api_version and tm1["metadata"]["name"] == "cifar10"
    assert tm1["spec"] == {"inferenceService": "tri-server", "model": {
        "framework": "pytorch", "storageUri": "s3://models-bkt/torchscript/cifar10", "memory": "1Gi"}}
    assert tm2["spec"]["model"]["storageUri"] == "s3://models-bkt/models/inception_graphdef"
    assert tm2["metadata"]["name"] == "inception"
    assert docs["profile"][0]["metadata"]["name"] == "team-a"
    assert docs["external_service"][0]["metadata"]["namespace"] == "team-a"
    assert [d["data"] for d in docs["knative_config_deployment_patch"]] == [
        {"registriesSkippingTagResolving": "nvcr.io"}, {"progressDeadline": "600s"}]
    role, binding = docs["trainedmodel_editor"]  # KServe 0.15+'s kubeflow-kserve-edit verbs, for default-editor
    assert role["rules"] == [{"apiGroups": [group], "resources": ["trainedmodels"], "verbs": [
        "get", "list", "watch", "create", "delete", "deletecollection", "patch", "update"]}]
    assert role["metadata"] == binding["metadata"] == {"name": "trainedmodel-editor", "namespace": "team-a"}
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "trainedmodel-editor"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "default-editor", "namespace": "team-a"}]


def test_nothing_of_the_guide_defaults_leaks_into_other_settings() -> None:
    text = yaml.safe_dump(all_docs(KSERVE_GROUP))
    for default in ("triton-mms", "namespace: mms", "s3://triton/", KFSERVING_GROUP):
        assert default not in text


def test_missing_value_names_the_placeholder() -> None:
    with pytest.raises(SetupError) as err:
        manifests.render("trained_model1", namespace="x", api_group=KFSERVING_GROUP, bucket="b", server_name="s")
    assert "model_name" in err.value.cause and "model_name=..." in err.value.fix


def test_unknown_manifest_lists_the_known_ones() -> None:
    with pytest.raises(SetupError) as err:
        manifests.render("nope")
    assert "s3_secret" in err.value.fix


def test_to_yaml_masks_secret_values_and_round_trips() -> None:
    docs = manifests.render("s3_secret", **values(KFSERVING_GROUP))
    text = manifests.to_yaml(docs)
    assert ACCESS not in text and SECRET not in text and manifests.MASK in text
    assert [d["kind"] for d in yaml.safe_load_all(text)] == ["Secret", "ServiceAccount"]
    assert docs[0]["stringData"]["AWS_SECRET_ACCESS_KEY"] == SECRET  # the rendered docs are untouched
    data_secret = [{"kind": "Secret", "data": {"k": "c2VjcmV0"}}]
    assert "c2VjcmV0" not in manifests.to_yaml(data_secret)
    assert SECRET in manifests.to_yaml(docs, mask_secrets=False)


def test_show_prints_masked_yaml_and_the_kubectl_hint(capsys: pytest.CaptureFixture) -> None:
    manifests.show(manifests.render("s3_secret", **values(KSERVE_GROUP)), "s3_secret")
    out = capsys.readouterr().out
    assert "kubectl apply -f -" in out and ACCESS not in out and SECRET not in out


# --- against the real apiserver -------------------------------------------------------------
def dry_run(kube, doc: dict) -> None:
    """`kubectl apply --dry-run=server`: schema, pruning and admission webhooks, nothing stored."""
    from kubernetes.dynamic import DynamicClient

    resource = DynamicClient(kube).resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    resource.create(body=doc, namespace=doc["metadata"].get("namespace"), dry_run="All")



@pytest.mark.stack
@pytest.mark.parametrize("profile, group", [("kfserving-0.5", KFSERVING_GROUP), ("kubeflow-1.10", KSERVE_GROUP)])
def test_apply_every_rendered_manifest_twice(request, profile: str, group: str) -> None:
    """On a stack of each profile, every manifest passes the CRD schemas and the release's admission
    webhooks (server-side dry-run first, then for real); applying again changes nothing."""
    kube = request.getfixturevalue("kube" if profile == "kfserving-0.5" else "kserve_kube")
    namespace = f"manifests-{group.split('.')[1]}"
    docs = all_docs(group, namespace)
    core = client.CoreV1Api(kube)
    try:
        manifests.apply(kube, docs["profile"])
        from helpers.clients.k8s import wait_namespace

        wait_namespace(kube, namespace)
        names = ("s3_secret", "external_service", "multi_model_triton_server", "trained_model1", "trained_model2",
                 "trainedmodel_editor")
        for name in (*names, "triton_repository_server"):  # the last one only dry-run: it would start a server
            for doc in docs[name]:
                dry_run(kube, doc)
        first = []
        for name in names:
            first += manifests.apply(kube, docs[name])
        again = []
        for name in names:
            again += manifests.apply(kube, docs[name])
        assert manifests.summary(first) == manifests.summary(again) == [
            f"Secret {namespace}/mysecret", f"ServiceAccount {namespace}/sa", f"Service {namespace}/minio-service",
            f"InferenceService {namespace}/tri-server", f"TrainedModel {namespace}/cifar10",
            f"TrainedModel {namespace}/inception", f"Role {namespace}/trainedmodel-editor",
            f"RoleBinding {namespace}/trainedmodel-editor"]
        secret = core.read_namespaced_secret("mysecret", namespace)
        assert set(secret.data) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        stored = client.CustomObjectsApi(kube).get_namespaced_custom_object(
            group, "v1alpha1", namespace, "trainedmodels", "cifar10")
        assert stored["spec"]["model"]["storageUri"] == "s3://models-bkt/torchscript/cifar10"
    finally:
        client.CustomObjectsApi(kube).delete_cluster_custom_object("kubeflow.org", "v1", "profiles", namespace)
        try:
            core.delete_namespace(namespace)
        except client.exceptions.ApiException:
            pass
