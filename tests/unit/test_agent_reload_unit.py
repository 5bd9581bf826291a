"""The agent reloads a model only when Triton really lost it (issue 23: 05_lifecycle's race).

Two ways a served model looked lost: Triton's repository index keeps a row per version it has
seen (version 1 UNAVAILABLE beside version 2 READY after a new `storageUri`), and the index may
be read between a replace's unload and its load. Either made the agent "reload" a model that
Triton served, and a request in between got "has no available versions". No processes here.
"""
from __future__ import annotations

import http.server
import io
import json
import threading
from pathlib import Path

import pytest

from helpers.local.agent.downloader import marker_path
from helpers.local.agent.log import Logger
from helpers.local.agent.puller import Backoff, Puller
from helpers.local.agent.spec import ModelSpec
from helpers.local.agent.status import StatusFile
from helpers.local.agent.triton import model_states

V1 = ModelSpec("s3://triton/lifecycle/v1", "pytorch", "100Mi")


def test_a_model_is_ready_when_any_version_is_ready_whatever_the_order_of_the_rows() -> None:
    unloaded = {"name": "m", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}
    ready = {"name": "m", "version": "2", "state": "READY"}
    assert model_states([unloaded, ready]) == {"m": "READY"}
    assert model_states([{**ready, "version": "1"}, {**unloaded, "version": "2"}]) == {"m": "READY"}
    assert model_states([{"name": "m", "version": "1", "state": "LOADING"}, {"name": "n", "version": "1"}]) == \
        {"m": "LOADING", "n": ""}


class Downloads:
    def __init__(self, model_dir: Path) -> None:
        self.model_dir, self.stop = model_dir, threading.Event()

    def download(self, name: str, spec: ModelSpec) -> bool:
        marker = marker_path(self.model_dir, name, spec)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(spec.canonical())
        return True


class ReplacedWhileIndexing:
    """A server whose index is read while the model is replaced: the answer says "not ready"."""

    def __init__(self) -> None:
        self.puller: Puller = None  # type: ignore[assignment]
        self.loads = 0
        self.replace_during_index = False

    def load(self, name: str) -> None:
        self.loads += 1

    def unload(self, name: str) -> None:
        pass

    def index(self) -> dict[str, str]:
        if not self.replace_during_index:
            return {"m": "READY"}
        self.puller._unload("m")  # the replace's unload: the index is read now ...
        answer = {"m": "UNAVAILABLE"}
        self.puller._load("m", V1)  # ... and the load has finished before the check reads the answer
        return answer


def test_a_model_replaced_while_the_index_was_read_is_not_reloaded(tmp_path: Path) -> None:
    server = ReplacedWhileIndexing()
    puller = Puller(Downloads(tmp_path / "models"), server, StatusFile(tmp_path / "status.json"),
                    Logger("test", io.StringIO()), Backoff(0.05, 0.2))
    server.puller = puller
    puller.desired["m"] = V1
    puller.downloader.download("m", V1)
    puller._load("m", V1)
    assert puller.check_server() == []
    server.replace_during_index = True
    assert puller.check_server() == []  # neither lost nor reloaded: it changed while the index was read
    assert server.loads == 2  # the first load and the replace's, no third
    server.replace_during_index = False
    puller._loaded.add("m")
    assert puller.check_server() == []


# --- nothing kept per model name ever served (issue 26's soak: a thread and two descriptors each) ---
class Plain:
    def load(self, name: str) -> None:
        pass

    def unload(self, name: str) -> None:
        pass

    def index(self) -> dict[str, str]:
        return {}


