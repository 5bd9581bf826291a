"""The build step pyproject.toml cannot express: the checkout's top-level `manifests/`, `data/` and
`notebooks/` go into the wheel as package data, `helpers/_files/<folder>/` (see helpers/core/resources.py).

They stay where a checkout user and `make lab` see them; an editable install reads them there.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

FOLDERS = ("manifests", "data", "notebooks")


class BuildWithProjectFiles(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's folders themselves
            return
        here = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "helpers" / "_files"
        for name in FOLDERS:
            if not (here / name).is_dir():
                raise SystemExit(f"setup.py: {here / name} is missing: build from a full checkout")
            shutil.rmtree(target / name, ignore_errors=True)
            shutil.copytree(here / name, target / name,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithProjectFiles})
