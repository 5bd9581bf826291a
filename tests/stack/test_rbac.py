"""Kubeflow's RBAC and gateway auth on the local stack, per version profile.

The learner is what a Kubeflow Notebook pod runs as: the `default-editor` service account of its
Profile's namespace. Its rights come only from the aggregated ClusterRoles of the release
(`helpers/local/cluster/rbac.py`), which kube-controller-manager aggregates; the gateway lets an identity
through only with a session or token and rights in the InferenceService's namespace.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import requests
from kubernetes import client
from kubernetes import config as kconfig
from kubernetes.client.exceptions import ApiException

from helpers.clients import k8s as k8s_apply
from helpers.clients import manifests
from helpers.core.config import identity_dir
from helpers.core.wait import poll_until
from helpers.local.cluster import authz, gateway, rbac
from helpers.local.cluster.identity import LEARNER_SERVICE_ACCOUNT
from helpers.local.stack.releases import PROFILES
from helpers.local.stack.releases import get as get_profile
from helpers.local.stack.stack import Stack
from support.guide_steps import guide_values

NS, OTHER, SERVER = "rbac-learner", "rbac-other", "triton-rbac"
HOST = f"{SERVER}.{NS}.example.com"


# --- without a stack ----------------------------------------------------------------------------
def test_the_serving_edit_role_grants_trainedmodels_only_from_kserve() -> None:
    for name, granted in (("kfserving-0.5", False), ("kubeflow-1.10.0", False), ("kubeflow-1.10", True), ("kubeflow-1.11", True)):
        profile = get_profile(name)
        roles = {r["metadata"]["name"]: r for r in rbac.role_manifests(profile)}
        app = "kfserving" if name == "kfserving-0.5" else "kserve"
        edit = roles[f"kubeflow-{app}-edit"]
        assert edit["metadata"]["labels"] == {f"{rbac.AGGREGATE}kubeflow-edit": "true",
                                              f"{rbac.AGGREGATE}kubeflow-{app}-admin": "true"}
        serving = [r for r in edit["rules"] if r["apiGroups"] == [profile.group]]
        assert ("trainedmodels" in serving[0]["resources"]) is granted
        assert "inferenceservices" in serving[0]["resources"]
        for aggregated in ("kubeflow-admin", "kubeflow-edit", "kubeflow-view", f"kubeflow-{app}-admin"):
            assert "rules" not in roles[aggregated] and roles[aggregated]["aggregationRule"]
    # kubeflow-view is aggregated into kubeflow-edit, which is aggregated into kubeflow-admin
    roles = {r["metadata"]["name"]: r for r in rbac.kubeflow_roles()}
    assert f"{rbac.AGGREGATE}kubeflow-edit" in roles["kubeflow-view"]["metadata"]["labels"]
    assert f"{rbac.AGGREGATE}kubeflow-admin" in roles["kubeflow-edit"]["metadata"]["labels"]


def test_the_admins_trainedmodels_role_grants_what_kserve_0_15_grants() -> None:
    """manifests/trainedmodel_editor.yaml gives default-editor on Kubeflow 1.3 the verbs KServe's own
    kubeflow-kserve-edit has on trainedmodels from 0.15 on."""
    roles = {r["metadata"]["name"]: r for r in rbac.role_manifests(get_profile("kubeflow-1.10"))}
    kserve = next(r for r in roles["kubeflow-kserve-edit"]["rules"] if "trainedmodels" in r["resources"])
    role, binding = manifests.render("trainedmodel_editor", namespace=NS, api_group="serving.kubeflow.org")
    assert role["rules"] == [{"apiGroups": ["serving.kubeflow.org"], "resources": ["trainedmodels"],
                              "verbs": kserve["verbs"]}]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": LEARNER_SERVICE_ACCOUNT, "namespace": NS}]


def test_every_route_asks_the_authorizer_when_the_gateway_is_guarded(tmp_path) -> None:
    routes = {"a.ns1.example.com": "127.0.0.1:1001", "b.ns2.example.com": "127.0.0.1:1002"}
    namespaces = {"a.ns1.example.com": "ns1", "b.ns2.example.com": "ns2"}
    guarded = gateway.render_config(tmp_path, 8080, routes, tmp_path / "access.log", 9999, namespaces)
    assert guarded.count("auth_request /_mms_auth;") == 2
    assert "proxy_set_header X-Mms-Namespace ns1;" in guarded and "proxy_set_header X-Mms-Namespace ns2;" in guarded
    assert guarded.count("proxy_pass http://127.0.0.1:9999;") == 4  # the check and the login answer, per route
    assert 'return 403 "RBAC: access denied";' in guarded
    assert "auth_request" not in gateway.render_config(tmp_path, 8080, routes, tmp_path / "access.log")


@pytest.mark.parametrize("name", list(PROFILES))
def test_without_a_session_the_gateway_answers_as_the_releases_auth_service(name: str, tmp_path) -> None:
    guard = authz.Authorizer(client.ApiClient(), get_profile(name), tmp_path)
    browser = guard.login("/v2/models/cifar10/ready", "text/html", "")
    if name == "kfserving-0.5":  # oidc-authservice: a redirect to Dex, for any client
        assert browser[0] == 302 and browser[1]["Location"].startswith(
            "/dex/auth?client_id=kubeflow-oidc-authservice&redirect_uri=%2Flogin%2Foidc&response_type=code")
        assert guard.login("/v2", "application/json", "Bearer x")[0] == 302
    else:  # oauth2-proxy: its sign-in page (403), 401 to JSON clients; Istio refuses a bad JWT
        assert browser[0] == 403 and "Sign in with Dex" in browser[2] and "/v2/models/cifar10/ready" in browser[2]
        assert guard.login("/v2", "application/json", "")[0] == 401
        assert guard.login("/v2", "*/*", "Bearer x")[:3:2] == (401, "Jwt verification fails")


def test_gateway_credentials_are_sent_but_shown_only_as_their_variables(monkeypatch, tmp_path) -> None:
    from helpers.clients.target import Local, ingress_credentials
    from helpers.steps.serving import endpoint as ep

    monkeypatch.setenv("MMS_INGRESS_TOKEN", "tok-SECRET")
    monkeypatch.setenv("MMS_INGRESS_COOKIE", "authservice_session=cookie-SECRET")
    sent = ingress_credentials()
    assert sent == {"Authorization": "Bearer tok-SECRET", "Cookie": "authservice_session=cookie-SECRET"}
    endpoint = ep.Endpoint("http://127.0.0.1:8080", {"Host": "h.ns.example.com", **sent})
    for shown in (repr(endpoint), ep.curl(endpoint, "/v2"), ep.curl(endpoint, "/v2", guide=False)):
        assert "SECRET" not in shown
    assert '-H "Authorization: Bearer ${MMS_INGRESS_TOKEN}"' in ep.curl(endpoint, "/v2")
    monkeypatch.delenv("MMS_INGRESS_TOKEN")
    monkeypatch.delenv("MMS_INGRESS_COOKIE")
    # on the local target, without them: what the stack published for the identity the API client is
    for name, token in (("admin", "admin-token"), ("learner-ns1", "learner-token")):
        (tmp_path / "identities" / name).mkdir(parents=True)
        (tmp_path / "identities" / name / "token").write_text(token + "\n")
        (tmp_path / "identities" / name / "cookie").write_text(f"authservice_session={name}\n")

    def as_kubeconfig(token: str) -> client.ApiClient:  # loaded as the notebooks load theirs
        path = tmp_path / f"{token}.kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
        return kconfig.new_client_from_config(config_file=str(path))
    # the session, as a signed-in browser sends it; never the token (a gateway refuses an account's token)
    assert Local(tmp_path).gateway_credentials(as_kubeconfig("learner-token")) == {
        "Cookie": "authservice_session=learner-ns1"}
    assert Local(tmp_path).gateway_credentials(as_kubeconfig("someone-else")) == {}
    assert Local(tmp_path).kubeconfig("learner", "ns1") == tmp_path / "identities" / "learner-ns1" / "kubeconfig"


# --- on a stack of each profile -----------------------------------------------------------------
@dataclass
class Guarded:
    stack: Stack
    admin: client.ApiClient
    learner: client.ApiClient
    group: str


def _profile(admin: client.ApiClient, stack: Stack, namespace: str, owner: str) -> None:
    k8s_apply.apply_all(admin, manifests.render("profile.yaml", namespace=namespace, owner=owner))
    poll_until(lambda: (identity_dir("learner", namespace, stack.root) / "kubeconfig").exists(),
               f"the learner identity of {namespace}", timeout=60, interval=0.2)


@pytest.fixture(scope="module", params=["kfserving-0.5", "kubeflow-1.10"])  # the session's two stacks
def guarded(request) -> Guarded:
    """Two Profiles made by the admin; the learner of the first one applies the guide's steps 01-02."""
    stack: Stack = request.getfixturevalue("stack" if request.param == "kfserving-0.5" else "kserve_stack")
    admin = kconfig.new_client_from_config(config_file=str(stack.kubeconfig))
    _profile(admin, stack, NS, "learner@example.com")
    _profile(admin, stack, OTHER, "other@example.com")
    learner = kconfig.new_client_from_config(
        config_file=str(identity_dir("learner", NS, stack.root) / "kubeconfig"))
    group = stack.profile().group
    values = guide_values(stack, NS, SERVER, group)
    for name in ("s3_secret.yaml", "external_service.yaml", "multi_model_triton_server.yaml"):
        k8s_apply.apply_all(learner, manifests.render(name, **values))  # as the learner: no 403
    return Guarded(stack, admin, learner, group)


