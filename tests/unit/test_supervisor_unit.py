"""The supervisor's sleep between passes: its interval, or less when a back-off ends sooner."""
from __future__ import annotations

import time

from helpers.local.stack.supervisor import Supervisor


def test_the_next_pass_comes_at_the_interval_or_when_the_first_back_off_ends() -> None:
    supervisor = Supervisor(stack=None, report=None)  # neither is touched by the timing
    assert supervisor.next_pass_in(1.0) == 1.0
    supervisor.not_before = {"etcd": time.time() + 0.3, "kube-apiserver": time.time() + 20}
    assert 0.2 < supervisor.next_pass_in(1.0) <= 0.3
    supervisor.not_before = {"etcd": time.time() - 5}  # overdue: at once
    assert supervisor.next_pass_in(1.0) == 0.0
