"""The walkthrough 00-05 on a `kubeflow-1.10` stack (KServe 0.15.0 as Kubeflow bundles it), with other
settings read from a workshop settings file: another namespace, server name and bucket, the `small`
preset, and the API group found from the cluster; then 06_troubleshooting beside that server (the
default sections and the two that differ from KFSERVING), and 99_cleanup deleting the data when asked.

A file of its own, so that under xdist it runs beside test_notebooks.py on another worker.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from kubernetes import client

from helpers.clients import k8s
from helpers.core.config import project_root
from helpers.core.constants import KSERVE_GROUP, api_group
from helpers.core.resources import notebooks_dir
from helpers.local.stack.stack import Stack
from helpers.steps.troubleshoot import pitfalls
from helpers.tools import walkthrough
from support.stacks import pointed_at
from support.walkthroughs import (
    NOTEBOOKS,
    assert_no_secret,
    delete_server,
    doctor,
    read_notebook,
    results,
    run_walkthrough,
    settings_file,
)

pytestmark = pytest.mark.stack

CLEANUP = walkthrough.CLEANUP
# Other names and the `small` preset, all from a settings file (no parameter), and api_group left
# empty (found from the cluster).
OTHER_FILE = {"namespace": "team-b", "server_name": "tri-b", "bucket": "models-b", "preset": "small"}
OTHER = {**OTHER_FILE, "api_group": KSERVE_GROUP}
SETTINGS = ("namespace", "server_name", "bucket", "api_group", "preset")
KSERVE_SECTIONS = (*pitfalls.DEFAULT, "wrong_prefix", "memory")


@pytest.fixture(scope="module")
def other_run(kserve_stack, kserve_kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, walkthrough.Run]]:
    with pointed_at(kserve_stack), settings_file(OTHER_FILE):
        runs = run_walkthrough(tmp_path_factory.mktemp("walkthrough-other"), {})  # no parameter: the file's settings
    yield runs
    delete_server(kserve_kube, kserve_stack, KSERVE_GROUP, OTHER["server_name"], OTHER["namespace"])


def test_walkthrough_on_the_kserve_profile_with_other_settings(other_run, kserve_kube) -> None:
    from helpers.core.settings import PRESETS, gib

    kube = kserve_kube
    small = PRESETS["small"]
    for name in NOTEBOOKS:
        settings = results(other_run, name)["settings"]
        assert {k: settings[k] for k in SETTINGS} == OTHER, name
        shown = json.dumps([c.get("outputs", []) for c in read_notebook(other_run[name].output).cells])
        assert "namespace=team-b (settings file)" in shown and "preset=small (settings file)" in shown, name
        assert settings["identity"] == ("admin" if name == "00_cluster_prep" else "learner"), name
    # KServe 0.15's kubeflow-edit (Kubeflow 1.10.1+) has trainedmodels: the admin's 00 grants nothing more
    assert results(other_run, "00_cluster_prep")["trainedmodels_role"] == []
    assert results(other_run, "01_minio")["applied"] == ["Secret team-b/mysecret", "ServiceAccount team-b/sa"]
    assert results(other_run, "03_cifar10")["outputs"][0]["shape"] == [1, 10]
    assert results(other_run, "04_inception")["model_ready"]
    lifecycle = results(other_run, "05_lifecycle")
    assert lifecycle["reload"]["seen"] and lifecycle["old_version_gone"] and lifecycle["deleted"]["absent_from_index"]
    # The small preset's server: what the InferenceService asks for, and the limit 05 counts models against.
    isvc = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        KSERVE_GROUP, api_group(KSERVE_GROUP).isvc_version, "team-b", "inferenceservices", "tri-b")
    stored = isvc["spec"]["predictor"]  # KServe's defaulter stored the guide's `triton` as `model`
    assert "triton" not in stored and stored["model"]["modelFormat"] == {"name": "triton"}
    resources = k8s.triton_predictor(isvc)["resources"]
    for kind in ("limits", "requests"):
        assert (resources[kind]["cpu"], resources[kind]["memory"]) == (small.server_cpu, small.server_memory), kind
    # KServe adds up the declared memory: the model that does not fit never reaches models.json
    assert lifecycle["over_memory"] == {"limit": small.server_memory, "asked": "4Gi", "memory_condition": "False",
                                        "in_models_json": False, "ready": False, "refused": True}
    declared = lifecycle["declared_memory_gib"]
    assert (declared["cifar10"], declared["inception"]) == (gib(small.model_memory), gib(small.model_memory))
    secret = client.CoreV1Api(kube).read_namespaced_secret("mysecret", "team-b")
    assert "serving.kserve.io/s3-endpoint" in secret.metadata.annotations
    tm = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        KSERVE_GROUP, "v1alpha1", "team-b", "trainedmodels", "cifar10")
    assert tm["spec"] == {"inferenceService": "tri-b", "model": {
        "framework": "pytorch", "storageUri": "s3://models-b/torchscript/cifar10", "memory": small.model_memory}}
    for name in NOTEBOOKS:  # nothing of the guide's defaults in what ran
        source = "".join(c.source for c in read_notebook(other_run[name].output).cells if c.cell_type == "code")
        # what a learner reads: images left out (a PNG's base64 may hold "16Gi" by chance, as 04's plot does)
        outputs = json.dumps([[{k: v for k, v in (o.get("data") or {}).items() if not k.startswith("image/")}
                               if "data" in o else o for o in c.get("outputs", [])]
                              for c in read_notebook(other_run[name].output).cells])
        assert "triton-mms" not in outputs and "s3://triton/" not in outputs, name
        assert "triton-mms" not in source.split("# Parameters")[-1], name
        assert "16Gi" not in outputs, name


def test_the_doctor_is_quiet_on_the_healthy_server(kserve_stack, other_run) -> None:
    code, findings = doctor(kserve_stack, OTHER["namespace"], OTHER["server_name"], OTHER["bucket"])
    assert code == 0, [f for f in findings if f["result"] == "problem"]


def test_no_secret_in_the_other_run(kserve_stack, other_run) -> None:
    assert_no_secret(kserve_stack, other_run)


@pytest.fixture(scope="module")
def run06(kserve_stack, other_run, tmp_path_factory: pytest.TempPathFactory) -> walkthrough.Run:
    """06 in the walkthrough's namespace, on a server of its own beside the walkthrough's (which its first
    doctor table looks at)."""
    with pointed_at(kserve_stack), settings_file(OTHER_FILE):
        return walkthrough.run_notebook(project_root() / "notebooks" / "06_troubleshooting.ipynb",
                                        tmp_path_factory.mktemp("doctor-kserve"), {"pitfalls": ",".join(KSERVE_SECTIONS)})


def test_06_on_the_kserve_profile(run06: walkthrough.Run) -> None:
    """KServe 0.15's rules (kubeflow-1.10): the default sections, plus the two that differ from KFServing: the other
    group's annotation prefix, and a model over the server's memory refused (MemoryResourceAvailable=False),
    which the doctor names from the condition."""
    assert run06.ok, run06.error
    found = json.loads(run06.results.read_text())
    assert found["settings"]["api_group"] == KSERVE_GROUP
    assert set(found["pitfalls"]) == set(KSERVE_SECTIONS)
    assert all(r["broken_seen"] and r["doctor_named"] and r["restored"] for r in found["pitfalls"].values()), found
    assert found["pitfalls"]["memory"]["broken_seen"].startswith("MemoryResourceAvailable=False")
    assert "MemoryResourceAvailable=False" in found["pitfalls"]["memory"]["doctor_evidence"]
    assert "serving.kubeflow.org/s3-" in found["pitfalls"]["wrong_prefix"]["doctor_evidence"]
    assert not [f for f in found["doctor_on_server"] if f["result"] == "problem"]  # the walkthrough's server


def test_99_cleanup_with_other_settings_deletes_the_data_when_asked(kserve_stack, kserve_kube, other_run,
                                                                    run06: walkthrough.Run, tmp_path: Path) -> None:
    """After 06 (a fixture of this test, so it has run): 99 deletes the walkthrough's objects and data."""
    from helpers.clients import storage
    from helpers.clients.target import select
    from helpers.steps.operations import cleanup

    with pointed_at(kserve_stack):
        run = walkthrough.run_notebook(notebooks_dir() / f"{CLEANUP}.ipynb", tmp_path,
                                       {**{k: v for k, v in OTHER.items() if k != "api_group"}, "delete_data": True})
    assert run.ok, run.error
    done = json.loads(run.results.read_text())
    assert done["leftovers"] == [] and done["settings"]["namespace"] == "team-b"
    removed = {step["what"]: step["removed"] for step in done["steps"]}
    assert "torchscript/cifar10/1/model.pt" in removed["bucket objects"]
    assert "bucket models-b (empty)" in removed["bucket objects"]
    assert removed["Knative config-deployment"]  # the kubeflow-1.10 stack's 00 saved and now restored them
    with pointed_at(kserve_stack):
        s3 = cleanup.minio_client(kserve_kube, select("local"))
        assert not storage.bucket_exists(s3, "models-b")


# Istio's policies at the predictor on this release (support/mesh_cases.py), on this file's stack.
from support.mesh_cases import *  # noqa: E402,F403 - the cases, collected here after this file's own
from support.mesh_cases import Routes, mesh_routes  # noqa: E402


@pytest.fixture(scope="module")
def routes(kserve_stack: Stack) -> Iterator[Routes]:
    with mesh_routes(kserve_stack) as found:
        yield found