def can_i(api: client.ApiClient, verb: str, resource: str, namespace: str = "", group: str = "",
          name: str = "") -> bool:
    spec = client.V1SelfSubjectAccessReviewSpec(resource_attributes=client.V1ResourceAttributes(
        verb=verb, resource=resource, group=group, namespace=namespace or None, name=name or None))
    review = client.AuthorizationV1Api(api).create_self_subject_access_review(
        client.V1SelfSubjectAccessReview(spec=spec))
    return bool(review.status.allowed)


@pytest.mark.controlplane
def test_kubeflow_edit_aggregates_the_releases_serving_rules(guarded: Guarded) -> None:
    def aggregated() -> list:
        role = client.RbacAuthorizationV1Api(guarded.admin).read_cluster_role("kubeflow-edit")
        return [r for r in role.rules or [] if r.api_groups == [guarded.group] and "create" in r.verbs]
    (rule,) = poll_until(aggregated, "kube-controller-manager to aggregate kubeflow-edit", timeout=60)
    assert tuple(rule.resources) == rbac.serving_edit_resources(guarded.stack.profile())


@pytest.mark.controlplane
def test_a_profile_gets_what_kubeflows_profile_controller_makes(guarded: Guarded) -> None:
    rbac_api, core = client.RbacAuthorizationV1Api(guarded.admin), client.CoreV1Api(guarded.admin)
    for sa, role in (("default-editor", "kubeflow-edit"), ("default-viewer", "kubeflow-view")):
        core.read_namespaced_service_account(sa, NS)
        binding = rbac_api.read_namespaced_role_binding(sa, NS)
        assert (binding.role_ref.kind, binding.role_ref.name) == ("ClusterRole", role)
        assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [("ServiceAccount", sa, NS)]
    owner = rbac_api.read_namespaced_role_binding("namespaceAdmin", NS)
    assert owner.role_ref.name == "kubeflow-admin"
    assert owner.metadata.annotations == {"user": "learner@example.com", "role": "admin"}
    assert [(s.kind, s.name) for s in owner.subjects] == [("User", "learner@example.com")]
    ns = core.read_namespace(NS)
    assert ns.metadata.annotations["owner"] == "learner@example.com"
    assert ns.metadata.labels["istio-injection"] == "enabled"
    # Kubeflow Pipelines' profile controller: MinIO's keys in the learner's own namespace
    secret = core.read_namespaced_secret("mlpipeline-minio-artifact", NS)
    import base64
    creds = guarded.stack.s3_credentials()
    assert {k: base64.b64decode(v).decode() for k, v in secret.data.items()} == {
        "accesskey": creds.access_key, "secretkey": creds.secret_key}
    folder = identity_dir("learner", NS, guarded.stack.root)
    for name in ("kubeconfig", "token", "cookie", "identity.json"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600
    assert folder.parent.stat().st_mode & 0o777 == 0o700
    who = json.loads((folder / "identity.json").read_text())
    assert who["user"] == f"system:serviceaccount:{NS}:{LEARNER_SERVICE_ACCOUNT}"


@pytest.mark.controlplane
def test_the_learner_may_do_what_default_editor_may_and_no_more(guarded: Guarded) -> None:
    api, group, kserve = guarded.learner, guarded.group, guarded.group == "serving.kserve.io"
    assert can_i(api, "create", "inferenceservices", NS, group)
    assert can_i(api, "create", "trainedmodels", NS, group) is kserve  # KServe >= 0.15 only
    for resource in ("secrets", "serviceaccounts", "services"):
        assert can_i(api, "create", resource, NS)
    assert can_i(api, "get", "secrets", NS) and can_i(api, "get", "pods", NS) and can_i(api, "get", "pods/log", NS)
    assert not can_i(api, "create", "inferenceservices", OTHER, group)  # another learner's namespace
    assert not can_i(api, "create", "profiles", group="kubeflow.org")
    assert not can_i(api, "patch", "configmaps", "knative-serving", name="config-deployment")
    for resource in ("pods", "secrets", "services"):
        assert not can_i(api, "get", resource, "kubeflow")
    assert not can_i(api, "create", "rolebindings", NS, "rbac.authorization.k8s.io")


@pytest.mark.controlplane
def test_the_learner_applies_the_guides_objects_but_reads_minio_keys_only_in_its_namespace(guarded: Guarded) -> None:
    core = client.CoreV1Api(guarded.learner)
    core.read_namespaced_secret("mysecret", NS)
    assert core.read_namespaced_service_account("sa", NS).secrets is not None
    assert core.read_namespaced_service("minio-service", NS).spec.type == "ExternalName"
    with pytest.raises(ApiException) as denied:
        core.read_namespaced_pod("minio", "kubeflow")  # 01's way on the guide's cluster: an admin's
    assert denied.value.status == 403
    with pytest.raises(ApiException) as denied:
        core.list_namespaced_service("kubeflow")
    assert denied.value.status == 403
    assert set(core.read_namespaced_secret("mlpipeline-minio-artifact", NS).data) == {"accesskey", "secretkey"}
    # yet `minio-service.kubeflow` resolves for it, as cluster DNS answers every pod
    from helpers.clients.target import Local
    s3_port = guarded.stack.env()["MMS_S3_ENDPOINT"]
    assert Local(guarded.stack.root).service_address(guarded.learner, "minio-service.kubeflow:9000", NS) == s3_port
    values = guide_values(guarded.stack, NS, SERVER, guarded.group, bucket="triton", model_name="rbac-model")
    tm = manifests.render("trained_model1.yaml", **values)
    if guarded.group == "serving.kserve.io":
        k8s_apply.apply_all(guarded.learner, tm)
        client.CustomObjectsApi(guarded.learner).delete_namespaced_custom_object(
            guarded.group, "v1alpha1", NS, "trainedmodels", "rbac-model")
    else:
        with pytest.raises(k8s_apply.ManifestRejected) as refused:
            k8s_apply.apply_all(guarded.learner, tm)
        assert refused.value.status == 403 and "trainedmodels" in refused.value.message


@pytest.mark.controlplane
def test_the_gateway_wants_a_session_and_rights_in_the_namespace(guarded: Guarded) -> None:
    stack = guarded.stack
    url = poll_until(lambda: stack.env().get("MMS_INGRESS_URL"), "the gateway", timeout=60)

    def get(headers: dict) -> requests.Response:
        return requests.get(f"{url}/v2", headers={"Host": HOST, **headers}, timeout=10, allow_redirects=False)

    def ready() -> bool:  # as a client waits (`kubectl wait`): the controller routes before it writes Ready
        isvc = client.CustomObjectsApi(guarded.admin).get_namespaced_custom_object(
            guarded.group, "v1beta1", NS, "inferenceservices", SERVER)
        return any(c["type"] == "Ready" and c["status"] == "True"
                   for c in (isvc.get("status") or {}).get("conditions", []))

    poll_until(ready, "the learner's InferenceService to be Ready", timeout=180, interval=0.5)
    if stack.profile().mesh:  # Kubeflow 1.10+: without the admin's opening (00) Istio refuses all (support/mesh_cases.py)
        k8s_apply.apply_all(guarded.admin, manifests.render("predictor_authorization_policy", namespace=NS))
    poll_until(lambda: get(stack.gateway_headers()).status_code == 200, "the gateway to let the admin through", timeout=15)
    def session(identity_name: str, namespace: str = "") -> dict:
        return stack.gateway_headers(identity_name, namespace)

    def token(identity_name: str, namespace: str = "") -> dict:
        path = identity_dir(identity_name, namespace or "mms", stack.root) / "token"
        return {"Authorization": f"Bearer {path.read_text().strip()}"}

    tokens = stack.profile().gateway_auth == "oauth2-proxy"  # Kubeflow 1.9+ reads tokens; 1.3's authservice: sessions only
    for who in (session("admin"), session("learner", NS)):
        answer = get(who)
        assert answer.status_code == 200 and answer.json()["name"] == "triton"
    # Tokens. 1.3: no session (Dex). 1.10/1.11 (`m2m-dex-only`): the admin's static token is no JWT (Istio: 401
    # `Jwt verification fails`); the namespace's service-account token is a JWT of an issuer the gateway's
    # RequestAuthentication does not name: 401 `Jwt issuer is not configured`, even with a session beside it.
    assert get(token("admin")).status_code == (401 if tokens else 302)
    learner_token = get(token("learner", NS))
    assert (learner_token.status_code, learner_token.text) == ((401, "Jwt issuer is not configured") if tokens
                                                               else (302, ""))
    assert get({**token("learner", NS), **session("learner", NS)}).status_code == (401 if tokens else 200)
    nobody = get({})
    if not tokens:
        assert nobody.status_code == 302 and nobody.headers["Location"].startswith("/dex/auth?")
        assert get({"Authorization": "Bearer not-a-token"}).status_code == 302
        assert get({"Cookie": "authservice_session=forged"}).status_code == 302
    else:
        assert nobody.status_code == 403 and "Sign in with Dex" in nobody.text
        assert get({"Authorization": "Bearer not-a-token"}).status_code == 401
        assert get({"Cookie": "oauth2_proxy_kubeflow=forged"}).status_code == 403  # the sign-in page again
    denied = get(session("learner", OTHER))
    assert (denied.status_code, denied.text) == (403, "RBAC: access denied")
    # the cluster-local address (what a Notebook pod tries first) needs no session (on Kubeflow 1.10+: with the opening)
    from helpers.clients.k8s import resolve_url
    isvc = client.CustomObjectsApi(guarded.admin).get_namespaced_custom_object(
        guarded.group, "v1beta1", NS, "inferenceservices", SERVER)
    direct = resolve_url(guarded.admin, isvc["status"]["address"]["url"], NS).rstrip("/")
    assert requests.get(f"{direct}/v2/health/live", timeout=10).status_code == 200


@pytest.mark.controlplane
def test_env_for_the_learner_names_files_never_secrets(guarded: Guarded) -> None:
    stack = guarded.stack
    env = {**os.environ, "MMS_STATE_DIR": str(stack.root)}
    done = subprocess.run([sys.executable, "-m", "helpers.local", "env", "--identity", "learner", "--namespace", NS],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    folder = identity_dir("learner", NS, stack.root)
    assert f"export KUBECONFIG={folder / 'kubeconfig'}" in done.stdout
    assert f'export MMS_INGRESS_COOKIE="$(cat {folder / "cookie"})"' in done.stdout
    assert "MMS_INGRESS_TOKEN" not in done.stdout  # a gateway refuses the account's token: the session only
    for secret in ((folder / "token").read_text().strip(), (folder / "cookie").read_text().strip().split("=", 1)[1]):
        assert secret not in done.stdout
    whoami = subprocess.run(["bash", "-c", 'eval "$(python -m helpers.local env --identity learner --namespace '
                             f'{NS})" && kubectl auth can-i create trainedmodels.{guarded.group}'],
                            env={**env, "PATH": os.path.dirname(sys.executable) + os.pathsep + env["PATH"]},
                            capture_output=True, text=True, timeout=60)
    assert whoami.stdout.strip() == ("yes" if guarded.group == "serving.kserve.io" else "no"), whoami.stderr
    missing = subprocess.run([sys.executable, "-m", "helpers.local", "env", "--identity", "learner",
                              "--namespace", "no-such-profile"], env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no learner identity for namespace 'no-such-profile'" in missing.stderr
    assert "create the Profile" in missing.stderr


@pytest.mark.controlplane
def test_a_deleted_profile_withdraws_its_learner_identity(guarded: Guarded) -> None:
    stack, gone = guarded.stack, "rbac-gone"
    _profile(guarded.admin, stack, gone, "gone@example.com")
    client.CustomObjectsApi(guarded.admin).delete_cluster_custom_object("kubeflow.org", "v1", "profiles", gone)
    poll_until(lambda: not identity_dir("learner", gone, stack.root).exists(), "the learner folder to go",
               timeout=60, interval=0.2)
    assert (identity_dir("learner", NS, stack.root) / "token").exists()
