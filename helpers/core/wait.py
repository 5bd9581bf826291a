"""Poll until something is true, with a deadline and a readable timeout (never `sleep` and hope)."""
from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

from helpers.core.i18n import _

T = TypeVar("T")


# Polls come every `interval` at first, then every tenth of the time waited so far, up to this: a wait
# of seconds is answered as soon as before, and one of minutes (a kubelet's 90 s ConfigMap sync, a big
# model's download) costs the cluster a few dozen requests, not hundreds.
MAX_INTERVAL = 2.0


def pause(interval: float, waited: float) -> float:
    """Seconds until the next poll, after `waited` seconds of polling every `interval` at least."""
    return min(max(interval, waited / 10), max(interval, MAX_INTERVAL))


def nap(interval: float, start: float, deadline: float, paced: bool = True) -> None:
    """Sleep until the next poll of a wait that began at `start` (`time.monotonic()`): `pause` when
    `paced`, else `interval`; never past `deadline`."""
    now = time.monotonic()
    time.sleep(max(0.0, min(pause(interval, now - start) if paced else interval, deadline - now)))


class WaitTimeout(TimeoutError):
    """Raised when `poll_until` runs out of time; the message says what was awaited and the last state."""


def poll_until(
    check: Callable[[], Optional[T]],
    what: str,
    timeout: float = 60.0,
    interval: float = 0.2,
    give_up: Optional[Callable[[], Optional[str]]] = None,
    paced: bool = True,
) -> T:
    """Call `check` until it returns a truthy value and return that value.

    Polls are paced by `pause`; `paced=False` polls every `interval` throughout (a benchmark timing
    when something happened).

    `give_up` is asked between polls; a string it returns ends the wait at once with that reason
    (e.g. "the process exited"). Exceptions from `check` count as "not yet" and the last one is
    named in the timeout message.
    """
    start = time.monotonic()
    deadline = start + timeout
    last_error: Optional[BaseException] = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
        if give_up is not None:
            reason = give_up()
            if reason:
                raise WaitTimeout(_("gave up waiting for {what}: {reason}").format(what=what, reason=reason))
        now = time.monotonic()
        if now >= deadline:
            detail = " " + _("(last error: {error})").format(error=last_error) if last_error else ""
            raise WaitTimeout(_("timed out after {timeout:.0f}s waiting for {what}{detail}").format(
                timeout=timeout, what=what, detail=detail))
        nap(interval, start, deadline, paced)
