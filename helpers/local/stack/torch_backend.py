"""Which backend serves TorchScript (`platform: "pytorch_libtorch"`) on the local Triton: decided here only.

- `native`: Triton's own PyTorch backend, `libtriton_pytorch.so`, built from Triton's r24.10
  sources against the installed torch by `scripts/build-triton-pytorch.sh` (`make setup` runs it).
  Models run inside Triton's process, as on a cluster, and Triton logs `libtorch.cc` lines.
- `python`: the Python-based backend `helpers/local/backends/pytorch/model.py`; each model
  instance is a python stub process that imports torch. It serves the same configs and answers,
  only slower to load and heavier (see benchmarks/README.md).

Lookup order for the native library: TRITON_PYTORCH_LIB > the build cache
(`$MMS_CACHE_DIR/triton-pytorch/<recipe>/`). MMS_TORCH_BACKEND picks: `auto` (default: native
when the library is there, else python, saying why), `native` (an error when it is missing) or
`python` (the fallback, forced). The GraphDef model keeps its Python-based tensorflow backend.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from helpers.core.config import cache_dir, project_root
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.local.stack import wheel

NATIVE, PYTHON = "native", "python"
LIBRARY = "libtriton_pytorch.so"
LIBTRITONSERVER = "libtritonserver.so"
BUILD_SCRIPT = "scripts/build-triton-pytorch.sh"


@dataclass(frozen=True)
class TorchBackend:
    """The decision: `kind` is `native` or `python`; `reason` says why python (empty for native)."""
    kind: str
    library: Optional[Path] = None
    libtritonserver: Optional[Path] = None
    reason: str = ""

    @property
    def native(self) -> bool:
        return self.kind == NATIVE

    def describe(self) -> str:
        if self.native:
            return _("Triton's own pytorch backend ({library})").format(library=self.library)
        return _("the Python-based pytorch backend (model.py in a python stub process): {reason}").format(reason=self.reason)


def torch_dir() -> Optional[Path]:
    """The installed torch package folder (found without importing torch, which takes seconds)."""
    spec = importlib.util.find_spec("torch")
    return Path(spec.origin).parent if spec and spec.origin else None


def recipe_hash(script: Optional[Path] = None) -> str:
    """The cache key the build script uses: its own text plus the torch version it builds against."""
    script = script or project_root() / BUILD_SCRIPT
    digest = hashlib.sha256(script.read_bytes())
    digest.update(f"torch={importlib.metadata.version('torch')}\n".encode())
    return digest.hexdigest()[:16]


def build_folder() -> Path:
    """Where `scripts/build-triton-pytorch.sh` puts the library for this checkout and this torch."""
    return cache_dir() / "triton-pytorch" / recipe_hash()


def _wheel_libtritonserver() -> Optional[Path]:
    """The wheel's libtritonserver.so, which auditwheel renamed to `libtritonserver-<hash>.so`."""
    return wheel.libtritonserver()


def _why_not_built() -> tuple[Optional[Path], str]:
    """The built library, or None and why there is none."""
    given = os.environ.get("TRITON_PYTORCH_LIB")
    if given:
        path = Path(given).expanduser()
        return (path, "") if path.is_file() else (None, f"TRITON_PYTORCH_LIB={given} is not a file")
    if torch_dir() is None:
        return None, "torch is not installed in this Python"
    script = project_root() / BUILD_SCRIPT
    if not script.is_file():
        return None, f"{BUILD_SCRIPT} is not in this installation"
    folder = build_folder()
    if (folder / LIBRARY).is_file():
        return folder / LIBRARY, ""
    failed = folder / "FAILED"
    if failed.is_file():
        return None, f"its build failed: {failed.read_text().strip()} (log: {folder / 'build.log'})"
    return None, f"it is not built (`make setup` builds it into {folder})"


def choose() -> TorchBackend:
    """Native when the library is built (or given) and usable, else python with the reason; see the module doc."""
    wanted = os.environ.get("MMS_TORCH_BACKEND", "auto").strip().lower() or "auto"
    if wanted not in ("auto", NATIVE, PYTHON):
        raise SetupError(_("MMS_TORCH_BACKEND={wanted} is not one of auto, native, python").format(wanted=wanted),
                         _("set MMS_TORCH_BACKEND to auto (the default), native or python"))
    if wanted == PYTHON:
        return TorchBackend(PYTHON, reason="MMS_TORCH_BACKEND=python asks for it")
    library, reason = _why_not_built()
    libtritonserver = None
    if library and os.environ.get("TRITONSERVER"):
        library, reason = None, "TRITONSERVER points at another server; the built backend is for the wheel's 2.51"
    if library:
        libtritonserver = _wheel_libtritonserver()
        if libtritonserver is None:
            library, reason = None, "the nvidia-pytriton wheel's libtritonserver-*.so was not found"
    if library:
        return TorchBackend(NATIVE, library, libtritonserver)
    if wanted == NATIVE:
        raise SetupError(_("MMS_TORCH_BACKEND=native, but Triton's pytorch backend cannot be used: {reason}").format(
                             reason=reason),
                         _("run `make setup` (it builds it; see its build-triton-pytorch lines), or unset MMS_TORCH_BACKEND "
                           "to fall back to the Python-based backend"))
    return TorchBackend(PYTHON, reason=reason)


def in_folder(backends: Path) -> Optional[str]:
    """Which kind a prepared backend folder holds (`native`, `python`), or None if not prepared."""
    pytorch = Path(backends) / "pytorch"
    if (pytorch / LIBRARY).is_file():
        return NATIVE
    if (pytorch / "model.py").is_file():
        return PYTHON
    return None


def status_line(backends: Path) -> str:
    """What `python -m helpers.local status` says: the backend TorchScript gets, and why if it is the fallback."""
    try:
        choice = choose()
    except SetupError as exc:
        return f"TorchScript: {exc}"
    line = _("TorchScript (pytorch_libtorch) is served by {backend}").format(backend=choice.describe())
    prepared = in_folder(backends)
    if prepared and prepared != choice.kind:
        line += "\n  " + _("a Triton started before this change still uses the {prepared} one "
                           "(`python -m helpers.local down`, then `up`, switches it)").format(prepared=prepared)
    return line
