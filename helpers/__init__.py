"""Helpers for the multi-model serving notebooks.

The folders are the layers, each importing only those above it in this list:

- `core`: settings, names, errors, waits, how values are shown;
- `clients`: Kubernetes (and KServe's objects), S3, Triton, where the notebook runs;
- `steps`: what each step of the guide does, one folder a step;
- `lesson`: the frame of every notebook (`notebook.start`, widgets, plots);
- `tools`: the walkthrough runner, JupyterLab, learners' copies;
- `local`: the embedded stack (its processes in `local/stack`, the cluster parts it imitates
  in `local/cluster`, `local/controller`, `local/agent`), built on core and clients only.

Notebooks (and learners' copies of them) import the short names, `from helpers import k8s,
notebook` or `python -m helpers.doctor`: `ALIASES` maps each to its module, which is then the
same object under both names.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any, Optional, Sequence

ALIASES = {
    **{m: f"core.{m}" for m in ("config", "constants", "errors", "wait", "progress", "resources", "settings",
                                "show")},
    **{m: f"clients.{m}" for m in ("k8s", "storage", "triton", "target", "portforward", "inference",
                                   "manifests")},
    "preflight": "steps.prep.preflight", "knative": "steps.prep.knative", "mesh": "steps.prep.mesh",
    "kubeflow_minio": "steps.objectstore.kubeflow_minio", "mc": "steps.objectstore.mc",
    "endpoint": "steps.serving.endpoint", "server_pod": "steps.serving.server_pod",
    **{m: f"steps.models.{m}" for m in ("model_sources", "model_pack", "standins", "images", "predict",
                                        "agent_log")},
    "lifecycle": "steps.operations.lifecycle", "cleanup": "steps.operations.cleanup",
    "doctor": "steps.troubleshoot.doctor", "pitfalls": "steps.troubleshoot.pitfalls",
    **{m: f"steps.scale.{m}" for m in ("footprint", "packing", "ceilings", "repository")},
    **{m: f"lesson.{m}" for m in ("notebook", "widgets", "plots", "diagram")},
    **{m: f"tools.{m}" for m in ("lab", "walkthrough", "notebooks", "translations")},
    "models": "steps.models",  # `python -m helpers.models fetch|pack|unpack`
}


class _AliasLoader(importlib.abc.Loader):
    """Loads `helpers.<short>` as the module it names: one object, two names."""

    def __init__(self, real: str) -> None:
        self.real = real
        self.real_spec: Optional[importlib.machinery.ModuleSpec] = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.real)
        self.real_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self.real_spec  # the import system set the alias's spec; give its own back

    def get_code(self, fullname: str) -> Any:
        """`python -m helpers.<short>` runs the real module's code as __main__."""
        spec = importlib.util.find_spec(self.real)
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(f"{self.real}.__main__")  # a package runs its __main__
        return spec.loader.get_code(spec.name)  # type: ignore[union-attr]


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        short = fullname.partition("helpers.")[2]
        if not fullname.startswith("helpers.") or short not in ALIASES:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(f"helpers.{ALIASES[short]}"))


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())


def __getattr__(name: str) -> ModuleType:
    """`from helpers import k8s` and `helpers.k8s` without importing every module up front."""
    if name in ALIASES:
        return importlib.import_module(f"helpers.{name}")
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")
