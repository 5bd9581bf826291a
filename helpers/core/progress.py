"""Progress bars that suit where the code runs: a widget in Jupyter, one plain line in logs.

A headless run (papermill, `interactive=False`) gets plain text, redrawn at most every 30 s: a
widget's saved output there would show its first state ("0%") forever.
"""
from __future__ import annotations

import sys
from typing import Any

_headless = False


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Kubeflow Notebooks, and papermill too)."""
    shell = _ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def set_headless(headless: bool) -> None:
    """Called by `helpers.lesson.notebook.start`: plain-text bars when nobody watches the widgets."""
    global _headless
    _headless = headless


def progress(**kwargs: Any) -> Any:
    """A tqdm progress bar (same arguments as `tqdm`)."""
    if _headless or not in_jupyter():
        from tqdm.std import tqdm

        kwargs.setdefault("file", sys.stderr)
        kwargs.setdefault("ascii", " #")
        # Saved outputs keep every redraw: the first and the last line say it all, a redraw a second
        # would save one line per second waited (issue 22, "noise").
        kwargs.setdefault("mininterval", 30.0)
        return tqdm(**kwargs)
    from tqdm.auto import tqdm

    return tqdm(**kwargs)
