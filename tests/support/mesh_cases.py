"""Istio's AuthorizationPolicies at the predictor, on both routes a learner has to the server: the cases,
run on each profile's stack by the file that already holds that stack.

On the Kubeflow profiles (1.10.0, 1.10, 1.11) the stack holds `global-deny-all` and the profile
controller's `ns-owner-access-istio`, and KServe's routes reach the predictor through
`knative-local-gateway`: without an opening, the gateway (with the owner's session) and the
cluster-local `status.address.url` both answer 403 `RBAC: access denied`; Knative's probe paths
pass; 00's narrow policy (`predictor_authorization_policy.yaml`) opens `/v2/*` through the local
gateway, while the ingress gateway still asks for a login with rights in the namespace. On the
guide's `kfserving-0.5` nothing at the predictor refuses.

A test file takes these cases with `from support.mesh_cases import *` and gives them a module-scoped
`routes` fixture from `mesh_routes(its stack)`: pytest collects them in that file, so no profile
starts a stack only for them. The cases keep to namespaces of their own (`mesh-a`, `mesh-b`).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

import pytest
import requests
from kubernetes import client

from helpers.clients import k8s, manifests
from helpers.core.config import identity_dir
from helpers.core.constants import api_group
from helpers.core.resources import notebooks_dir
from helpers.core.wait import poll_until
from helpers.local.cluster import mesh
from helpers.local.stack import controlplane
from helpers.local.stack.stack import Stack
from helpers.tools import walkthrough
from support.guide_steps import apply_guide_steps, guide_values
from support.stacks import pointed_at

NS, OTHER_NS, SERVER = "mesh-a", "mesh-b", "triton-mesh"
OWNER = "learner@example.com"
DENIED = (403, mesh.DENIED_BODY)
__all__ = ["test_the_profile_controller_and_istio_install_the_release_policies",
           "test_without_the_opening_both_routes_are_denied", "test_knatives_probe_paths_pass_on_both_routes",
           "test_the_opening_lets_v2_through_and_the_gateway_still_checks_the_login",
           "test_00_hands_the_opening_to_the_admin_as_the_learner_and_applies_it_as_the_admin",
           "test_the_doctor_names_the_closed_predictor_on_both_routes_and_is_quiet_once_it_is_open",
           "test_a_service_account_token_at_the_gateway_and_the_doctor_reading_it"]


class Routes:
    """The two ways to the server: the ingress gateway by Host with a session, and the cluster-local address."""

    def __init__(self, local: Stack, kube: client.ApiClient, group: str) -> None:
        self.local, self.kube, self.group = local, kube, api_group(group)
        isvc = client.CustomObjectsApi(kube).get_namespaced_custom_object(
            self.group.group, self.group.isvc_version, NS, "inferenceservices", SERVER)
        self.host = isvc["status"]["url"].split("://", 1)[1]
        self.cluster_local = k8s.resolve_url(kube, isvc["status"]["address"]["url"], NS)
        self.gateway = local.env()["MMS_INGRESS_URL"]

    def session(self, identity: str, namespace: str = NS) -> dict[str, str]:
        return {"Cookie": (identity_dir(identity, namespace, self.local.root) / "cookie").read_text().strip()}

    def through_gateway(self, path: str, headers: dict[str, str]) -> tuple[int, str]:
        answer = requests.get(f"{self.gateway}{path}", headers={"Host": self.host, **headers}, timeout=10,
                              allow_redirects=False)
        return answer.status_code, answer.text.strip()

    def local_address(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        answer = requests.get(f"{self.cluster_local}{path}", headers=headers or {}, timeout=10)
        return answer.status_code, answer.text.strip()


@contextlib.contextmanager
def mesh_routes(local: Stack) -> Iterator[Routes]:
    """The mesh namespaces and their server on `local`, this process pointed at it while the cases run."""
    profile = local.profile()
    with pointed_at(local):
        kube = controlplane.api_client(local.kubeconfig)
        apply_guide_steps(kube, guide_values(local, NS, SERVER, profile.group, owner=OWNER))
        apply_guide_steps(kube, guide_values(local, OTHER_NS, SERVER, profile.group, owner="other@example.com"),
                          server=False)
        group = api_group(profile.group)

        def ready() -> bool:
            found = client.CustomObjectsApi(kube).get_namespaced_custom_object(
                group.group, group.isvc_version, NS, "inferenceservices", SERVER)
            return any(c["type"] == "Ready" and c["status"] == "True"
                       for c in (found.get("status") or {}).get("conditions") or [])
        poll_until(ready, "the server to be Ready", timeout=180, interval=0.5)
        poll_until(lambda: (identity_dir("learner", OTHER_NS, local.root) / "cookie").exists(),
                   "the other namespace's learner", timeout=60, interval=0.5)
        found = Routes(local, kube, profile.group)
        found.profile = profile
        try:
            yield found
        finally:  # the stack goes on serving its own file's tests: its Triton process goes
            client.CustomObjectsApi(kube).delete_namespaced_custom_object(
                group.group, group.isvc_version, NS, "inferenceservices", SERVER)


def _opening(kube: client.ApiClient, apply: bool) -> None:
    policy = manifests.render("predictor_authorization_policy", namespace=NS)
    if apply:
        k8s.apply_all(kube, policy)
    else:
        try:
            client.CustomObjectsApi(kube).delete_namespaced_custom_object(
                mesh.GROUP, mesh.VERSION, NS, mesh.PLURAL, policy[0]["metadata"]["name"])
        except client.exceptions.ApiException as exc:
            assert exc.status == 404


def _eventually(what: str, probe, expected) -> None:
    """Policies reach the sidecar after a moment (as Istio's push does): wait a little for the answer."""
    poll_until(lambda: probe() == expected or None, what, timeout=15, interval=0.3)


def test_the_profile_controller_and_istio_install_the_release_policies(routes: Routes) -> None:
    custom = client.CustomObjectsApi(routes.kube)
    if not routes.profile.mesh:
        served = client.ApiextensionsV1Api(routes.kube).list_custom_resource_definition().items
        assert f"{mesh.PLURAL}.{mesh.GROUP}" not in {c.metadata.name for c in served}  # Istio 1.1/1.3: no such kind
        return
    owner = custom.get_namespaced_custom_object(mesh.GROUP, mesh.VERSION, NS, mesh.PLURAL, mesh.OWNER_POLICY)
    assert owner["spec"] == mesh.owner_access(NS, OWNER)["spec"]
    deny = custom.get_namespaced_custom_object(mesh.GROUP, mesh.VERSION, mesh.ROOT_NAMESPACE, mesh.PLURAL,
                                               mesh.GLOBAL_DENY)
    assert deny.get("spec") in ({}, None)


def test_without_the_opening_both_routes_are_denied(routes: Routes) -> None:
    _opening(routes.kube, apply=False)
    owner = routes.session("learner")
    if not routes.profile.mesh:  # the guide's cluster: nothing at the predictor refuses
        assert routes.through_gateway("/v2/health/live", owner)[0] == 200
        assert routes.local_address("/v2/health/live")[0] == 200
        return
    _eventually("the gateway to refuse", lambda: routes.through_gateway("/v2/health/live", owner), DENIED)
    assert routes.through_gateway("/v2", owner) == DENIED
    assert routes.local_address("/v2/health/live") == DENIED
    # the owner's header, sent to the cluster-local address, comes through the local gateway: still denied
    assert routes.local_address("/v2", {mesh.USERID_HEADER: OWNER}) == DENIED


def test_knatives_probe_paths_pass_on_both_routes(routes: Routes) -> None:
    if not routes.profile.mesh:
        pytest.skip("no mesh at the predictor on this profile")
    for path in mesh.PROBE_PATHS:  # Triton has no such path: its 404 shows the sidecar let it through
        assert routes.local_address(path)[0] != 403, path
        assert routes.through_gateway(path, routes.session("learner"))[0] != 403, path


def test_the_opening_lets_v2_through_and_the_gateway_still_checks_the_login(routes: Routes) -> None:
    if not routes.profile.mesh:
        pytest.skip("no mesh at the predictor on this profile")
    _opening(routes.kube, apply=True)
    try:
        owner = routes.session("learner")
        _eventually("the gateway to let the owner through", lambda: routes.through_gateway("/v2/health/live", owner)[0],
                    200)
        assert routes.through_gateway("/v2", owner)[0] == 200
        assert routes.through_gateway("/v2/health/live", routes.session("admin"))[0] == 200  # the admin's 06 and 99
        # the cluster-local address: /v2 opens to any caller, as upstream (nothing there checks who calls)
        assert routes.local_address("/v2/health/live")[0] == 200
        # another namespace's learner: refused at the gateway (no rights in this namespace)
        assert routes.through_gateway("/v2/health/live", routes.session("learner", OTHER_NS)) == DENIED
        # outside /v2 the opening does not reach
        assert routes.local_address("/v1/models") == DENIED
        assert routes.through_gateway("/v1/models", owner) == DENIED
    finally:
        _opening(routes.kube, apply=False)


def test_00_hands_the_opening_to_the_admin_as_the_learner_and_applies_it_as_the_admin(
        routes: Routes, tmp_path: Path) -> None:
    """00 as the learner prints the policy for the admin and applies nothing (the gateway still refuses);
    00 as the admin applies it (the gateway lets the owner through); on kfserving-0.5 neither is needed."""
    _opening(routes.kube, apply=False)
    settings = {"namespace": NS, "server_name": SERVER, "profile_owner": OWNER}
    runs = {who: walkthrough.run_notebook(notebooks_dir() / "00_cluster_prep.ipynb", tmp_path / who,
                                          {**settings, "identity": who})
            for who in ("learner", "admin")}
    try:
        for who, run in runs.items():
            assert run.ok, (who, run.error)
        learner, admin = (json.loads(runs[who].results.read_text()) for who in ("learner", "admin"))
        shown = runs["learner"].shown()
        if not routes.profile.mesh:
            assert learner["mesh_policy"] == admin["mesh_policy"] == []
            assert "not needed" in shown and "kind: AuthorizationPolicy" not in shown
            return
        assert learner["mesh_policy"] == []
        assert ("# for your cluster's admin: an Istio AuthorizationPolicy that opens the namespace's predictors on "
                "/v2. You may not apply it, and nothing of it was applied.") in shown
        assert "kind: AuthorizationPolicy" in shown and "# then: kubectl apply -f predictor_authorization_policy.yaml" in shown
        assert admin["mesh_policy"] == [f"AuthorizationPolicy {NS}/allow-predictors-v2"]
        _eventually("the gateway to let the owner through after the admin's 00",
                    lambda: routes.through_gateway("/v2/health/live", routes.session("learner"))[0], 200)
    finally:
        _opening(routes.kube, apply=False)


def _findings(routes: Routes, identity: str = "admin") -> dict:
    """The doctor's findings on the mesh's server, as `identity` of NS (the learner may not list the policies)."""
    from helpers.clients.target import Local
    from helpers.steps.troubleshoot import doctor

    place = Local(routes.local.root)
    api = place.api_client(identity, NS)
    facts = doctor.gather(api, place, NS, SERVER, routes.profile.group, probe_s3=False)
    return {f.id: f for f in doctor.run_checks(facts)}


def test_the_doctor_names_the_closed_predictor_on_both_routes_and_is_quiet_once_it_is_open(routes: Routes) -> None:
    """Without the opening, on Kubeflow 1.10+: the doctor probes `status.address.url` with no session, as a
    notebook pod sends it, gets Istio's 403 and names 00's policy (as the admin it sees no ALLOW policy
    selecting the predictor; as the learner it cannot list them and says so); its gateway fix no longer
    sends anyone to the cluster-local address. With the opening both routes are quiet; on kfserving-0.5
    they are quiet from the start."""
    from helpers.steps.troubleshoot import doctor

    _opening(routes.kube, apply=False)
    if not routes.profile.mesh:
        found = _findings(routes)
        assert (found["cluster_local"].result, found["gateway"].result) == (doctor.OK, doctor.OK), found
        return
    _eventually("the cluster-local address to refuse", lambda: routes.local_address("/v2/health/live"), DENIED)
    for identity in ("admin", "learner"):
        found = _findings(routes, identity)
        local = found["cluster_local"]
        assert local.result == doctor.PROBLEM, (identity, local)
        assert "/v2/health/live -> 403 RBAC: access denied" in local.evidence
        assert "manifests/predictor_authorization_policy.yaml" in local.fix
        if identity == "admin":
            assert f"no ALLOW AuthorizationPolicy in {NS} selects the predictor" in local.evidence
        else:
            assert "could not be read" in local.evidence and "cannot be told" in local.evidence
        gateway = found["gateway"]  # the owner's session passes the login; the predictor's sidecar refuses
        assert gateway.result == doctor.PROBLEM and "403 RBAC: access denied" in gateway.evidence, gateway
        assert "predictor_authorization_policy.yaml" in gateway.fix and "use the cluster-local address" not in gateway.fix
    _opening(routes.kube, apply=True)
    try:
        _eventually("the cluster-local address to open", lambda: routes.local_address("/v2/health/live")[0], 200)
        for identity in ("admin", "learner"):
            found = _findings(routes, identity)
            assert (found["cluster_local"].result, found["gateway"].result) == (doctor.OK, doctor.OK), found
    finally:
        _opening(routes.kube, apply=False)


def test_a_service_account_token_at_the_gateway_and_the_doctor_reading_it(routes: Routes, monkeypatch) -> None:
    """Kubeflow 1.10/1.11's gateway trusts only Dex's tokens: the namespace's service-account token, sent with
    curl as a user would, gets 401 `Jwt issuer is not configured`; the doctor, given it as MMS_INGRESS_TOKEN,
    names it and points at a Dex session or the `m2m-dex-and-kind` overlay. Kubeflow 1.0's authservice knows no
    tokens: a redirect to Dex."""
    import subprocess

    from helpers.steps.troubleshoot import doctor

    token = (identity_dir("learner", NS, routes.local.root) / "token").read_text().strip()
    done = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-H", f"Host: {routes.host}",
                           "-H", f"Authorization: Bearer {token}", f"{routes.gateway}/v2/health/live"],
                          capture_output=True, text=True, timeout=30)
    body, code = done.stdout.rsplit("\n", 1)
    if routes.profile.gateway_auth != "oauth2-proxy":
        assert code == "302", (code, body)
        return
    assert (code, body.strip()) == ("401", "Jwt issuer is not configured")
    monkeypatch.setenv("MMS_INGRESS_TOKEN", token)
    gateway = _findings(routes)["gateway"]
    assert gateway.result == doctor.PROBLEM and "-> 401 Jwt issuer is not configured" in gateway.evidence, gateway
    assert "unset MMS_INGRESS_TOKEN" in gateway.fix and "`m2m-dex-and-kind` overlay" in gateway.fix
    assert gateway.issue.endswith("/2840") and token not in gateway.evidence + gateway.fix
