"""Puller: runs operations in order per model (one queue and worker thread each), in parallel
across models, and keeps Triton's loaded models in line with the models on disk.

add: download, then load through Triton's repository API; remove: unload, then delete the
folder; replace: unload, download the new spec, load; reload: load what is on disk. As every
release's agent, each download and load is tried once and a failure is logged in the Go agent's
words ("Failed to download model <name> with err ..."); the model then stays unloaded. The friendly
agent (`release.Behaviour.retry`) retries failures that may pass (S3 or Triton unreachable, a
bucket not there yet) with exponential backoff, a newer operation for the same model superseding a
retrying one. A load Triton refuses is final for that spec either way.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional, Protocol

from helpers.clients.storage import StorageError
from helpers.local.agent.downloader import Cancelled, Downloader, marker_path
from helpers.local.agent.log import Logger
from helpers.local.agent.release import FRIENDLY, Behaviour
from helpers.local.agent.spec import ModelSpec, Op
from helpers.local.agent.status import StatusFile


class ServerUnreachable(Exception):
    """The model server did not answer (refused, timed out, or restarting)."""


class LoadRefused(Exception):
    """The model server answered and refused the request; the message is its own, `reply` its words alone."""

    def __init__(self, message: str, reply: str = "") -> None:
        super().__init__(message)
        self.reply = reply or message


def go_body(reply: str, as_bytes: bool) -> str:
    """Triton's JSON answer to a refused load as the Go agent prints it: `%s` (KServe), or `%v` of the
    []byte, a list of byte values (KFServing 0.5.1)."""
    body = json.dumps({"error": reply}, separators=(",", ":"))
    return "[" + " ".join(str(b) for b in body.encode()) + "]" if as_bytes else body


class ModelServer(Protocol):
    """What the puller needs from Triton's repository API."""

    def load(self, name: str) -> None: ...

    def unload(self, name: str) -> None:
        """Returns once the model is no longer served (Triton itself unloads in the background)."""
        ...

    def index(self) -> dict[str, str]:
        """{model name: state} for every model Triton knows ("READY" when it serves)."""
        ...


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: `first`, doubled on each attempt, at most `cap` seconds."""

    first: float = 1.0
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.first * (2 ** attempt))


class _Retry(Exception):
    """An operation failed in a way that may pass; `message` goes to the status file."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Worker:
    """One model's queue and the thread that works through it."""

    def __init__(self) -> None:
        self.ops: deque[Op] = deque()
        self.running: Optional[Op] = None
        self.cond = threading.Condition()
        self.thread: Optional[threading.Thread] = None

    def in_flight(self) -> int:
        return len(self.ops) + (1 if self.running else 0)


