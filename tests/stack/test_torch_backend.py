"""TorchScript on the local Triton: Triton's own pytorch backend when built, else the Python-based one.

Real servers: the cifar10 stand-in loads through `libtriton_pytorch.so` (skipped, saying why, only
when `make setup` could not build it), and through the Python-based fallback with the build
made unavailable (an empty cache). The choice itself and the backend folder are checked without
a server.
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import psutil
import pytest

from helpers.clients import triton
from helpers.core.config import project_root
from helpers.core.errors import SetupError
from helpers.local.stack import process, tf_backend, torch_backend, tritonserver
from helpers.steps.models.standins import write_cifar10_standin
from support.parts import Parts

pytestmark = pytest.mark.stack

STUB = "triton_python_backend_stub"


def _built() -> torch_backend.TorchBackend:
    """The choice as `make setup` left it, whatever this shell's MMS_TORCH_BACKEND says."""
    saved = os.environ.pop("MMS_TORCH_BACKEND", None)
    try:
        return torch_backend.choose()
    finally:
        if saved is not None:
            os.environ["MMS_TORCH_BACKEND"] = saved


def _require_native() -> torch_backend.TorchBackend:
    choice = _built()
    if not choice.native:
        pytest.skip(f"Triton's pytorch backend was not built, so only the fallback is tested: {choice.reason}")
    return choice


def _serve_cifar10(parts: Parts) -> tuple[process.ProcessRecord, str, Path]:
    repo = parts.root / "models"
    folder = write_cifar10_standin(repo / "cifar10")
    config = folder / "config.pbtxt"
    config.write_text(config.read_text() + "\ninstance_group [{ count: 1, kind: KIND_CPU }]\n")
    server = parts.triton(repo, name=f"triton-{parts.root.name}")
    triton.load_model(server.url, "cifar10")
    return server.record, server.url, repo


def _stubs(record: process.ProcessRecord) -> list[psutil.Process]:
    children = psutil.Process(record.pid).children(recursive=True)
    return [p for p in children if STUB in " ".join(p.cmdline())]


def _expected(repo: Path, image: np.ndarray) -> np.ndarray:
    import torch

    with warnings.catch_warnings():  # torch 2.x calls TorchScript deprecated; Triton's backend still reads it
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(repo / "cifar10" / "1" / "model.pt"))
    with torch.no_grad():
        return model(torch.from_numpy(image)).numpy()


