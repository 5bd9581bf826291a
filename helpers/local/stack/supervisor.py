"""`python -m helpers.local.stack.supervisor --state-dir DIR`: start the stack's components and keep them running.

What a kubelet does for a pod's containers, for the local stack's own processes: it is their
parent, so it learns how each one ended (exit code or signal), and it starts a dead one again
after a CrashLoop back-off (`process.CrashLoopBackOff`), counting restarts in its record.

Why these few lines rather than supervisord (PyPI `supervisor`): supervisord wants every
program, with its command line, in a config file before it starts, gives up after
`startretries` (FATAL) instead of backing off for ever, and has no notion of our components'
order, health checks, port reuse or the kubeconfig and seed that follow an apiserver or S3
restart. The process layer already starts, health-checks and stops each component; the
loop below adds only "notice the death, wait, start again", so `down` still stops exactly the
PIDs the stack recorded.

What a dead component left running in its session (nginx's worker, which would keep port 80 and
serve the old config) is killed at once, as a kubelet ends a dead container's processes.

Signals: SIGTERM/SIGINT end the supervisor and leave the components running (`down` stops them
next); SIGUSR1 (sent by `up`) starts whatever is down at once, skipping the back-off.
Its report, `<state>/supervisor.json`, carries `up`'s progress lines, the outcome of each start
round and the back-off deadlines `status` shows.
"""
from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.local.stack import leftovers, process
from helpers.local.stack.report import Report
from helpers.local.stack.stack import ORDER, Stack

log = logging.getLogger("supervisor")


class Supervisor:
    def __init__(self, stack: Stack, report: Report, backoff: Optional[process.CrashLoopBackOff] = None) -> None:
        self.stack = stack
        self.report = report
        self.backoff = backoff or process.CrashLoopBackOff()
        self.not_before: dict[str, float] = {}  # name -> when its back-off ends
        self.reasons: dict[str, str] = {}
        self.reseed = False  # S3 moved to another port: the seeded minio-service must follow

    def start_round(self) -> bool:
        """`up`'s work: start what is not running, now; True if it all started."""
        self.report.data["progress"] = []
        self.report.data["progress_for"] = self.report.data["round"] + 1  # which round the lines belong to
        try:
            self.stack.start_all(say=self.report.say)
        except SetupError as exc:
            self.report.finished(exc)
            return False
        except Exception as exc:  # noqa: BLE001 - reported to `up`, which shows it
            self.report.finished(SetupError(_("starting the local stack failed: {kind}: {exc}").format(
                                                kind=type(exc).__name__, exc=exc),
                                            _("read {log}").format(log=self.stack.logs / 'supervisor.log')))
            return False
        self.not_before.clear()
        self.reasons.clear()
        self._publish_backoff()
        self.report.finished(None)
        return True

    def check_once(self) -> list[str]:
        """Restart every component that died and whose back-off has passed; return their names."""
        restarted = []
        now = time.time()
        for name in ORDER:
            record = self.stack.records().get(name)
            if record is None:
                continue
            if name not in self.reasons:
                reason = process.exit_reason(record)
                if reason is None:
                    continue
            elif record.alive():  # started meanwhile by a start round
                del self.reasons[name], self.not_before[name]
                continue
            if name not in self.not_before:
                delay = self.backoff.delay(name, now - record.started)
                self.reasons[name] = reason
                self.not_before[name] = now + delay
                log.warning("%s (pid %s) ended: %s; restarting it in %.1fs (restart %d)",
                            name, record.pid, reason, delay, record.restarts + 1)
                leftovers.clean(record.pid, name)  # a container's processes end with it (nginx's workers)
                self._publish_backoff()
            if now < self.not_before[name]:
                continue
            try:
                new, moved = self.stack.restart(name, self.reasons[name])
            except Exception as exc:  # noqa: BLE001 - a failed start is one more crash: back off longer
                delay = self.backoff.delay(name, 0.0)
                self.reasons[name] = f"failed to start: {exc}".splitlines()[0]
                self.not_before[name] = time.time() + delay
                log.warning("%s did not start again: %s; next try in %.1fs", name, exc, delay)
                self._publish_backoff()
                continue
            log.info("%s restarted (pid %s, restart %d, last exit: %s)", name, new.pid, new.restarts, new.last_exit)
            del self.reasons[name], self.not_before[name]
            self._publish_backoff()
            restarted.append(name)
            if moved and name == "s3":
                self.reseed = True
            controller = self.stack.records().get("controller")
            if moved and name == "kube-apiserver" and controller and controller.alive():
                log.info("the apiserver moved to another port: restarting the controller with the new kubeconfig")
                process.stop(controller)
                self.reasons["controller"] = "stopped by the supervisor: the apiserver moved to another port"
                self.not_before["controller"] = time.time()
        if self.reseed:
            try:
                self.stack._seed(say=lambda line: log.info("%s", line))
                self.reseed = False
            except Exception as exc:  # noqa: BLE001 - the apiserver may be down too: next pass
                log.warning("seeding the new S3 address failed (retrying): %s", exc)
        return restarted

    def _publish_backoff(self) -> None:
        self.report.data["backoff"] = dict(self.not_before)
        self.report.save()

    def next_pass_in(self, interval: float) -> float:
        """Seconds until the next pass: `interval`, or sooner when a back-off ends first."""
        if not self.not_before:
            return interval
        return max(0.0, min(interval, min(self.not_before.values()) - time.time()))

    def run(self, stop: threading.Event, kick: threading.Event, wake: threading.Event,
            interval: float = 1.0) -> None:
        """Check, then sleep until `wake` (a child ended, `up` kicked, the supervisor is stopping) or
        `interval` passes. The components are its children, so their deaths wake it at once; the
        interval catches the ones it adopted from an earlier supervisor, as a kubelet's 1 s relist does."""
        while not stop.is_set():
            if kick.is_set():
                kick.clear()
                self.start_round()
            try:
                self.check_once()
            except Exception as exc:  # noqa: BLE001 - the supervisor must outlive one bad check
                log.warning("supervision pass failed: %s: %s", type(exc).__name__, exc)
            wake.wait(self.next_pass_in(interval))
            wake.clear()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.local.stack.supervisor")
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop, kick, wake = threading.Event(), threading.Event(), threading.Event()

    def terminate(*_: object) -> None:
        stop.set()
        raise SystemExit(0)  # ends a start in progress too; process.start stops its half-started child

    def kicked(*_: object) -> None:
        kick.set()
        wake.set()

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    signal.signal(signal.SIGUSR1, kicked)
    signal.signal(signal.SIGCHLD, lambda *_: wake.set())
    stack = Stack(args.state_dir)
    lock = open(args.state_dir / "supervisor.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.error("another supervisor runs for %s: leaving it in charge", args.state_dir)
        return 3
    report = Report(stack.supervisor_report)
    report.data["pid"] = os.getpid()
    report.save()
    supervisor = Supervisor(stack, report)
    if not supervisor.start_round():
        log.error("the first start failed: %s", report.data["error"]["cause"])
        return 2
    supervisor.run(stop, kick, wake)
    return 0


if __name__ == "__main__":
    sys.exit(main())
