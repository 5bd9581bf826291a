"""The walkthrough, executed: papermill runs 00-05 in order against the session's local stack, then
07_one_server_many_models with three copies (99_cleanup after it: test_cleanup_notebook.py).

One run with the guide's settings on the default (kfserving-0.5) stack, one on a `kserve`-profile
stack with another namespace, server name and bucket, and the API group found from the cluster;
each notebook's results JSON is checked. Then: no secret in any executed notebook,
results file or log; a notebook run out of order says which one to run first; the committed
notebooks carry no outputs and have a `parameters` cell.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import pytest
import requests
from kubernetes import client

from helpers.core.resources import data_path, notebooks_dir
from helpers.local.stack import tf_backend, torch_backend
from helpers.steps.models import images
from helpers.steps.models.standins import CIFAR10_CLASSES
from helpers.tools import walkthrough
from support.guide_commands import Reader
from support.walkthroughs import (
    GUIDE,
    NOTEBOOKS,
    assert_no_secret,
    delete_server,
    doctor,
    read_notebook,
    results,
    run_walkthrough,
)

pytestmark = pytest.mark.stack

CLEANUP = walkthrough.CLEANUP
SCALE = "07_one_server_many_models"
COPIES = ["cifar10-01", "cifar10-02", "cifar10-03"]  # n_models=3: what 07 adds after 05
INCEPTION_LABELS = set(data_path("models", "inception_graphdef", "inception_labels.txt")
                       .read_text().splitlines())


@pytest.fixture(scope="module")
def walkthrough_and_reader(stack, kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict, Reader]]:
    """The walkthrough 00-05, then 07 with three copies in the same server (no stack of its own), and a reader who
    pastes every shell block each notebook printed right after it."""
    out = tmp_path_factory.mktemp("walkthrough")
    reader = Reader(stack, out / "requests", known_failing=list(CANNOT_RUN))
    try:
        runs = run_walkthrough(out, {}, after=reader.paste_blocks)
        scale = walkthrough.run_notebook(notebooks_dir() / f"{SCALE}.ipynb", out, {"n_models": len(COPIES)})
        assert scale.ok, f"{SCALE}: {scale.error} (see {scale.output})"
        reader.paste_blocks(scale)
        runs[SCALE] = scale
    finally:
        reader.close()
    yield runs, reader
    delete_server(kube, stack, "serving.kubeflow.org", "triton-mms", "mms")


@pytest.fixture(scope="module")
def default_run(walkthrough_and_reader) -> dict[str, walkthrough.Run]:
    return walkthrough_and_reader[0]


# --- the guide's settings ----------------------------------------------------------------------


def test_00_cluster_prep(default_run) -> None:
    found = results(default_run, "00_cluster_prep")
    assert found["api_reachable"] and found["namespace_ready"]
    assert all(check["ok"] for check in found["preflight"])
    assert {c["key"]: c["after"] for c in found["knative_config_deployment"]} == {
        "registriesSkippingTagResolving": "nvcr.io", "progressDeadline": "600s"}
    assert found["settings"] == {"target": "local", "identity": "admin", "namespace": "mms", "server_name": "triton-mms",
                                 "bucket": "triton", "api_group": "serving.kubeflow.org", "preset": "guide",
                                 "language": "en"}
    assert_plots(found, 1)
    assert Path(found["plots"][0]).name == "00_architecture.png"


def test_00_as_the_admin_then_01_to_05_as_the_learner(default_run, kube) -> None:
    """With `identity` left "", 00 runs as the admin and grants trainedmodels where Kubeflow 1.3's
    kubeflow-edit lacks them; 01-05 run as the Profile's default-editor, a Kubeflow Notebook's rights."""
    assert [results(default_run, name)["settings"]["identity"] for name in NOTEBOOKS] == ["admin"] + ["learner"] * 5
    found = results(default_run, "00_cluster_prep")
    assert found["admin_steps_skipped"] == [] and found["learner_trainedmodels"] is True
    role = client.RbacAuthorizationV1Api(kube).read_namespaced_role("trainedmodel-editor", "mms")
    assert [(r.api_groups, r.resources) for r in role.rules] == [(["serving.kubeflow.org"], ["trainedmodels"])]


def test_01_minio(default_run) -> None:
    found = results(default_run, "01_minio")
    assert "mlpipeline-minio-artifact" in default_run["01_minio"].output.read_text()  # where the learner read the keys
    assert found["bucket_reachable"] and found["minio_service"] == "minio-service"
    assert found["applied"] == ["Secret mms/mysecret", "ServiceAccount mms/sa"]
    assert found["applied_external"] == ["Service mms/minio-service"]


def test_02_server(default_run, stack) -> None:
    found = results(default_run, "02_server")
    assert found["url"] == stack.env()["MMS_INGRESS_URL"]  # the ingress gateway, with the learner's own session
    assert found["server_ready"] and found["server_live"]
    assert found["server_metadata"]["name"] == "triton"
    assert "model_repository" in found["server_metadata"]["extensions"]
    assert re.match(r"http://127\.0\.0\.1(:\d+)?$", found["url"])  # the ingress gateway (port 80 as root)


def test_03_cifar10(default_run) -> None:
    found = results(default_run, "03_cifar10")
    assert found["trainedmodel_ready"] and found["model_ready"]
    assert found["outputs"] == [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [1, 10]}]
    assert sorted(found["uploaded"]) == ["torchscript/cifar10/1/model.pt", "torchscript/cifar10/config.pbtxt"]
    assert [p["image"] for p in found["predictions"]] == list(images.CIFAR10_SAMPLES)
    for prediction in found["predictions"]:
        labels = [label for label, _ in prediction["top"]]
        assert len(labels) == 3 and set(labels) <= set(CIFAR10_CLASSES)
        scores = [score for _, score in prediction["top"]]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    timeline = found["agent_timeline"]
    assert timeline["model"] == "cifar10" and timeline["failed"] is None
    assert 0 <= timeline["download_s"] <= timeline["load_s"]
    assert isinstance(found["standin"], bool) and found["model_source"]
    native = torch_backend.choose().native  # the notebook says which backend served it, as Triton reports
    assert found["served_by"].startswith("Triton's own pytorch backend" if native else "a Python-based pytorch backend")
    assert_plots(found, 2)


def test_04_inception(default_run) -> None:
    found = results(default_run, "04_inception")
    assert found["trainedmodel_ready"] and found["model_ready"]
    assert found["outputs"] == [{"name": "InceptionV3/Predictions/Softmax", "datatype": "FP32",
                                 "shape": [len(images.INCEPTION_SAMPLES), 1001]}]
    assert {e["name"]: e["state"] for e in found["repository"]} == {"cifar10": "READY", "inception": "READY"}
    native = tf_backend.choose().native  # the notebook says which backend served it, as Triton reports
    assert found["served_by"].startswith("Triton's own tensorflow backend" if native
                                         else "a Python-based tensorflow backend")
    for prediction in found["predictions"]:
        labels = [label for label, _ in prediction["top"]]
        assert len(labels) == 5 and set(labels) <= INCEPTION_LABELS
    assert found["agent_timeline"]["load_s"] is not None
    assert_plots(found, 2)


def test_05_lifecycle(default_run) -> None:
    found = results(default_run, "05_lifecycle")
    model = "cifar10-lifecycle"
    assert found["added"]["before"] == ["cifar10", "inception"] and model in found["added"]["after"]
    assert found["reload"]["seen"]
    messages = [step["msg"] for step in found["reload"]["agent"]]
    assert messages.index("unloading model") < messages.index("Successfully loaded model")
    assert found["old_version_gone"] and found["versions"] == {
        "v2_ready": True, "v1_ready": False, "index": [
            {"name": model, "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
            {"name": model, "version": "2", "state": "READY", "reason": ""}]}
    assert found["deleted"]["absent_from_index"] and found["deleted"]["index"] == ["cifar10", "inception"]
    assert found["deleted"]["models_json"] == ["cifar10", "inception"]
    assert "Successfully unloaded model" in [step["msg"] for step in found["deleted"]["agent"]]
    served = {row["model"]: row["inference_count"] for row in found["statistics"]}
    assert served[model] == len(images.CIFAR10_SAMPLES) and served["cifar10"] >= 1
    # KFServing 0.5.1 checks no memory: the model is Ready and handed to the agent
    assert found["over_memory"] == {"limit": "16Gi", "asked": "32Gi", "memory_condition": None,
                                    "in_models_json": True, "ready": True, "refused": False}
    assert found["declared_memory_gib"] == {"cifar10": 1.0, "inception": 1.0, model: 1.0, "cifar10-too-big": 32.0}
    assert_plots(found, 1)
    assert any(f"successfully loaded '{model}'" in line for line in found["reload"]["triton_log"])
    # the real objects, as a cluster user reads them: models.json, the agent's JSON lines, Triton's stats
    # JSON, the TrainedModel's conditions and the API server's table
    shown = default_run["05_lifecycle"].shown()
    assert "models.json of ConfigMap modelconfig-triton-mms-0, before" in shown and f'"modelName": "{model}"' in shown
    agent = [json.loads(line) for line in shown.splitlines() if line.startswith("{") and f'"{model}"' in line]
    assert {"unloading model", "Successfully loaded model", "Successfully unloaded model"} <= {a["msg"] for a in agent}
    assert '"model_stats": [' in shown and '"inference_stats": {' in shown
    assert "status.conditions of TrainedModel cifar10-too-big" in shown and '"type": "Ready"' in shown
    assert re.search(r"^NAME\s+.*READY", shown, re.M) and "cifar10-too-big" in shown


def test_07_one_server_many_models(default_run, kube) -> None:
    """What one more pod costs here, three copies of cifar10 added and measured, the limits, the same copies as one
    InferenceService's model repository, all removed again."""
    found = results(default_run, SCALE)
    assert found["settings"]["identity"] == "admin"  # it reads the nodes and the cluster's configuration
    parts = {(p["container"], p["model_pod"], p["server_pod"]): p for p in found["footprint"]["parts"]}
    assert parts[("kfserving-container", False, True)]["memory"] == 16 * 2**30  # the guide's server, as its pod says
    assert parts[("agent", False, True)]["cpu"] == 0.1  # inferenceservice-config's agent, in the pod
    assert parts[("kfserving-container", True, False)]["memory"] == 2 * 2**30  # KServe's default predictor
    assert parts[("storage-initializer", True, False)]["memory"] == 100 * 2**20
    assert parts[("queue-proxy", True, True)]["cpu"] == 0.025  # Knative's default: the seed sets none
    # the guide's namespace is in Istio 1.1.6's mesh: the server pod's proxy, as the injector gave it
    assert parts[("istio-proxy", True, True)]["cpu"] == 0.01 and parts[("istio-proxy", True, True)]["memory"] == 40 * 2**20
    assert found["footprint"]["unread"] == [] and found["footprint"]["absent"] == []
    assert found["footprint"]["nodes"][0]["pods"] == 110
    cost = found["cost"]
    assert cost["per_model"]["pods"] == len(COPIES) and cost["one_server"]["pods"] == 1
    assert cost["per_model"]["cpu"] == 3.105 and cost["one_server"]["cpu"] == 1.135
    assert cost["even_memory"] == 8 and cost["fits"] > 0
    assert found["models"] == COPIES and sorted(found["uploaded"]) == ["scale/cifar10/1/model.pt",
                                                                      "scale/cifar10/config.pbtxt"]
    added = {a["name"]: a for a in found["added"]}
    assert list(added) == COPIES
    for one in added.values():
        assert not one["refused"] and 0 < one["served_s"] < 30
        assert one["download_s"] is not None and one["load_s"] is not None and one["handoff_s"] is not None
        assert one["sampled"] >= one["applied"] + one["served_s"] - 1  # the first metrics sample after the load
        assert 50 * 2**20 < one["triton_memory"] < 4 * 2**30 and one["agent_memory"] > 0
    assert found["before_memory"]["kfserving-container"] > 0 and found["memory_unread"] == ""
    assert found["answered"] == {name: True for name in COPIES} and set(COPIES) <= set(found["index"])
    rule = found["memory_rule"]
    assert rule["limit"] == "16Gi" and rule["models"] == 2 + len(COPIES) and rule["room"] == 16 - 2 - len(COPIES)
    assert rule["checked"] is False  # KFServing 0.5.1 adds nothing up
    size = found["configmap"]
    assert size["entries"] == 2 + len(COPIES) and size["compact"] and 90 < size["per_entry"] < 200
    assert 5_000 < size["largest"] < 12_000
    repo = found["repository"]  # the same copies as one InferenceService's whole model repository
    assert repo["name"] == "triton-mms-repo" and repo["models"] == COPIES and repo["unread"] == ""
    assert repo["init_containers"] == ["storage-initializer", "istio-init"]
    assert repo["containers"] == ["kfserving-container", "istio-proxy"]
    assert 0 < repo["ready_s"] <= repo["served_s"] < 120 and repo["memory"] > 50 * 2**20
    assert repo["requests"] == {"cpu": 1.01, "memory": 2 * 2**30 + 40 * 2**20}  # with Istio's proxy
    files = [f"scale/{where}/{rest}" for where in ["cifar10", *(f"repository/{n}" for n in COPIES)]
             for rest in ("1/model.pt", "config.pbtxt")]
    assert sorted(repo["uploaded"]) == sorted(files[2:])
    assert found["removed"]["deleted"] == COPIES and not set(COPIES) & set(found["removed"]["index"])
    assert found["removed"]["repository_server"] is True and sorted(found["removed"]["files"]) == sorted(files)
    assert_plots(found, 2)
    shown = default_run[SCALE].shown()
    assert re.search(r"^CONTAINER\s+ONE-MODEL POD\s+SERVER POD", shown, re.M)
    assert re.search(r"^pods\s+3\s+1$", shown, re.M)  # the comparison, as printed
    assert re.search(r"^cifar10-03\s+\d+\.\d\d", shown, re.M) and "(before)" in shown
    assert "kubectl top pod ${SERVER#pod/} -n mms --containers" in shown
    assert "modelconfig-triton-mms-0: models.json is" in shown
    assert re.search(r"^triton-mms-repo-predictor\S+\s+2/2\s+Running", shown, re.M)  # kubectl get pods, both servers
    assert re.search(r"^models served\s+3\s+3$", shown, re.M)  # the two ways, side by side
    # Triton's /metrics, through a port-forward to the pod's 8002 (the kubelet forwards it to Triton's metrics port)
    assert found["metrics_read"], found.get("metrics_unread")
    assert all(any(f'model="{name}"' in line and line.endswith(" 1") for line in found["metrics_lines"])
               for name in COPIES)
    left = client.CustomObjectsApi(kube).list_namespaced_custom_object("serving.kubeflow.org", "v1alpha1", "mms",
                                                                       "trainedmodels")["items"]
    assert not {tm["metadata"]["name"] for tm in left} & set(COPIES)  # 07's and the reader's copies, all deleted


