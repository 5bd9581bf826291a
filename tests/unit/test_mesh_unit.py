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
