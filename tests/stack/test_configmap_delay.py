"""Notebooks 03 and 05 on a stack whose kubelet projects the model config as late as a real one.

On a cluster a changed `modelconfig-<isvc>-0` reaches the agent's folder only on the pod's next
kubelet sync, 60-90 s with the defaults (helpers/local/cluster/projection.py). The suite's stacks
project it at once. This file runs 03 and 05 on the session's stack (the guide's kfserving-0.5
profile) with the slowest default sync, 90 s, and checks that every wait in them held and that the
delay really applied.

Each runs in a namespace of its own, with its own server and bucket, so the two wait out their
syncs side by side (03's one change, 05's three): first, without a delay, 00-04 in 05's namespace
(05 builds on 04) and 00-02 in 03's; then, with the delay, 05 as `python -m helpers.walkthrough
--only 05` in a second process while 03 runs here. Nothing before them waits for a change of the
model config, so a delay there would only be waited out. A running stack takes a new delay at once
(`projection.write_delay`). Its own file, so xdist gives it a worker of its own: it takes minutes.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from helpers.core.config import project_root
from helpers.local.cluster import projection
from helpers.local.stack.stack import Stack
from support.walkthroughs import NOTEBOOKS, results, run_walkthrough

pytestmark = pytest.mark.stack
DELAY = projection.REALISTIC_DELAY
CIFAR10 = {"namespace": "kubelet-delay", "bucket": "kubelet-delay"}  # 00-02, then 03 under the delay
LIFECYCLE = {"namespace": "kubelet-delay-05", "bucket": "kubelet-delay-05"}  # 00-04, then 05 under the delay


@pytest.fixture
def delayed(stack: Stack) -> Iterator[Stack]:
    """The session's stack, its ConfigMap delay back at 0 afterwards (tests on one worker run one at a time)."""
    try:
        yield stack
    finally:
        projection.write_delay(stack.root, 0)


def projections(local: Stack, namespace: str) -> list[float]:
    """How long after its ConfigMap changed each delayed projection into `namespace` was written (the kubelet's log)."""
    log = (local.logs / "controller.log").read_text()
    pattern = rf"kubelet: projected models\.json into {re.escape(namespace)}\.\S+, ([\d.]+) s after"
    return [float(s) for s in re.findall(pattern, log)]


def start_05(settings: dict, out: Path) -> subprocess.Popen:
    """05 in `settings`' namespace as the command line runs it, in a process of its own."""
    argv = [sys.executable, "-m", "helpers.walkthrough", "--only", "05", "--out", str(out)]
    for name, value in settings.items():
        argv += ["-p", name, value]
    return subprocess.Popen(argv, cwd=project_root(), env=os.environ.copy(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.timeout(2400)
def test_03_and_05_wait_long_enough_for_a_kubelets_sync(delayed: Stack,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    before = {s["namespace"]: len(projections(delayed, s["namespace"])) for s in (CIFAR10, LIFECYCLE)}
    projection.write_delay(delayed.root, 0)
    lifecycle_out = tmp_path_factory.mktemp("walkthrough-delayed-05")
    lifecycle = run_walkthrough(lifecycle_out, LIFECYCLE, NOTEBOOKS[:5])
    cifar10 = run_walkthrough(tmp_path_factory.mktemp("walkthrough-delayed-03"), CIFAR10, NOTEBOOKS[:3])
    assert {ns: len(projections(delayed, ns)) for ns in before} == before  # nothing so far waited

    projection.write_delay(delayed.root, DELAY)
    assert delayed.configmap_delay() == DELAY
    second = start_05(LIFECYCLE, lifecycle_out)
    try:
        cifar10.update(run_walkthrough(cifar10["00_cluster_prep"].output.parent, CIFAR10, ["03_cifar10"]))
        printed, _ = second.communicate(timeout=900)
    finally:
        second.kill()
    assert second.returncode == 0, printed[-3000:]

    assert results(cifar10, "03_cifar10")["model_ready"] is True
    assert results(lifecycle, "04_inception")["model_ready"] is True
    found = json.loads((lifecycle_out / "results" / "05_lifecycle.json").read_text())
    assert found["reload"]["seen"] and found["versions"]["v2_ready"]
    # 03's one change and 05's (add, edit, delete) reached the agent one whole sync after the ConfigMap
    # changed, none sooner.
    waited = {ns: projections(delayed, ns)[count:] for ns, count in before.items()}
    assert len(waited[CIFAR10["namespace"]]) >= 1 and len(waited[LIFECYCLE["namespace"]]) >= 2, waited
    assert min(min(seconds) for seconds in waited.values()) >= DELAY - 0.5, waited