def test_07_as_a_learner_says_what_it_may_not_read_and_goes_on(default_run, tmp_path: Path) -> None:
    """A Kubeflow Notebook's rights: no nodes, no cluster configuration, no metrics API; one line each, and the
    TrainedModels, the limits and the repository server as the admin's run has them."""
    run = walkthrough.run_notebook(notebooks_dir() / f"{SCALE}.ipynb", tmp_path, {"n_models": 1, "identity": "learner"})
    assert run.ok, f"{run.error} (see {run.output})"
    found = json.loads(run.results.read_text())
    assert found["settings"]["identity"] == "learner"
    unread = found["footprint"]["unread"]
    assert len(unread) == 3 and all("403" in line for line in unread), unread
    assert found["footprint"]["nodes"] == [] and found["cost"]["fits"] is None
    assert [p["container"] for p in found["footprint"]["parts"]] == ["kfserving-container", "agent", "istio-proxy",
                                                                     "kfserving-container"]  # the pod's own
    assert "pods.metrics.k8s.io" in found["memory_unread"] and found["added"][0]["triton_memory"] is None
    assert found["answered"] == {"cifar10-01": True} and found["removed"]["deleted"] == ["cifar10-01"]
    assert found["repository"]["models"] == ["cifar10-01"] and found["repository"]["memory"] is None
    shown = run.shown()
    assert "not read: nodes (403" in shown and "no memory figures: the metrics API" in shown