@pytest.fixture()
def no_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The build made unavailable: an empty cache, no library given, the default choice."""
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    monkeypatch.setenv("MMS_CACHE_DIR", str(cache))
    for name in ("TRITON_PYTORCH_LIB", "MMS_TORCH_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    return cache


# --- the decision and the backend folder, without a server ---------------------------------------

def test_without_a_build_the_fallback_says_why(no_build: Path):
    choice = torch_backend.choose()
    assert choice.kind == torch_backend.PYTHON and not choice.native
    assert "not built" in choice.reason and str(no_build) in choice.reason
    failed = torch_backend.build_folder()
    failed.mkdir(parents=True)
    (failed / "FAILED").write_text("cannot build: missing rapidjson-dev\n")
    assert "its build failed: cannot build: missing rapidjson-dev" in torch_backend.choose().reason


def test_forcing_native_without_the_library_names_the_fix(no_build: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MMS_TORCH_BACKEND", "native")
    with pytest.raises(SetupError, match="make setup"):
        torch_backend.choose()
    monkeypatch.setenv("MMS_TORCH_BACKEND", "libtorch")
    with pytest.raises(SetupError, match="not one of auto, native, python"):
        torch_backend.choose()


def _build(tmp_path: Path, source: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MMS_CACHE_DIR": str(tmp_path / "cache"), "TRITON_BACKEND_SRC": str(source),
           "TORCH_PYTHON": sys.executable}
    return subprocess.run(["bash", str(project_root() / "scripts" / "build-triton-pytorch.sh")],
                          capture_output=True, text=True, env=env, timeout=120)


def test_build_without_the_sources_says_what_is_missing_and_the_fallback_quotes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    empty = tmp_path / "src"
    empty.mkdir()
    done = _build(tmp_path, empty)
    assert done.returncode == 1
    assert f"TRITON_BACKEND_SRC={empty} does not hold all of pytorch_backend backend core common" in done.stderr
    assert "Python-based backend instead" in done.stderr
    monkeypatch.setenv("MMS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MMS_TORCH_BACKEND", raising=False)
    monkeypatch.delenv("TRITON_PYTORCH_LIB", raising=False)
    choice = torch_backend.choose()
    assert not choice.native and "its build failed: TRITON_BACKEND_SRC=" in choice.reason


def test_build_refuses_a_tarball_with_another_sha256(tmp_path: Path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pytorch_backend", "backend", "core", "common"):
        (source / f"{name}-r24.10.tar.gz").write_bytes(b"not the r24.10 archive")
    done = _build(tmp_path, source)
    assert done.returncode == 1
    assert "pytorch_backend-r24.10.tar.gz has sha256" in done.stderr and "expected 3bbd9bd9" in done.stderr


def test_a_failed_compile_is_not_retried_on_every_setup(tmp_path: Path):
    source = tmp_path / "src"
    for name in ("pytorch_backend", "backend", "core", "common/src"):
        (source / name).mkdir(parents=True)
    (source / "common" / "src" / "CMakeLists.txt").write_text("add_subdirectory(test)\n")
    (source / "pytorch_backend" / "CMakeLists.txt").write_text(
        'cmake_minimum_required(VERSION 3.17)\nmessage(FATAL_ERROR "broken on purpose")\n')
    first = _build(tmp_path, source)
    assert first.returncode == 1 and "cmake failed (see " in first.stderr
    again = _build(tmp_path, source)
    assert again.returncode == 1 and "not retried" in again.stderr and "cmake failed" in again.stderr
    assert "remove " in again.stderr and ".failed-build to try again" in again.stderr


def test_recipe_hash_is_the_build_scripts(tmp_path: Path):
    """The build script and the helpers must agree on the cache folder, or a built library is never found."""
    python = Path(sys.executable)
    script = project_root() / "scripts" / "build-triton-pytorch.sh"
    # The script's own computation, run by bash as the script runs it.
    torch_version = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('torch'))"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    shell = f'{{ cat "{script}"; printf "torch=%s\\n" "{torch_version}"; }} | sha256sum | cut -c1-16'
    assert subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True).stdout.strip() \
        == torch_backend.recipe_hash()
    assert 'printf \'torch=%s\\n\' "$torch_version"' in script.read_text()


def test_switching_kinds_on_one_folder_leaves_nothing_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    choice = _require_native()
    pytorch = tmp_path / "backends" / "pytorch"
    monkeypatch.setenv("MMS_TORCH_BACKEND", "python")
    tritonserver.prepare_backends(tmp_path / "backends")
    assert sorted(p.name for p in pytorch.iterdir()) == ["model.py"]
    monkeypatch.delenv("MMS_TORCH_BACKEND")
    tritonserver.prepare_backends(tmp_path / "backends")
    assert sorted(p.name for p in pytorch.iterdir()) == ["libtriton_pytorch.so", "libtritonserver.so"]
    assert (pytorch / "libtritonserver.so").resolve() == choice.libtritonserver.resolve()
    assert torch_backend.in_folder(tmp_path / "backends") == torch_backend.NATIVE
    tritonserver.prepare_backends(tmp_path / "backends")  # idempotent
    monkeypatch.setenv("MMS_TORCH_BACKEND", "python")
    tritonserver.prepare_backends(tmp_path / "backends")
    assert sorted(p.name for p in pytorch.iterdir()) == ["model.py"]
    assert tf_backend.in_folder(tmp_path / "backends") is not None  # GraphDef keeps its backend (either kind)


# --- real servers --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[process.ProcessRecord, str, Path]]:
    _require_native()
    with pytest.MonkeyPatch.context() as env, Parts(tmp_path_factory.mktemp("native")) as parts:
        env.delenv("MMS_TORCH_BACKEND", raising=False)
        served = _serve_cifar10(parts)
        env.undo()  # the environment matters only while the backend folder is made
        yield served


def test_native_backend_serves_cifar10_inside_triton(native):
    record, url, repo = native
    config = triton.model_config(url, "cifar10")
    assert config["platform"] == "pytorch_libtorch" and config["backend"] == "pytorch"
    assert not (config.get("runtime") or "").endswith(".py")
    assert triton.served_by(url, "cifar10").startswith("Triton's own pytorch backend")
    assert _stubs(record) == []  # no python stub: the model runs in tritonserver itself
    assert "libtorch.cc" in Path(record.log).read_text()  # Triton's log reads as on a cluster


def test_native_outputs_equal_torch_jit_in_process(native):
    _, url, repo = native
    images = np.random.default_rng(7).random((4, 1, 3, 32, 32), dtype=np.float32)
    for image in images:
        np.testing.assert_array_equal(triton.infer(url, "cifar10", {"INPUT__0": image})["OUTPUT__0"],
                                      _expected(repo, image))


def test_fallback_serves_cifar10_and_status_names_it(no_build: Path, tmp_path: Path):
    with Parts(tmp_path) as parts:
        record, url, repo = _serve_cifar10(parts)
        config = triton.model_config(url, "cifar10")
        assert config["backend"] == "pytorch" and config["runtime"] == "model.py"
        assert triton.served_by(url, "cifar10").startswith("a Python-based pytorch backend")
        assert _stubs(record), "the Python-based backend runs the model in a python stub process"
        image = np.random.default_rng(3).random((1, 3, 32, 32), dtype=np.float32)
        np.testing.assert_allclose(triton.infer(url, "cifar10", {"INPUT__0": image})["OUTPUT__0"],
                                   _expected(repo, image), rtol=1e-5, atol=1e-6)
    env = {**os.environ, "MMS_STATE_DIR": str(tmp_path / "state")}
    status = subprocess.run([sys.executable, "-m", "helpers.local", "status"], capture_output=True, text=True,
                            env=env, cwd=project_root(), timeout=60)
    assert "TorchScript (pytorch_libtorch) is served by the Python-based pytorch backend" in status.stdout, status.stdout
    assert "it is not built" in status.stdout
