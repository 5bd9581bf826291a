"""helpers.steps.troubleshoot.doctor on facts recorded as a cluster shows them, for what the local stack
cannot produce (Kubernetes 1.22 without KFServing 0.5's CRDs, a Pod left Pending, Istio's 403 and
Dex's redirect, KServe's MemoryResourceAvailable=False, a webhook's rejection), and what a failed
notebook cell prints under its error. 06 itself, on the local stack: tests/stack/test_doctor_06.py.
"""
from __future__ import annotations

import pytest

from helpers.core.constants import KFSERVING_GROUP, KSERVE_GROUP
from helpers.core.errors import SetupError
from helpers.steps.troubleshoot import doctor, pitfalls
from helpers.steps.troubleshoot.doctor.checks_serving import entry_bytes


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
             "status": {"phase": "Running", "startTime": "2026-12-01T07:01:00Z", "containerStatuses": [
                 {"name": "kfserving-container", "restartCount": 0}, {"name": "agent", "restartCount": 0}]}},
        trained_models=[{"metadata": {"name": "cifar10"}, "spec": {"inferenceService": "triton-mms", "model": {
            "framework": "pytorch", "storageUri": "s3://triton/torchscript/cifar10", "memory": "1Gi"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}],
        inference_config={"namespace": "kubeflow", "predictors": {"triton": {"multiModelServer": True}}},
        gateway={"url": "http://127.0.0.1", "status": 200, "body": "", "location": ""},
        cluster_local={"url": "http://triton-mms.mms.svc.cluster.local", "status": 200, "body": ""},
        model_config={"name": "modelconfig-triton-mms-0", "bytes": 122, "models": ["cifar10"]},
        repository=[{"name": "cifar10", "state": "READY"}],
        s3={"endpoint": "minio-service.kubeflow:9000", "bucket": "triton", "ok": True},
        listings={"s3://triton/torchscript/cifar10": {"count": 2, "truncated": False, "markers": [], "siblings": []}},
        can_i={"create trainedmodels": True},
        unreadable={"webhook_probe": "accepted"})


def finding(facts: doctor.Facts, check: str) -> doctor.Finding:
    found = {f.check: f for f in doctor.run_checks(facts)}
    return found[check]


def test_a_healthy_namespace_has_no_problem() -> None:
    findings = doctor.run_checks(healthy())
    assert doctor.problems(findings) == []
    assert len(findings) == len(doctor.CHECKS) == 28
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
    found = finding(facts, "server pod scheduled")
    assert found.result == doctor.PROBLEM and "Insufficient memory" in found.evidence and "16Gi" in found.fix
    assert "memory 16Gi" in found.evidence  # what this server asks, read from its spec


def test_the_pod_check_names_the_servers_own_requests() -> None:
    """Not the guide's 16Gi on a 2Gi server (06's own): the label is neutral, the evidence reads the spec."""
    facts = healthy()
    facts.isvc["spec"]["predictor"]["triton"]["resources"] = {"limits": {"memory": "2Gi"}, "requests": {"memory": "2Gi"}}
    found = finding(facts, "server pod scheduled")
    assert found.result == doctor.OK and "memory 2Gi" in found.evidence and "16Gi" not in found.check + found.evidence


def test_every_problem_has_a_fix() -> None:
    """Each way a check can say PROBLEM, on facts that make it say so, carries a fix (06 once showed an empty one:
    a server with no pod yet)."""
    cases = []
    facts = healthy()
    facts.pod = None
    cases.append(facts)
    facts = healthy()
    facts.s3 = None
    facts.agent_lines = ['{"level":"error","ts":1,"msg":"Failed","modelName":"cifar10","error":"NoSuchBucket"}']
    cases.append(facts)
    facts = healthy()
    facts.secrets = {}
    facts.agent_lines = ['{"level":"error","ts":1,"msg":"Failed","modelName":"cifar10","error":"MissingRegion: x"}',
                         '{"level":"error","ts":2,"msg":"Failed","modelName":"cifar10","error":"no such host"}']
    cases.append(facts)
    facts = healthy()
    facts.isvc["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "MultiModelServerDisabled"}]
    cases.append(facts)
    facts = healthy()
    facts.gateway = {"url": "http://10.0.0.1", "status": 404}
    cases.append(facts)
    for recorded in pitfalls.recorded()["pitfalls"].values():
        cases += [doctor.Facts(**b["facts"]) for b in recorded if b["kind"] == "doctor"]
    seen = set()
    for facts in cases:
        for found in doctor.problems(doctor.run_checks(facts)):
            assert found.fix.strip(), found
            seen.add(found.id)
    assert {"pending", "s3", "region", "virtual_host", "multi_model", "gateway"} <= seen


def test_findings_keep_their_id_in_every_language() -> None:
    from helpers.core import i18n

    facts = healthy()
    del facts.secrets["mysecret"]["annotations"][f"{KFSERVING_GROUP}/s3-region"]
    try:
        i18n.set_language("ko")
        korean = doctor.run_checks(facts)
    finally:
        i18n.set_language("en")
    english = doctor.run_checks(facts)
    assert [f.id for f in korean] == [f.id for f in english] == [c.__name__[6:] for c in doctor.CHECKS]
    region = next(f for f in korean if f.id == "region")
    assert region.result == doctor.PROBLEM and "리전" in region.check and "serving.kubeflow.org/s3-region" in region.fix
    assert "근거 / 해결 방법" not in doctor.table(english)


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


# --- where 06 may break things ----------------------------------------------------------------
def test_sections_default_to_three_and_bring_what_they_need() -> None:
    assert pitfalls.chosen() == pitfalls.chosen("") == ("no_region", "fixed_after_start", "config_name")
    assert pitfalls.chosen("default") == pitfalls.DEFAULT
    assert pitfalls.chosen("all") == pitfalls.ALL
    assert pitfalls.chosen("fixed_after_start, memory") == ("no_region", "fixed_after_start", "memory")
    assert pitfalls.chosen("no_region") == ("no_region", "fixed_after_start")  # what it breaks, the next one mends
    with pytest.raises(SetupError) as err:
        pitfalls.chosen("no_region,typo")
    assert "typo" in err.value.cause and "wrong_prefix" in err.value.fix


def test_06_only_looks_off_the_local_stack() -> None:
    from helpers.clients.target import Local, OutOfCluster
    from helpers.steps.troubleshoot import pitfalls

    class Ctx:
        def __init__(self, place) -> None:
            self.place = place

    assert pitfalls.may_break(Ctx(Local())) is True
    assert pitfalls.may_break(Ctx(OutOfCluster())) is False
    assert pitfalls.may_break(Ctx(OutOfCluster()), True) is True
    assert pitfalls.may_break(Ctx(Local()), "False") is False  # papermill -p passes text
    assert pitfalls.may_break(Ctx(Local()), "None") is True


def test_the_recording_shows_each_pitfall_four_steps_and_the_doctor_names_it() -> None:
    """recorded.json (what a cluster learner is shown): every pitfall, each with the break, the look, the
    doctor and (but no_region, which the next section mends) the mend; the doctor's findings recomputed
    from the recorded facts name the pitfall, in English and in Korean; no build path, no secret."""
    from helpers.core import i18n

    found = pitfalls.recorded()
    assert set(found["pitfalls"]) == set(pitfalls.ALL)
    for name, blocks in found["pitfalls"].items():
        labels = [b["label"] for b in blocks if b["kind"] == "shell"]
        assert labels[0] == "break" and "doctor" in labels, name
        assert "see" in labels or name == "wrong_shape", name  # there the curl's own answer is the symptom
        assert any(b["kind"] == "lines" and b["lines"] for b in blocks), name  # a raw symptom was shown
        assert name == "no_region" or labels[-1] == "mend", name
        facts = [doctor.Facts(**b["facts"]) for b in blocks if b["kind"] == "doctor"]
        assert len(facts) == 1, name
        for lang in ("en", "ko"):
            try:
                i18n.set_language(lang)
                named = [f for f in doctor.problems(doctor.run_checks(facts[0])) if f.id == pitfalls.CHECK[name]]
            finally:
                i18n.set_language("en")
            assert named, (name, lang)
    text = pitfalls.RECORDED.read_text()
    assert "/work/" not in text and "build/" not in text and "minio123" not in text
    seen = [line for b in found["pitfalls"]["no_region"] if b["kind"] == "lines" for line in b["lines"]]
    assert any("MissingRegion" in line for line in seen)  # the agent's log line
    assert "Ready=True" in seen  # and the TrainedModel still Ready: no release records the failure


def test_replay_prints_the_recording_labelled_as_recorded(capsys) -> None:
    pitfalls.replay("no_region", pitfalls.recorded())
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("recorded on the local stack")
    assert "kubectl annotate secret doctor-s3" in out and "PROBLEM" in out and "S3 region (s3-region)" in out
    pitfalls.replay("no_region", {})
    assert "no recording" in capsys.readouterr().out


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


def test_a_ready_model_that_a_restarted_triton_lost() -> None:
    """Every release's agent loads on models.json changes only: after Triton restarts, a Ready
    TrainedModel stays unloaded until its pod is replaced."""
    facts = healthy()
    facts.repository = []
    facts.pod["status"]["containerStatuses"] = [
        {"name": "kfserving-container", "restartCount": 1, "lastState": {"terminated": {"reason": "OOMKilled"}}},
        {"name": "agent", "restartCount": 0}]
    found = finding(facts, "Ready TrainedModels served by Triton")
    assert found.result == doctor.PROBLEM
    assert found.evidence == ("Ready but not served: cifar10 (not in the index); "
                              "container kfserving-container restarted 1x (last: OOMKilled)")
    assert "kubectl delete pod -n mms -l serving.kubeflow.org/inferenceservice=triton-mms" in found.fix


def test_a_model_the_agent_failed_on_is_left_to_the_checks_that_say_why() -> None:
    facts = healthy()
    facts.repository = [{"name": "cifar10", "state": "UNAVAILABLE"}]
    facts.agent_lines = ['{"level":"error","ts":1,"msg":"failed to load model","modelName":"cifar10","error":"no region"}']
    assert finding(facts, "Ready TrainedModels served by Triton").result == doctor.OK


# --- issue 21: what the releases' agents do once, and what users hit most ------------------------------
ISSUE21 = ("gave_up", "agent_panic", "marker_file", "sibling_prefix", "one_page", "oom", "endpoint_scheme",
           "terminating", "rbac")
GROUPS = (KFSERVING_GROUP, KSERVE_GROUP)  # kfserving-0.5, and the Kubeflow 1.10/1.11 profiles


def by_id(facts: doctor.Facts, key: str) -> doctor.Finding:
    return next(f for f in doctor.run_checks(facts) if f.id == key)


def record(msg: str, ts: float = 1.0, **fields) -> str:
    """One agent log line as KFServing 0.5.1's zap logger writes it (the error inside msg)."""
    import json

    return json.dumps({"level": "error", "ts": ts, "logger": "modelProcessor", "msg": msg, **fields})


@pytest.mark.parametrize("group", GROUPS)
def test_the_new_checks_are_quiet_on_a_healthy_namespace_of_each_profile(group: str) -> None:
    facts = healthy(group)
    facts.agent_lines = [record("adding model cifar10", 1), record("Successfully loaded model cifar10", 2)]
    found = {f.id: f for f in doctor.run_checks(facts)}
    assert {key: found[key].result for key in ISSUE21} == {key: doctor.OK for key in ISSUE21}


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("line", [
    "Failed to download model cifar10 with err NoSuchKey: The specified key does not exist.",
    "Failed to Load model cifar10",
    "Failed to load model cifar10 with status [400] and resp:{\"error\":\"failed to load 'cifar10'\"}",
])
def test_a_ready_model_the_agent_gave_up_on(group: str, line: str) -> None:
    """The real agent's failure line carries the error in msg, with no `error` field: the model is Ready (in
    the ConfigMap) and unserved; 'served' leaves it to 'gave_up', which quotes the line and says re-apply."""
    facts = healthy(group)
    facts.repository = []
    facts.agent_lines = [record("adding model cifar10", 1), record(line, 2)]
    found = by_id(facts, "gave_up")
    assert found.result == doctor.PROBLEM and line[:40] in found.evidence and "Ready (in the ConfigMap)" in found.evidence
    assert "kubectl delete trainedmodel cifar10 -n mms" in found.fix and "once" in found.fix and found.issue
    assert by_id(facts, "served").result == doctor.OK  # the two together name it once
    facts.agent_lines.append(record("adding model cifar10", 3))  # re-applied: the agent is at it again
    assert by_id(facts, "gave_up").result == doctor.OK


def test_the_local_agent_s_failure_line_with_its_error_field_is_read_too() -> None:
    facts = healthy()
    facts.repository = []
    facts.agent_lines = [record("Failed to Load model cifar10", 2, modelName="cifar10",
                                error="connection refused; fix: start Triton")]
    found = by_id(facts, "gave_up")
    assert found.result == doctor.PROBLEM and "(connection refused)" in found.evidence and "fix:" not in found.evidence


def test_the_friendly_agent_s_retries_are_not_giving_up() -> None:
    facts = healthy()
    facts.repository = []
    facts.agent_lines = [record("Failed to download model", 2, modelName="cifar10", error="NoSuchKey"),
                         record("Operation failed, will retry", 3, modelName="cifar10", error="NoSuchKey")]
    assert by_id(facts, "gave_up").result == doctor.OK


PANIC = "panic: runtime error: invalid memory address or nil pointer dereference"


def test_kfserving_051_panics_without_an_endpoint() -> None:
    facts = healthy()
    container = facts.pod["spec"]["containers"][1]
    container["env"] = [e for e in container["env"] if e["name"] != "S3_ENDPOINT"]
    facts.pod["status"]["containerStatuses"] = [
        {"name": "kfserving-container", "restartCount": 0},
        {"name": "agent", "restartCount": 3, "lastState": {"terminated": {"reason": "Error", "exitCode": 2}}}]
    facts.agent_lines = [PANIC, "[signal SIGSEGV: segmentation violation code=0x1 addr=0x18 pc=0x10ab3c5]"]
    found = by_id(facts, "agent_panic")
    assert found.result == doctor.PROBLEM and "nil pointer dereference" in found.evidence
    assert "restarted 3x" in found.evidence and "no S3_ENDPOINT" in found.evidence
    assert "serving.kubeflow.org/s3-endpoint" in found.fix and "kubectl delete pod" in found.fix
    assert found.issue.endswith("1317")
    facts.agent_lines = []  # the log rotated away with the restart: the exit code and the env still say it
    assert by_id(facts, "agent_panic").result == doctor.PROBLEM
    facts.pod["status"]["containerStatuses"][1] = {"name": "agent", "restartCount": 0}
    assert by_id(facts, "agent_panic").result == doctor.OK


def test_a_marker_key_turned_into_a_file() -> None:
    facts = healthy()
    facts.repository = []
    facts.agent_lines = [record("Failed to download model cifar10 with err file is already created: mkdir "
                                "/mnt/models/cifar10/1: not a directory", 2)]
    facts.listings["s3://triton/torchscript/cifar10"]["markers"] = ["torchscript/cifar10/1/"]
    found = by_id(facts, "marker_file")
    assert found.result == doctor.PROBLEM and "not a directory" in found.evidence
    assert "torchscript/cifar10/1/" in found.evidence
    assert "kubectl delete pod" in found.fix and "remove_object" in found.fix and found.issue.endswith("1769")
    facts.agent_lines = []  # before any download: the listing alone says it, for KFServing 0.5.1
    assert by_id(facts, "marker_file").result == doctor.PROBLEM
    reason = "file is already created: mkdir /mnt/models/cifar10/1: not a directory"
    facts.agent_lines = [record(f"Failed to download model cifar10 with err {reason}", 2, modelName="cifar10",
                                error=reason)]  # the local agent adds the error as a field too: quoted once
    assert by_id(facts, "marker_file").evidence.count("not a directory") == 1
    kserve = healthy(KSERVE_GROUP)  # KServe skips marker keys (v0.7+)
    kserve.listings["s3://triton/torchscript/cifar10"]["markers"] = ["torchscript/cifar10/1/"]
    assert by_id(kserve, "marker_file").result == doctor.OK


@pytest.mark.parametrize("group", GROUPS)
def test_a_raw_prefix_that_matches_a_sibling_folder(group: str) -> None:
    facts = healthy(group)
    facts.listings["s3://triton/torchscript/cifar10"]["siblings"] = ["torchscript/cifar10-old/1/model.pt"]
    found = by_id(facts, "sibling_prefix")
    assert found.result == doctor.PROBLEM and "torchscript/cifar10-old/1/model.pt" in found.evidence
    assert "prefix that no other key starts with" in found.fix and found.issue.endswith("3776")


@pytest.mark.parametrize("group", GROUPS)
def test_more_keys_than_one_listing_page(group: str) -> None:
    facts = healthy(group)
    facts.listings["s3://triton/torchscript/cifar10"].update(count=1000, truncated=True)
    found = by_id(facts, "one_page")
    assert found.result == doctor.PROBLEM and "IsTruncated" in found.evidence and "one model per prefix" in found.fix
    facts.listings["s3://triton/torchscript/cifar10"].update(count=1000, truncated=False)  # exactly one page
    assert by_id(facts, "one_page").result == doctor.OK


def test_list_page_reads_one_page_as_the_agent_asks() -> None:
    class Obj:
        def __init__(self, name: str) -> None:
            self.object_name = name

    class S3:
        def list_objects(self, bucket, prefix, recursive, use_api_v1):
            assert (bucket, prefix, recursive, use_api_v1) == ("triton", "torchscript/cifar10", True, True)
            yield from map(Obj, ["torchscript/cifar10-old/1/model.pt", "torchscript/cifar10/",
                                 "torchscript/cifar10/1/model.pt"] + [f"torchscript/cifar10/x/{i}" for i in range(998)])

    page = doctor.list_page(S3(), "s3://triton/torchscript/cifar10")
    assert page == {"count": 1000, "truncated": True, "markers": ["torchscript/cifar10/"],
                    "siblings": ["torchscript/cifar10-old/1/model.pt"]}


@pytest.mark.parametrize("group", GROUPS)
def test_a_server_container_oomkilled(group: str) -> None:
    facts = healthy(group)
    facts.pod["status"]["containerStatuses"] = [
        {"name": "kserve-container", "restartCount": 2,
         "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}, {"name": "agent", "restartCount": 0}]
    found = by_id(facts, "oom")
    assert found.result == doctor.PROBLEM and "OOMKilled" in found.evidence and "restartCount 2" in found.evidence
    assert "limits.memory 16Gi" in found.evidence and "limits.memory" in found.fix and "fewer" in found.fix


@pytest.mark.parametrize("group", GROUPS)
def test_a_pending_pod_quotes_the_event_and_names_the_small_preset(group: str) -> None:
    facts = healthy(group)
    facts.pod["status"] = {"phase": "Pending"}
    event = ("0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: "
             "1 No preemption victims found for incoming pod.")
    facts.pod_events = [{"type": "Warning", "reason": "FailedScheduling", "message": event}]
    found = by_id(facts, "pending")
    assert found.result == doctor.PROBLEM and f"Warning FailedScheduling: {event}" in found.evidence
    assert "`small` preset" in found.fix and "node with room" in found.fix


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_scheme_inside_the_s3_endpoint(group: str, scheme: str) -> None:
    facts = healthy(group)
    facts.secrets["mysecret"]["annotations"][f"{group}/s3-endpoint"] = f"{scheme}://minio-service.kubeflow:9000"
    found = by_id(facts, "endpoint_scheme")
    assert found.result == doctor.PROBLEM and f"{scheme}://minio-service.kubeflow:9000" in found.evidence
    usehttps = "1" if scheme == "https" else "0"
    assert (f"--overwrite {group}/s3-endpoint=minio-service.kubeflow:9000 {group}/s3-usehttps={usehttps}"
            in found.fix)
    assert "kubectl delete pod" in found.fix and found.issue.endswith("4797")


@pytest.mark.parametrize("group", GROUPS)
def test_a_trainedmodel_stuck_terminating_after_its_server(group: str) -> None:
    facts = healthy(group)
    facts.trained_models[0]["metadata"].update(deletionTimestamp="2026-12-01T08:00:00Z",
                                               finalizers=["trainedmodel.finalizer"])
    assert by_id(facts, "terminating").result == doctor.OK  # the server is there: the deletion finishes
    facts.isvc = None
    found = by_id(facts, "terminating")
    assert found.result == doctor.PROBLEM and "deletionTimestamp 2026-12-01T08:00:00Z" in found.evidence
    assert "trainedmodel.finalizer" in found.evidence and found.issue.endswith("1422")
    assert ("""kubectl patch trainedmodel cifar10 -n mms --type=merge -p '{"metadata":{"finalizers":null}}'"""
            in found.fix)


@pytest.mark.parametrize("group", GROUPS)
def test_a_learner_who_may_not_create_trainedmodels(group: str) -> None:
    facts = healthy(group)
    facts.can_i = {"create trainedmodels": False}
    found = by_id(facts, "rbac")
    assert found.result == doctor.PROBLEM
    assert f"kubectl auth can-i create trainedmodels.{group} -n mms" in found.evidence and "no" in found.evidence
    assert "trainedmodel_editor.yaml" in found.fix and found.issue.endswith("4225")
    facts.can_i = {}
    assert by_id(facts, "rbac").result == doctor.NA


def test_the_new_checks_keep_their_words_in_korean() -> None:
    """Commands, field names and log lines stay as they are in the Korean findings."""
    from helpers.core import i18n

    facts = healthy()
    facts.repository = []
    facts.agent_lines = [record("Failed to Load model cifar10", 2)]
    facts.can_i = {"create trainedmodels": False}
    try:
        i18n.set_language("ko")
        found = {f.id: f for f in doctor.problems(doctor.run_checks(facts))}
    finally:
        i18n.set_language("en")
    assert {"gave_up", "rbac"} <= set(found)
    assert "Failed to Load model cifar10" in found["gave_up"].evidence
    assert "kubectl delete trainedmodel cifar10 -n mms" in found["gave_up"].fix
    assert "trainedmodel_editor.yaml" in found["rbac"].fix


@pytest.mark.parametrize("tag", ["v0.5.1", "v0.15.2"])
def test_the_doctor_reads_the_local_release_agents_own_failure_lines(tmp_path, tag: str) -> None:
    """The local agent as a release has it (threads, fakes for S3 and Triton): a download that fails, a load
    Triton refuses and one it does not answer, each tried once; its log lines, as `kubectl logs` shows them,
    make 'gave_up' name the three and 'served' leave them to it."""
    import io
    import threading

    from helpers.clients.storage import StorageError
    from helpers.core.wait import poll_until
    from helpers.local.agent import release
    from helpers.local.agent.downloader import marker_path
    from helpers.local.agent.log import Logger
    from helpers.local.agent.puller import Backoff, LoadRefused, Puller, ServerUnreachable
    from helpers.local.agent.spec import ModelSpec, Op
    from helpers.local.agent.status import StatusFile

    class Triton:
        def load(self, name: str) -> None:
            if name == "refused":
                raise LoadRefused(f"Triton could not load model {name!r}: no", "no")
            if name == "unanswered":
                raise ServerUnreachable("connection refused")

        def unload(self, name: str) -> None:
            pass

        def index(self) -> dict:
            return {}

    class S3:
        def __init__(self) -> None:
            self.model_dir, self.stop = tmp_path / "models", threading.Event()

        def download(self, name: str, spec: ModelSpec) -> bool:
            if name == "missing":
                raise StorageError("unable to get batch objects s3://triton/missing has no objects", "upload it")
            marker = marker_path(self.model_dir, name, spec)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(spec.canonical())
            return True

    out, status = io.StringIO(), StatusFile(tmp_path / "status.json")
    puller = Puller(S3(), Triton(), status, Logger("test", out), Backoff(0.02, 0.05), check_interval=0.05,
                    reload_lost=False, behaviour=release.for_release(tag))
    names = ("missing", "refused", "unanswered")
    puller.start()
    try:
        for name in names:
            puller.enqueue(Op("add", name, ModelSpec(f"s3://triton/{name}")))
        poll_until(lambda: all((status.get(n) or {}).get("state") == "Failed" for n in names), "three failures",
                   timeout=10)
    finally:
        puller.stop()
    facts = healthy()
    facts.trained_models = [{"metadata": {"name": n}, "spec": {"inferenceService": "triton-mms", "model": {
        "storageUri": f"s3://triton/{n}", "memory": "1Gi"}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        for n in names]
    facts.repository = [{"name": "refused", "state": "UNAVAILABLE"}]
    facts.agent_lines = out.getvalue().splitlines()
    found = by_id(facts, "gave_up")
    assert found.result == doctor.PROBLEM, found
    for line in ("Failed to download model missing with err", "Failed to load model refused with status [400]",
                 "Failed to Load model unanswered"):
        assert line in found.evidence, (line, found.evidence)
    assert by_id(facts, "served").result == doctor.OK


# --- issue 21: the mesh on both routes, gateway tokens, the sidecar race; issue 24: models.json past 1 MiB --------
DENIED = {"url": "http://triton-mms.mms.svc.cluster.local", "status": 403, "body": "RBAC: access denied"}
OWNER_POLICY = {"name": "ns-owner-access-istio", "spec": {"action": "ALLOW", "rules": [
    {"when": [{"key": "source.namespace", "values": ["mms"]}]}]}}


def opening() -> dict:
    from helpers.clients import manifests

    (policy,) = manifests.render("predictor_authorization_policy", namespace="mms")
    return {"name": policy["metadata"]["name"], "spec": policy["spec"]}


def meshed(group: str = KSERVE_GROUP) -> doctor.Facts:
    """A Kubeflow 1.10+ namespace: Istio's AuthorizationPolicy kind served, the predictor pod labelled as KServe does."""
    facts = healthy(group)
    facts.served[f"{doctor.MESH_GROUP}/v1beta1"] = ["authorizationpolicies"]
    facts.pod["metadata"]["labels"] = {"component": "predictor", f"{group}/inferenceservice": "triton-mms"}
    facts.mesh_policies = [OWNER_POLICY]
    return facts


@pytest.mark.parametrize("group", GROUPS)
def test_the_issue_21_and_24_checks_are_quiet_on_a_healthy_namespace_of_each_profile(group: str) -> None:
    for facts in (healthy(group), meshed(group)):
        found = {f.id: f for f in doctor.run_checks(facts)}
        assert {key: found[key].result for key in ("cluster_local", "gateway", "sidecar_race", "models_json")} == \
            {key: doctor.OK for key in ("cluster_local", "gateway", "sidecar_race", "models_json")}


@pytest.mark.parametrize("group", GROUPS)
def test_the_cluster_local_address_denied_with_no_opening(group: str) -> None:
    facts = meshed(group)
    facts.cluster_local = dict(DENIED)
    found = by_id(facts, "cluster_local")
    assert found.result == doctor.PROBLEM
    assert "GET http://triton-mms.mms.svc.cluster.local/v2/health/live -> 403 RBAC: access denied" in found.evidence
    assert "no ALLOW AuthorizationPolicy in mms selects the predictor" in found.evidence
    assert "manifests/predictor_authorization_policy.yaml" in found.fix and "00 run as a learner" in found.fix
    assert found.issue == "https://github.com/kubeflow/community-distribution/issues/2201"
    facts.mesh_policies.append(opening())  # applied, yet refused: its rules, or Istio's push
    found = by_id(facts, "cluster_local")
    assert found.result == doctor.PROBLEM and "although AuthorizationPolicy allow-predictors-v2" in found.evidence
    facts.mesh_policies = None  # a learner may not list them (kubeflow-istio-edit: istio.io, networking.istio.io)
    facts.unreadable["authorizationpolicies"] = "could not read authorizationpolicies (403 Forbidden)"
    found = by_id(facts, "cluster_local")
    assert found.result == doctor.PROBLEM and "cannot be told" in found.evidence and "403 Forbidden" in found.evidence
    assert "manifests/predictor_authorization_policy.yaml" in found.fix


def test_an_opening_that_selects_other_pods_is_no_opening() -> None:
    facts = meshed()
    facts.cluster_local = dict(DENIED)
    other = opening()
    other["spec"] = {**other["spec"], "selector": {"matchLabels": {"app": "something-else"}}}
    facts.mesh_policies.append(other)
    assert "no ALLOW AuthorizationPolicy" in by_id(facts, "cluster_local").evidence
    other["spec"]["action"] = "DENY"
    other["spec"]["selector"] = {"matchLabels": {"component": "predictor"}}
    assert "no ALLOW AuthorizationPolicy" in by_id(facts, "cluster_local").evidence


def test_the_cluster_local_address_out_of_the_cluster_or_unanswered() -> None:
    facts = meshed()
    facts.cluster_local = {"url": "http://triton-mms.mms.svc.cluster.local", "skipped": "out-of-cluster"}
    found = by_id(facts, "cluster_local")
    assert found.result == doctor.NA and "inside the cluster" in found.evidence
    facts.cluster_local = {"url": "http://triton-mms.mms.svc.cluster.local", "status": None, "error": "ConnectTimeout"}
    assert by_id(facts, "cluster_local").result == doctor.NA
    facts.cluster_local = {"url": "http://triton-mms.mms.svc.cluster.local", "status": 503, "body": "no healthy upstream"}
    assert by_id(facts, "cluster_local").result == doctor.NA
    facts.cluster_local = None
    assert by_id(facts, "cluster_local").result == doctor.NA


@pytest.mark.parametrize("group", GROUPS)
def test_the_gateway_fix_names_the_opening_where_the_cluster_local_address_is_denied_too(group: str) -> None:
    facts = meshed(group)
    facts.gateway = {"url": "http://10.0.0.1", "status": 403, "body": "RBAC: access denied"}
    facts.cluster_local = dict(DENIED)
    found = by_id(facts, "gateway")
    assert found.result == doctor.PROBLEM and "MMS_INGRESS_COOKIE" in found.fix
    assert "manifests/predictor_authorization_policy.yaml" in found.fix and "global-deny-all" in found.fix
    assert "use the cluster-local address" not in found.fix
    facts.cluster_local = {"url": DENIED["url"], "status": 200, "body": ""}  # the cluster-local route is open there
    found = by_id(facts, "gateway")
    assert "use the cluster-local address" in found.fix and "predictor_authorization_policy" not in found.fix


def test_without_a_probe_the_gateway_fix_follows_00s_rule() -> None:
    """From outside the cluster nothing probed the cluster-local address: KServe's group with Istio's
    AuthorizationPolicy kind served is Kubeflow 1.10+ (00's step 5 reads it so); KFServing's is not."""
    gateway = {"url": "http://10.0.0.1", "status": 403, "body": "RBAC: access denied"}
    for group, mesh_advice in ((KSERVE_GROUP, True), (KFSERVING_GROUP, False)):
        facts = meshed(group)
        facts.cluster_local = {"url": DENIED["url"], "skipped": "out-of-cluster"}
        facts.gateway = gateway
        fix = by_id(facts, "gateway").fix
        assert ("predictor_authorization_policy.yaml" in fix) is mesh_advice, group
        assert ("use the cluster-local address" in fix) is not mesh_advice, group
    facts = healthy(KSERVE_GROUP)  # no AuthorizationPolicy kind served: the old advice
    facts.cluster_local, facts.gateway = None, gateway
    assert "use the cluster-local address" in by_id(facts, "gateway").fix


@pytest.mark.parametrize("group", GROUPS)
def test_a_service_account_token_at_a_gateway_that_trusts_only_dex(group: str) -> None:
    facts = meshed(group)
    facts.gateway = {"url": "http://10.0.0.1", "status": 401, "body": "Jwt issuer is not configured",
                     "sent": ["Authorization"]}
    found = by_id(facts, "gateway")
    assert found.result == doctor.PROBLEM and "-> 401 Jwt issuer is not configured" in found.evidence
    assert "only tokens Dex issued" in found.evidence and "m2m-dex-only" in found.evidence
    assert "MMS_INGRESS_COOKIE=<oauth2_proxy_kubeflow cookie>" in found.fix and "unset MMS_INGRESS_TOKEN" in found.fix
    assert "`m2m-dex-and-kind` overlay" in found.fix
    assert found.issue == "https://github.com/kubeflow/community-distribution/issues/2840"
    facts.gateway = {"url": "http://10.0.0.1", "status": 401, "body": "Jwt verification fails"}  # a bad token
    found = by_id(facts, "gateway")
    assert found.result == doctor.PROBLEM and "m2m-dex-and-kind" not in found.fix


def sidecar_pod(facts: doctor.Facts, hold: bool = False, post_start: bool = False, native: bool = False,
                istio: str = "1.24.3") -> None:
    """The server pod with Istio's injected sidecar, its agent started at 07:01:05Z."""
    proxy = {"name": "istio-proxy", "image": f"gcr.io/istio-release/proxyv2:{istio}"}
    if post_start:
        proxy["lifecycle"] = {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}
    if native:
        facts.pod["spec"]["initContainers"] = [{"name": "istio-init"}, {**proxy, "restartPolicy": "Always"}]
    else:
        facts.pod["spec"]["containers"].append(proxy)
    if hold:
        facts.pod["metadata"]["annotations"] = {"proxy.istio.io/config": '{"holdApplicationUntilProxyStarts": true}'}
    facts.pod["status"]["containerStatuses"][1]["state"] = {"running": {"startedAt": "2026-12-01T07:01:05Z"}}


def refused_at(seconds: float) -> str:
    from datetime import datetime, timezone

    started = datetime(2026, 12, 1, 7, 1, 5, tzinfo=timezone.utc).timestamp()
    return record("Failed to download model cifar10 with err dial tcp 10.96.0.12:9000: connect: connection refused",
                  started + seconds)


@pytest.mark.parametrize("group", GROUPS)
def test_the_agent_refused_before_the_istio_sidecar_was_up(group: str) -> None:
    facts = healthy(group)
    sidecar_pod(facts)
    facts.repository = []
    facts.agent_lines = [record("adding model cifar10", 0), refused_at(1.2)]
    found = by_id(facts, "sidecar_race")
    assert found.result == doctor.PROBLEM, found
    assert "connect: connection refused" in found.evidence and "no `pilot-agent wait` hook" in found.evidence
    assert """proxy.istio.io/config: '{"holdApplicationUntilProxyStarts": true}'""" in found.fix
    assert "kubectl delete pod -n mms" in found.fix and "apply each TrainedModel" in found.fix
    assert found.issue.endswith("1370")
    assert by_id(facts, "s3").result == doctor.OK  # S3 answers now: not "is MinIO running?"
    facts = healthy(group)  # the annotation, but no hook: the injector did not read it, nothing held the agent
    sidecar_pod(facts, hold=True)
    facts.agent_lines = [refused_at(1.2)]
    assert by_id(facts, "sidecar_race").result == doctor.PROBLEM
    for quiet in (dict(hold=True, post_start=True), dict(post_start=True), dict(native=True)):
        facts = healthy(group)
        sidecar_pod(facts, **quiet)
        facts.agent_lines = [refused_at(1.2)]
        assert by_id(facts, "sidecar_race").result == doctor.OK, quiet
    facts = healthy(group)  # a refusal a minute in: not the race (check_s3 and gave_up say what it was)
    sidecar_pod(facts)
    facts.agent_lines = [record("adding model cifar10", 0), refused_at(60)]
    assert by_id(facts, "sidecar_race").result == doctor.OK
    facts = healthy(group)  # no sidecar at all (the local stack, a namespace without injection)
    facts.agent_lines = [refused_at(1.2)]
    assert by_id(facts, "sidecar_race").result == doctor.OK


def test_on_istio_before_1_7_the_race_s_fix_is_applying_the_trainedmodels_again() -> None:
    """Kubeflow 1.0's Istio 1.1.6 has no holdApplicationUntilProxyStarts: the annotation the project's manifest
    carries changes nothing there, and the doctor says so instead of sending the learner to it."""
    facts = healthy(KFSERVING_GROUP)
    sidecar_pod(facts, hold=True, istio="1.1.6")
    facts.agent_lines = [refused_at(0.8)]
    found = by_id(facts, "sidecar_race")
    assert found.result == doctor.PROBLEM, found
    assert "asks to hold, but Istio 1.1.6 has no such option" in found.evidence
    assert "Istio 1.1.6 cannot hold" in found.fix and "apply each TrainedModel" in found.fix
    assert "holdApplicationUntilProxyStarts\": true" not in found.fix


def test_a_long_refusal_is_quoted_up_to_connection_refused() -> None:
    facts = healthy()
    sidecar_pod(facts)
    url = "http://minio-service.kubeflow.svc.cluster.local:9000/triton?list-type=2&prefix=" + "deep/" * 40
    from datetime import datetime, timezone

    start = datetime(2026, 12, 1, 7, 1, 5, tzinfo=timezone.utc).timestamp()
    facts.agent_lines = [record(f"Failed to download model cifar10 with err Get {url}: dial tcp 10.96.0.12:9000: "
                                "connect: connection refused", start + 1)]
    found = by_id(facts, "sidecar_race")
    assert found.result == doctor.PROBLEM and "connect: connection refused" in found.evidence
    quoted = found.evidence.split("start: ", 1)[1].split("; pod ", 1)[0]
    assert quoted.startswith("Failed to download model cifar10 with err Get http://") and " … " in quoted
    assert quoted.endswith("connect: connection refused") and len(quoted) <= 203


def test_an_early_refusal_while_s3_is_down_is_left_to_the_s3_check_with_a_pointer() -> None:
    facts = healthy()
    sidecar_pod(facts)
    facts.agent_lines = [refused_at(0.5)]
    facts.s3 = {"endpoint": "minio-service.kubeflow:9000", "bucket": "triton", "ok": False, "error": "connection refused"}
    assert by_id(facts, "sidecar_race").result == doctor.NA
    facts.s3 = None  # no Secret to try S3 with: the agent's line is all there is
    found = by_id(facts, "s3")
    assert found.result == doctor.PROBLEM and "minio" in found.fix and "sidecar race" in found.fix
    proxy = next(c for c in facts.pod["spec"]["containers"] if c["name"] == "istio-proxy")
    proxy["lifecycle"] = {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}  # held: no race
    assert "sidecar race" not in by_id(facts, "s3").fix


def test_the_agent_s_refusals_from_triton_are_not_the_sidecar_race() -> None:
    facts = healthy()
    sidecar_pod(facts)
    facts.agent_lines = [record("Failed to Load model cifar10", 1_796_000_000, modelName="cifar10",
                                error="Post http://localhost:8080/v2/repository/models/cifar10/load: connection refused")]
    assert by_id(facts, "sidecar_race").result == doctor.OK


def big_model(name: str, size: int) -> dict:
    return {"metadata": {"name": name}, "spec": {"inferenceService": "triton-mms", "model": {
        "framework": "pytorch", "storageUri": "s3://triton/" + "p" * size, "memory": "1Mi"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


@pytest.mark.parametrize("group", GROUPS)
def test_ready_trainedmodels_left_out_of_a_models_json_past_one_mib(group: str) -> None:
    facts = healthy(group)
    facts.trained_models += [big_model("huge-first", 600_000), big_model("huge-second", 600_000)]
    facts.model_config = {"name": "modelconfig-triton-mms-0", "bytes": 600_200, "models": ["cifar10", "huge-first"]}
    found = by_id(facts, "models_json")
    assert found.result == doctor.PROBLEM
    assert "Ready TrainedModel(s) not in it: huge-second" in found.evidence and "1048576" in found.evidence
    assert "another InferenceService" in found.fix and "delete TrainedModels" in found.fix
    assert found.issue.endswith("sharding/memory/strategy.go")
    facts.trained_models[-1]["status"]["conditions"][0]["status"] = "False"  # not Ready: the controller keeps at it
    assert by_id(facts, "models_json").result == doctor.OK
    facts = healthy(group)  # left out, but the list would fit: not this check's (the controller just has not written)
    facts.trained_models.append(big_model("small", 10))
    assert by_id(facts, "models_json").result == doctor.OK
    facts.model_config = None
    facts.unreadable["model_config"] = "could not read model_config (403 Forbidden)"
    assert by_id(facts, "models_json").result == doctor.NA


def test_entry_bytes_match_the_controllers_models_json() -> None:
    import json

    from helpers.local.controller.trainedmodels import model_entry

    tm = big_model("m", 30)
    assert entry_bytes(tm) == len(json.dumps(model_entry(tm), separators=(",", ":"))) + 1
