"""Kubeflow 1.10.0 (KServe 0.14.1, MinIO): kubeflow-edit has no trainedmodels there, so 00 (as the admin)
grants them as on the guide's cluster, and 01-04 run as the learner. One stack of the profile for the file."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from kubernetes import client
from kubernetes import config as kconfig

from helpers.core.constants import KSERVE_GROUP
from helpers.local.stack.stack import Stack
from support import releases

pytestmark = pytest.mark.stack
NS = "mms"


@pytest.fixture(scope="module")
def stack1100(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with releases.release_stack(Path(tmp_path_factory.mktemp("kubeflow-1.10.0")), "kubeflow-1.10.0") as local:
        yield local


@pytest.fixture(scope="module")
def runs(stack1100: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict:
    # 00-03: what differs from kubeflow-1.10 (kubeflow-edit without trainedmodels, KServe 0.14.1's stored
    # shape) is there by 03; 04 adds nothing of this release (test_notebooks_kubeflow_1_10.py runs it on 1.10).
    return releases.run_walkthrough(tmp_path_factory.mktemp("walkthrough-1.10.0"), {"preset": "small"},
                                    releases.GUIDE[:4])


def test_kubeflow_edit_has_no_trainedmodels_and_00_grants_them(stack1100: Stack) -> None:
    admin = kconfig.new_client_from_config(config_file=str(stack1100.kubeconfig))
    role = client.RbacAuthorizationV1Api(admin).read_cluster_role("kubeflow-kserve-edit")
    assert [tuple(r.resources) for r in role.rules if r.api_groups == [KSERVE_GROUP]] == [
        ("inferenceservices", "servingruntimes")]


def test_the_walkthrough_runs_as_the_learner(runs: dict, stack1100: Stack) -> None:
    assert releases.results(runs, "01_minio")["settings"]["identity"] == "learner"
    assert releases.results(runs, "01_minio")["settings"]["bucket"] == "triton"  # MinIO: the guide's bucket
    admin = kconfig.new_client_from_config(config_file=str(stack1100.kubeconfig))
    predictor = client.CustomObjectsApi(admin).get_namespaced_custom_object(
        KSERVE_GROUP, "v1beta1", NS, "inferenceservices", "triton-mms")["spec"]["predictor"]
    assert predictor["model"]["modelFormat"] == {"name": "triton"} and "triton" not in predictor


def test_the_doctor_is_quiet_on_the_healthy_server(runs: dict, stack1100: Stack) -> None:
    code, findings = releases.doctor(stack1100, NS, "triton-mms", "triton")
    assert code == 0, [f for f in findings if f["result"] == "problem"]
