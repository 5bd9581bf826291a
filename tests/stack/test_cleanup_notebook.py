"""99_cleanup on the default (kfserving-0.5) stack, after the guide's steps 00-04 ran there: it leaves
nothing, restores Knative, runs again idempotently, and the walkthrough starts over afterwards.

A file of its own, so that under xdist it runs beside test_notebooks.py (on another worker's stack).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from kubernetes import client

from helpers.core.resources import notebooks_dir
from helpers.steps.prep.knative import SAVED_ANNOTATION
from helpers.tools import walkthrough
from support.walkthroughs import GUIDE, results, run_walkthrough

pytestmark = pytest.mark.stack
CLEANUP = walkthrough.CLEANUP


@pytest.fixture(scope="module")
def walked(stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, walkthrough.Run]:
    return run_walkthrough(tmp_path_factory.mktemp("walked"), {}, GUIDE[:4])  # 00-03: a server with a model


def config_deployment(kube) -> dict:
    return client.CoreV1Api(kube).read_namespaced_config_map("config-deployment", "knative-serving").data or {}


def test_99_cleanup_leaves_nothing_and_the_walkthrough_runs_again(stack, kube, walked: dict, tmp_path: Path) -> None:
    """After 00-03: 99 removes everything and restores Knative; 00-02 then pass again (a new Profile,
    Secret and server)."""
    core = client.CoreV1Api(kube)
    notes = core.read_namespaced_config_map("config-deployment", "knative-serving").metadata.annotations or {}
    saved = json.loads(notes.get(SAVED_ANNOTATION, "null"))  # what 00 found, when 00 (or a test before) patched
    if any(c["changed"] for c in results(walked, "00_cluster_prep")["knative_config_deployment"]):
        assert saved == {c["key"]: c["before"] for c in results(walked, "00_cluster_prep")["knative_config_deployment"]}
    keys = ("registriesSkippingTagResolving", "progressDeadline")
    expected = saved if saved is not None else {k: config_deployment(kube).get(k) for k in keys}
    path = notebooks_dir() / f"{CLEANUP}.ipynb"
    first = walkthrough.run_notebook(path, tmp_path / "first", {})
    assert first.ok, first.error
    done = json.loads(first.results.read_text())
    assert done["leftovers"] == []
    removed = {step["what"]: step["removed"] for step in done["steps"]}
    # cifar10 from 00-03; inception too where test_notebooks' walkthrough ran on this worker's stack first
    assert "cifar10" in removed["TrainedModels"] and removed["InferenceService"] == ["triton-mms"]
    assert removed["Profile and namespace"] == ["Profile mms", "namespace mms"]
    assert removed["bucket objects"] == []  # delete_data=False keeps the files
    shown = first.shown()  # one table: each step, what it removed; then the commands, labelled "not in the guide"
    assert re.search(r"^STEP\s+REMOVED$", shown, re.M)
    assert re.search(r"^InferenceService\s+triton-mms$", shown, re.M)
    block = shown[shown.index("# not in the guide: the guide has no teardown"):]
    assert "# InferenceService\n$ kubectl delete inferenceservices.serving.kubeflow.org triton-mms -n mms" in block
    assert "a shell equivalent" not in shown and "KUBECTL EQUIVALENT" not in shown
    assert re.search(r"^left: nothing of the walkthrough's objects$", shown, re.M)
    assert {k: config_deployment(kube).get(k) for k in keys} == expected
    notes = core.read_namespaced_config_map("config-deployment", "knative-serving").metadata.annotations
    assert SAVED_ANNOTATION not in (notes or {})  # restored: the saved values are dropped
    commands = [step["command"] for step in done["steps"]]
    assert commands[0] == "kubectl delete trainedmodels.serving.kubeflow.org -l inferenceservice=triton-mms -n mms"
    assert commands[1] == "kubectl delete inferenceservices.serving.kubeflow.org triton-mms -n mms"
    again = walkthrough.run_notebook(path, tmp_path / "again", {})  # idempotent: nothing left to remove
    assert again.ok and all(not step["removed"] for step in json.loads(again.results.read_text())["steps"])
    run_walkthrough(tmp_path / "rerun", {}, GUIDE[:3])
