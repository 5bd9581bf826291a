"""Wake up when a file in a folder changes: inotify on Linux, a plain timeout elsewhere.

KServe's agent is woken by fsnotify on its mounted ConfigMap; the local agent (models.json)
and the local controller (each agent's status file) are woken the same way. Writers here
replace files by tmp + rename, as the kubelet's projection does, so the events that matter are
IN_MOVED_TO and IN_CLOSE_WRITE on the folder (a watch on the file itself would follow the old
inode and go quiet after the first rename). Callers still re-read on a slow timer: inotify
says "look now", the file's content says what changed, and a missed event costs one period.
"""
from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path
from typing import Optional

try:  # Linux only; where it is missing the callers fall back to their slow poll
    from inotify_simple import INotify, flags
except ImportError:  # pragma: no cover - not on the Linux machines this stack runs on
    INotify = None  # type: ignore[assignment,misc]

_MASK = 0
if INotify is not None:
    _MASK = flags.MOVED_TO | flags.CLOSE_WRITE | flags.CREATE | flags.DELETE | flags.MOVED_FROM


class FolderEvents:
    """`wait(timeout)` returns the watched folders that changed as soon as one does, or an empty
    set after `timeout`.

    `names`, if given, are the file names that count (others, such as the writers' own tmp
    files, are drained and ignored). `interrupt()` (from any thread) ends a wait at once, so a
    stopping thread never waits for the slow timer. Without inotify (`available` is False),
    `wait` only sleeps.
    """

    def __init__(self, *folders: Path, names: Optional[set[str]] = None) -> None:
        self.names = set(names) if names else None
        self._lock = threading.Lock()
        self._watched: dict[Path, int] = {}
        self._wake_r, self._wake_w = os.pipe()
        self._inotify: Optional[INotify] = None
        if INotify is not None:
            try:
                self._inotify = INotify()
            except OSError:  # e.g. fs.inotify.max_user_instances reached: poll instead
                self._inotify = None
        for folder in folders:
            self.add(folder)

    @property
    def available(self) -> bool:
        return self._inotify is not None

    def add(self, folder: Path) -> bool:
        """Watch one more folder (it must exist); True if it is watched by inotify now."""
        folder = Path(folder)
        with self._lock:
            if self._inotify is None:
                return False
            if folder in self._watched:
                return True
            try:
                self._watched[folder] = self._inotify.add_watch(str(folder), _MASK)
            except OSError:
                return False
            return True

    def forget(self, folder: Path) -> None:
        """Stop watching a folder (already removed folders are forgotten by the kernel)."""
        with self._lock:
            wd = self._watched.pop(Path(folder), None)
            if wd is not None and self._inotify is not None:
                try:
                    self._inotify.rm_watch(wd)
                except OSError:
                    pass

    def folders(self) -> set[Path]:
        with self._lock:
            return set(self._watched)

    def wait(self, timeout: float) -> set[Path]:
        """Block until a change, an interrupt or the timeout; return the folders that changed (empty: none)."""
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            fds = [self._wake_r] + ([self._inotify.fileno()] if self._inotify is not None else [])
            ready, _, _ = select.select(fds, [], [], max(deadline - time.monotonic(), 0))
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
                return set()
            if self._inotify is None or self._inotify.fileno() not in ready:
                return set()
            events = self._inotify.read(timeout=0)  # drain: one wake-up per burst of events
            with self._lock:
                by_wd = {wd: folder for folder, wd in self._watched.items()}
            changed = {by_wd[e.wd] for e in events
                       if e.wd in by_wd and (self.names is None or e.name in self.names)}
            if changed:
                return changed

    def interrupt(self) -> None:
        os.write(self._wake_w, b"x")

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
