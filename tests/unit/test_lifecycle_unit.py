"""helpers.steps.operations.lifecycle and .cleanup without a stack: the pure parts 05_lifecycle and 99_cleanup rely on."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.clients import manifests
from helpers.core.errors import SetupError
from helpers.core.show import text_width
from helpers.steps.operations import cleanup, lifecycle
from helpers.steps.scale import packing


def agent_line(ts: float, logger: str, msg: str, model: str) -> str:
    return json.dumps({"level": "info", "ts": ts, "logger": logger, "msg": msg, "modelName": model})


def test_versioned_copy_moves_the_weights_and_drops_the_configs_name(tmp_path: Path) -> None:
    source = tmp_path / "cifar10"
    (source / "1").mkdir(parents=True)
    (source / "1" / "model.pt").write_bytes(b"weights")
    (source / "config.pbtxt").write_text('name: "cifar10"\nplatform: "pytorch_libtorch"\nmax_batch_size: 1\n')
    out = lifecycle.versioned_copy(source, tmp_path / "v2", 2)
    assert (out / "2" / "model.pt").read_bytes() == b"weights" and not (out / "1").exists()
    assert (out / "config.pbtxt").read_text() == 'platform: "pytorch_libtorch"\nmax_batch_size: 1\n'
    (source / "1" / "model.pt").unlink()
    (source / "1").rmdir()
    with pytest.raises(SetupError):
        lifecycle.versioned_copy(source, tmp_path / "v3", 3)


def test_steps_after_reads_one_models_events_in_order_after_a_mark() -> None:
    lines = [agent_line(10.0, "modelWatcher", "adding model", "m"),
             agent_line(10.5, "modelProcessor", "Successfully loaded model", "m"),
             "not json",
             agent_line(20.0, "modelWatcher", "removing model", "m"),
             agent_line(20.1, "modelWatcher", "adding model", "m-other"),
             agent_line(20.2, "modelProcessor", "unloading model", "m"),
             agent_line(21.0, "modelProcessor", "Successfully loaded model", "m")]
    steps = lifecycle.steps_after(lines, "m", skip=3)
    assert [(s.seconds, s.msg) for s in steps] == [(0.0, "removing model"), (0.2, "unloading model"),
                                                   (1.0, "Successfully loaded model")]
    assert steps[0].line == lines[3]
    assert lifecycle.in_order([s.msg for s in steps], ["unloading model", "Successfully loaded model"])
    assert not lifecycle.in_order([s.msg for s in steps], ["Successfully loaded model", "unloading model"])
    assert lifecycle.timeline(steps).splitlines()[1] == "+  0.200s  modelProcessor  unloading model"


def test_memory_quantities_and_a_model_too_big() -> None:
    assert lifecycle.gib("512Mi") == 0.5 and lifecycle.gib("16Gi") == 16.0
    assert lifecycle.more_than("16Gi") == "32Gi" and lifecycle.more_than("2Gi") == "4Gi"
    assert lifecycle.more_than("") == "64Gi"
    isvc = manifests.render("multi_model_triton_server", namespace="n", server_name="s", api_group="serving.kserve.io",
                            server_memory="2Gi")[0]
    assert lifecycle.memory_limit(isvc) == "2Gi" and lifecycle.memory_limit({"spec": {}}) == ""


def test_edited_changes_only_the_copy() -> None:
    docs = manifests.render("trained_model1", namespace="n", server_name="s", api_group="serving.kserve.io",
                            bucket="b", model_name="cifar10")
    changed = lifecycle.edited(docs, "other", "s3://b/x", memory="4Gi")
    assert changed[0]["metadata"]["name"] == "other" and changed[0]["spec"]["model"] == {
        "framework": "pytorch", "storageUri": "s3://b/x", "memory": "4Gi"}
    assert docs[0]["metadata"]["name"] == "cifar10" and docs[0]["spec"]["model"]["memory"] == "1Gi"


def test_model_names_and_entry_read_models_json() -> None:
    entries = [{"modelName": "cifar10", "modelSpec": {"storageUri": "s3://b/c"}},
               {"modelName": "inception", "modelSpec": {"storageUri": "s3://b/i"}}]
    assert lifecycle.model_names(entries) == ["cifar10", "inception"]
    assert lifecycle.entry(entries, "inception") == entries[1] and lifecycle.entry(entries, "x") is None


def test_cleanup_knows_the_walkthroughs_prefixes_and_refuses_kubeflows_namespace() -> None:
    assert cleanup.model_prefixes("b") == ["torchscript/cifar10", "models/inception_graphdef", lifecycle.PREFIX,
                                          packing.FOLDER]
    with pytest.raises(SetupError) as err:
        cleanup.teardown(None, None, "kubeflow", "s")  # type: ignore[arg-type]
    assert "Kubeflow's own" in err.value.cause


def test_cleanup_table_shows_what_each_step_removed_and_its_commands_and_names_what_went() -> None:
    steps = [cleanup.Step("TrainedModels", "kubectl delete trainedmodels.serving.kubeflow.org -l x -n mms",
                          ["cifar10", "inception"], kind="TrainedModel"),
             cleanup.Step("bucket objects", "rclone purge a\nrclone purge b", [f"k{i}" for i in range(9)]),
             cleanup.Step("Profile and namespace", "kubectl delete profiles.kubeflow.org mms")]
    steps[2].keep("kept: delete_profile=False")
    lines = cleanup.table(steps).splitlines()
    assert lines[0].split() == ["STEP", "REMOVED"]
    assert lines[1].split() == ["TrainedModels", "cifar10"]
    assert lines[2].split() == ["inception"]
    assert lines[3].split() == ["bucket", "objects", "k0"]
    assert lines[4].split() == ["k1"]
    assert lines[9].strip() == "… 3 more"
    assert lines[10].split() == ["Profile", "and", "namespace", "(kept:", "delete_profile=False)"]
    assert len({line.index("cifar10") if "cifar10" in line else line.index("(kept") for line in lines
                if "cifar10" in line or "(kept" in line}) == 1  # one column
    assert cleanup.Step("Secret", "kubectl delete secret s -n mms").outcome() == ["(nothing to remove)"]
    # the commands, each under its step's name, as one block that pastes and runs
    assert cleanup.commands(steps).splitlines() == [
        "# TrainedModels", "kubectl delete trainedmodels.serving.kubeflow.org -l x -n mms",
        "# bucket objects", "rclone purge a", "rclone purge b",
        "# Profile and namespace", "kubectl delete profiles.kubeflow.org mms"]
    assert [s.what for s in steps if s.kept] == ["Profile and namespace"]
    assert cleanup.summary([], steps).splitlines() == ["left: nothing of the walkthrough's objects",
                                                       "kept on purpose: Profile and namespace"]
    assert cleanup.deleted(steps, "mms") == ["TrainedModel mms/cifar10", "TrainedModel mms/inception"]
    assert steps[0].as_dict()["removed"] == ["cifar10", "inception"]


def test_cleanup_table_lines_up_korean_step_names() -> None:
    """A Korean character takes two columns: the REMOVED column still starts at one place."""
    from helpers.core import i18n

    try:
        i18n.set_language("ko")
        steps = [cleanup.Step("Secret (S3 keys)", "kubectl delete secret s -n mms", ["mysecret"],
                              title="시크릿 (S3 키)"),
                 cleanup.Step("TrainedModels", "kubectl delete x", ["cifar10"], title="TrainedModels")]
        lines = cleanup.table(steps).splitlines()
    finally:
        i18n.set_language(None)
    columns = {text_width(line[:line.index(name)]) for line, name in zip(lines[1:], ["mysecret", "cifar10"])}
    assert len(columns) == 1, lines


class GrowingLogs:
    """A target whose containers' logs grow by one line each time they are read (as a live pod's do)."""

    def __init__(self, agent: list[str], triton: list[str]) -> None:
        self.lines = {"agent": agent, "kfserving-container": triton}
        self.reads = {"agent": 0, "kfserving-container": 0}

    def container_log(self, api, group, server, namespace, container) -> str:
        self.reads[container] += 1
        return "\n".join(self.lines[container][:self.reads[container]])


def test_logs_read_each_container_from_the_mark_on() -> None:
    from helpers.clients.inference import ServerRef
    from helpers.core.constants import api_group

    agent = [agent_line(1.0, "modelWatcher", "adding model", "m"),
             agent_line(2.0, "modelProcessor", "unloading model", "m"),
             agent_line(2.5, "modelProcessor", "unloading model", "other"),
             agent_line(3.0, "modelProcessor", "Successfully loaded model", "m")]
    triton = ["I1 model_lifecycle.cc] loading: m:1", "I2 model_lifecycle.cc] successfully unloaded 'm' version 1",
              "I3 model_lifecycle.cc] successfully loaded 'm' version 2"]
    target = GrowingLogs(agent, triton)
    logs = lifecycle.Logs(None, target, ServerRef("s", "n", api_group("serving.kubeflow.org")))  # type: ignore[arg-type]
    logs.mark()  # the first line of each log is before the mark
    steps = logs.wait_agent("m", until=["unloading model", "Successfully loaded model"], timeout=10)
    assert [s.msg for s in steps] == ["unloading model", "Successfully loaded model"]
    assert logs.triton_since("m") == triton[1:2] and logs.triton_since("m") == triton[1:]
    with pytest.raises(SetupError) as err:
        logs.wait_agent("m", until=["Successfully unloaded model"], timeout=1)
    assert "did not log Successfully unloaded model for m" in err.value.cause
    assert "trainedmodels.serving.kubeflow.org m -n n" in err.value.fix


def test_abridged_statistics_keeps_the_counts_and_names_what_it_left_out() -> None:
    count = {"count": 3, "ns": 600}
    stat = {"name": "m", "version": "2", "inference_count": 3, "execution_count": 3,
            "inference_stats": {"success": count, "fail": {"count": 0, "ns": 0}, "queue": count,
                                "compute_input": count, "compute_infer": count, "cache_hit": count},
            "response_stats": {}, "batch_stats": [{"batch_size": 1}], "memory_usage": []}
    (shown,) = lifecycle.abridged_statistics([stat])["model_stats"]
    assert shown["inference_stats"] == {"success": count, "fail": {"count": 0, "ns": 0}, "queue": count,
                                        "compute_infer": count}
    assert shown["inference_count"] == 3 and shown["memory_usage"] == [] and "batch_stats" not in shown
    assert shown["…"] == ("abridged here: response_stats, batch_stats, inference_stats.compute_input, "
                          "inference_stats.cache_hit")
    assert "…" not in lifecycle.abridged_statistics([{"name": "m", "inference_stats": {}}])["model_stats"][0]
