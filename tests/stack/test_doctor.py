"""helpers.steps.troubleshoot.doctor names each known pitfall; 06_troubleshooting breaks, shows and mends them.

Two kinds of test:
- on the session's local stack: papermill runs 00, 01 and 06 (06 breaks its own server in nine
  ways and runs the doctor after each), the command line on a namespace with nothing in it, and
  the stack's S3 server stopped;
- on facts recorded as a cluster shows them, for what the local stack cannot produce (Kubernetes
  1.22 without KFServing 0.5's CRDs, a Pod left Pending, Istio's 403 and Dex's redirect,
  KServe's MemoryResourceAvailable=False, a webhook's rejection).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.core.config import project_root
from helpers.core.constants import KFSERVING_GROUP, KSERVE_GROUP
from helpers.core.errors import SetupError
from helpers.steps.troubleshoot import doctor, pitfalls
from helpers.tools import walkthrough

PITFALLS = {"wrong_prefix": "S3 Secret annotation prefix", "no_region": "S3 region (s3-region)",
            "fixed_after_start": "Secret changed after the pod started",
            "virtual_host": "virtual-host bucket DNS (s3-usevirtualbucket)",
            "multi_model_flag": "multi-model flag (multiModelServer)",
            "config_name": "config.pbtxt name = TrainedModel name",
            "memory": "TrainedModel memory within the server's", "wrong_shape": "request tensor shape",
            "s3_bucket": "S3 reachable, bucket there"}


# --- recorded facts ----------------------------------------------------------------------------
def healthy(group: str = KFSERVING_GROUP) -> doctor.Facts:
    """A working namespace as the API shows it (shapes copied from the local stack's objects)."""
    notes = {f"{group}/s3-endpoint": "minio-service.kubeflow:9000", f"{group}/s3-usehttps": "0",
             f"{group}/s3-region": "us-east-1", f"{group}/s3-usevirtualbucket": "false"}
    return doctor.Facts(
        namespace="mms", server="triton-mms", group=group, k8s_version="v1.20.2",
        served={group: ["inferenceservices", "trainedmodels"]},
        isvc={"metadata": {"name": "triton-mms"},
              "spec": {"predictor": {"serviceAccountName": "sa", "triton": {
                  "resources": {"limits": {"memory": "16Gi"}, "requests": {"memory": "16Gi"}}}}},
              "status": {"url": "http://triton-mms.mms.example.com",
                         "conditions": [{"type": "Ready", "status": "True"}]}},
        service_account={"metadata": {"name": "sa"}, "secrets": [{"name": "mysecret"}]},
        secrets={"mysecret": {"name": "mysecret", "annotations": notes, "creationTimestamp": "2026-12-01T07:00:00Z",
                              "managedFields": [{"time": "2026-12-01T07:00:00Z"}]}},
        services={"minio-service": {"type": "ExternalName", "externalName": "minio-service.kubeflow.svc.cluster.local"}},
        pod={"metadata": {"name": "triton-mms-predictor-0", "creationTimestamp": "2026-12-01T07:01:00Z"},
             "spec": {"containers": [{"name": "kfserving-container"}, {"name": "agent", "env": [
                 {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "mysecret", "key": "k"}}},
                 {"name": "S3_ENDPOINT", "value": "minio-service.kubeflow:9000"},
                 {"name": "AWS_REGION", "value": "us-east-1"}, {"name": "S3_USER_VIRTUAL_BUCKET", "value": "false"}]}]},
             "status": {"phase": "Running", "startTime": "2026-12-01T07:01:00Z"}},
        trained_models=[{"metadata": {"name": "cifar10"}, "spec": {"inferenceService": "triton-mms", "model": {
            "framework": "pytorch", "storageUri": "s3://triton/torchscript/cifar10", "memory": "1Gi"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}],
        inference_config={"namespace": "kubeflow", "predictors": {"triton": {"multiModelServer": True}}},
        gateway={"url": "http://127.0.0.1", "status": 200, "body": "", "location": ""},
        repository=[{"name": "cifar10", "state": "READY"}],
        s3={"endpoint": "minio-service.kubeflow:9000", "bucket": "triton", "ok": True},
        unreadable={"webhook_probe": "accepted"})


def finding(facts: doctor.Facts, check: str) -> doctor.Finding:
    found = {f.check: f for f in doctor.run_checks(facts)}
    return found[check]


def test_a_healthy_namespace_has_no_problem() -> None:
    findings = doctor.run_checks(healthy())
    assert doctor.problems(findings) == []
    assert len(findings) == len(doctor.CHECKS) == 15
    assert {f.result for f in findings} <= {doctor.OK, doctor.NA}


def test_kfserving_05_crds_on_kubernetes_122() -> None:
    facts = healthy()
    facts.k8s_version, facts.served = "v1.22.4", {}
    found = finding(facts, "InferenceService CRDs served")
    assert found.result == doctor.PROBLEM
    assert "removed in 1.22" in found.evidence and "serving.kserve.io" in found.fix
    facts.k8s_version = "v1.21.9"  # not served on an older cluster: KFServing is simply not installed
    assert "removed in 1.22" not in finding(facts, "InferenceService CRDs served").evidence


def test_the_other_group_served_names_it() -> None:
    facts = healthy()
    facts.served = {KSERVE_GROUP: ["inferenceservices"]}
    assert "set api_group='serving.kserve.io'" in finding(facts, "InferenceService CRDs served").fix


def test_a_pod_left_pending_by_16gi_requests() -> None:
    facts = healthy()
    facts.pod["status"] = {"phase": "Pending"}
    facts.pod_events = [{"type": "Warning", "reason": "FailedScheduling",
                         "message": "0/3 nodes are available: 3 Insufficient memory."}]
    found = finding(facts, "server pod scheduled (16Gi requests)")
    assert found.result == doctor.PROBLEM and "Insufficient memory" in found.evidence and "16Gi" in found.fix


@pytest.mark.parametrize("gateway, words", [
    ({"url": "http://10.0.0.1", "status": 403, "body": "RBAC: access denied"}, "RBAC: access denied"),
    ({"url": "http://10.0.0.1", "status": 302, "location": "/dex/auth?client_id=kubeflow-oidc-authservice"}, "Dex"),
])
def test_istio_403_and_dex_redirect(gateway: dict, words: str) -> None:
    facts = healthy()
    facts.gateway = gateway
    found = finding(facts, "ingress gateway lets the request through")
    assert found.result == doctor.PROBLEM and words in found.evidence and "MMS_INGRESS_COOKIE" in found.fix


def test_s3_down() -> None:
    facts = healthy()
    facts.s3 = {"endpoint": "minio-service.kubeflow:9000", "bucket": "triton", "ok": False,
                "error": "cannot reach S3 at 127.0.0.1:9000: connection refused"}
    facts.agent_lines = ['{"level":"error","ts":1,"msg":"Failed to download model","modelName":"cifar10",'
                         '"error":"dial tcp 10.0.0.5:9000: connect: connection refused"}']
    found = finding(facts, "S3 reachable, bucket there")
    assert found.result == doctor.PROBLEM and "connection refused" in found.evidence and "minio" in found.fix


def test_kserve_refuses_a_model_over_the_servers_memory() -> None:
    facts = healthy(KSERVE_GROUP)
    facts.trained_models[0]["status"]["conditions"].append(
        {"type": "MemoryResourceAvailable", "status": "False",
         "message": "Inference Service \"triton-mms\" memory resources are not available"})
    found = finding(facts, "TrainedModel memory within the server's")
    assert found.result == doctor.PROBLEM and "MemoryResourceAvailable=False" in found.evidence


def test_webhook_rejection() -> None:
    facts = healthy()
    facts.unreadable["webhook_probe"] = ('400: admission webhook "trainedmodel.kfserving-webhook-server.validator" '
                                         "denied the request: the TrainedModel name is invalid")
    found = finding(facts, "TrainedModel webhook (name, storageUri)")
    assert found.result == doctor.PROBLEM and "denied the request" in found.evidence


def test_service_account_without_the_secret() -> None:
    facts = healthy()
    facts.service_account["secrets"] = []
    assert finding(facts, "service account lists the S3 Secret").result == doctor.PROBLEM
    facts.service_account = None
    assert "does not exist" in finding(facts, "service account lists the S3 Secret").evidence


def test_no_external_name_service_for_a_short_endpoint() -> None:
    facts = healthy()
    facts.services = {}
    facts.secrets["mysecret"]["annotations"][f"{KFSERVING_GROUP}/s3-endpoint"] = "minio-service:9000"
    assert finding(facts, "ExternalName Service minio-service").result == doctor.PROBLEM


def test_a_learner_who_may_not_read_the_flag_gets_na() -> None:
    facts = healthy()
    facts.inference_config = {"denied": ["kubeflow"]}
    found = finding(facts, "multi-model flag (multiModelServer)")
    assert found.result == doctor.NA and "not allowed" in found.evidence


def test_the_table_shows_evidence_fix_and_issue() -> None:
    facts = healthy()
    del facts.secrets["mysecret"]["annotations"][f"{KFSERVING_GROUP}/s3-region"]
    text = doctor.table(doctor.run_checks(facts))
    assert "PROBLEM" in text and "fix: add the annotation serving.kubeflow.org/s3-region" in text
    assert "https://github.com/kserve/kserve/issues/2140" in text


def test_quantities() -> None:
    assert doctor.quantity("16Gi") == 16 * 2**30 and doctor.quantity("512Mi") == 512 * 2**20
    assert doctor.quantity("1G") == 10**9 and doctor.quantity("lots") is None


# --- on the local stack ------------------------------------------------------------------------
def test_sections_default_to_three_and_bring_what_they_need() -> None:
    assert pitfalls.chosen() == pitfalls.chosen("") == ("no_region", "fixed_after_start", "config_name")
    assert pitfalls.chosen("all") == pitfalls.ALL
    assert pitfalls.chosen("fixed_after_start, memory") == ("no_region", "fixed_after_start", "memory")
    with pytest.raises(SetupError) as err:
        pitfalls.chosen("no_region,typo")
    assert "typo" in err.value.cause and "wrong_prefix" in err.value.fix


@pytest.fixture(scope="module")
def run06(stack, tmp_path_factory: pytest.TempPathFactory) -> walkthrough.Run:
    out = tmp_path_factory.mktemp("doctor-walkthrough")
    runs = walkthrough.run_all({"offline": True}, out, only=["00", "01"])
    assert all(r.ok for r in runs), [r.error for r in runs]
    return walkthrough.run_notebook(project_root() / "notebooks" / "06_troubleshooting.ipynb", out, {"sections": "all"})


@pytest.mark.stack
def test_06_breaks_shows_names_and_mends_each_pitfall(run06: walkthrough.Run) -> None:
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
    assert "no such host" in seen["virtual_host"] and "no S3 endpoint" in seen["wrong_prefix"]
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
    assert len(found) == 15
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


def test_06_only_looks_off_the_local_stack() -> None:
    from helpers.clients.target import Local, OutOfCluster
    from helpers.steps.troubleshoot import pitfalls

    class Ctx:
        def __init__(self, place) -> None:
            self.place = place

    assert pitfalls.may_break(Ctx(Local())) is True
    assert pitfalls.may_break(Ctx(OutOfCluster())) is False
    assert pitfalls.may_break(Ctx(OutOfCluster()), True) is True


# --- under a failed notebook cell (notebook.doctor_lines) ---------------------------------------------
class _Ctx:
    """What doctor_lines reads of a Context: its settings (and what diagnose reads, here refused)."""

    namespace, server_name = "mms", "triton-mms"

    @property
    def api(self):
        raise RuntimeError("no API here")


def test_under_a_failed_cell_only_the_problems_with_their_fixes(monkeypatch) -> None:
    from helpers.lesson import notebook

    seen = {}

    def diagnose(ctx, error=None, server=None, show=True):
        seen.update(error=error, show=show)
        return [doctor.Finding("InferenceService CRDs served", doctor.OK, "served"),
                doctor.Finding("service account lists the S3 Secret", doctor.PROBLEM, "no sa", "apply s3_secret.yaml",
                               doctor.ISSUES + "1519")]

    monkeypatch.setattr(doctor, "diagnose", diagnose)
    error = RuntimeError("the cell's error")
    assert notebook.doctor_lines(_Ctx(), error) == [
        "the doctor's findings in namespace mms, server triton-mms (the known pitfalls it sees):",
        "- service account lists the S3 Secret: no sa",
        f"  fix: apply s3_secret.yaml  [{doctor.ISSUES}1519]"]
    assert seen == {"error": error, "show": False}
    monkeypatch.setattr(doctor, "diagnose", lambda ctx, **_: [doctor.Finding("x", doctor.NA, "n/a")])
    assert notebook.doctor_lines(_Ctx(), error) == [
        "the doctor found none of the known pitfalls in namespace mms, server triton-mms"]


def test_under_a_failed_cell_the_doctor_never_raises_and_is_bounded(monkeypatch) -> None:
    import threading

    from helpers.lesson import notebook

    (line,) = notebook.doctor_lines(_Ctx(), RuntimeError("x"))  # the real doctor, with no API to read
    assert line == "(the doctor could not look at namespace mms, server triton-mms: RuntimeError: no API here)"
    release = threading.Event()
    monkeypatch.setattr(doctor, "diagnose", lambda ctx, **_: release.wait(60) and [])
    try:
        (line,) = notebook.doctor_lines(_Ctx(), RuntimeError("x"), seconds=1)
    finally:
        release.set()
    assert line.startswith("(the doctor did not finish within 1s looking at namespace mms, server triton-mms")


def test_under_a_cell_failed_by_a_bad_setting_the_doctor_stays_quiet() -> None:
    from helpers.core.errors import SetupError
    from helpers.lesson import notebook

    class BadSetting(_Ctx):
        @property
        def namespace(self):
            raise SetupError("namespace 'Not_Valid' is not a valid Kubernetes name", "fix it")

    assert notebook.doctor_lines(BadSetting(), SetupError("namespace 'Not_Valid' ...")) == []
