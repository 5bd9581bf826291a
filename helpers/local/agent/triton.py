"""Triton's repository API as the puller needs it, over `helpers.clients.triton`: failures are sorted
into "did not answer" (ServerUnreachable: retry) and "answered no" (LoadRefused: final, with
Triton's own message)."""
from __future__ import annotations

import contextlib
import http.client
import queue
import re
import threading
from typing import Any, Callable, Iterator

from helpers.clients import triton
from helpers.core.wait import WaitTimeout
from helpers.local.agent.puller import LoadRefused, ServerUnreachable


def _message(exc: triton.TritonError) -> str:
    return f"{exc.cause}; fix: {exc.fix}" if exc.fix else exc.cause


def _reply(cause: str) -> str:
    """Triton's own words in a load error, without the client's "Triton could not load model 'x': " lead."""
    return re.sub(r"^Triton could not load model '[^']*': ", "", cause)


@contextlib.contextmanager
def _sorted_errors(url: str) -> Iterator[None]:
    try:
        yield
    except (triton.TritonUnreachable, triton.TritonTimeout) as exc:
        raise ServerUnreachable(exc.cause) from None
    except triton.TritonError as exc:  # ModelLoadError included: Triton answered, and said no
        raise LoadRefused(_message(exc), _reply(exc.cause)) from None
    except WaitTimeout as exc:
        raise ServerUnreachable(str(exc)) from None
    except (OSError, http.client.HTTPException) as exc:  # e.g. the connection cut as Triton stops
        raise ServerUnreachable(f"{url} ({type(exc).__name__}: {exc})") from None


class TritonServer:
    """A ModelServer over Triton's HTTP endpoint (e.g. `http://127.0.0.1:8000`).

    Loads and unloads run on a fixed pool of `threads` threads, whichever model's worker asks:
    tritonclient's HTTP client makes a gevent loop (an eventfd, an epoll and their memory) in each
    thread that uses it, so calls made from one thread per model ever served kept one loop per
    model name (the soak: two descriptors and ~6 kB a name). Triton serves 8 repository requests
    at a time (its HTTP threads), so 16 threads hold back no load."""

    def __init__(self, url: str, load_timeout: float = 600.0, unload_timeout: float = 15.0,
                 threads: int = 16) -> None:
        self.url = url
        self.load_timeout = load_timeout
        self.unload_timeout = unload_timeout
        self._pool = _Pool(threads, "triton-api")

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._pool.call(fn, *args, **kwargs)

    def load(self, name: str) -> None:
        with _sorted_errors(self.url):
            self._call(triton.load_model, self.url, name, timeout=self.load_timeout)

    def unload(self, name: str) -> None:
        """Returns once Triton has finished unloading (it answers as soon as the unload starts)."""
        with _sorted_errors(self.url):
            self._call(triton.unload_model, self.url, name, wait=True, timeout=self.unload_timeout)

    def index(self) -> dict[str, str]:
        """Called from the puller's one check thread (one loop for the agent's life)."""
        with _sorted_errors(self.url):
            return model_states(triton.repository_index(self.url))


def model_states(index: list[dict]) -> dict[str, str]:
    """{model: state} from Triton's repository index, READY if any version of the model is READY.

    The index has one row per version Triton has seen: after a model moved from version 1 to 2 (a
    new `storageUri`, 05_lifecycle), version 1 stays listed as UNAVAILABLE ("unloaded") beside 2
    READY, in version order. Read row by row, the last row would decide, and a model serving
    version 1 again (a rerun) would look lost: the agent then "reloaded" it every check, and a
    request in between got "has no available versions"."""
    states: dict[str, str] = {}
    for row in index:
        if states.get(row["name"]) != "READY":
            states[row["name"]] = row.get("state", "")
    return states


class _Pool:
    """`threads` daemon threads (started at the first call) that run calls for whoever asks and hand back
    the result or the exception. Daemon threads, unlike `concurrent.futures`' (joined at exit): a load
    that hangs must not hold the agent's exit."""

    def __init__(self, threads: int, name: str) -> None:
        self._jobs: "queue.Queue[tuple]" = queue.Queue()
        self._threads, self._name = threads, name
        self._started = False
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if not self._started:
                for i in range(self._threads):
                    threading.Thread(target=self._run, name=f"{self._name}-{i}", daemon=True).start()
                self._started = True
        done, box = threading.Event(), {}
        self._jobs.put((fn, args, kwargs, box, done))
        done.wait()
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def _run(self) -> None:
        while True:
            fn, args, kwargs, box, done = self._jobs.get()
            try:
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
                box["error"] = exc
            finally:
                done.set()
