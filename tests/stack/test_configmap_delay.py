"""Notebooks 03 and 05 on a stack whose kubelet projects the model config as late as a real one.

On a cluster a changed `modelconfig-<isvc>-0` reaches the agent's folder only on the pod's next
kubelet sync, 60-90 s with the defaults (helpers/local/cluster/projection.py). The suite's stacks
project it at once. This file runs the walkthrough in a namespace of its own on the session's
stack (the guide's kfserving-0.5 profile) with the slowest default sync, 90 s, while 03 and 05 run,
and checks that every wait in them held and that the delay really applied. 00-02 and 04 (which 05
builds on) run without it: they wait for no change of the model config, so a delay there would only
be waited out. A running stack takes a new delay at once (`projection.write_delay`). Its own file,
so xdist gives it a worker of its own: it takes minutes.
"""
from __future__ import annotations

import re
from typing import Iterator

import pytest

from helpers.local.cluster import projection
from helpers.local.stack.stack import Stack
from support.walkthroughs import NOTEBOOKS, results, run_walkthrough

pytestmark = pytest.mark.stack
DELAY = projection.REALISTIC_DELAY
DELAYED = ("03_cifar10", "05_lifecycle")
NAMESPACE = "kubelet-delay"  # the walkthrough's own namespace on the session's stack


@pytest.fixture
def delayed(stack: Stack) -> Iterator[Stack]:
    """The session's stack, its ConfigMap delay back at 0 afterwards (tests on one worker run one at a time)."""
    try:
        yield stack
    finally:
        projection.write_delay(stack.root, 0)


def projections(local: Stack) -> list[float]:
    """How long after its ConfigMap changed each delayed projection was written (the kubelet's log lines)."""
    log = (local.logs / "controller.log").read_text()
    return [float(s) for s in re.findall(r"kubelet: projected models\.json into \S+, ([\d.]+) s after", log)]


@pytest.mark.timeout(2400)
def test_03_and_05_wait_long_enough_for_a_kubelets_sync(delayed: Stack,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    before, written = len(projections(delayed)), {}

    def next_delay(run) -> None:  # the delay for the notebook after `run`
        written[run.notebook] = len(projections(delayed)) - before
        following = NOTEBOOKS[NOTEBOOKS.index(run.notebook) + 1] if run.notebook != NOTEBOOKS[-1] else ""
        projection.write_delay(delayed.root, DELAY if following in DELAYED else 0)
        if following in DELAYED:
            assert delayed.configmap_delay() == DELAY

    projection.write_delay(delayed.root, 0)
    runs = run_walkthrough(tmp_path_factory.mktemp("walkthrough-delayed"), {"namespace": NAMESPACE}, NOTEBOOKS,
                           after=next_delay)
    assert results(runs, "03_cifar10")["model_ready"] is True
    assert results(runs, "04_inception")["model_ready"] is True
    found = results(runs, "05_lifecycle")
    assert found["reload"]["seen"] and found["versions"]["v2_ready"]
    # 03's one change and 05's (add, edit, delete) reached the agent one whole sync after the ConfigMap
    # changed, none sooner; nothing else waited.
    waited = projections(delayed)[before:]
    assert written["02_server"] == 0 and written["03_cifar10"] >= 1, written
    assert written["04_inception"] == written["03_cifar10"], written
    assert written["05_lifecycle"] - written["04_inception"] >= 2, written
    assert min(waited) >= DELAY - 0.5, waited
