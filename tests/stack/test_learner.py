"""00_cluster_prep as the learner, end to end, in a namespace of its own (`learn-a`), by papermill.

The admin has applied a Profile for the namespace (so the local profile controller made it and the
learner's `default-editor` identity); the trainedmodels Role is absent; Knative's
`config-deployment` is as earlier tests left it, patched or not. Then, in order:

1. 00 as the learner passes, lists the admin steps it skipped in its results, prints their
   YAML/commands, and applies none of them;
2. 02 as the learner before 01 fails (no S3 Secret yet), and the doctor's findings are
   printed under the error (`notebook._install_error_display`);
3. 00 as the admin applies them, the trainedmodels Role among them (the stack is `kfserving-0.5`,
   Kubeflow 1.3, whose kubeflow-edit lacks trainedmodels).

01-05 as the learner after the admin's 00 are test_notebooks.py's walkthrough; they are not run again here.

The Profile is deleted at the end (02 failed before it made a server).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.clients import manifests
from helpers.core.config import identity_kubeconfig, project_root
from helpers.core.constants import PROFILE_GROUP, PROFILE_PLURAL, PROFILE_VERSION
from helpers.core.resources import notebooks_dir
from helpers.core.wait import poll_until
from helpers.lesson import notebook
from helpers.tools import walkthrough
from support.walkthroughs import read_notebook

NS, SERVER, BUCKET = "learn-a", "tri-learn", "learn-models"
SETTINGS = {"namespace": NS, "server_name": SERVER, "bucket": BUCKET}
ROLE = "trainedmodel-editor"
OWNER = "learner@example.com"  # the Profile's owner: the same in the admin's Profile and 00's (Kubeflow refuses a change)


def config_deployment(kube) -> tuple[dict, dict]:
    cm = client.CoreV1Api(kube).read_namespaced_config_map("config-deployment", "knative-serving")
    return dict(cm.data or {}), dict(cm.metadata.annotations or {})


def grant(kube) -> tuple[bool, bool]:
    """Whether the Role and its RoleBinding exist in the namespace."""
    rbac = client.RbacAuthorizationV1Api(kube)
    found = []
    for read in (rbac.read_namespaced_role, rbac.read_namespaced_role_binding):
        try:
            read(ROLE, NS)
            found.append(True)
        except ApiException as exc:
            assert exc.status == 404
            found.append(False)
    return found[0], found[1]


def results(run: walkthrough.Run) -> dict:
    return json.loads(run.results.read_text())


@dataclass
class Journey:
    as_learner: walkthrough.Run
    before: tuple[dict, dict]          # config-deployment before 00 as the learner
    after_learner: tuple[dict, dict]   # ... and after it
    grant_after_learner: tuple[bool, bool]
    too_early: walkthrough.Run         # 02 before 01
    as_admin: walkthrough.Run
    grant_after_admin: tuple[bool, bool]


# --- the default identity ------------------------------------------------------------------------
def test_on_the_local_target_the_notebooks_role_is_the_default_identity() -> None:
    roles = {name: notebook.default_identity(name, "local") for name in notebook.NOTEBOOKS}
    assert roles == {"00_cluster_prep": "admin", "01_minio": "learner", "02_server": "learner",
                     "03_cifar10": "learner", "04_inception": "learner", "05_lifecycle": "learner",
                     "06_troubleshooting": "admin", "07_one_server_many_models": "admin", "99_cleanup": "admin"}
    assert notebook.default_identity("my_own", "local") == "admin"  # not a learner's notebook


def identity_on_cluster(name: str, kubeconfig: Path) -> str:
    """`default_identity(name, "cluster")` in a fresh process with only `kubeconfig` (outside a pod)."""
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    done = subprocess.run([sys.executable, "-c", "import sys; from helpers import notebook; "
                           "print(notebook.default_identity(sys.argv[1], 'cluster'))", name],
                          env={**env, "KUBECONFIG": str(kubeconfig)}, capture_output=True, text=True, timeout=120,
                          cwd=project_root())
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_on_a_cluster_without_an_answer_the_notebooks_role_stands(tmp_path: Path) -> None:
    assert identity_on_cluster("03_cifar10", tmp_path / "no-kubeconfig") == "learner"
    assert identity_on_cluster("00_cluster_prep", tmp_path / "no-kubeconfig") == "admin"


@pytest.mark.stack
def test_on_a_cluster_a_kubeconfig_is_admin_or_learner_by_its_rights(journey, stack) -> None:
    """A kubeconfig may or may not create Profiles: that, not the notebook, says which identity it is."""
    assert identity_on_cluster("03_cifar10", stack.kubeconfig) == "admin"
    assert identity_on_cluster("00_cluster_prep", identity_kubeconfig("learner", NS, stack.root)) == "learner"


# --- 00 as the learner, then as the admin, then 01-04 ------------------------------------------------
@pytest.fixture(scope="module")
def journey(stack, kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    out = tmp_path_factory.mktemp("learner")
    folder = notebooks_dir()
    custom = client.CustomObjectsApi(kube)
    manifests.apply(kube, manifests.render("profile", namespace=NS, owner=OWNER))
    try:
        poll_until(lambda: identity_kubeconfig("learner", NS, stack.root).exists(),
                   f"the local profile controller to publish {NS}'s learner identity", timeout=120)
        assert grant(kube) == (False, False)
        before = config_deployment(kube)
        as_learner = walkthrough.run_notebook(folder / "00_cluster_prep.ipynb", out / "learner",
                                              {**SETTINGS, "identity": "learner", "profile_owner": OWNER})
        after_learner, grant_after_learner = config_deployment(kube), grant(kube)
        too_early = walkthrough.run_notebook(folder / "02_server.ipynb", out / "too-early", SETTINGS)
        as_admin = walkthrough.run_notebook(folder / "00_cluster_prep.ipynb", out / "admin",
                                            {**SETTINGS, "identity": "admin", "profile_owner": OWNER})
        grant_after_admin = grant(kube)
        yield Journey(as_learner, before, after_learner, grant_after_learner, too_early, as_admin,
                      grant_after_admin)
    finally:
        custom.delete_cluster_custom_object(PROFILE_GROUP, PROFILE_VERSION, PROFILE_PLURAL, NS)
        poll_until(lambda: not identity_kubeconfig("learner", NS, stack.root).exists(),
                   f"{NS}'s learner identity to be withdrawn", timeout=120)


@pytest.mark.stack
def test_00_as_the_learner_skips_the_admin_steps_and_goes_on(journey: Journey) -> None:
    run = journey.as_learner
    assert run.ok, run.error
    found = results(run)
    assert found["settings"]["identity"] == "learner" and found["namespace_ready"]
    assert found["admin_steps_skipped"] == ["knative", "profile", "trainedmodels"]
    assert found["learner_trainedmodels"] is False and found["trainedmodels_role"] == []
    assert found["knative_config_deployment"] == []


@pytest.mark.stack
def test_00_as_the_learner_prints_what_to_hand_the_admin(journey: Journey) -> None:
    text = journey.as_learner.shown()
    for what in ("the Profile (cluster-wide)", "the two Knative patches", "a Role on TrainedModels for default-editor"):
        assert f"# for your cluster's admin: {what}. You may not apply it, and nothing of it was applied." in text
    assert f"kind: Profile\nmetadata:\n  name: {NS}" in text
    assert "kubectl patch cm config-deployment --patch" in text and "-n knative-serving" in text
    assert f"kind: Role\nmetadata:\n  name: {ROLE}\n  namespace: {NS}" in text
    assert f"kind: ServiceAccount\n  name: default-editor\n  namespace: {NS}" in text
    assert "# then: kubectl apply -f trainedmodel_editor.yaml" in text


@pytest.mark.stack
def test_00_as_the_learner_applies_nothing_of_the_admin_steps(journey: Journey) -> None:
    assert journey.after_learner == journey.before  # config-deployment's data and annotations
    assert journey.grant_after_learner == (False, False)


@pytest.mark.stack
def test_a_failed_cell_shows_the_doctors_finding_under_the_error(journey: Journey) -> None:
    """02 before 01: the cell fails with its SetupError (papermill reports it), and under the error the
    doctor names the pitfall it sees in the namespace: no service account for the server's S3 access."""
    run = journey.too_early
    assert not run.ok and run.error.startswith(f"SetupError: the S3 Secret 'mysecret' is not in namespace {NS}")
    cells = read_notebook(run.output).cells
    (failed,) = [c for c in cells if any(o.output_type == "error" for o in c.get("outputs", []))]
    errors = [o for o in failed.outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "SetupError"
    after = "".join(o.get("text", "") for o in failed.outputs[failed.outputs.index(errors[0]) + 1:]
                    if o.output_type == "stream")
    assert f"the doctor's findings in namespace {NS}, server {SERVER}" in after
    assert f"- service account lists the S3 Secret: service account 'sa' does not exist in {NS}" in after
    assert "  fix: apply s3_secret.yaml (01_minio)" in after and "issues/1519" in after
    assert f"- ExternalName Service minio-service: no Service minio-service in {NS}" in after
    assert "- InferenceService CRDs served" not in after  # only what is wrong


@pytest.mark.stack
def test_00_as_the_admin_applies_them(journey: Journey) -> None:
    run = journey.as_admin
    assert run.ok, run.error
    found = results(run)
    assert found["settings"]["identity"] == "admin" and found["admin_steps_skipped"] == []
    assert found["trainedmodels_role"] == [f"Role {NS}/{ROLE}", f"RoleBinding {NS}/{ROLE}"]
    assert found["learner_trainedmodels"] is True
    assert journey.grant_after_admin == (True, True)
    assert "kubectl auth can-i create trainedmodels.serving.kubeflow.org" in run.shown()