def test_the_doctor_is_quiet_on_the_healthy_server(stack, default_run) -> None:
    code, findings = doctor(stack, "mms", "triton-mms", "triton")
    assert code == 0, [f for f in findings if f["result"] == "problem"]


def assert_plots(found: dict, count: int) -> None:
    assert len(found["plots"]) == count
    for path in map(Path, found["plots"]):
        assert path.suffix == ".png" and path.stat().st_size > 5_000, path


def test_executed_notebooks_show_the_guide_equivalents(default_run) -> None:
    text = default_run["03_cifar10"].output.read_text()
    for command in ("kubectl apply -f trained_model1.yaml", "logs $SERVER agent", "MODEL_NAME=cifar10",
                    "/v2/models/${MODEL_NAME}/ready", "-d @./${MODEL_NAME}.json", "mc cp -r models/cifar10"):
        assert command in text, command
    request = json.loads((default_run["03_cifar10"].results.parent.parent / "requests" / "cifar10.json").read_text())
    assert request["inputs"][0]["name"] == "INPUT__0" and request["inputs"][0]["shape"] == [1, 3, 32, 32]


@pytest.mark.parametrize("name, model", [("03_cifar10", "cifar10"), ("04_inception", "inception")])
def test_the_model_notebooks_show_the_real_objects(default_run, name: str, model: str) -> None:
    """The agent's JSON lines and Triton's lines as `kubectl logs` prints them, models.json, the
    `kubectl get` table, and the v2 request and response JSON, abridged only with a marker."""
    shown = default_run[name].shown()
    agent = [line for line in shown.splitlines() if line.startswith("{") and f'"{model}"' in line]
    assert agent and all(json.loads(line)["msg"] for line in agent)
    assert f"successfully loaded '{model}'" in shown  # Triton's own log line
    assert re.search(r"^NAME\s+URL\s+READY", shown, re.M)  # the API server's table, as kubectl prints it
    assert "models.json of ConfigMap modelconfig-triton-mms-0" in shown and f'"modelName": "{model}"' in shown
    assert '"model_name": "' + model + '"' in shown and '"outputs": [' in shown  # the v2 response
    assert "more, abridged here" in shown and "request body written to" in shown
    found = results(default_run, name)
    assert model in [entry["modelName"] for entry in found["models_json"]]


