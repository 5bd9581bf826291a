"""Triton's repository API as the puller needs it, over `helpers.clients.triton`: failures are sorted
into "did not answer" (ServerUnreachable: retry) and "answered no" (LoadRefused: final, with
Triton's own message)."""
from __future__ import annotations

import contextlib
import http.client
from typing import Iterator

from helpers.clients import triton
from helpers.core.wait import WaitTimeout
from helpers.local.agent.puller import LoadRefused, ServerUnreachable


def _message(exc: triton.TritonError) -> str:
    return f"{exc.cause}; fix: {exc.fix}" if exc.fix else exc.cause


@contextlib.contextmanager
def _sorted_errors(url: str) -> Iterator[None]:
    try:
        yield
    except (triton.TritonUnreachable, triton.TritonTimeout) as exc:
        raise ServerUnreachable(exc.cause) from None
    except triton.TritonError as exc:  # ModelLoadError included: Triton answered, and said no
        raise LoadRefused(_message(exc)) from None
    except WaitTimeout as exc:
        raise ServerUnreachable(str(exc)) from None
    except (OSError, http.client.HTTPException) as exc:  # e.g. the connection cut as Triton stops
        raise ServerUnreachable(f"{url} ({type(exc).__name__}: {exc})") from None


class TritonServer:
    """A ModelServer over Triton's HTTP endpoint (e.g. `http://127.0.0.1:8000`)."""

    def __init__(self, url: str, load_timeout: float = 600.0, unload_timeout: float = 15.0) -> None:
        self.url = url
        self.load_timeout = load_timeout
        self.unload_timeout = unload_timeout

    def load(self, name: str) -> None:
        with _sorted_errors(self.url):
            triton.load_model(self.url, name, timeout=self.load_timeout)

    def unload(self, name: str) -> None:
        """Returns once Triton has finished unloading (it answers as soon as the unload starts)."""
        with _sorted_errors(self.url):
            triton.unload_model(self.url, name, wait=True, timeout=self.unload_timeout)

    def release(self) -> None:
        """Close what the calling thread holds open to Triton, before it ends (a retired model worker):
        its reused clients and the gevent loop (an eventfd and an epoll) tritonclient's HTTP client made."""
        triton.forget_clients()
        try:
            from gevent._hub_local import get_hub_if_exists
        except ImportError:
            return
        hub = get_hub_if_exists()
        if hub is not None:
            hub.destroy(destroy_loop=True)

    def index(self) -> dict[str, str]:
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
