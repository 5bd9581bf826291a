"""One release's walkthrough, for the test files of the profiles that test_notebooks.py does not run
(kubeflow-1.10.0, kubeflow-1.11): a stack of that profile, 00-04 under papermill (00 as the admin,
01-04 as the Profile's learner, a Kubeflow Notebook's rights), then what a cluster of that release
shows: the stored InferenceService, the TrainedModels' storageUri, the doctor's verdict."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from helpers.core.resources import project_root
from helpers.local.stack.stack import Stack
from helpers.tools import walkthrough
from support.stacks import pointed_at

GUIDE = ["00_cluster_prep", "01_minio", "02_server", "03_cifar10", "04_inception"]


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
    runs = {run.notebook: run for run in walkthrough.run_all(parameters, out_dir, only=[n[:2] for n in GUIDE])}
    failed = [f"{r.notebook}: {r.error} (see {r.output})" for r in runs.values() if not r.ok]
    assert not failed, failed
    assert list(runs) == GUIDE
    return runs


def results(runs: dict[str, walkthrough.Run], name: str) -> dict:
    return json.loads(runs[name].results.read_text())


def doctor(stack: Stack, namespace: str, server: str, bucket: str) -> tuple[int, list[dict]]:
    """`python -m helpers.doctor` on the learner's namespace, as the admin: (exit code, findings)."""
    done = subprocess.run([sys.executable, "-m", "helpers.steps.troubleshoot.doctor", "--namespace", namespace,
                           "--server", server, "--bucket", bucket, "--json"], capture_output=True, text=True,
                          timeout=240, cwd=project_root(), env={**os.environ, **stack.env()})
    return done.returncode, json.loads(done.stdout or "[]")
