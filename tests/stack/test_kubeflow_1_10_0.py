"""Kubeflow 1.10.0 (KServe 0.14.1, MinIO): kubeflow-edit has no trainedmodels there, so 00 (as the admin)
grants them as on the guide's cluster, and 01-03 run as the learner. One stack of the profile for the file.

The notebooks run here in Korean (`language = "ko"`, markdown from the catalogues): the suite's one
run of the Korean walkthrough under papermill."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest
from kubernetes import client
from kubernetes import config as kconfig

from helpers.core import i18n
from helpers.core.constants import KSERVE_GROUP
from helpers.core.resources import notebooks_dir
from helpers.local.stack.stack import Stack
from helpers.tools import translations
from support import releases
from support.guide_commands import shown_blocks as guide_blocks
from support.walkthroughs import read_notebook

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
    # In Korean: the notebooks rendered from the catalogues, as `helpers.walkthrough --lang ko` runs them
    # (every other run of the suite is English).
    return releases.run_walkthrough(tmp_path_factory.mktemp("walkthrough-1.10.0"), {"preset": "small"},
                                    releases.GUIDE[:4], lang="ko")


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


def markdown(notebook) -> list[tuple[str, str]]:
    return [(cell["id"], "".join(cell["source"])) for cell in notebook["cells"] if cell["cell_type"] == "markdown"]


def test_the_walkthrough_ran_in_korean(runs: dict) -> None:
    """The executed notebooks are the Korean ones: their markdown is what the catalogues render (whatever
    is translated so far), their parameters cell says `language = "ko"`, and the helpers spoke Korean:
    the shell blocks they printed carry core.show's Korean labels, never its English ones."""
    for name, run in runs.items():
        executed = read_notebook(run.output)
        assert markdown(executed) == markdown(translations.render(notebooks_dir() / f"{name}.ipynb", "ko")), name
        parameters = next(c for c in executed.cells if "parameters" in c.metadata.get("tags", []))
        assert re.search(r'^language = "ko"', parameters.source, re.M), name
    korean = i18n.catalogue("ko")
    labels = {english: korean[english] for english in korean
              if english.startswith(("the guide's commands", "not in the guide", "a shell equivalent"))}
    assert labels, "core.show's labels are in the Korean catalogue"
    shown = [block.label for run in runs.values() for block in guide_blocks(run.output)]
    assert shown, "00-03 print shell blocks"
    def fixed(text: str) -> str:  # a label's words before its first placeholder
        return text.split("{")[0].strip()
    assert any(label.startswith(fixed(ko)) for ko in labels.values() for label in shown), shown
    assert not any(label.startswith(fixed(en)) for en in labels for label in shown), shown


# Istio's policies at the predictor on this release (support/mesh_cases.py), on this file's stack.
from support.mesh_cases import *  # noqa: E402,F403 - the cases, collected here after this file's own
from support.mesh_cases import Routes, mesh_routes  # noqa: E402


@pytest.fixture(scope="module")
def routes(stack1100: Stack) -> Iterator[Routes]:
    with mesh_routes(stack1100) as found:
        yield found