def test_the_guides_commands_run_in_bash_after_the_walkthrough(stack, kube, default_run, tmp_path: Path) -> None:
    """The guide's command sequence, taken from its text, in one bash shell; prints how many ran verbatim."""
    from support import guide_commands as guide

    requests_dir = default_run["03_cifar10"].results.parent.parent / "requests"
    steps = guide.run_on_stack(stack, kube, requests_dir, tmp_path)
    summary = guide.report(steps)
    print(summary)
    (default_run["03_cifar10"].results.parent / "guide_commands.txt").write_text(summary + "\n")
    assert [step.guide for step in steps if step.run is not None and step.code != 0] == [], summary
    # The guide's cluster: its curls go to kfserving-ingressgateway, which no login guards.
    assert [step.guide for step in steps if "Cookie" in (step.run or "")] == [], summary
    skipped = [step.guide for step in steps if guide.kubectl_or_curl(step.guide) and step.run is None]
    assert skipped == [c for c in guide.SUBSTITUTIONS if c.startswith("curl -v http://${")]  # the two fallbacks
    out = lambda command: guide.outputs(steps, command)
    assert "MINIO_ACCESS_KEY" in out("kubectl get pods -l app=minio -o jsonpath={.items[0].spec.containers[0].env} "
                                     "-n kubeflow")[0]
    assert out('kubectl get svc -l app=minio -o name -n kubeflow | cut -d "/" -f 2') == ["minio-service\n"]
    assert re.search(r"^triton-mms\s+http://triton-mms\.mms\.example\.com\s+True", out(
        "kubectl get inferenceservice triton-mms -n mms")[0], re.M)
    root = out('curl -v -H "Host: ${SERVICE_HOSTNAME}" http://${CLUSTER_IP}/v2')[0]
    assert "< HTTP/1.1 200 OK" in root and '"name":"triton"' in root
    assert "service/serving-service exposed" in out(
        "kubectl expose pod ${POD_NAME} --type=NodePort --name serving-service -n mms")[0]
    agent = out("kubectl -n mms logs $SERVER agent")[0] + out("kubectl logs $SERVER agent -n mms")[0]
    for model in ("cifar10", "inception"):
        about = [line for line in agent.splitlines() if f'"{model}"' in line]
        for step in ("Downloading model", "Creating successFile", "Successfully loaded model"):
            assert any(step in line for line in about), (model, step)
        assert any("SUCCESS." in line for line in about)
    tritons = out("kubectl logs $SERVER kfserving-container")
    assert "successfully loaded 'cifar10'" in tritons[0] and "successfully loaded 'inception'" in tritons[1]
    infer = out('curl -v -X POST -H "Host: ${SERVICE_HOSTNAME}" http://${CLUSTER_IP}/v2/models/$MODEL_NAME/infer '
                "-d @./${MODEL_NAME}.json")
    cifar10 = json.loads(infer[0].splitlines()[-1])
    assert [(o["name"], o["datatype"], o["shape"]) for o in cifar10["outputs"]] == [("OUTPUT__0", "FP32", [1, 10])]
    assert "< HTTP/1.1 200 OK" in infer[1]
    models = out("kubectl get trainedmodel -n mms")[-1]
    for model in ("cifar10", "inception"):
        assert re.search(rf"^{model}\s+\S+\s+True", models, re.M), models
    assert "inception_graphdef" in out("./mc tree myminio/")[0]
    ingress, host = stack.env()["MMS_INGRESS_URL"], "triton-mms.mms.example.com"
    for model in ("cifar10", "inception"):
        assert requests.get(f"{ingress}/v2/models/{model}/ready", headers={"Host": host, **stack.gateway_headers()},
                            timeout=10).status_code == 200


