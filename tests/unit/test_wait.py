"""helpers.core.wait: how often a wait polls, on a fake clock (no sleeping)."""
from __future__ import annotations

import pytest

from helpers.core import wait


class Clock:
    """time.monotonic and time.sleep for poll_until: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(wait.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(wait.time, "sleep", fake.sleep)
    return fake


def test_pause_is_the_interval_then_a_tenth_of_the_wait_up_to_two_seconds() -> None:
    assert wait.pause(0.2, 0.0) == 0.2 and wait.pause(0.2, 1.9) == 0.2
    assert wait.pause(0.2, 5.0) == pytest.approx(0.5)
    assert wait.pause(0.2, 60.0) == wait.MAX_INTERVAL
    assert wait.pause(5.0, 60.0) == 5.0  # a caller's longer interval stands


def test_a_kubelet_sync_long_wait_costs_dozens_of_polls_not_hundreds(clock: Clock) -> None:
    calls = []

    def check() -> bool:
        calls.append(clock.now)
        return clock.now >= 90.0

    wait.poll_until(check, "a 90 s ConfigMap sync", timeout=120)
    assert 40 < len(calls) < 90  # every 0.2 s would be 450
    assert calls[-1] - 90.0 <= wait.MAX_INTERVAL  # seen at most one pause late
    assert clock.sleeps[:5] == [0.2] * 5  # a short wait is answered as quickly as ever


def test_unpaced_polls_keep_the_interval_and_the_deadline_is_kept(clock: Clock) -> None:
    calls = []
    with pytest.raises(wait.WaitTimeout, match="timed out after 10s waiting for never"):
        wait.poll_until(lambda: calls.append(clock.now), "never", timeout=10, interval=0.5, paced=False)
    assert set(clock.sleeps) == {0.5} and len(calls) == 21
    calls.clear()
    clock.now = 0.0
    with pytest.raises(wait.WaitTimeout):
        wait.poll_until(lambda: calls.append(clock.now), "never", timeout=7)
    assert calls[-1] == pytest.approx(clock.now) and clock.now == pytest.approx(7.0)  # the last poll at the deadline


def test_a_nap_ends_at_the_deadline_and_never_sleeps_a_negative_time(clock: Clock) -> None:
    clock.now = 59.5  # a pause of 2 s is due (59.5 s waited), the deadline is 0.5 s away
    wait.nap(0.5, start=0.0, deadline=60.0)
    assert clock.now == pytest.approx(60.0)
    wait.nap(0.5, start=0.0, deadline=60.0)  # already at it
    assert clock.sleeps[-1] == 0.0
