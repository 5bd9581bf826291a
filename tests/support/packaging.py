"""The package as the README builds it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers.core.config import project_root


def build_wheel(out: Path) -> Path:
    """`pip wheel . --no-deps` from the checkout, as the README says; the wheel's path."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(project_root()), "--no-deps", "-q", "-w", str(out)],
                   check=True, capture_output=True, text=True, timeout=300)
    wheels = list(out.glob("mms_notebooks-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]
