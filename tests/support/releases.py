"""One release's walkthrough, for the test files of the profiles that test_notebooks.py does not run
(kubeflow-1.10.0, kubeflow-1.11): a stack of that profile, 00-04 under papermill (00 as the admin,
01-04 as the Profile's learner, a Kubeflow Notebook's rights), then what a cluster of that release
shows: the stored InferenceService, the TrainedModels' storageUri, the doctor's verdict."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from helpers.local.stack.stack import Stack
from helpers.tools import walkthrough
from support.stacks import pointed_at
from support.walkthroughs import GUIDE, doctor, results, run_walkthrough  # noqa: F401 - the release tests' API


@contextmanager
def release_stack(root: Path, profile: str) -> Iterator[Stack]:
    """A stack of `profile` in `root`, this process pointed at it while it runs; stopped after."""
    local = Stack(root)
    with pointed_at(local):
        try:
            local.up(say=lambda _msg: None, profile=profile)
            yield local
        finally:
            local.down(say=lambda _msg: None)


def run_guide(out_dir: Path, parameters: dict) -> dict[str, walkthrough.Run]:
    return run_walkthrough(out_dir, parameters, GUIDE)


