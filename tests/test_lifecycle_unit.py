"""helpers.lifecycle and helpers.cleanup without a stack: the pure parts 05_lifecycle and 99_cleanup rely on."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import cleanup, lifecycle, manifests
from helpers.errors import SetupError


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
    assert lifecycle.raw(steps, width=40).splitlines()[0].endswith("…")
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


def test_conditions_table_lists_each_condition() -> None:
    table = lifecycle.conditions_table({"status": {"conditions": [
        {"type": "MemoryResourceAvailable", "status": "False", "reason": "MemoryResourceNotAvailable",
         "message": "Inference Service does not have enough memory resources for Trained Model"}]}})
    head, row = table.splitlines()
    assert head.split() == ["TYPE", "STATUS", "REASON", "MESSAGE"]
    assert row.startswith("MemoryResourceAvailable  False   MemoryResourceNotAvailable  Inference Service")


def test_cleanup_knows_the_walkthroughs_prefixes_and_refuses_kubeflows_namespace() -> None:
    assert cleanup.model_prefixes("b") == ["torchscript/cifar10", "models/inception_graphdef", lifecycle.PREFIX]
    with pytest.raises(SetupError) as err:
        cleanup.teardown(None, None, "kubeflow", "s", say=lambda _: None)  # type: ignore[arg-type]
    assert "Kubeflow's own" in err.value.cause
    step = cleanup.Step("InferenceService", "kubectl delete ...")
    assert step.line().endswith("nothing to remove")
    step.removed.append("triton-mms")
    assert step.line() == f"{'InferenceService':<34} triton-mms"
