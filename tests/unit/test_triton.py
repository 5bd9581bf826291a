"""helpers.clients.triton and helpers.local.stack.tritonserver without a server: input checks, request JSON,
classification parsing, URLs, errors for an unreachable server, and the backend folder."""
from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from helpers.clients import triton, triton_errors
from helpers.core.errors import SetupError
from helpers.local.stack import process, torch_backend, tritonserver

CIFAR10_META = {
    "name": "cifar10",
    "inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [-1, 3, 32, 32]}],
    "outputs": [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, 10]}],
}
TWO_INPUTS_META = {
    "inputs": [{"name": "A", "datatype": "INT64", "shape": [-1, 4]},
               {"name": "B", "datatype": "BYTES", "shape": [-1]}],
    "outputs": [],
}


def test_check_inputs_accepts_any_batch_size_and_a_bare_array():
    batch = np.zeros((3, 3, 32, 32), np.float32)
    checked = triton.check_inputs("cifar10", CIFAR10_META, batch)
    assert list(checked) == ["INPUT__0"] and checked["INPUT__0"] is batch
    assert triton.check_inputs("cifar10", CIFAR10_META, {"INPUT__0": batch[:1]})["INPUT__0"].shape == (1, 3, 32, 32)


def test_wrong_shape_names_expected_and_given_and_suggests_the_batch_dimension():
    with pytest.raises(triton.InferenceInputError) as caught:
        triton.check_inputs("cifar10", CIFAR10_META, np.zeros((3, 32, 32), np.float32))
    message = str(caught.value)
    assert "INPUT__0" in message and "[-1, 3, 32, 32]" in message and "given shape [3, 32, 32]" in message
    assert "np.newaxis" in caught.value.fix


def test_wrong_shape_of_same_rank_suggests_reshape():
    with pytest.raises(triton.InferenceInputError) as caught:
        triton.check_inputs("cifar10", CIFAR10_META, np.zeros((1, 32, 32, 3), np.float32))
    assert "given shape [1, 32, 32, 3]" in str(caught.value)
    assert "reshape" in caught.value.fix


def test_wrong_dtype_names_expected_and_given_and_the_conversion():
    with pytest.raises(triton.InferenceInputError) as caught:
        triton.check_inputs("cifar10", CIFAR10_META, np.zeros((1, 3, 32, 32)))  # float64
    message = str(caught.value)
    assert "expects datatype FP32" in message and "given FP64 (float64)" in message
    assert "astype(np.float32)" in caught.value.fix
    assert isinstance(caught.value, SetupError)


def test_input_names_are_checked_both_ways():
    with pytest.raises(triton.InferenceInputError, match="unknown: INPUT0"):
        triton.check_inputs("cifar10", CIFAR10_META, {"INPUT0": np.zeros((1, 3, 32, 32), np.float32)})
    with pytest.raises(triton.InferenceInputError, match="missing: B"):
        triton.check_inputs("m", TWO_INPUTS_META, {"A": np.zeros((1, 4), np.int64)})
    with pytest.raises(triton.InferenceInputError, match="has 2 inputs"):
        triton.check_inputs("m", TWO_INPUTS_META, np.zeros((1, 4), np.int64))


def test_bytes_inputs_pass_as_object_arrays():
    checked = triton.check_inputs("m", TWO_INPUTS_META, {"A": np.zeros((2, 4), np.int64),
                                                         "B": np.array([b"x", b"y"], dtype=object)})
    assert set(checked) == {"A", "B"}


@pytest.mark.parametrize("array", [
    np.random.default_rng(0).random((2, 3, 4), dtype=np.float32), np.arange(-5, 7, dtype=np.int64).reshape(3, 4),
    np.array([[True, False]]), np.linspace(-2, 2, 6, dtype=np.float16), np.asfortranarray(np.eye(3, dtype=np.float64)),
    np.array([b"cat", b"dog"], dtype=object)])
