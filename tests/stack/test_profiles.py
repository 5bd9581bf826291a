"""Version profiles: chosen once per state folder, one API group per running stack."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from helpers.core.errors import SetupError
from helpers.local.stack import releases as profiles
from helpers.local.stack.stack import Stack


def test_default_is_the_guides_cluster(monkeypatch) -> None:
    monkeypatch.delenv(profiles.PROFILE_ENV, raising=False)
    assert profiles.get().name == "kfserving-0.5" and profiles.get().group == "serving.kubeflow.org"
    monkeypatch.setenv(profiles.PROFILE_ENV, "kubeflow-1.11")
    assert profiles.get().group == "serving.kserve.io"


def test_profiles_are_named_after_what_people_install() -> None:
    assert list(profiles.PROFILES) == ["kfserving-0.5", "kubeflow-1.10.0", "kubeflow-1.10", "kubeflow-1.11"]
    assert {p.name: p.release for p in profiles.PROFILES.values()} == {
        "kfserving-0.5": "v0.5.1", "kubeflow-1.10.0": "v0.14.1", "kubeflow-1.10": "v0.15.0", "kubeflow-1.11": "v0.15.2"}
    bundled = [p for p in profiles.PROFILES.values() if p.kubeflow.startswith("1.1")]
    assert {p.config_namespace for p in bundled} == {"kubeflow"} and all(p.triton_as_model for p in bundled)
    assert {p.region_env for p in bundled} == {"AWS_DEFAULT_REGION"} and profiles.get().region_env == "AWS_REGION"
    assert [p.name for p in profiles.PROFILES.values() if p.seaweedfs] == ["kubeflow-1.11"]


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(SetupError, match="kfserving-0.5, kubeflow-1.10.0, kubeflow-1.10, kubeflow-1.11"):
        profiles.get("kserve-0.3")


def test_the_retired_kserve_profile_says_why_and_names_the_new_ones() -> None:
    with pytest.raises(SetupError) as refused:
        profiles.get("kserve")
    assert "no release ships" in refused.value.cause and "kubeflow-1.11" in refused.value.fix


def test_a_state_folder_keeps_its_profile(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    state = {"processes": {}, "ports": {}, "profile": "kfserving-0.5"}
    with pytest.raises(SetupError) as refused:
        stack._choose_profile(state, "kubeflow-1.10")
    assert "holds a 'kfserving-0.5' stack" in refused.value.cause
    assert "MMS_STATE_DIR=" in refused.value.fix and "--profile kfserving-0.5" in refused.value.fix
    assert stack._choose_profile(state, "kfserving-0.5").name == "kfserving-0.5"
    fresh = {"processes": {}, "ports": {}}
    assert stack._choose_profile(fresh, "kubeflow-1.10").name == "kubeflow-1.10" and fresh["profile"] == "kubeflow-1.10"


def test_up_without_a_profile_keeps_the_folders_own(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(profiles.PROFILE_ENV, raising=False)
    stack = Stack(tmp_path)
    state = {"processes": {}, "ports": {}, "profile": "kubeflow-1.10"}
    assert stack._choose_profile(state, None).name == "kubeflow-1.10"  # a plain `up` repairs a kubeflow-1.10 stack
    monkeypatch.setenv(profiles.PROFILE_ENV, "kfserving-0.5")
    with pytest.raises(SetupError):  # asked for another one: refused as before
        stack._choose_profile(state, None)


@pytest.mark.stack
@pytest.mark.parametrize("fixture, group", [("stack", "serving.kubeflow.org"), ("kserve_stack", "serving.kserve.io")])
def test_a_running_stack_serves_one_group(request, fixture: str, group: str) -> None:
    stack = request.getfixturevalue(fixture)
    out = subprocess.run(["kubectl", f"--kubeconfig={stack.kubeconfig}", "get", "crd", "-o", "json"],
                         capture_output=True, text=True, check=True).stdout
    # Besides Kubeflow's Profiles and, on Kubeflow 1.10+, Istio's AuthorizationPolicies: one serving group.
    served = {item["spec"]["group"] for item in json.loads(out)["items"]} - {"kubeflow.org", "security.istio.io"}
    assert served == {group}
    # The guide's short names resolve to it, as on that cluster.
    resources = subprocess.run(["kubectl", f"--kubeconfig={stack.kubeconfig}", "api-resources", "-o", "name"],
                               capture_output=True, text=True, check=True).stdout.split()
    assert f"inferenceservices.{group}" in resources and f"trainedmodels.{group}" in resources
    assert stack.profile().group == group and stack.env()["MMS_PROFILE"] == stack.profile().name
