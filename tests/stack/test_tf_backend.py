"""TensorFlow GraphDef on the local Triton: Triton's own tensorflow backend when built, else the Python-based one.

Real servers: the inception stand-in (04_inception's GraphDef, the guide's config unmodified)
loads through `libtriton_tensorflow.so` inside tritonserver (skipped, saying why, only when
`make setup` could not build it), beside cifar10 on Triton's own pytorch backend; a corrupt
GraphDef is refused while the rest stays up; the Python-based fallback serves it with the build
made unavailable (an empty cache); one state folder switches between the two. The choice, the
build script's refusals and the backend folder are checked without a server.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import psutil
import pytest

from helpers.clients import triton
from helpers.core.config import project_root
from helpers.core.errors import SetupError
from helpers.local.stack import process, tf_backend, torch_backend, tritonserver
from helpers.local.stack.stack import Stack
from helpers.steps.models.standins import (
    INCEPTION_INPUT,
    INCEPTION_OUTPUT,
    INCEPTION_SIZE,
    write_cifar10_standin,
    write_inception_standin,
)
from support.parts import Parts, TritonPart

pytestmark = pytest.mark.stack

STUB = "triton_python_backend_stub"
SCRIPT = project_root() / "scripts" / "build-triton-tensorflow.sh"
REPOS = ("tensorflow_backend", "backend", "core", "common")


def _built(module=tf_backend, setting: str = tf_backend.BACKEND_ENV):
    """The choice as `make setup` left it, whatever this shell's MMS_TF_BACKEND (MMS_TORCH_BACKEND) says."""
    saved = os.environ.pop(setting, None)
    try:
        return module.choose()
    finally:
        if saved is not None:
            os.environ[setting] = saved


def _require_native() -> tf_backend.TensorFlowBackend:
    choice = _built()
    if not choice.native:
        pytest.skip(f"Triton's tensorflow backend was not built, so only the fallback is tested: {choice.reason}")
    return choice


def _images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 1, INCEPTION_SIZE, INCEPTION_SIZE, 3), dtype=np.float32)


def _expected(repo: Path, batch: np.ndarray, model: str = "inception") -> np.ndarray:
    """The stand-in's GraphDef run by TensorFlow in this process (one thread, as the backends run it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((repo / model / "1" / "model.graphdef").read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        return session.run(f"{INCEPTION_OUTPUT}:0", {f"{INCEPTION_INPUT}:0": batch})


def _start(parts: Parts, repo: Path, env: dict[str, str] | None = None) -> TritonPart:
    """A bare tritonserver on `parts.root/backends` as the choice now stands (`env`: settings for this start only)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        return parts.triton(repo, name=f"triton-{parts.root.name}")


def _stubs(record: process.ProcessRecord) -> list[psutil.Process]:
    children = psutil.Process(record.pid).children(recursive=True)
    return [p for p in children if STUB in " ".join(p.cmdline())]


def _unnamed_threads(pid: int) -> int:
    """Threads still called `tritonserver`: Triton's own and TensorFlow's intra-op pool (which names none)."""
    tasks = Path(f"/proc/{pid}/task")
    return sum(1 for t in tasks.iterdir() if (t / "comm").read_text().strip() == "tritonserver")


def _one_instance(folder: Path) -> Path:
    config = folder / "config.pbtxt"
    config.write_text(config.read_text() + "\ninstance_group [{ count: 1, kind: KIND_CPU }]\n")
    return folder


