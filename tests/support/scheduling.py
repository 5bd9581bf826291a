"""Which worker runs which test file: whole files, slowest first, and the `kubeflow-1.10` stack on one worker.

Under `pytest -n N` each worker that runs a file asking for a session stack starts one (~30 CPU
seconds of apiserver, etcd and controller on 2 cores). Every worker needs the guide's stack
(`stack`), but the second profile's (`kserve_stack`) is needed by a few files only: left to
xdist's file scheduling, each worker that draws one of them starts its own. Here the last worker
takes those files (and the files that start stacks of their own or none), the others the rest,
each in the order `tests/conftest.py` sorted them (slowest first; xdist would sort by test count).

A worker runs a file's last test only once it holds another file (xdist keeps one test back until
it knows what comes next), so a file of one or two tests is sent with a second file behind it at
once. Behind a file that has not finished a test yet, that second file is the quickest left (the
last in the queue, a unit-test file): behind test_configmap_delay.py's one six-minute test, the
next slow file would wait six minutes for a worker.

A file's needs are read from its source (`ast`): the fixtures its tests and fixtures take, and the
fixture names it passes as strings (`request.getfixturevalue`, parametrize ids). A wrong guess
costs time only, never a result: any worker can run any file.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path
from typing import Optional

from xdist.scheduler import LoadFileScheduling

SESSION = frozenset({"stack", "kube"})
SECOND = frozenset({"kserve_stack", "kserve_kube"})


@lru_cache(maxsize=None)
def needs(path: str) -> frozenset[str]:
    """The session stacks a test file asks for: a subset of {"stack", "kserve_stack"}."""
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError):
        return frozenset()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                node.name.startswith("test_") or any("fixture" in ast.unparse(d) for d in node.decorator_list)):
            names.update(a.arg for a in node.args.args)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
    found = set()
    if names & SESSION:
        found.add("stack")
    if names & SECOND:
        found.add("kserve_stack")
    return frozenset(found)


class StackAffinityScheduling(LoadFileScheduling):
    """xdist's file scheduling, in collection order, with the second stack's files on one worker."""

    def __init__(self, config, log=None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False  # keep conftest's slowest-first order

    def _second_stack_node(self):
        return self.nodes[-1] if len(self.nodes) > 1 else None

    def _needs(self, scope: str) -> frozenset[str]:
        return needs(str(self.config.rootpath / scope))

    def _pick(self, node) -> Optional[str]:
        owner = self._second_stack_node()
        if owner is None:
            return next(iter(self.workqueue))
        scopes = list(self.workqueue)
        if node is owner:
            # its own kind first, then files needing no session stack, the guide's stack's files last
            for wanted in (lambda n: "kserve_stack" in n, lambda n: "stack" not in n, lambda n: True):
                for scope in scopes:
                    if wanted(self._needs(scope)):
                        return scope
            return None
        return next((s for s in scopes if "kserve_stack" not in self._needs(s)), None)

    def _behind_a_start(self, node) -> Optional[str]:
        """The quickest file that needs no session stack, if the node's current file has finished no test."""
        unfinished = [unit for unit in self.assigned_work.get(node, {}).values() if not all(unit.values())]
        if not unfinished or any(any(unit.values()) for unit in unfinished):
            return None
        return next((scope for scope in reversed(self.workqueue) if not self._needs(scope)), None)

    def _assign_work_unit(self, node) -> None:
        scope = self._behind_a_start(node) or self._pick(node)
        if scope is None:
            return  # this worker idles; the run ends when every file has run
        work_unit = self.workqueue.pop(scope)
        self.assigned_work.setdefault(node, {})[scope] = work_unit
        collection = self.registered_collections[node]
        node.send_runtest_some([collection.index(nodeid) for nodeid, done in work_unit.items() if not done])
