"""Pointing this process (and the kernels and commands it starts) at one local stack for a while."""
from __future__ import annotations

import contextlib
from typing import Iterator

import pytest

from helpers.local.stack.stack import Stack


@contextlib.contextmanager
def pointed_at(stack: Stack) -> Iterator[Stack]:
    """MMS_STATE_DIR names `stack` inside the block, and what it named before after it (unset if unset)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MMS_STATE_DIR", str(stack.root))
        yield stack
