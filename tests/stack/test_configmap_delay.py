"""Notebooks 03 and 05 on a stack whose kubelet projects the model config as late as a real one.

On a cluster a changed `modelconfig-<isvc>-0` reaches the agent's folder only on the pod's next
kubelet sync, 60-90 s with the defaults (helpers/local/cluster/projection.py). The suite's stacks
project it at once; this file starts its own stack (the guide's kfserving-0.5 profile) with the
slowest default sync, 90 s, runs the walkthrough (00-02, then 03 and 04, which 05 builds on, then
05), and checks that every wait in them held and that the delay really applied. Its own file, so
xdist gives it a worker of its own: it takes minutes.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest

from helpers.local.cluster import projection
from helpers.local.stack.stack import Stack
from support.stacks import pointed_at
from support.walkthroughs import NOTEBOOKS, results, run_walkthrough

pytestmark = pytest.mark.stack
DELAY = projection.REALISTIC_DELAY


@pytest.fixture(scope="module")
def delayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    local = Stack(Path(tmp_path_factory.mktemp("configmap-delay")))
    with pointed_at(local):
        try:
            local.up(say=lambda _msg: None, configmap_delay=DELAY)
            yield local
        finally:
            local.down(say=lambda _msg: None)


@pytest.mark.timeout(2400)
def test_03_and_05_wait_long_enough_for_a_kubelets_sync(delayed: Stack,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    assert delayed.configmap_delay() == DELAY
    runs = run_walkthrough(tmp_path_factory.mktemp("walkthrough-delayed"), {}, NOTEBOOKS)
    assert results(runs, "03_cifar10")["model_ready"] is True
    assert results(runs, "04_inception")["model_ready"] is True
    found = results(runs, "05_lifecycle")
    assert found["reload"]["seen"] and found["versions"]["v2_ready"]
    # Every change reached the agent one whole sync after the ConfigMap changed, none sooner.
    log = (delayed.logs / "controller.log").read_text()
    waited = [float(s) for s in re.findall(r"kubelet: projected models\.json into \S+, ([\d.]+) s after", log)]
    assert len(waited) >= 4 and min(waited) >= DELAY - 0.5, waited