@pytest.fixture()
def no_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The build made unavailable: an empty cache, no library given, the default choice."""
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    monkeypatch.setenv("MMS_CACHE_DIR", str(cache))
    for name in ("TRITON_TENSORFLOW_LIB", tf_backend.BACKEND_ENV, "TRITON_PYTORCH_LIB", "MMS_TORCH_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    return cache


# --- the decision, the build script and the backend folder, without a server ---------------------

def test_without_a_build_the_fallback_says_why(no_build: Path):
    choice = tf_backend.choose()
    assert choice.kind == tf_backend.PYTHON and not choice.native
    assert "not built" in choice.reason and str(no_build) in choice.reason
    failed = tf_backend.build_folder()
    failed.mkdir(parents=True)
    (failed / "FAILED").write_text("cannot build: missing patch\n")
    assert "its build failed: cannot build: missing patch" in tf_backend.choose().reason


def test_forcing_native_without_the_library_names_the_fix(no_build: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(tf_backend.BACKEND_ENV, "native")
    with pytest.raises(SetupError, match="make setup"):
        tf_backend.choose()
    monkeypatch.setenv(tf_backend.BACKEND_ENV, "tensorflow")
    with pytest.raises(SetupError, match="not one of auto, native, python"):
        tf_backend.choose()
    monkeypatch.setenv(tf_backend.BACKEND_ENV, "python")
    assert tf_backend.choose().reason == "MMS_TF_BACKEND=python asks for it"


def _build(tmp_path: Path, source: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MMS_CACHE_DIR": str(tmp_path / "cache"), "TRITON_BACKEND_SRC": str(source),
           "TF_PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)


def test_build_without_the_sources_says_what_is_missing_and_the_fallback_quotes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    empty = tmp_path / "src"
    empty.mkdir()
    done = _build(tmp_path, empty)
    assert done.returncode == 1
    assert f"TRITON_BACKEND_SRC={empty} does not hold all of {' '.join(REPOS)}" in done.stderr
    assert "TensorFlow GraphDef models will be served by the Python-based backend instead" in done.stderr
    monkeypatch.setenv("MMS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(tf_backend.BACKEND_ENV, raising=False)
    monkeypatch.delenv("TRITON_TENSORFLOW_LIB", raising=False)
    choice = tf_backend.choose()
    assert not choice.native and "its build failed: TRITON_BACKEND_SRC=" in choice.reason


def test_build_refuses_a_tarball_with_another_sha256(tmp_path: Path):
    source = tmp_path / "src"
    source.mkdir()
    for name in REPOS:
        (source / f"{name}-r24.10.tar.gz").write_bytes(b"not the r24.10 archive")
    done = _build(tmp_path, source)
    assert done.returncode == 1
    assert "tensorflow_backend-r24.10.tar.gz has sha256" in done.stderr and "expected 6a8b5fee" in done.stderr


def test_a_patch_that_does_not_apply_is_not_retried_on_every_setup(tmp_path: Path):
    source = tmp_path / "src"
    for name in ("tensorflow_backend/mirror", "backend", "core", "common/src"):
        (source / name).mkdir(parents=True)
    (source / "common" / "src" / "CMakeLists.txt").write_text("add_subdirectory(test)\n")
    (source / "tensorflow_backend" / "CMakeLists.txt").write_text("# not r24.10's\n")
    (source / "tensorflow_backend" / "mirror" / "tensorflow_backend_tf.cc").write_text("// not r24.10's\n")
    first = _build(tmp_path, source)
    assert first.returncode == 1, first.stderr
    assert "the patch tensorflow_backend-r24.10-pip-tensorflow.patch does not apply" in first.stderr
    again = _build(tmp_path, source)
    assert again.returncode == 1 and "not retried" in again.stderr and "does not apply" in again.stderr
    assert "remove " in again.stderr and ".failed-build to try again" in again.stderr


def test_recipe_hash_is_the_build_scripts():
    """The build script and the helpers must agree on the cache folder, or a built library is never found."""
    patch = project_root() / tf_backend.PATCH
    version = subprocess.run(  # the script's own lookup, run as the script runs it
        [sys.executable, "-c", "import importlib.metadata as m; "
                               "print(m.version(m.packages_distributions()['tensorflow'][0]))"],
        capture_output=True, text=True, check=True).stdout.strip()
    shell = f'{{ cat "{SCRIPT}" "{patch}"; printf "tensorflow=%s\\n" "{version}"; }} | sha256sum | cut -c1-16'
    assert subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True).stdout.strip() \
        == tf_backend.recipe_hash()
    assert '{ cat "$script" "$patch_file"; printf \'tensorflow=%s\\n\' "$tf_version"; }' in SCRIPT.read_text()


def test_switching_kinds_on_one_folder_leaves_nothing_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    choice = _require_native()
    backends = tmp_path / "backends"
    tensorflow = backends / "tensorflow"
    monkeypatch.setenv(tf_backend.BACKEND_ENV, "python")
    tritonserver.prepare_backends(backends)
    assert sorted(p.name for p in tensorflow.iterdir()) == ["model.py"]
    monkeypatch.delenv(tf_backend.BACKEND_ENV)
    tritonserver.prepare_backends(backends)
    assert sorted(p.name for p in tensorflow.iterdir()) == sorted(tf_backend.NATIVE_FILES)
    assert (tensorflow / "libtritonserver.so").resolve() == choice.libtritonserver.resolve()
    for name in tf_backend.TF_LIBRARIES:
        assert (tensorflow / name).resolve() == (choice.tf_dir / name).resolve()
    assert tf_backend.in_folder(backends) == tf_backend.NATIVE
    tritonserver.prepare_backends(backends)  # idempotent
    monkeypatch.setenv(tf_backend.BACKEND_ENV, "python")
    tritonserver.prepare_backends(backends)
    assert sorted(p.name for p in tensorflow.iterdir()) == ["model.py"]


def test_triton_env_bounds_tensorflows_threads_and_log_only_for_the_native_backend(tmp_path: Path):
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "model.py").write_text("")
    env = tritonserver.triton_env({"PATH": "/usr/bin"}, backends=tmp_path)
    assert "TF_NUM_INTRAOP_THREADS" not in env and "TF_CPP_MIN_LOG_LEVEL" not in env
    (tmp_path / "tensorflow" / tf_backend.LIBRARY).write_bytes(b"")
    env = tritonserver.triton_env({"PATH": "/usr/bin"}, backends=tmp_path)
    assert env["TF_NUM_INTRAOP_THREADS"] == "1" and env["TF_CPP_MIN_LOG_LEVEL"] == "2"
    env = tritonserver.triton_env({"MMS_TF_THREADS": "3", "TF_CPP_MIN_LOG_LEVEL": "0"}, backends=tmp_path)
    assert env["TF_NUM_INTRAOP_THREADS"] == "3" and env["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert tritonserver.triton_env({"TF_NUM_INTRAOP_THREADS": "2"}, backends=tmp_path)["TF_NUM_INTRAOP_THREADS"] == "2"


# --- real servers --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[process.ProcessRecord, str, Path]]:
    """One server as `make setup` left the choice: inception (the guide's config, 2 instances) on
    Triton's own tensorflow backend, and cifar10 on Triton's own pytorch backend when that is built."""
    _require_native()
    root = Path(tmp_path_factory.mktemp("native"))
    repo = root / "models"
    write_inception_standin(repo / "inception")
    write_cifar10_standin(repo / "cifar10")
    with Parts(root) as parts, pytest.MonkeyPatch.context() as env:
        env.delenv(tf_backend.BACKEND_ENV, raising=False)
        env.delenv("MMS_TORCH_BACKEND", raising=False)
        server = parts.triton(repo, name="triton-native")
        env.undo()
        triton.load_model(server.url, "inception")
        yield server.record, server.url, repo


def test_native_backend_serves_inception_inside_triton(native):
    record, url, _ = native
    config = triton.model_config(url, "inception")
    assert config["platform"] == "tensorflow_graphdef" and config["backend"] == "tensorflow"
    assert not (config.get("runtime") or "").endswith(".py")
    assert sum(int(g.get("count", 1)) for g in config["instance_group"]) == 2  # the guide's config: 2 CPU instances
    assert triton.served_by(url, "inception").startswith("Triton's own tensorflow backend")
    assert _stubs(record) == []  # no python stub: the model runs in tritonserver itself
    log = Path(record.log).read_text()
    assert "tensorflow.cc" in log and "TRITONBACKEND_ModelInstanceInitialize: inception_1 (CPU device 0)" in log
    environ = Path(f"/proc/{record.pid}/environ").read_bytes().split(b"\0")
    assert b"TF_NUM_INTRAOP_THREADS=1" in environ and b"TF_CPP_MIN_LOG_LEVEL=2" in environ


def test_native_outputs_equal_tensorflow_in_process(native):
    record, url, repo = native
    batch = _images(3, seed=11).reshape(3, INCEPTION_SIZE, INCEPTION_SIZE, 3)
    answer = triton.infer(url, "inception", {INCEPTION_INPUT: batch})[INCEPTION_OUTPUT]
    np.testing.assert_array_equal(answer, _expected(repo, batch))
    for image in _images(2, seed=12):
        np.testing.assert_array_equal(triton.infer(url, "inception", {INCEPTION_INPUT: image})[INCEPTION_OUTPUT],
                                      _expected(repo, image))
    # TensorFlow's INFO lines (its CPU-features note, the MLIR pass note of a first run) stay out of
    # Triton's log; only the two it writes while its library loads, before it reads the setting, remain.
    log = Path(record.log).read_text()
    assert "mlir_graph_optimization_pass" not in log and "cpu_feature_guard" not in log


def test_native_tensorflow_and_native_pytorch_in_one_server(native):
    record, url, repo = native
    if not _built(torch_backend, "MMS_TORCH_BACKEND").native:
        pytest.skip("Triton's pytorch backend was not built: cifar10 would run in a python stub")
    triton.load_model(url, "cifar10")
    try:
        assert triton.served_by(url, "cifar10").startswith("Triton's own pytorch backend")
        assert triton.served_by(url, "inception").startswith("Triton's own tensorflow backend")
        assert _stubs(record) == []
        image = np.random.default_rng(5).random((1, 3, 32, 32), dtype=np.float32)
        logits = triton.infer(url, "cifar10", {"INPUT__0": image})["OUTPUT__0"]
        assert logits.shape == (1, 10) and np.isfinite(logits).all()
        batch = _images(1, seed=13)[0]
        np.testing.assert_array_equal(triton.infer(url, "inception", {INCEPTION_INPUT: batch})[INCEPTION_OUTPUT],
                                      _expected(repo, batch))
        assert "libtorch.cc" in Path(record.log).read_text()
    finally:
        triton.unload_model(url, "cifar10")


def test_a_corrupt_graphdef_is_refused_while_the_server_and_the_other_models_stay_up(native):
    record, url, repo = native
    broken = write_inception_standin(repo / "broken")
    (broken / "1" / "model.graphdef").write_bytes(b"\x08\x96\x01 this is not a GraphDef" * 50)
    with pytest.raises(triton.ModelLoadError) as refused:
        triton.load_model(url, "broken")
    assert "broken" in str(refused.value) and "binary proto" in str(refused.value)
    assert "model.graphdef" in refused.value.fix and "GraphDef" in refused.value.fix
    assert record.alive() and triton.server_ready(url)
    states = {m["name"]: m["state"] for m in triton.repository_index(url)}
    assert states["inception"] == "READY" and states["broken"] == "UNAVAILABLE"
    image = _images(1, seed=14)[0]
    np.testing.assert_array_equal(triton.infer(url, "inception", {INCEPTION_INPUT: image})[INCEPTION_OUTPUT],
                                  _expected(repo, image))


def test_tensorflows_math_threads_follow_mms_tf_threads(tmp_path: Path):
    """The bound is real: with MMS_TF_THREADS=3 tritonserver holds exactly two threads more than with
    the default 1, after the same load and request (TensorFlow's intra-op pool is the only difference)."""
    _require_native()
    repo = tmp_path / "models"
    _one_instance(write_inception_standin(repo / "inception"))
    counts = {}
    for threads in ("1", "3"):
        with Parts(tmp_path / f"threads-{threads}") as parts:
            server = _start(parts, repo, {"MMS_TF_THREADS": threads})
            triton.load_model(server.url, "inception")
            triton.infer(server.url, "inception", {INCEPTION_INPUT: _images(1, seed=15)[0]})
            counts[threads] = _unnamed_threads(server.record.pid)
    assert counts["3"] - counts["1"] == 2, counts


def test_fallback_serves_inception_and_status_names_it(no_build: Path, tmp_path: Path):
    repo = tmp_path / "models"
    _one_instance(write_inception_standin(repo / "inception"))
    with Parts(tmp_path / "fallback") as parts:
        server = _start(parts, repo)
        triton.load_model(server.url, "inception")
        config = triton.model_config(server.url, "inception")
        assert config["backend"] == "tensorflow" and config["runtime"] == "model.py"
        assert triton.served_by(server.url, "inception").startswith("a Python-based tensorflow backend")
        assert _stubs(server.record), "the Python-based backend runs the model in a python stub process"
        image = _images(1, seed=16)[0]
        np.testing.assert_allclose(triton.infer(server.url, "inception", {INCEPTION_INPUT: image})[INCEPTION_OUTPUT],
                                   _expected(repo, image), rtol=1e-6, atol=1e-7)
    env = {**os.environ, "MMS_STATE_DIR": str(tmp_path / "state")}
    status = subprocess.run([sys.executable, "-m", "helpers.local", "status"], capture_output=True, text=True,
                            env=env, cwd=project_root(), timeout=60)
    assert "TensorFlow GraphDef (tensorflow_graphdef) is served by the Python-based tensorflow backend" \
        in status.stdout, status.stdout
    assert "it is not built" in status.stdout


def test_one_state_folder_switches_between_the_two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """As a user does with `down`, MMS_TF_BACKEND=..., `up`: the same state folder's backend folder
    serves inception natively, then Python-based, then natively again; `status` says when a running
    Triton still has the other one."""
    _require_native()
    monkeypatch.delenv(tf_backend.BACKEND_ENV, raising=False)
    state = Stack(tmp_path / "state")
    repo = tmp_path / "models"
    _one_instance(write_inception_standin(repo / "inception"))
    image = _images(1, seed=17)[0]
    expected = _expected(repo, image)

    def status() -> str:
        done = subprocess.run([sys.executable, "-m", "helpers.local", "status"], capture_output=True, text=True,
                              env={**os.environ, "MMS_STATE_DIR": str(state.root)}, cwd=project_root(), timeout=60)
        return done.stdout[done.stdout.index("TensorFlow GraphDef"):]  # its line and the note under it

    served = []
    for kind in ("native", "python", "native"):
        with Parts(state.backends_dir.parent) as parts:  # Triton's folder in the state folder
            server = _start(parts, repo, {tf_backend.BACKEND_ENV: kind})
            assert server.backends == state.backends_dir
            triton.load_model(server.url, "inception")
            served.append(triton.served_by(server.url, "inception").split(" (")[0])
            assert bool(_stubs(server.record)) == (kind == "python")
            np.testing.assert_allclose(triton.infer(server.url, "inception", {INCEPTION_INPUT: image})[INCEPTION_OUTPUT],
                                       expected, rtol=1e-6, atol=1e-7)
            if kind == "python":  # the default (auto: native) differs from what this Triton was given
                assert "still uses the python one" in status(), status()
            else:
                assert "is served by Triton's own tensorflow backend" in status()
    assert served == ["Triton's own tensorflow backend", "a Python-based tensorflow backend",
                      "Triton's own tensorflow backend"]
