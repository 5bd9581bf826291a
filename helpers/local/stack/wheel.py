"""Where the nvidia-pytriton wheel keeps tritonserver and its libraries (found without importing pytriton)."""
from __future__ import annotations

import sysconfig
from pathlib import Path

from helpers.core.errors import SetupError


def pytriton_dir() -> Path:
    """Where the nvidia-pytriton wheel keeps tritonserver, found without importing pytriton."""
    for base in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]):
        candidate = Path(base) / "pytriton" / "tritonserver"
        if candidate.is_dir():
            return candidate
    raise SetupError("tritonserver is not installed (the nvidia-pytriton wheel is missing from this Python)",
                     "run `make setup`, or set TRITONSERVER to an existing tritonserver binary")