def test_json_inputs_are_exactly_what_tritonclient_builds(array):
    import tritonclient.http as httpclient

    ours = triton._http_input("X", array, binary=False)
    theirs = httpclient.InferInput("X", list(array.shape), ours.datatype())
    theirs.set_data_from_numpy(array, binary_data=False)
    assert ours._get_tensor() == theirs._get_tensor() and ours._get_binary_data() == theirs._get_binary_data()
    assert [type(v) for v in ours._get_tensor()["data"]] == [type(v) for v in theirs._get_tensor()["data"]]


def test_infer_request_json_is_the_guides_body():
    data = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
    body = triton.infer_request_json({"INPUT__0": data})
    assert body == {"inputs": [{"name": "INPUT__0", "shape": [1, 3, 2, 2], "datatype": "FP32",
                                "data": [float(v) for v in range(12)]}]}


def test_infer_request_json_with_outputs_asks_for_json_outputs():
    body = triton.infer_request_json({"x": np.array([[1, 2]], np.int32)}, outputs=["y"])
    assert body["inputs"][0]["datatype"] == "INT32" and body["inputs"][0]["data"] == [1, 2]
    assert body["outputs"] == [{"name": "y", "parameters": {"binary_data": False}}]


def test_parse_classification_per_batch_item():
    values = np.array([[b"0.9:3:cat", b"0.05:5:dog"], [b"0.7:0:airplane", b"0.2:11:a:b"]], dtype=object)
    assert triton.parse_classification(values) == [[(0.9, 3, "cat"), (0.05, 5, "dog")],
                                                   [(0.7, 0, "airplane"), (0.2, 11, "a:b")]]
    # A model without a batch dimension answers one row; a model without a label file gives no label.
    assert triton.parse_classification(np.array([b"0.5:2"], dtype=object)) == [[(0.5, 2, "")]]


def test_urls_with_and_without_scheme():
    assert triton.split_url("http://127.0.0.1:8000/") == ("127.0.0.1:8000", False)
    assert triton.split_url("127.0.0.1:8000") == ("127.0.0.1:8000", False)
    assert triton.split_url("https://triton.example.com") == ("triton.example.com", True)
    with pytest.raises(ValueError):
        triton.split_url("ftp://x")


def test_grpc_needs_its_own_address_when_given_an_http_url():
    with pytest.raises(ValueError, match="grpc_url"):
        triton.infer("http://127.0.0.1:8000", "cifar10", np.zeros((1, 3, 32, 32), np.float32), protocol="grpc")
    assert triton._grpc_address("http://127.0.0.1:8000", "127.0.0.1:8001") == "127.0.0.1:8001"
    assert triton._grpc_address("127.0.0.1:8001", None) == "127.0.0.1:8001"


def test_unreachable_server_is_named():
    url = f"http://127.0.0.1:{process.free_port()}"
    assert triton.server_ready(url) is False
    with pytest.raises(triton.TritonError, match="cannot reach Triton at"):
        triton.model_ready(url, "cifar10")
    with pytest.raises(triton.TritonError, match="cannot reach Triton at"):
        triton.load_model(url, "cifar10")
    with pytest.raises(triton.TritonError, match="cannot reach Triton at"):
        triton.infer(url, "cifar10", np.zeros((1, 3, 32, 32), np.float32), protocol="grpc",
                     grpc_url=f"127.0.0.1:{process.free_port()}")


def test_load_error_fix_names_the_config_name_trap():
    fix = triton_errors.load_fix("inception", ("failed to load 'inception', failed to poll from model repository: "
                                               "unexpected directory name 'inception' for model 'inception_graphdef', "
                                               "directory name must equal model name"))
    assert "config.pbtxt `name`" in fix and "'inception'" in fix


# --- helpers.local.stack.tritonserver, no process ---

