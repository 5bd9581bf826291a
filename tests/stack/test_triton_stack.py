"""helpers.clients.triton against the real tritonserver, serving the guide's two model layouts as stand-ins.

One module-scoped server; the tests run in order, as a learner's session would: look at the
server, infer, classify, send bad inputs, load a broken model, unload. Starting, busy ports
and a killed server get servers of their own.
"""
from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from helpers.clients import triton
from helpers.core.errors import SetupError
from helpers.core.resources import data_path
from helpers.core.wait import poll_until
from helpers.local.stack import process, tf_backend, tritonserver
from helpers.steps.models.standins import CIFAR10_CLASSES, write_cifar10_standin, write_inception_standin
from support.parts import Parts, TritonPart, ports

pytestmark = pytest.mark.stack

ONE_CPU_INSTANCE = "\ninstance_group [{ count: 1, kind: KIND_CPU }]\n"  # a python stub each, where Python-based


def _one_instance(folder: Path, rename: str = "") -> Path:
    config = folder / "config.pbtxt"
    text = config.read_text()
    if rename:
        text = re.sub(r'(?m)^name:.*$', f'name: "{rename}"', text)
    config.write_text(text + ONE_CPU_INSTANCE)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonPart]:
    root = Path(tmp_path_factory.mktemp("triton"))
    repo = root / "models"
    _one_instance(write_cifar10_standin(repo / "cifar10"))
    # The TrainedModel is called `inception`: the folder is named so, the config carries no name.
    _one_instance(write_inception_standin(repo / "inception"))
    broken = _one_instance(write_cifar10_standin(repo / "broken"), rename="broken")
    (broken / "1" / "model.pt").write_bytes(b"this is not a TorchScript zip archive\n" * 20)
    # The classic trap: the config's name differs from the folder (the TrainedModel's name).
    _one_instance(write_cifar10_standin(repo / "cifar10-renamed"))
    with Parts(root) as parts:
        yield parts.triton(repo)


@pytest.fixture(scope="module")
def loaded(server: TritonPart) -> TritonPart:
    triton.load_model(server.url, "cifar10")
    triton.load_model(server.url, "inception")
    return server


def _labels() -> list[str]:
    return data_path("models", "inception_graphdef", "inception_labels.txt").read_text().splitlines()


def test_server_answers_v2_and_is_ready(server: TritonPart):
    meta = triton.server_metadata(server.url)
    assert meta["name"] == "triton" and meta["version"] == "2.51.0"
    assert {"classification", "model_repository", "binary_tensor_data"} <= set(meta["extensions"])
    assert triton.server_ready(server.url) and triton.server_ready(server.url.split("://")[1])


def test_explicit_mode_loads_nothing_by_itself(server: TritonPart):
    index = {m["name"]: m for m in triton.repository_index(server.url)}
    assert set(index) == {"cifar10", "inception", "broken", "cifar10-renamed"}
    assert all(m["state"] != "READY" for m in index.values())


def test_both_models_load_and_report_the_guides_signatures(loaded: TritonPart):
    assert triton.model_ready(loaded.url, "cifar10") and triton.model_ready(loaded.url, "inception")
    cifar = triton.model_metadata(loaded.url, "cifar10")
    assert cifar["inputs"] == [{"name": "INPUT__0", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert cifar["outputs"] == [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, 10]}]
    config = triton.model_config(loaded.url, "inception")
    assert config["name"] == "inception" and config["platform"] == "tensorflow_graphdef"
    assert config["backend"] == "tensorflow"  # Triton's own (no runtime) or the Python-based one (model.py)
    assert (config.get("runtime") or "") == ("" if tf_backend.choose().native else "model.py")
    assert config["max_batch_size"] == 128


def test_cifar10_answers_alike_over_http_binary_json_and_grpc(loaded: TritonPart):
    import torch

    image = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
    answers = [
        triton.infer(loaded.url, "cifar10", {"INPUT__0": image}),
        triton.infer(loaded.url, "cifar10", {"INPUT__0": image}, binary=False),
        triton.infer(loaded.url, "cifar10", image, protocol="grpc", grpc_url=loaded.grpc_url),
    ]
    expected = torch.jit.load(str(loaded.repository / "cifar10" / "1" / "model.pt"))(torch.from_numpy(image)).detach().numpy()
    for answer in answers:
        assert list(answer) == ["OUTPUT__0"]
        assert answer["OUTPUT__0"].shape == (1, 10) and answer["OUTPUT__0"].dtype == np.float32
        np.testing.assert_allclose(answer["OUTPUT__0"], expected, rtol=1e-4, atol=1e-5)
    assert len(CIFAR10_CLASSES) == 10


