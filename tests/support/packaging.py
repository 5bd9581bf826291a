"""The package as the README builds it, and the wheels `make setup` keeps."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

from helpers.core.config import project_root


def build_wheel(out: Path) -> Path:
    """`pip wheel . --no-deps` from the checkout, as the README says; the wheel's path."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(project_root()), "--no-deps", "-q", "-w", str(out)],
                   check=True, capture_output=True, text=True, timeout=300)
    wheels = list(out.glob("mms_notebooks-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def install_locked() -> ModuleType:
    """scripts/install-locked.py, `make setup`'s installer, as a module."""
    spec = importlib.util.spec_from_file_location("install_locked", project_root() / "scripts" / "install-locked.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def locked_wheels() -> Optional[Path]:
    """The wheelhouse `make setup` installed this checkout's lock from, if it is there."""
    root = project_root()
    house, _ = install_locked().wheelhouse([root / "constraints.txt", root / "tritonserver-requirements.txt"], root)
    return house if (house / ".complete").exists() else None
