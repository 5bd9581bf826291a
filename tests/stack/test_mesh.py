"""Istio's policies at the predictor on the guide's `kfserving-0.5` stack, the session's: nothing there refuses.

The cases are in `support.mesh_cases`; the Kubeflow profiles run them on the stacks their own files
hold (test_notebooks_kubeflow_1_10.py, test_kubeflow_1_10_0.py, test_kubeflow_1_11.py).
"""
from __future__ import annotations

from typing import Iterator

import pytest

from helpers.local.stack.stack import Stack
from support.mesh_cases import *  # noqa: F403 - the cases, collected here
from support.mesh_cases import Routes, mesh_routes

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def routes(stack: Stack) -> Iterator[Routes]:
    assert stack.profile().name == "kfserving-0.5"
    with mesh_routes(stack) as found:
        yield found
