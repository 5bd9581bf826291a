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

    def index(self) -> dict[str, str]:
        with _sorted_errors(self.url):
            return {m["name"]: m["state"] for m in triton.repository_index(self.url)}