# Printed lines that cannot run as printed after their notebook, each with the precise reason. Each entry
# must match a printed line (else it is stale and the test says so): the list only shrinks.
CANNOT_RUN: dict[str, str] = {}  # empty since 05 writes each TrainedModel it applies as a file


def test_every_command_the_notebooks_print_runs_as_printed(walkthrough_and_reader) -> None:
    """Every shell block 00-05 print, pasted line by line into one bash right after its notebook (after
    `eval "$(python -m helpers.local env)"`, in the reader's folder with the guide's YAML files): each line
    but the model downloads exits 0. A block that acts on what its notebook deletes before it ends (05)
    runs when the notebook's blocks replay it in order: what a block changes or deletes, an earlier block
    made. CANNOT_RUN lists, each with its reason, the lines for which no printed line does that yet."""
    runs, reader = walkthrough_and_reader
    steps = reader.steps
    (runs["03_cifar10"].results.parent / "pasted_commands.txt").write_text("\n".join(
        f"{s.notebook} [{s.label}] {'-' if s.run is None else s.code} $ {s.guide}" for s in steps) + "\n")
    assert {step.notebook for step in steps} >= set(GUIDE)
    exempt = {pattern: [s for s in steps if re.search(pattern, s.guide)] for pattern in CANNOT_RUN}
    assert [pattern for pattern, found in exempt.items() if not found] == [], "stale CANNOT_RUN entries"
    assert [s.guide for found in exempt.values() for s in found if s.code == 0] == [], "they run now: drop them"
    excused = {id(s) for found in exempt.values() for s in found}
    assert len([s for s in steps if s.run]) >= 35
    failed = [(s.notebook, s.run, s.code, s.output[-300:]) for s in steps
              if s.run and s.code != 0 and id(s) not in excused]
    assert failed == []
    infer = [s.output for s in steps if s.run and "/infer -d @" in s.run]
    # Two (one a model) when the gateway has port 80; four when another stack holds it (the line with
    # MMS_INGRESS_URL is printed and run as well).
    assert len(infer) in (2, 4) and all("< HTTP/1.1 200 OK" in text for text in infer)


