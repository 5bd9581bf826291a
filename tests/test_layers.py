"""The import layers of `helpers`, read from the source (imports inside functions count too).

core <- clients <- learner-facing; the local stack uses core and clients only; tools use anything.
A module missing from every layer fails the test, so a new module must be placed on purpose.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers.config import project_root

CORE = {"config", "constants", "errors", "wait", "progress", "resources", "settings"}
CLIENTS = {"k8s", "storage", "triton", "target", "portforward"}
LEARNER = {"notebook", "manifests", "preflight", "knative", "inference", "endpoint", "kubeflow_minio",
           "agent_log", "standins", "model_sources", "images", "predict", "plots", "widgets", "mc",
           "model_pack", "diagram", "lifecycle", "cleanup", "doctor", "pitfalls"}
TOOLS = {"lab", "walkthrough", "guide_steps", "notebooks"}
MAY_IMPORT = {"core": CORE, "clients": CORE | CLIENTS, "learner": CORE | CLIENTS | LEARNER,
              "local": CORE | CLIENTS | {"local"}}
HELPERS = project_root() / "helpers"


def layer(module: str) -> str:
    """`local` for helpers.local.*, else the layer of a top-level module."""
    top = module.split(".")[1] if module.count(".") else ""
    if top == "local":
        return "local"
    for name, members in (("core", CORE), ("clients", CLIENTS), ("learner", LEARNER), ("tools", TOOLS)):
        if top in members:
            return name
    return "unplaced"


def module_name(path: Path) -> str:
    parts = path.relative_to(HELPERS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def helpers_imports(path: Path) -> set[str]:
    """`helpers.<top>` (or `helpers.local`) for every import of a helpers module in the file."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = base + (node.module.split(".") if node.module else [])
            if node.level == 0 and (not target or target[0] != "helpers"):
                continue
            names = [target] if node.module else [target + [alias.name] for alias in node.names]
            found |= {".".join(name[:3] if name[1:2] == ["local"] else name[:2]) for name in names if len(name) > 1}
        elif isinstance(node, ast.Import):
            found |= {".".join(a.name.split(".")[:2]) for a in node.names if a.name.startswith("helpers.")}
    return {name if not name.startswith("helpers.local") else "helpers.local" for name in found}


MODULES = sorted(p for p in HELPERS.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    tops = {module_name(p).split(".")[1] for p in MODULES if module_name(p).count(".")}
    unplaced = sorted(t for t in tops if layer(f"helpers.{t}") == "unplaced")
    assert unplaced == [], f"add these modules to a layer in tests/test_layers.py: {unplaced}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_respect_the_layers(path: Path) -> None:
    own = layer(module_name(path)) if module_name(path) != "helpers" else "core"
    if own == "tools":
        return
    allowed = MAY_IMPORT[own]
    wrong = sorted(name for name in helpers_imports(path)
                   if name.split(".")[1] not in allowed)
    assert wrong == [], f"{module_name(path)} ({own}) may not import {wrong}"


def test_the_checker_sees_relative_imports_inside_functions(tmp_path: Path) -> None:
    """The test above could pass by seeing nothing: this one makes sure it sees such an import."""
    imports = helpers_imports(HELPERS / "notebook.py")
    assert "helpers.target" in imports and "helpers.endpoint" in imports  # the second is inside a property
    assert helpers_imports(HELPERS / "local" / "stack.py") >= {"helpers.k8s", "helpers.config"}


def test_no_module_but_target_asks_where_it_runs() -> None:
    """Only helpers.target (and config, which reads the setting) reads KUBERNETES_SERVICE_HOST or
    compares the target's name."""
    offenders = []
    for path in MODULES:
        name = module_name(path)
        if name in ("helpers.target", "helpers.config") or name.startswith("helpers.local"):
            continue
        text = path.read_text()
        if "KUBERNETES_SERVICE_HOST" in text or '== "local"' in text or "!= \"local\"" in text \
                or "== 'local'" in text:
            offenders.append(name)
    assert offenders == []
