"""06_troubleshooting breaks, shows and mends each pitfall, and helpers.steps.troubleshoot.doctor names it.

On the session's local stack: papermill runs 00, 01 and 06 (06 breaks its own server in nine ways,
each with the commands shown, and runs the doctor after each); every command 06 prints, pasted as
printed; the command line on a namespace with nothing in it, and the stack's S3 server stopped. A
file of its own (one module-scoped 06 run serves every test here), so xdist can run it beside
test_doctor.py, whose checks also need the kubeflow-1.10 stack. The checks on recorded facts, and
06's recording for cluster learners: tests/unit/test_doctor_facts.py.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.core.config import project_root
from helpers.core.constants import KFSERVING_GROUP
from helpers.steps.troubleshoot import pitfalls
from helpers.tools import walkthrough
from support.walkthroughs import read_notebook

# the doctor's check (Finding.id) that names each pitfall
PITFALLS = {"wrong_prefix": "annotation_prefix", "no_region": "region", "fixed_after_start": "stale_env",
            "virtual_host": "virtual_host", "multi_model_flag": "multi_model", "config_name": "config_name",
            "memory": "memory", "wrong_shape": "shape", "s3_bucket": "s3"}


@pytest.fixture(scope="module")
def run06(stack, tmp_path_factory: pytest.TempPathFactory) -> walkthrough.Run:
    out = tmp_path_factory.mktemp("doctor-walkthrough")
    runs = walkthrough.run_all({"offline": True}, out, only=["00", "01"])
    assert all(r.ok for r in runs), [r.error for r in runs]
    return walkthrough.run_notebook(project_root() / "notebooks" / "06_troubleshooting.ipynb", out, {"pitfalls": "all"})


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
def test_06_shows_each_step_as_a_command_and_the_doctor_as_problem_rows(run06: walkthrough.Run) -> None:
    """Each pitfall: the break, the look and the mend as commands (labelled not in the guide), the raw
    symptom, the doctor's PROBLEM rows only (never an `ok` row), a TrainedModel still Ready."""
    assert run06.ok, run06.error
    text = "\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                     for c in read_notebook(run06.output).cells if c.cell_type == "code" for o in c.outputs)
    assert text.count("# not in the guide: break it, as you could by hand") == len(pitfalls.ALL)
    assert text.count("$ python -m helpers.doctor --namespace mms --server triton-doctor --problems") == len(pitfalls.ALL)
    assert text.count("# not in the guide: mend it") == len(pitfalls.ALL) - 1  # no_region: the next section mends it
    assert "$ kubectl annotate secret doctor-s3 -n mms serving.kubeflow.org/s3-region-" in text
    assert "$ kubectl delete trainedmodel doctor-named -n mms" in text
    assert "kind: InferenceService" in text and "kind: TrainedModel" in text and "kind: Secret" in text
    doctor_rows = [line for line in text.splitlines() if re.match(r"^\S.*  (ok|n/a) {5}", line)]
    assert doctor_rows == [], doctor_rows[:3]
    # No release records the agent's failure: the TrainedModel still reads Ready, as upstream shows it.
    ready = text.split(".status.conditions[?(@.type==\"Ready\")].status}'")[1].split("# not in the guide")[0]
    assert "Ready=True" in ready


@pytest.mark.stack
def test_the_shown_commands_break_as_printed(stack, run06: walkthrough.Run, tmp_path: Path) -> None:
    """The no_region pitfall by hand, with the commands 06 printed (after `helpers.local env`) and the manifests
    it wrote: the agent logs MissingRegion, and the doctor's --problems names it with PROBLEM rows only."""
    assert run06.ok, run06.error
    env = {**os.environ}
    for line in subprocess.run([sys.executable, "-m", "helpers.local", "env"], capture_output=True, text=True,
                               cwd=project_root(), check=True).stdout.splitlines():
        if line.startswith("export ") and "$(" not in line:
            key, value = line[7:].split("#")[0].strip().split("=", 1)
            env[key] = value.replace('"$PATH"', os.environ["PATH"]).strip('"')

    def sh(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=240,
                              cwd=project_root(), env=env)

    folder = run06.output.parent / "06_troubleshooting"
    setup = sh("kubectl get secret mysecret -n mms -o json | python3 -c 'import json,sys; s=json.load(sys.stdin); "
               "s[\"metadata\"]={\"name\":\"doctor-s3\",\"namespace\":\"mms\",\"annotations\":"
               "s[\"metadata\"][\"annotations\"]}; json.dump(s, sys.stdout)' | kubectl apply -f - && "
               "kubectl create serviceaccount doctor-sa -n mms && "
               "kubectl patch serviceaccount doctor-sa -n mms -p '{\"secrets\":[{\"name\":\"doctor-s3\"}]}'")
    assert setup.returncode == 0, setup.stderr
    try:
        region = f"{KFSERVING_GROUP}/s3-region"
        broken = sh(f"kubectl annotate secret doctor-s3 -n mms {region}-\n"
                    f"kubectl apply -f {folder}/triton-doctor.yaml\n"
                    f"kubectl wait inferenceservice/triton-doctor -n mms --for=condition=Ready --timeout=180s\n"
                    f"kubectl apply -f {folder}/doctor-cifar.yaml")
        assert broken.returncode == 0, broken.stderr
        # (the model files are gone with 06's cleanup: the region fails before any download is tried)
        from helpers.core.wait import poll_until

        logs = f"kubectl logs -n mms -l {KFSERVING_GROUP}/inferenceservice=triton-doctor -c agent --tail=-1"
        poll_until(lambda: "MissingRegion" in sh(f"{logs} | grep MissingRegion | tail -1").stdout,
                   "the agent to log MissingRegion", timeout=60)
        found = sh("python -m helpers.doctor --namespace mms --server triton-doctor --problems")
        assert found.returncode == 1 and "S3 region (s3-region)" in found.stdout and "PROBLEM" in found.stdout
        assert " ok " not in found.stdout
    finally:
        sh("kubectl delete inferenceservice triton-doctor -n mms --ignore-not-found && "
           "kubectl delete secret doctor-s3 -n mms --ignore-not-found && "
           "kubectl delete serviceaccount doctor-sa -n mms --ignore-not-found")


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
    assert len(found) == 28
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




@pytest.mark.stack
def test_every_command_06_prints_runs_as_printed(stack, run06: walkthrough.Run, tmp_path: Path) -> None:
    """Each shell block 06 printed, pasted line by line into one bash after it (as 00-05's are in
    test_notebooks.py), in the reader's folder with the guide's YAML files: every line exits 0. The blocks
    replay 06 in order, so what a block mends, an earlier block broke."""
    from support.guide_commands import Reader

    assert run06.ok, run06.error
    reader = Reader(stack, tmp_path)
    try:
        reader.paste_blocks(run06)
    finally:
        reader.close()
    assert [s for s in reader.steps if s.run], "06 prints shell blocks"
    # The doctor exits 1 when it names a problem (what a CI job wants): after a break, that is the point.
    named = [s for s in reader.steps if s.run and "helpers.doctor" in s.run and s.code == 1 and "PROBLEM" in s.output]
    assert named, "the doctor named the pitfalls it was pasted after"
    assert [(s.label, s.run, s.code, s.output[-300:]) for s in reader.steps
            if s.run and s.code != 0 and s not in named] == []