# --- other settings, the other API group ------------------------------------------------------


# --- safety and messages ------------------------------------------------------------------------


def test_no_secret_in_any_executed_notebook_result_or_log(stack, default_run) -> None:
    assert_no_secret(stack, default_run)


def test_out_of_order_notebooks_say_which_to_run_first(stack, default_run, tmp_path: Path) -> None:
    path = notebooks_dir()
    cases = [("01_minio", {"namespace": "never-made"}, "run 00_cluster_prep first"),
             ("03_cifar10", {"namespace": "never-made", "identity": "admin"}, "run 02_server first")]
    for name, params, fix in cases:
        run = walkthrough.run_notebook(path / f"{name}.ipynb", tmp_path, params)
        assert not run.ok
        errors = [o for c in read_notebook(run.output).cells for o in c.get("outputs", [])
                  if o.output_type == "error"]
        assert len(errors) == 1 and errors[0].ename == "SetupError"
        shown = "\n".join(errors[0].traceback)
        assert fix in shown and "Traceback" not in shown, shown  # cause and fix, no wall of frames


def test_widgets_render_and_never_block_a_headless_run(stack, default_run, tmp_path: Path) -> None:
    import papermill

    output = tmp_path / "00_interactive.ipynb"
    papermill.execute_notebook(str(notebooks_dir() / "00_cluster_prep.ipynb"), str(output),
                               parameters={"interactive": True, "results_path": str(tmp_path / "r.json")},
                               kernel_name=walkthrough.KERNEL, cwd=str(notebooks_dir()),
                               progress_bar=False, execution_timeout=300)
    mimes = {m for c in read_notebook(output).cells for o in c.get("outputs", []) for m in o.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" in mimes
    assert json.loads((tmp_path / "r.json").read_text())["namespace_ready"]


# --- the committed notebooks --------------------------------------------------------------------


@pytest.mark.parametrize("name", [*NOTEBOOKS, "06_troubleshooting", SCALE, CLEANUP])
def test_committed_notebook_is_clean(name: str) -> None:
    nb = read_notebook(notebooks_dir() / f"{name}.ipynb", validate=True)
    assert nb.metadata.kernelspec.name == walkthrough.KERNEL
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and params[0] is code[0]
    # A few lines: the language and the target; every other setting comes from the settings file
    # (papermill may still pass any of them: notebook.start reads every local).
    for setting in ("language", "target"):
        assert re.search(rf"^{setting} = ", params[0].source, re.M), setting
    # The lesson shape (issue 22, item 4): a few lines pointing to the settings file, and the bookkeeping
    # in one hidden closing cell.
    assert len(params[0].source.splitlines()) <= 8, params[0].source
    last = code[-1]
    assert "ctx.save(" in last.source and last.metadata.get("jupyter", {}).get("source_hidden") is True
    assert "bookkeeping" in last.metadata.get("tags", [])  # markdown ("Next") may follow it
    assert [c for c in code if "ctx.save(" in c.source] == [last]
    for cell in code[1:]:  # the defaults live in the parameters cell only
        assert not re.search(r"""["'](mms|triton-mms|triton)["']""", cell.source), cell.source
    first = nb.cells[0]
    assert first.cell_type == "markdown" and re.search(r"^> Guide", first.source, re.M)  # its sections quoted
    assert re.search(r"[\uac00-\ud7a3]", first.source)  # the guide's Korean heading is quoted


