"""Triton's repository API as the puller needs it, over plain HTTP as KServe's agent calls it (Go's
`http.Client` posting to `/v2/repository/models/<name>/load` and `/unload`): failures are sorted into
"did not answer" (ServerUnreachable: retry) and "answered no" (LoadRefused: final, with Triton's own
message and the fix a learner reads for it in a notebook, from `helpers.clients.triton_errors`).

No tritonclient here: an agent starts with every server pod (about 80 times in one test run), and
tritonclient with numpy and gevent was 40% of its import. Each call is one short connection, so
there is no client to keep between calls and no event loop in each thread that calls.
"""
from __future__ import annotations

import http.client
import json
from urllib.parse import quote

from helpers.clients import triton_errors as errors
from helpers.core.i18n import _
from helpers.core.wait import WaitTimeout, poll_until
from helpers.local.agent.puller import LoadRefused, ServerUnreachable

CONNECT_TIMEOUT_S = 5.0
UNFINISHED = ("READY", "UNLOADING", "LOADING")  # an unload has not finished while its model is in one of these


class TritonServer:
    """A ModelServer over Triton's HTTP endpoint (e.g. `http://127.0.0.1:8000`)."""

    def __init__(self, url: str, load_timeout: float = 600.0, unload_timeout: float = 15.0) -> None:
        self.url = url
        self.address, self.ssl = errors.split_url(url)
        self.load_timeout = load_timeout
        self.unload_timeout = unload_timeout

    def load(self, name: str) -> None:
        try:
            self._post(f"/v2/repository/models/{quote(name, safe='')}/load", b"", self.load_timeout)
        except TimeoutError:
            raise _refused(errors.load_timed_out(name, self.load_timeout)) from None
        except _Answered as answer:
            refused = errors.load_refused(name, answer.message)
            raise _refused(refused, reply=refused.triton_message) from None

    def unload(self, name: str) -> None:
        """Returns once Triton has finished unloading (it answers as soon as the unload starts)."""
        body = json.dumps({"parameters": {"unload_dependents": False}}).encode()
        self._call(f"/v2/repository/models/{quote(name, safe='')}/unload", body, self.unload_timeout)

        def finished() -> bool:
            return all(row.get("state") not in UNFINISHED for row in self._index() if row.get("name") == name)

        try:
            poll_until(finished, _("Triton to finish unloading {model!r}").format(model=name),
                       timeout=self.unload_timeout)
        except WaitTimeout as exc:
            raise ServerUnreachable(str(exc)) from None

    def index(self) -> dict[str, str]:
        """Called from the puller's one check thread."""
        return model_states(self._index())

    def _index(self) -> list[dict]:
        return json.loads(self._call("/v2/repository/index", b"", 60.0) or b"[]")

    def _call(self, path: str, body: bytes, timeout: float) -> bytes:
        """Triton's answer; its refusal as LoadRefused, no answer in time as ServerUnreachable."""
        try:
            return self._post(path, body, timeout)
        except TimeoutError as exc:
            raise ServerUnreachable(errors.timed_out(self.url, exc).cause) from None
        except _Answered as answer:
            raise _refused(errors.answered(self.url, answer.message)) from None

    def _post(self, path: str, body: bytes, timeout: float) -> bytes:
        """POST `body`; raises TimeoutError, _Answered (an error status) or ServerUnreachable."""
        kind = http.client.HTTPSConnection if self.ssl else http.client.HTTPConnection
        connection = kind(self.address, timeout=CONNECT_TIMEOUT_S)
        try:
            connection.connect()
            connection.sock.settimeout(timeout)
            connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
        except TimeoutError:
            raise
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, or cut as Triton stops
            raise ServerUnreachable(errors.unreachable(self.url, exc).cause) from None
        finally:
            connection.close()
        if response.status != 200:
            raise _Answered(_error_text(data, response))
        return data


class _Answered(Exception):
    """Triton answered with an error status; `message` is its own words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _error_text(data: bytes, response: http.client.HTTPResponse) -> str:
    """Triton's `{"error": "..."}`, or the status line when the body is not that."""
    try:
        return str(json.loads(data)["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status} {response.reason}"


def _refused(error: errors.TritonError, reply: str = "") -> LoadRefused:
    """The refusal as the puller records it: the whole message with its fix, and `reply` (Triton's words
    alone, for the agent's log line; the cause when not given)."""
    message = f"{error.cause}; fix: {error.fix}" if error.fix else error.cause
    return LoadRefused(message, reply or error.cause)


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