def test_cifar10_max_batch_size_is_triton_s_to_enforce(loaded: TritonPart):
    with pytest.raises(triton.TritonError, match="batch-size must be <= 1"):
        triton.infer(loaded.url, "cifar10", np.zeros((2, 3, 32, 32), np.float32))


def test_inception_batches_and_returns_probabilities(loaded: TritonPart):
    images = np.random.default_rng(2).uniform(-1, 1, (2, 299, 299, 3)).astype(np.float32)
    out = triton.infer(loaded.url, "inception", {"input": images})["InceptionV3/Predictions/Softmax"]
    assert out.shape == (2, 1001) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-4)
    grpc_out = triton.infer(loaded.grpc_url, "inception", images, protocol="grpc")
    np.testing.assert_allclose(grpc_out["InceptionV3/Predictions/Softmax"], out, rtol=1e-5)


def test_classify_takes_labels_from_the_models_label_file(loaded: TritonPart):
    images = np.random.default_rng(3).uniform(-1, 1, (2, 299, 299, 3)).astype(np.float32)
    probabilities = triton.infer(loaded.url, "inception", images)["InceptionV3/Predictions/Softmax"]
    top = triton.classify(loaded.url, "inception", images, top_k=3)
    labels = _labels()
    assert len(labels) == 1001 and labels[0] == "background" and labels[1] == "tench"
    assert len(top) == 2
    for item, probs in zip(top, probabilities):
        assert [index for _, index, _ in item] == list(np.argsort(-probs)[:3])
        for score, index, label in item:
            assert label == labels[index]
            assert score == pytest.approx(probs[index], rel=1e-4)


def test_wrong_shape_and_dtype_are_named_before_sending(loaded: TritonPart):
    with pytest.raises(triton.InferenceInputError) as caught:
        triton.infer(loaded.url, "cifar10", np.zeros((3, 32, 32), np.float32))
    assert "[-1, 3, 32, 32]" in str(caught.value) and "[3, 32, 32]" in str(caught.value)
    with pytest.raises(triton.InferenceInputError) as caught:
        triton.infer(loaded.url, "inception", {"input": np.zeros((1, 299, 299, 3), np.float64)},
                     protocol="grpc", grpc_url=loaded.grpc_url)
    assert "FP32" in str(caught.value) and "FP64" in str(caught.value)


def test_corrupt_model_fails_with_tritons_message_and_the_rest_keep_serving(loaded: TritonPart):
    with pytest.raises(triton.ModelLoadError) as caught:
        triton.load_model(loaded.url, "broken")
    message = str(caught.value)
    assert "'broken'" in message and "not a loadable TorchScript file" in message
    assert isinstance(caught.value, SetupError)
    assert triton.server_ready(loaded.url)  # --strict-readiness=false: /v2/health/ready stays 200
    assert triton.model_ready(loaded.url, "cifar10") and not triton.model_ready(loaded.url, "broken")
    state = {m["name"]: m for m in triton.repository_index(loaded.url)}["broken"]
    # Triton's own pytorch backend passes libtorch's words on; the Python-based one writes its own.
    assert state["state"] == "UNAVAILABLE" and ("PytorchStreamReader" in state["reason"] or "TorchScript" in state["reason"])
    assert "Exception raised from" not in message  # libtorch's stack trace stays in the server's log
    assert triton.infer(loaded.url, "cifar10", np.zeros((1, 3, 32, 32), np.float32))["OUTPUT__0"].shape == (1, 10)


def test_config_name_differing_from_folder_is_named(loaded: TritonPart):
    with pytest.raises(triton.ModelLoadError) as caught:
        triton.load_model(loaded.url, "cifar10-renamed")
    # Triton answers only "failed to poll from model repository"; its log has the reason.
    assert "failed to poll" in caught.value.cause
    assert "`name` differs from the folder" in caught.value.fix and "'cifar10-renamed'" in caught.value.fix


def _count_metadata_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import tritonclient.http as httpclient

    asked: list[str] = []
    original = httpclient.InferenceServerClient.get_model_metadata

    def counted(self, model_name, *args, **kwargs):
        asked.append(model_name)
        return original(self, model_name, *args, **kwargs)

    monkeypatch.setattr(httpclient.InferenceServerClient, "get_model_metadata", counted)
    return asked


