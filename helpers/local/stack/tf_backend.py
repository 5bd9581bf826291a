"""Which backend serves TensorFlow GraphDef (`platform: "tensorflow_graphdef"`) on the local Triton: decided here only.

- `native`: Triton's own TensorFlow backend, `libtriton_tensorflow.so`, built from Triton's r24.10
  sources against the installed pip tensorflow-cpu wheel by `scripts/build-triton-tensorflow.sh`
  (`make setup` runs it). Models run inside Triton's process, as on a cluster, and Triton logs
  `tensorflow.cc` lines. Explained in 04_inception.
- `python`: the Python-based backend `helpers/local/backends/tensorflow/model.py`; each model
  instance is a python stub process that imports tensorflow. It serves the same configs and
  answers, only slower to load and heavier (see benchmarks/README.md).

Lookup order for the native library: TRITON_TENSORFLOW_LIB > the build cache
(`$MMS_CACHE_DIR/triton-tensorflow/<recipe>/`). MMS_TF_BACKEND picks: `auto` (default: native
when the library is there, else python, saying why), `native` (an error when it is missing) or
`python` (the fallback, forced). `tritonserver.prepare_backends` then fills
`<backends>/tensorflow/` with either the library and links to the wheel's `libtensorflow_cc.so.2`,
`libtensorflow_framework.so.2` and Triton's `libtritonserver.so` beside it (`NATIVE_FILES`, found
through its `$ORIGIN` RUNPATH), or `model.py`; never both (Triton would pick the library).

Threads: TensorFlow's intra-op pool is one per process, shared by every TensorFlow model in the
server, and by default as wide as the machine. The guide's config.pbtxt sets no
`TF_NUM_INTRA_THREADS` and the backend has no command-line setting for it, so the server's
environment bounds it: `TF_NUM_INTRAOP_THREADS` from MMS_TF_THREADS (default 1), unless already
set; a model config's own `TF_NUM_INTRA_THREADS` parameter still wins.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import MutableMapping, Optional

from helpers.core.config import cache_dir, project_root
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.local.stack.wheel import libtritonserver as wheel_libtritonserver

NATIVE, PYTHON = "native", "python"
LIBRARY = "libtriton_tensorflow.so"
LIBTRITONSERVER = "libtritonserver.so"
TF_LIBRARIES = ("libtensorflow_cc.so.2", "libtensorflow_framework.so.2")
NATIVE_FILES = (LIBRARY, *TF_LIBRARIES, LIBTRITONSERVER)
BUILD_SCRIPT = "scripts/build-triton-tensorflow.sh"
PATCH = "scripts/patches/tensorflow_backend-r24.10-pip-tensorflow.patch"
BACKEND_ENV = "MMS_TF_BACKEND"


@dataclass(frozen=True)
class TensorFlowBackend:
    """The decision: `kind` is `native` or `python`; `reason` says why python (empty for native)."""
    kind: str
    library: Optional[Path] = None
    tf_dir: Optional[Path] = None
    libtritonserver: Optional[Path] = None
    reason: str = ""

    @property
    def native(self) -> bool:
        return self.kind == NATIVE

    def describe(self) -> str:
        if self.native:
            return _("Triton's own tensorflow backend ({library})").format(library=self.library)
        return _("the Python-based tensorflow backend (model.py in a python stub process): {reason}").format(
                   reason=self.reason)


def tf_dir() -> Optional[Path]:
    """The installed tensorflow package folder (found without importing tensorflow, which takes seconds)."""
    spec = importlib.util.find_spec("tensorflow")
    return Path(spec.origin).parent if spec and spec.origin else None


def tf_version() -> str:
    """The version of the distribution that installs `tensorflow` (tensorflow-cpu here), as the build script reads it."""
    folder = tf_dir()
    init = folder / "__init__.py" if folder else None
    # keyed by the package's __init__.py, which a new install writes again: the same answer without
    # reading every installed distribution's file list each time a server starts (a third of a CPU second)
    return _distribution_version("tensorflow", str(init), init.stat().st_mtime_ns if init and init.exists() else 0)


@functools.lru_cache(maxsize=8)
def _distribution_version(package: str, _init: str, _mtime_ns: int) -> str:
    names = importlib.metadata.packages_distributions().get(package) or []
    if not names:
        raise importlib.metadata.PackageNotFoundError(package)
    return importlib.metadata.version(names[0])


def recipe_hash() -> str:
    """The cache key the build script uses: its own text, the patch, and the TensorFlow version."""
    digest = hashlib.sha256((project_root() / BUILD_SCRIPT).read_bytes())
    digest.update((project_root() / PATCH).read_bytes())
    digest.update(f"tensorflow={tf_version()}\n".encode())
    return digest.hexdigest()[:16]


def build_folder() -> Path:
    """Where `scripts/build-triton-tensorflow.sh` puts the library for this checkout and this TensorFlow."""
    return cache_dir() / "triton-tensorflow" / recipe_hash()


def _why_not_built() -> tuple[Optional[Path], str]:
    """The built library, or None and why there is none."""
    given = os.environ.get("TRITON_TENSORFLOW_LIB")
    if given:
        path = Path(given).expanduser()
        return (path, "") if path.is_file() else (None, f"TRITON_TENSORFLOW_LIB={given} is not a file")
    if tf_dir() is None:
        return None, "tensorflow is not installed in this Python"
    for name in (BUILD_SCRIPT, PATCH):
        if not (project_root() / name).is_file():
            return None, f"{name} is not in this installation"
    try:
        folder = build_folder()
    except importlib.metadata.PackageNotFoundError:
        return None, "the installed tensorflow has no package metadata, and its version names the build"
    if (folder / LIBRARY).is_file():
        return folder / LIBRARY, ""
    failed = folder / "FAILED"
    if failed.is_file():
        return None, f"its build failed: {failed.read_text().strip()} (log: {folder / 'build.log'})"
    return None, f"it is not built (`make setup` builds it into {folder})"


def choose() -> TensorFlowBackend:
    """Native when the library is built (or given) and usable, else python with the reason; see the module doc."""
    wanted = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if wanted not in ("auto", NATIVE, PYTHON):
        raise SetupError(_("{backend_env}={wanted} is not one of auto, native, python").format(
                             backend_env=BACKEND_ENV, wanted=wanted),
                         _("set {backend_env} to auto (the default), native or python").format(backend_env=BACKEND_ENV))
    if wanted == PYTHON:
        return TensorFlowBackend(PYTHON, reason=f"{BACKEND_ENV}=python asks for it")
    library, reason = _why_not_built()
    folder, libtritonserver = tf_dir(), None
    if library and os.environ.get("TRITONSERVER"):
        library, reason = None, "TRITONSERVER points at another server; the built backend is for the wheel's 2.51"
    if library and (folder is None or not all((folder / name).is_file() for name in TF_LIBRARIES)):
        library, reason = None, f"the tensorflow wheel's {' and '.join(TF_LIBRARIES)} were not found"
    if library:
        libtritonserver = wheel_libtritonserver()
        if libtritonserver is None:
            library, reason = None, "the nvidia-pytriton wheel's libtritonserver-*.so was not found"
    if library:
        return TensorFlowBackend(NATIVE, library, folder, libtritonserver)
    if wanted == NATIVE:
        raise SetupError(_("{backend_env}=native, but Triton's tensorflow backend cannot be used: {reason}").format(
                             backend_env=BACKEND_ENV, reason=reason),
                         _("run `make setup` (it builds it; see its build-triton-tensorflow lines), or unset {backend_env} "
                           "to fall back to the Python-based backend").format(backend_env=BACKEND_ENV))
    return TensorFlowBackend(PYTHON, reason=reason)


def in_folder(backends: Path) -> Optional[str]:
    """Which kind a prepared backend folder holds (`native`, `python`), or None if not prepared."""
    tensorflow = Path(backends) / "tensorflow"
    if (tensorflow / LIBRARY).is_file():
        return NATIVE
    if (tensorflow / "model.py").is_file():
        return PYTHON
    return None


def server_env(env: MutableMapping[str, str], backends: Optional[Path]) -> None:
    """Settings tritonserver gets when `backends` holds the native backend (see the module doc).

    TF_NUM_INTRAOP_THREADS (from MMS_TF_THREADS, default 1) bounds TensorFlow's intra-op pool;
    TF_CPP_MIN_LOG_LEVEL=2 keeps TensorFlow's INFO and WARNING lines out of Triton's log (only the
    two lines TensorFlow writes while its library loads, before it reads that setting, remain).
    Values already in `env` win.
    """
    if backends is None or in_folder(backends) != NATIVE:
        return
    env.setdefault("TF_NUM_INTRAOP_THREADS", env.get("MMS_TF_THREADS", "1"))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def status_line(backends: Path) -> str:
    """What `python -m helpers.local status` says: the backend GraphDef gets, and why if it is the fallback."""
    try:
        choice = choose()
    except SetupError as exc:
        return f"TensorFlow GraphDef: {exc}"
    line = _("TensorFlow GraphDef (tensorflow_graphdef) is served by {backend}").format(backend=choice.describe())
    prepared = in_folder(backends)
    if prepared and prepared != choice.kind:
        line += "\n  " + _("a Triton started before this change still uses the {prepared} one "
                           "(`python -m helpers.local down`, then `up`, switches it)").format(prepared=prepared)
    return line
