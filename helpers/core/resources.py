"""Where the project's files live: the guide's manifests, `data/` and the notebooks, in any install.

In a checkout (and an editable install) they are the top-level folders `manifests/`, `data/` and
`notebooks/`. A wheel (`pip install .`, `pip install git+...`, `pip wheel .`) carries copies of
them as package data, `helpers/_files/<folder>/` (setup.py's build step puts them there), read
through `importlib.resources`. The installed copy wins when it exists, so an installed package
never reads a checkout it happens to sit next to.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from helpers.core.config import project_root

PACKAGED = "_files"  # helpers/_files/ in a built wheel
FOLDERS = ("manifests", "data", "notebooks")


def packaged_dir() -> Path:
    """`helpers/_files` of this install (it exists only in a built wheel's install)."""
    return Path(str(resources.files("helpers") / PACKAGED))


def folder(name: str) -> Path:
    """One of FOLDERS: the installed package data, else the checkout's top-level folder."""
    if name not in FOLDERS:
        raise ValueError(f"no project folder {name!r}: one of {', '.join(FOLDERS)}")
    installed = packaged_dir() / name
    return installed if installed.is_dir() else project_root() / name


def manifest_dir() -> Path:
    """The guide's YAML templates (`manifests/`)."""
    return folder("manifests")


def data_path(*parts: str) -> Path:
    """A path inside `data/` (model configs, labels, the guide's logs and commands)."""
    return folder("data").joinpath(*parts)


def notebooks_dir() -> Path:
    """The walkthrough's notebooks as shipped (never a learner's edited copies)."""
    return folder("notebooks")


def is_checkout() -> bool:
    """True when running from a checkout (scripts/, benchmarks/ and the local stack's build are there)."""
    return not packaged_dir().is_dir() and (project_root() / "scripts").is_dir()