def test_infer_reuses_one_client_and_the_metadata(loaded: TritonPart, monkeypatch: pytest.MonkeyPatch):
    triton.forget_clients()
    asked = _count_metadata_requests(monkeypatch)
    x = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
    first = triton.infer(loaded.url, "cifar10", x)["OUTPUT__0"]
    for binary in (True, False, True):
        assert np.allclose(triton.infer(loaded.url, "cifar10", x, binary=binary)["OUTPUT__0"], first, atol=1e-5)
    assert asked == ["cifar10"]  # one metadata request for four calls
    assert len([k for k in triton._reused.clients if k[0] == loaded.url]) == 1
    with pytest.raises(triton.InferenceInputError):  # inputs are still checked before sending
        triton.infer(loaded.url, "cifar10", x[0])


def test_unknown_model_says_to_load_it(loaded: TritonPart):
    with pytest.raises(triton.TritonError) as caught:
        triton.infer(loaded.url, "resnet", np.zeros((1, 3), np.float32))
    assert "resnet" in str(caught.value) and "load the model first" in caught.value.fix
    assert triton.model_ready(loaded.url, "resnet") is False


def test_unload_leaves_the_other_model_serving(loaded: TritonPart):
    triton.unload_model(loaded.url, "cifar10")
    state = {m["name"]: m for m in triton.repository_index(loaded.url)}["cifar10"]
    assert state["state"] == "UNAVAILABLE" and state["reason"] == "unloaded"
    assert triton.model_ready(loaded.url, "inception")
    triton.unload_model(loaded.url, "inception")


def test_a_busy_port_is_named(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        chosen = {**ports("http", "metrics"), "grpc": port}
        with pytest.raises(SetupError) as caught:
            tritonserver.start("triton", tmp_path / "models", tritonserver.prepare_backends(tmp_path / "b"),
                               chosen, tmp_path / "triton.log")
    assert f"port {port}" in str(caught.value) and "already in use" in str(caught.value)


TINY_CONFIG = """backend: "python"
max_batch_size: 0
input [{{ name: "{name}", data_type: TYPE_FP32, dims: [ 4 ] }}]
output [{{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] }}]
instance_group [{{ count: 1, kind: KIND_CPU }}]
"""
TINY_MODEL = """import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", (r.inputs()[0].as_numpy() * 2).astype(np.float32))]) for r in requests]
"""


def _tiny(folder: Path, input_name: str) -> None:
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(TINY_CONFIG.format(name=input_name))
    (folder / "1" / "model.py").write_text(TINY_MODEL)


def test_a_reused_client_follows_a_restarted_server_and_a_changed_model(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    repo = tmp_path / "models"
    _tiny(repo / "tiny", "INPUT0")
    asked = _count_metadata_requests(monkeypatch)
    x = np.ones(4, np.float32)
    with Parts(tmp_path) as parts:
        server = parts.triton(repo, name="triton-restart")
        url = server.url
        triton.load_model(url, "tiny")
        assert triton.infer(url, "tiny", {"INPUT0": x})["OUTPUT0"].tolist() == [2.0] * 4
        # Killed and started again on the same address with the same model, as a kubelet restarts a
        # crashed container: the reused client reconnects and the metadata still holds, so nothing is
        # fetched again. (A SIGTERM would wait out Triton's exit timeout for the kept-alive connection.)
        # The whole process group, as a container's processes all end with it: the model's Python
        # backend stub outlived a SIGKILL of Triton alone, busy, until the machine stopped.
        os.killpg(server.record.pid, signal.SIGKILL)
        process.stop(server.record)  # reaps it
        parts.triton(repo, name="triton-restart", on=server.record.ports)
        triton.load_model(url, "tiny")
        assert triton.infer(url, "tiny", {"INPUT0": x})["OUTPUT0"].tolist() == [2.0] * 4
        assert asked == ["tiny"]
        # Reloaded with another input name: Triton refuses the request built from the old
        # metadata; the call forgets it, fetches it again and names the new input before sending.
        _tiny(repo / "tiny", "X")
        triton.load_model(url, "tiny")
        with pytest.raises(triton.InferenceInputError, match="expects inputs X"):
            triton.infer(url, "tiny", {"INPUT0": x})
        assert asked == ["tiny", "tiny"]
        assert triton.infer(url, "tiny", {"X": x})["OUTPUT0"].tolist() == [2.0] * 4
        assert asked == ["tiny", "tiny"]  # the fresh metadata is reused again


def test_a_killed_server_is_detected(tmp_path: Path):
    with Parts(tmp_path) as parts:
        record = parts.triton(tmp_path / "models", name="triton-kill").record
        url = tritonserver.http_url(record)
        assert record.alive() and triton.server_ready(url)
        os.kill(record.pid, signal.SIGKILL)
        poll_until(lambda: not record.alive(), "the killed tritonserver to be seen as gone", timeout=10)
        assert triton.server_ready(url) is False
        with pytest.raises(triton.TritonError, match="cannot reach"):
            triton.server_metadata(url)