class Puller:
    """Executes model operations against the downloader and the model server, reporting status."""

    def __init__(self, downloader: Downloader, server: ModelServer, status: StatusFile, log: Logger,
                 backoff: Backoff = Backoff(), check_interval: float = 1.5, reload_lost: bool = True,
                 behaviour: Behaviour = FRIENDLY) -> None:
        self.downloader = downloader
        self.server = server
        self.status = status
        self.model_dir = downloader.model_dir
        self.log = log.named("modelProcessor")
        self.complete_log = log.named("modelOnComplete")
        self.agent_log = log.named("modelAgent")
        self.backoff = backoff
        self.check_interval = check_interval
        self.reload_lost = reload_lost  # False: as every release's agent, no watch on Triton at all
        self.behaviour = behaviour  # retry: the friendly agent; else one attempt, as every release
        self.desired: dict[str, ModelSpec] = {}
        self._loaded: set[str] = set()  # models this agent loaded and has not started to unload
        self._changes: dict[str, int] = {}  # model -> how often it was loaded or unloaded (see check_server)
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()
        self._stop = downloader.stop
        self._server_down = False
        self._checker = threading.Thread(target=self._check_loop, name="triton-check", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.reload_lost:
            self._checker.start()

    def stop(self) -> None:
        """Ask every worker to stop; they are daemon threads, so a stuck request cannot hold exit."""
        self._stop.set()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            with worker.cond:
                worker.cond.notify_all()
        deadline = time.monotonic() + 1.5
        for thread in [w.thread for w in workers if w.thread] + [self._checker]:
            if thread.is_alive():
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def enqueue(self, op: Op) -> None:
        """Queue `op` behind the model's earlier operations (a retrying one gives way to it)."""
        with self._lock:
            if op.kind == "remove":
                self.desired.pop(op.name, None)
            elif op.spec is not None:
                self.desired[op.name] = op.spec
            worker = self._workers.get(op.name)
            if worker is None:
                worker = self._workers[op.name] = _Worker()
                worker.thread = threading.Thread(target=self._work, args=(op.name, worker),
                                                 name=f"model-{op.name}", daemon=True)
                worker.thread.start()
            with worker.cond:  # under the lock too: a worker ends only when it has no op (`_retire`)
                worker.ops.append(op)
                worker.cond.notify_all()

    def idle(self) -> bool:
        """True when no model has an operation queued or running."""
        with self._lock:
            workers = list(self._workers.values())
        return all(w.in_flight() == 0 for w in workers)

    # --- per-model worker ----------------------------------------------------------------------
    def _work(self, name: str, worker: _Worker) -> None:
        self.log.info("worker is started for", model=name)
        while not self._stop.is_set():
            with worker.cond:
                worker.cond.wait_for(lambda: worker.ops or self._stop.is_set())
                if self._stop.is_set():
                    return
                worker.running = worker.ops.popleft()
            op = worker.running
            try:
                self._run(op, worker)
            except Exception as exc:  # noqa: BLE001 - a bug in one op must not kill the model's worker
                self.log.error("Unexpected error", modelName=name, op=op.kind, error=f"{type(exc).__name__}: {exc}")
                self.status.set(name, "Failed", f"agent error: {type(exc).__name__}: {exc}",
                                op.spec.sha if op.spec else "")
            with worker.cond:
                worker.running = None
                in_flight = worker.in_flight()
            self.complete_log.info("completion event for model", modelName=name, inFlight=in_flight)
            if op.kind == "remove" and self._retire(name, worker):
                return

    def _retire(self, name: str, worker: _Worker) -> bool:
        """End a removed model's worker when nothing more is queued for it, as KServe's puller closes a
        removed model's channel: a thread per model ever seen would add up."""
        with self._lock:
            with worker.cond:
                if worker.ops or self._workers.get(name) is not worker:
                    return False
                del self._workers[name]
        self.log.info("worker is stopped for", model=name)
        return True

    def _run(self, op: Op, worker: _Worker) -> None:
        attempt = 0
        sha = op.spec.sha if op.spec else ""
        while True:
            try:
                self._execute(op)
                return
            except Cancelled:
                return
            except LoadRefused as exc:
                if self.behaviour.retry:
                    self.log.error("Failed to load model", modelName=op.name, error=str(exc))
                else:  # Triton answered 400: the Go agent logs it at info level, body and all
                    self.log.info(f"Failed to load model {op.name} with status [400] and resp:"
                                  f"{go_body(exc.reply, self.behaviour.body_as_bytes)}", modelName=op.name,
                                  error=str(exc))
                self.status.set(op.name, "Failed", str(exc), sha)
                return
            except _Retry as exc:
                if not self.behaviour.retry:  # as every release: tried once, logged, left unloaded
                    self.status.set(op.name, "Failed", exc.message, sha)
                    return
                delay = self.backoff.delay(attempt)
                attempt += 1
                self.log.error("Operation failed, will retry", modelName=op.name, op=op.kind,
                               error=exc.message, retryIn=delay, attempt=attempt)
                self.status.set(op.name, "Failed", f"{exc.message} (retry {attempt} in {delay:.0f} s)", sha)
                with worker.cond:
                    worker.cond.wait_for(lambda: worker.ops or self._stop.is_set(), timeout=delay)
                    if self._stop.is_set():
                        return
                    if worker.ops:
                        self.log.info("Operation superseded by a newer one", modelName=op.name, op=op.kind,
                                      next=worker.ops[0].kind)
                        return

    def _execute(self, op: Op) -> None:
        name, spec = op.name, op.spec
        if op.kind == "remove":
            self._unload(name)
            shutil.rmtree(self.model_dir / name, ignore_errors=True)
            self.status.set(name, "Unloaded", "")
            return
        assert spec is not None
        if op.kind == "replace":
            self.status.set(name, "Downloading", "replacing: unloading the previous spec", spec.sha)
            self._unload(name)
        if op.kind != "reload" or not marker_path(self.model_dir, name, spec).is_file():
            self.status.set(name, "Downloading", "", spec.sha)
            self.log.info("Downloading model", modelName=name, storageUri=spec.storage_uri)
            try:
                self.downloader.download(name, spec)
            except Cancelled:
                raise
            except StorageError as exc:
                self._download_failed(name, spec, exc.cause)
                raise _Retry(f"{spec.storage_uri}: {exc.cause}" + (f"; fix: {exc.fix}" if exc.fix else "")) from None
            except Exception as exc:  # noqa: BLE001 - a read timeout or a full disk may pass too
                reason = f"{type(exc).__name__}: {exc}"
                self._download_failed(name, spec, reason)
                raise _Retry(f"{spec.storage_uri}: download failed ({reason})") from None
        self._load(name, spec)

    def _download_failed(self, name: str, spec: ModelSpec, reason: str) -> None:
        if self.behaviour.retry:
            self.log.error("Failed to download model", modelName=name, storageUri=spec.storage_uri, error=reason)
        else:  # puller.go: p.logger.Errorf("Failed to download model %s with err %v", modelName, err)
            self.log.error(f"Failed to download model {name} with err {reason}", modelName=name, error=reason)

    def _load(self, name: str, spec: ModelSpec) -> None:
        self.status.set(name, "Loading", "", spec.sha)
        self.log.info("loading model", modelName=name)
        try:
            self.server.load(name)
        except ServerUnreachable as exc:
            if not self.behaviour.retry:  # the POST failed: puller.go logs the name alone
                self.log.error(f"Failed to Load model {name}", modelName=name, error=str(exc))
            raise _Retry(f"Triton did not answer the load request for {name}: {exc}") from None
        with self._lock:
            self._loaded.add(name)
            self._changes[name] = self._changes.get(name, 0) + 1
        self.log.info("Successfully loaded model", modelName=name)
        self.status.set(name, "Loaded", "", spec.sha)

    def _unload(self, name: str) -> None:
        with self._lock:
            self._loaded.discard(name)
            self._changes[name] = self._changes.get(name, 0) + 1
        self.log.info("unloading model", modelName=name)
        try:
            self.server.unload(name)
        except ServerUnreachable as exc:
            raise _Retry(f"Triton did not answer the unload request for {name}: {exc}") from None
        except LoadRefused as exc:
            raise _Retry(f"Triton refused to unload {name}: {exc}") from None
        self.log.info("Successfully unloaded model", modelName=name)

    # --- Triton restarts -----------------------------------------------------------------------
    def _check_loop(self) -> None:
        while not self._stop.wait(self.check_interval):
            try:
                self.check_server()
            except Exception as exc:  # noqa: BLE001 - the check must keep running
                self.agent_log.error("Model server check failed", error=f"{type(exc).__name__}: {exc}")

    def check_server(self) -> list[str]:
        """Reload every model on disk if Triton lost them (restarted); return the names reloaded."""
        with self._lock:
            loaded_before = {name: self._changes.get(name, 0) for name in self._loaded}
        try:
            index = self.server.index()
        except ServerUnreachable as exc:
            if not self._server_down:
                self.agent_log.warn("Triton is unreachable", error=str(exc))
            self._server_down = True
            return []
        with self._lock:
            # Only models loaded before the index was read and neither unloaded nor loaded since count as
            # lost: a model replaced meanwhile (unloaded, then loaded again) is in both sets, and the index
            # may have been read between its unload and its load.
            lost = sorted(n for n, changes in loaded_before.items()
                          if n in self._loaded and self._changes.get(n, 0) == changes and index.get(n) != "READY")
            was_down, self._server_down = self._server_down, False
            desired = dict(self.desired)
            busy = {name for name, worker in self._workers.items() if worker.in_flight()}
        # After an outage, reload what the fresh index lacks: a slow answer is not a restart, and
        # reloading models Triton still holds, or that a queued op will load anyway (it retries
        # if Triton went away), would queue their loads twice.
        missing = [name for name in sorted(desired)
                   if index.get(name) != "READY" and name not in busy and (was_down or name in lost)]
        if not missing:
            return []
        self.agent_log.info("Triton restarted: reloading models from disk", wasUnreachable=was_down, lost=missing)
        reloaded = []
        for name in missing:
            spec = desired[name]
            if marker_path(self.model_dir, name, spec).is_file():
                with self._lock:
                    self._loaded.discard(name)
                self.status.set(name, "Loading", "Triton restarted: reloading from disk", spec.sha)
                self.enqueue(Op("reload", name, spec))
                reloaded.append(name)
        return reloaded
