"""The import layers of `helpers`, read from the folders (imports inside functions count too).

core <- clients <- steps <- lesson <- tools; the local stack (`helpers.local`) builds on core and
clients only. A module outside these folders fails the test, so a new one is placed on purpose,
and no module may reach itself through its imports (no circles).
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

from helpers import ALIASES
from helpers.core.config import project_root

HELPERS = project_root() / "helpers"
ORDER = ("core", "clients", "steps", "lesson", "tools")
MAY_IMPORT = {**{layer: set(ORDER[:i + 1]) for i, layer in enumerate(ORDER)}, "local": {"core", "clients", "local"}}
MAY_IMPORT["tools"] |= {"local"}


def module_name(path: Path) -> str:
    parts = path.relative_to(HELPERS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """The folder right under helpers/ (`helpers` itself for the package's own __init__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "helpers"


def is_module(dotted: str) -> bool:
    path = HELPERS.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def helpers_imports(path: Path) -> set[str]:
    """Every helpers module the file imports (as written: `from helpers.x import y` names x.y when
    y is a module, else x), with aliases resolved to the real module."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + (node.module.split(".") if node.module else []))
            if not target.startswith("helpers"):
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.add(full if is_module(full) else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("helpers.")}
    return {real(n) for n in found} - {"helpers"}


def real(module: str) -> str:
    short = module.partition("helpers.")[2].split(".")[0]
    return f"helpers.{ALIASES[short]}" if short in ALIASES and module == f"helpers.{short}" else module


MODULES = sorted(p for p in HELPERS.rglob("*.py") if "backends" not in p.relative_to(HELPERS).parts)


@functools.lru_cache(maxsize=None)
def graph() -> dict[str, set[str]]:
    """{module: the helpers modules it imports}, parsed when a test first asks, not while the file is
    collected: every xdist worker collects it, and parsing all of helpers costs about half a CPU second."""
    return {module_name(p): helpers_imports(p) for p in MODULES}


def test_every_module_lives_in_a_layer_folder() -> None:
    loose = sorted(m for m in graph() if m != "helpers" and layer(m) not in MAY_IMPORT)
    assert loose == [], f"move these into one of helpers/{{{','.join(MAY_IMPORT)}}}/: {loose}"


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_imports_respect_the_layers(path: Path) -> None:
    name = module_name(path)
    if name == "helpers":
        return
    allowed = MAY_IMPORT[layer(name)]
    wrong = sorted(m for m in graph()[name] if layer(m) not in allowed and m != "helpers")
    assert wrong == [], f"{name} ({layer(name)}) may not import {wrong}"


def test_no_import_circles() -> None:
    """Depth-first search over module imports (a package's import of its own __init__ is not a loop)."""
    circles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for nxt in sorted(graph().get(module, ())):
            if nxt == module or module.startswith(nxt + "."):
                continue  # a module importing its own package
            if state.get(nxt) == "open":
                circles.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [module, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[module] = "done"

    for module in sorted(graph()):
        if module not in state:
            visit(module, [module])
    assert circles == [], "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_the_checker_sees_imports_inside_functions() -> None:
    """The tests above could pass by seeing nothing: make sure they see a function-level import."""
    notebook = graph()["helpers.lesson.notebook"]
    assert "helpers.clients.target" in notebook and "helpers.steps.serving.endpoint" in notebook
    assert graph()["helpers.local.stack.stack"] >= {"helpers.clients.k8s", "helpers.core.config"}


def test_every_alias_names_a_module() -> None:
    missing = sorted(short for short, real_name in ALIASES.items() if not is_module(f"helpers.{real_name}"))
    assert missing == []


def test_no_module_but_target_asks_where_it_runs() -> None:
    """Only helpers.clients.target (and config, which reads the setting) reads KUBERNETES_SERVICE_HOST
    or compares the target's name."""
    offenders = []
    for path in MODULES:
        name = module_name(path)
        if name in ("helpers.clients.target", "helpers.core.config") or name.startswith("helpers.local"):
            continue
        text = path.read_text()
        if "KUBERNETES_SERVICE_HOST" in text or '== "local"' in text or "!= \"local\"" in text \
                or "== 'local'" in text:
            offenders.append(name)
    assert offenders == []