def test_triton_env_puts_this_python_first(monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", "/old/lib")
    monkeypatch.setenv("PATH", "/usr/bin")
    env = tritonserver.triton_env()
    libs = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert libs[0] == sysconfig.get_config_var("LIBDIR") and libs[-1] == "/old/lib"
    assert any(p.endswith("nvidia_pytriton.libs") for p in libs)
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_triton_env_adds_torch_lib_only_for_the_native_pytorch_backend(tmp_path):
    torch_lib = str(torch_backend.torch_dir() / "lib")
    (tmp_path / "pytorch").mkdir()
    (tmp_path / "pytorch" / "model.py").write_text("")
    assert torch_lib not in tritonserver.triton_env(backends=tmp_path)["LD_LIBRARY_PATH"].split(os.pathsep)
    (tmp_path / "pytorch" / "libtriton_pytorch.so").write_bytes(b"")
    env = tritonserver.triton_env({"PATH": "/usr/bin"}, backends=tmp_path)
    assert torch_lib in env["LD_LIBRARY_PATH"].split(os.pathsep) and env["OMP_NUM_THREADS"] == "1"
    assert tritonserver.triton_env({"OMP_NUM_THREADS": "2"}, backends=tmp_path)["OMP_NUM_THREADS"] == "2"


def test_tritonserver_binary_from_env(monkeypatch, tmp_path):
    not_executable = tmp_path / "tritonserver"
    not_executable.write_text("")
    monkeypatch.setenv("TRITONSERVER", str(not_executable))
    with pytest.raises(SetupError, match="not an executable file"):
        tritonserver.tritonserver_binary()
    not_executable.chmod(0o755)
    assert tritonserver.tritonserver_binary() == str(not_executable)
    monkeypatch.delenv("TRITONSERVER")
    assert tritonserver.tritonserver_binary().endswith("pytriton/tritonserver/bin/tritonserver")


def test_prepare_backends_is_idempotent_and_recopies_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("MMS_TORCH_BACKEND", "python")  # the native layout: tests/stack/test_torch_backend.py
    monkeypatch.setenv("MMS_TF_BACKEND", "python")  # the native layout: tests/stack/test_tf_backend.py
    dest = tritonserver.prepare_backends(tmp_path / "backends")
    expected = ["python/libtriton_python.so", "python/triton_python_backend_stub",
                "python/triton_python_backend_utils.py", "pytorch/model.py", "tensorflow/model.py"]
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == expected
    assert os.access(dest / "python" / "triton_python_backend_stub", os.X_OK)
    stamp = (dest / "python" / "libtriton_python.so").stat().st_mtime_ns
    copied = dest / "pytorch" / "model.py"
    copied.write_text("# edited\n")
    tritonserver.prepare_backends(dest)
    assert (dest / "python" / "libtriton_python.so").stat().st_mtime_ns == stamp
    assert copied.read_text() == (Path(tritonserver.__file__).parent.parent / "backends" / "pytorch" / "model.py").read_text()


def test_start_refuses_a_busy_port(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = {"http": port, "grpc": process.free_port(), "metrics": process.free_port()}
        with pytest.raises(SetupError, match=f"port {port} on 127.0.0.1"):
            tritonserver.start("triton", tmp_path / "repo", tmp_path / "backends", ports, tmp_path / "t.log")


def test_a_load_that_never_answers_is_a_load_error_not_unreachable():
    import socket

    with socket.socket() as silent:  # takes the connection, never answers: a stuck Triton
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(triton.ModelLoadError, match="did not finish loading model 'cifar10' within 1s") as caught:
            triton.load_model(url, "cifar10", timeout=1)
    assert "stub" in caught.value.fix


def test_infer_request_json_can_ask_for_classes():
    """04_inception's request file: curl gets Triton's `score:index:label` strings, not 1001 floats."""
    body = triton.infer_request_json({"input": np.zeros((1, 2), np.float32)}, outputs=["probs"], classes=5)
    assert body["outputs"] == [{"name": "probs", "parameters": {"classification": 5, "binary_data": False}}]
