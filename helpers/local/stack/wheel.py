"""Where the nvidia-pytriton wheel keeps tritonserver and its libraries (found without importing pytriton)."""
from __future__ import annotations

import sysconfig
from pathlib import Path
from typing import Optional

from helpers.core.errors import SetupError
from helpers.core.i18n import _


def pytriton_dir() -> Path:
    """Where the nvidia-pytriton wheel keeps tritonserver, found without importing pytriton."""
    for base in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]):
        candidate = Path(base) / "pytriton" / "tritonserver"
        if candidate.is_dir():
            return candidate
    raise SetupError(_("tritonserver is not installed (the nvidia-pytriton wheel is missing from this Python)"),
                     _("run `make setup`, or set TRITONSERVER to an existing tritonserver binary"))


def libtritonserver() -> Optional[Path]:
    """The wheel's libtritonserver.so, which auditwheel renamed to `libtritonserver-<hash>.so`; None if absent.

    Triton's own backends built here link `libtritonserver.so` by that name: a link to this file
    beside them (their RUNPATH is `$ORIGIN`) lets them load.
    """
    try:
        libs = pytriton_dir().parent.parent / "nvidia_pytriton.libs"
    except SetupError:
        return None
    found = sorted(libs.glob("libtritonserver-*.so*")) if libs.is_dir() else []
    return found[0] if found else None