def test_a_removed_models_worker_ends_and_a_new_one_serves_the_name_again(tmp_path: Path) -> None:
    from helpers.core.wait import poll_until
    from helpers.local.agent.spec import Op

    server = Plain()
    status = StatusFile(tmp_path / "status.json")
    puller = Puller(Downloads(tmp_path / "models"), server, status, Logger("test", io.StringIO()))
    puller.enqueue(Op("add", "m", V1))
    poll_until(lambda: (status.get("m") or {}).get("state") == "Loaded", "m loaded", timeout=5, interval=0.01)
    first = puller._workers["m"].thread
    puller.enqueue(Op("remove", "m"))
    poll_until(lambda: "m" not in puller._workers and not first.is_alive(), "m's worker to end", timeout=5,
               interval=0.01)
    assert status.get("m")["state"] == "Unloaded"
    puller.enqueue(Op("add", "m", V1))
    poll_until(lambda: (status.get("m") or {}).get("state") == "Loaded", "m loaded again", timeout=5, interval=0.01)
    assert puller._workers["m"].thread is not first
    puller.stop()


class _Triton(http.server.BaseHTTPRequestHandler):
    """Triton's repository API as far as the agent calls it: `models` maps a name to its state, and a load of
    a name in `refuse` is answered as Triton answers a bad model folder."""

    models: dict[str, str] = {}
    refuse: dict[str, str] = {}
    posted: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.posted.append((self.path, body))
        parts = self.path.strip("/").split("/")  # v2 repository models <name> load|unload, or v2 repository index
        if parts[-1] == "index":
            return self._answer(200, [{"name": n, "version": "1", "state": s} for n, s in self.models.items()])
        name, action = parts[3], parts[4]
        if action == "load" and name in self.refuse:
            return self._answer(400, {"error": self.refuse[name]})
        self.models[name] = "READY" if action == "load" else "UNAVAILABLE"
        self._answer(200, None)

    def _answer(self, status: int, payload) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args) -> None:
        pass


def test_the_agent_speaks_tritons_repository_api_over_plain_http() -> None:
    from helpers.local.agent.puller import LoadRefused, ServerUnreachable
    from helpers.local.agent.triton import TritonServer
    from helpers.local.stack import process

    trace = "\nException raised from load at model.cpp:1 (most recent call first):\nframe #0: ..."
    _Triton.models, _Triton.posted = {"served": "READY"}, []
    _Triton.refuse = {"broken": "PytorchStreamReader failed reading zip archive: failed finding central directory"
                                + trace}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Triton)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        server = TritonServer(f"http://127.0.0.1:{httpd.server_port}/")
        server.load("new")
        assert server.index() == {"served": "READY", "new": "READY"}
        server.unload("served")
        assert server.index()["served"] == "UNAVAILABLE"
        assert ("/v2/repository/models/served/unload", b'{"parameters": {"unload_dependents": false}}') in _Triton.posted

        with pytest.raises(LoadRefused) as refused:
            server.load("broken")
        # the message and its fix as a notebook's load_model words them; the reply is Triton's words alone
        assert str(refused.value).startswith("Triton could not load model 'broken': PytorchStreamReader failed")
        assert "not a loadable TorchScript file" in str(refused.value) and "frame #0" not in str(refused.value)
        assert refused.value.reply.startswith("PytorchStreamReader failed reading zip archive")
    finally:
        httpd.shutdown()
        httpd.server_close()

    nobody = TritonServer(f"http://127.0.0.1:{process.free_port()}")
    for call in (lambda: nobody.load("m"), nobody.index, lambda: nobody.unload("m")):
        with pytest.raises(ServerUnreachable, match="cannot reach Triton at http://127.0.0.1:"):
            call()


def test_the_status_file_keeps_only_the_last_removals(tmp_path: Path, monkeypatch) -> None:
    import json

    from helpers.local.agent import status

    monkeypatch.setattr(status, "KEEP_UNLOADED", 3)
    file = StatusFile(tmp_path / "status.json")
    file.set("served", "Loaded", "", "sha")
    for i in range(10):
        file.set(f"m{i}", "Loaded", "", "sha")
        file.set(f"m{i}", "Unloaded")
    kept = json.loads((tmp_path / "status.json").read_text())
    assert sorted(kept) == ["m7", "m8", "m9", "served"]  # a served model is never forgotten
