"""helpers.steps.troubleshoot.doctor names each known pitfall; 06_troubleshooting breaks, shows and mends them.

On the session's local stack: papermill runs 00, 01 and 06 (06 breaks its own server in nine ways
and runs the doctor after each), the command line on a namespace with nothing in it, and the
stack's S3 server stopped. The checks on recorded facts: tests/unit/test_doctor_facts.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.core.config import project_root
from helpers.core.constants import KFSERVING_GROUP
from helpers.steps.troubleshoot import pitfalls
from helpers.tools import walkthrough

PITFALLS = {"wrong_prefix": "S3 Secret annotation prefix", "no_region": "S3 region (s3-region)",
            "fixed_after_start": "Secret changed after the pod started",
            "virtual_host": "virtual-host bucket DNS (s3-usevirtualbucket)",
            "multi_model_flag": "multi-model flag (multiModelServer)",
            "config_name": "config.pbtxt name = TrainedModel name",
            "memory": "TrainedModel memory within the server's", "wrong_shape": "request tensor shape",
            "s3_bucket": "S3 reachable, bucket there"}


@pytest.fixture(scope="module")
def run06(stack, tmp_path_factory: pytest.TempPathFactory) -> walkthrough.Run:
    out = tmp_path_factory.mktemp("doctor-walkthrough")
    runs = walkthrough.run_all({"offline": True}, out, only=["00", "01"])
    assert all(r.ok for r in runs), [r.error for r in runs]
    return walkthrough.run_notebook(project_root() / "notebooks" / "06_troubleshooting.ipynb", out, {"sections": "all"})


@pytest.mark.stack
def test_06_breaks_shows_names_and_mends_each_pitfall(run06: walkthrough.Run, stack) -> None:
    assert run06.ok, run06.error
    found = json.loads(run06.results.read_text())
    assert found["broke_things"] is True and found["sections"] == list(pitfalls.ALL)
    assert set(found["pitfalls"]) == set(PITFALLS)
    for name, record in found["pitfalls"].items():
        assert record["check"] == PITFALLS[name]
        assert record["broken_seen"], name
        assert record["doctor_named"], (name, record)
        assert record["restored"], name
    seen = {name: record["broken_seen"] for name, record in found["pitfalls"].items()}
    assert "MissingRegion" in seen["no_region"] and "MissingRegion" in seen["fixed_after_start"]
    assert "no such host" in seen["virtual_host"]
    if stack.profile().release == "v0.5.1":
        # KFServing 0.5.1's agent has no S3 provider without an endpoint and panics (kserve/kserve#1317): its
        # log holds the Go panic, no verdict line, and the container restarts.
        log = (stack.logs / f"agent-mms.{pitfalls.SERVER}.log").read_text(errors="replace")
        assert "panic: runtime error: invalid memory address or nil pointer dereference" in log
    else:
        assert "no S3 endpoint" in seen["wrong_prefix"]
    assert "MultiModelServerDisabled" in seen["multi_model_flag"] and seen["wrong_shape"].startswith("HTTP 400")
    assert "AWS_REGION" in found["pitfalls"]["fixed_after_start"]["doctor_evidence"]


@pytest.mark.stack
def test_06_leaves_the_namespace_as_it_found_it(run06: walkthrough.Run, stack, kube) -> None:
    from kubernetes import client

    assert run06.ok, run06.error
    core = client.CoreV1Api(kube)
    assert "doctor-s3" not in [s.metadata.name for s in core.list_namespaced_secret("mms").items]
    assert client.CustomObjectsApi(kube).list_namespaced_custom_object(
        KFSERVING_GROUP, "v1beta1", "mms", "inferenceservices")["items"] == []
    flag = json.loads(core.read_namespaced_config_map("inferenceservice-config", "kfserving-system").data["predictors"])
    assert flag["triton"]["multiModelServer"] is True
    secret = stack.s3_credentials().secret_key
    for path in (run06.output, run06.results):
        assert secret not in path.read_text(), f"the S3 secret key is in {path}"
    assert json.loads(run06.results.read_text())["doctor_on_server"]  # the first table, on 01-04's server


@pytest.mark.stack
def test_the_command_line_names_what_is_missing(stack, run06: walkthrough.Run, tmp_path: Path) -> None:
    """On a namespace with no Secret, service account or server: exit 1, and the table says why."""
    done = subprocess.run([sys.executable, "-m", "helpers.steps.troubleshoot.doctor", "--namespace", "nobody", "--server", "none",
                           "--json"], capture_output=True, text=True, timeout=120, cwd=project_root())
    assert done.returncode == 1, done.stderr
    found = {f["check"]: f for f in json.loads(done.stdout)}
    assert found["service account lists the S3 Secret"]["result"] == "problem"
    assert "does not exist" in found["service account lists the S3 Secret"]["evidence"]
    assert found["InferenceService CRDs served"]["result"] == "ok"
    assert len(found) == 16
    # the same namespace and server from a workshop's settings file, as the notebooks read it
    path = tmp_path / "settings.yaml"
    path.write_text("namespace: nobody\nserver_name: none\n")
    again = subprocess.run([sys.executable, "-m", "helpers.steps.troubleshoot.doctor", "--json"], capture_output=True, text=True,
                           timeout=120, cwd=project_root(), env={**os.environ, "MMS_SETTINGS": str(path)})
    assert again.returncode == 1, again.stderr
    assert {f["check"]: f["evidence"] for f in json.loads(again.stdout)} == \
        {check: f["evidence"] for check, f in found.items()}


@pytest.mark.stack
def test_s3_down_on_the_stack(stack, run06: walkthrough.Run) -> None:
    """The local S3 server stopped (its supervisor paused, so nothing starts it again): the doctor
    says S3 does not answer; started again, it says ok."""
    import signal

    from helpers.core.wait import poll_until

    def s3_check() -> dict:
        done = subprocess.run([sys.executable, "-m", "helpers.steps.troubleshoot.doctor", "--namespace", "mms", "--json"],
                              capture_output=True, text=True, timeout=120, cwd=project_root())
        return {f["check"]: f for f in json.loads(done.stdout)}["S3 reachable, bucket there"]

    assert s3_check()["result"] == "ok"
    supervisor, s3 = stack.supervisor_record(), stack.records()["s3"]
    os.kill(supervisor.pid, signal.SIGSTOP)
    try:
        os.kill(s3.pid, signal.SIGTERM)
        poll_until(lambda: not _alive(s3.pid), "the S3 server to stop", timeout=30)
        down = s3_check()
        assert down["result"] == "problem", down
        assert "minio" in down["fix"] and "issues/1370" in down["issue"]
    finally:
        os.kill(supervisor.pid, signal.SIGCONT)
    poll_until(lambda: s3_check()["result"] == "ok", "the supervisor to start S3 again", timeout=120)


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a child of ours that exited is a zombie until reaped; /proc says so
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


