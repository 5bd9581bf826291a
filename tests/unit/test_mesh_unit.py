"""Istio's AuthorizationPolicy verdicts at the predictor (helpers/local/cluster/mesh.py), without a stack."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers.clients import manifests
from helpers.local.cluster import mesh
from helpers.local.stack.releases import PROFILES

NS, OWNER, ISVC = "team-a", "learner@example.com", "triton-mms"
PREDICTOR = {"serving.kserve.io/inferenceservice": ISVC, "component": "predictor",
             "serving.knative.dev/service": f"{ISVC}-predictor"}
KUBEFLOW = [mesh.global_deny_all(), mesh.owner_access(NS, OWNER)]


def opening() -> dict:
    (policy,) = manifests.render("predictor_authorization_policy", namespace=NS)
    return policy


def verdict(policies, path="/v2/health/live", headers=None, source=mesh.THROUGH_LOCAL_GATEWAY, labels=None,
            method="GET") -> bool:
    request = mesh.Request(path, method, headers or {}, source)
    return mesh.decide(policies, NS, labels or PREDICTOR, request).allowed


def test_the_mesh_is_on_the_kubeflow_profiles_only() -> None:
    assert {name for name, p in PROFILES.items() if p.mesh} == {"kubeflow-1.10.0", "kubeflow-1.10", "kubeflow-1.11"}


def test_no_policy_allows_everything_and_global_deny_all_alone_denies_everything() -> None:
    assert verdict([])
    assert not verdict([mesh.global_deny_all()])
    assert not verdict([mesh.global_deny_all()], source=mesh.Source.workload(NS))


def test_ns_owner_access_as_the_v1_10_controller_writes_it() -> None:
    owner = {mesh.USERID_HEADER: OWNER}
    # the owner's header straight from the ingress gateway passes; through the local gateway it does not
    assert verdict(KUBEFLOW, headers=owner, source=mesh.Source(mesh.INGRESS_GATEWAY))
    assert not verdict(KUBEFLOW, headers=owner)
    assert not verdict(KUBEFLOW)  # the cluster-local address, no header
    # a workload of the namespace passes, one of another namespace does not
    assert verdict(KUBEFLOW, source=mesh.Source.workload(NS))
    assert not verdict(KUBEFLOW, source=mesh.Source.workload("team-b"))
    # Knative's probe paths pass from anywhere
    for path in mesh.PROBE_PATHS:
        assert verdict(KUBEFLOW, path=path, source=mesh.Source.workload("knative-serving", "activator"))
    assert verdict(KUBEFLOW, path="/api/v1/kernels/api/kernels", source=mesh.Source(mesh.NOTEBOOK_CONTROLLER))
    assert not verdict(KUBEFLOW, path="/x/api/kernels", method="POST", source=mesh.Source(mesh.NOTEBOOK_CONTROLLER))


def test_the_opening_allows_v2_through_the_local_gateway_at_predictors_only() -> None:
    policies = [*KUBEFLOW, opening()]
    assert verdict(policies)
    assert verdict(policies, path="/v2/models/cifar10/infer", method="POST")
    assert verdict(policies, path="/v2")
    assert verdict(policies, labels={"serving.kserve.io/inferenceservice": "other", "component": "predictor"})
    assert not verdict(policies, path="/v1/models/x")  # only the V2 paths
    assert not verdict(policies, path="/v2x")
    assert not verdict(policies, labels={"notebook-name": "mine"})  # not a predictor: a notebook's pod
    assert not verdict(policies, labels={**PREDICTOR, "component": "transformer"})
    assert not verdict(policies, source=mesh.Source.workload("team-b"))  # straight from another namespace


def test_a_policy_in_another_namespace_does_not_apply() -> None:
    elsewhere = {**opening(), "metadata": {"name": "x", "namespace": "team-b"}}
    assert not verdict([*KUBEFLOW, elsewhere])


def test_deny_wins_and_string_matching_is_istios() -> None:
    allow_all = {"metadata": {"name": "allow-all", "namespace": NS}, "spec": {"rules": [{}]}}
    deny = {"metadata": {"name": "no-infer", "namespace": NS},
            "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["*/infer"]}}]}]}}
    assert verdict([*KUBEFLOW, allow_all])
    assert not verdict([*KUBEFLOW, allow_all, deny], path="/v2/models/m/infer")
    assert verdict([*KUBEFLOW, allow_all, deny], path="/v2/models/m/ready")
    jwt_only = {"metadata": {"name": "jwt", "namespace": NS},
                "spec": {"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]}}
    assert not verdict([mesh.global_deny_all(), jwt_only])  # no hop to the predictor carries a checked JWT


@pytest.mark.parametrize("name", ["predictor_authorization_policy", "multi_model_triton_server"])
def test_the_manifests_say_what_the_mesh_needs(name: str) -> None:
    text = Path(manifests.path(name)).read_text()
    if name == "multi_model_triton_server":
        assert "holdApplicationUntilProxyStarts" in text
    else:
        assert opening()["spec"]["selector"]["matchLabels"] == {"component": "predictor"}


# --- the ingress gateway's tokens (helpers/local/cluster/authz.py) on Kubeflow 1.10/1.11's `m2m-dex-only` -------
def jwt(claims: dict) -> str:
    import base64
    import json

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part(claims)}.c2ln"


SERVICE_ACCOUNT_ISSUERS = ("kubernetes/serviceaccount", "https://kubernetes.default.svc.cluster.local",
                           "https://kubernetes.default.svc")


@pytest.mark.parametrize("name", ["kubeflow-1.10.0", "kubeflow-1.10", "kubeflow-1.11", "kfserving-0.5"])
def test_a_gateway_that_trusts_only_dex_refuses_a_service_account_token(name: str, tmp_path) -> None:
    """Kubeflow 1.10/1.11's default install names one issuer, Dex's: a service-account JWT (a legacy token's
    issuer or a bound token's) gets Envoy's 401 `Jwt issuer is not configured`, before anyone asks who it is;
    a token that is no JWT stays `Jwt verification fails`. Kubeflow 1.0's authservice: a redirect, as before."""
    from kubernetes import client

    from helpers.local.cluster import authz

    guard = authz.Authorizer(client.ApiClient(), PROFILES[name], tmp_path)  # no apiserver: none may be asked
    for issuer in SERVICE_ACCOUNT_ISSUERS:
        bearer = f"Bearer {jwt({'iss': issuer, 'sub': 'system:serviceaccount:team-a:default-editor'})}"
        if name == "kfserving-0.5":
            assert guard.check(NS, bearer, "") == (401, "no session")
            assert guard.login("/v2", "*/*", bearer)[0] == 302
            continue
        assert guard.check(NS, bearer, "") == (401, "unknown-issuer"), issuer
        assert guard.login("/v2", "*/*", bearer) == (401, {"Content-Type": "text/plain"}, "Jwt issuer is not configured")
    if name != "kfserving-0.5":
        for bad in ("Bearer not-a-token", f"Bearer {jwt({'sub': 'no issuer'})}", "Bearer a.b.c"):
            assert guard.check(NS, bad, "") == (401, "bad-token"), bad
            assert guard.login("/v2", "*/*", bad)[2] == "Jwt verification fails", bad


def test_jwt_issuer_reads_the_claim_only() -> None:
    from helpers.local.cluster import authz

    assert authz.jwt_issuer(jwt({"iss": authz.DEX_ISSUER})) == "http://dex.auth.svc.cluster.local:5556/dex"
    assert authz.jwt_issuer("x.y") is None and authz.jwt_issuer("a.!!!.c") is None
    assert authz.jwt_issuer(jwt({"iss": 7})) is None
