"""helpers.model_sources: the real download path against a local HTTP server on 127.0.0.1.

Checksums, resumed downloads, no second download when cached, files placed by a user, the
tar member of Inception's archive, and the stand-in fallback when nothing can be fetched.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from helpers import model_sources
from helpers.model_sources import DownloadError, ModelSource, RemoteFile

MODEL_BYTES = bytes(range(256)) * 400  # 100 kB
CONFIG_BYTES = b'name: "tiny"\nplatform: "pytorch_libtorch"\n'


class Files:
    """What the server serves, and what it was asked for."""

    def __init__(self) -> None:
        self.content: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []  # (path, Range header)
        self.cut_after: dict[str, int] = {}  # path -> bytes sent before the connection drops (once)


def _handler(files: Files) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            files.requests.append((self.path, self.headers.get("Range", "")))
            body = files.content.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            ranged = self.headers.get("Range", "")
            if ranged.startswith("bytes="):
                start = int(ranged[6:].split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            part = body[start:]
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            cut = files.cut_after.pop(self.path, None)
            self.wfile.write(part[:cut] if cut is not None else part)
            if cut is not None:
                self.wfile.flush()
                self.close_connection = True

    return Handler


@pytest.fixture()
def server() -> Iterator[tuple[str, Files]]:
    files = Files()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", files
    finally:
        httpd.shutdown()
        httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fake_standin(folder: Path) -> Path:
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text('name: "tiny"\n')
    (folder / "1" / "model.pt").write_bytes(b"stand-in")
    return folder


def tiny_source(base: str, model_sha: str | None = None) -> ModelSource:
    return ModelSource(
        name="tiny", folder="tiny", guide_uri="gs://example/tiny",
        files=(RemoteFile(f"{base}/tiny/config.pbtxt", "config.pbtxt"),
               RemoteFile(f"{base}/tiny/1/model.pt", "1/model.pt", sha256=model_sha)),
        prepared=(), required=("config.pbtxt", "1/model.pt"), standin=fake_standin, standin_builder="fake_standin")


def serve_tiny(files: Files) -> None:
    files.content["/tiny/config.pbtxt"] = CONFIG_BYTES
    files.content["/tiny/1/model.pt"] = MODEL_BYTES


def test_download_with_matching_checksum(server, tmp_path: Path) -> None:
    base, files = server
    serve_tiny(files)
    found = model_sources.fetch_source(tiny_source(base, sha(MODEL_BYTES)), cache=tmp_path, progress=False)
    assert not found.is_standin and found.source == f"{base}/tiny/config.pbtxt"
    assert (found.path / "1" / "model.pt").read_bytes() == MODEL_BYTES
    assert (found.path / "config.pbtxt").read_bytes() == CONFIG_BYTES
    marker = json.loads((tmp_path / ".markers" / "tiny.json").read_text())
    assert marker["files"]["1/model.pt"] == sha(MODEL_BYTES)


def test_checksum_mismatch_is_rejected_and_nothing_is_kept(server, tmp_path: Path) -> None:
    base, files = server
    serve_tiny(files)
    with pytest.raises(DownloadError) as err:
        model_sources.download(f"{base}/tiny/1/model.pt", tmp_path / "model.pt", sha256="0" * 64, progress=False)
    assert "sha256" in err.value.cause and not (tmp_path / "model.pt").exists()
    assert not (tmp_path / "model.pt.part").exists()
    # fetch with offline=False must fail rather than fall back; with None it builds the stand-in
    with pytest.raises(DownloadError):
        model_sources.fetch_source(tiny_source(base, "0" * 64), offline=False, cache=tmp_path, progress=False)
    said: list[str] = []
    found = model_sources.fetch_source(tiny_source(base, "0" * 64), cache=tmp_path, progress=False, say=said.append)
    assert found.is_standin and "STAND-IN" in said[-1]
    assert not (tmp_path / "tiny" / "1" / "model.pt").exists()


def test_a_cut_download_resumes_where_it_stopped(server, tmp_path: Path) -> None:
    base, files = server
    serve_tiny(files)
    files.cut_after["/tiny/1/model.pt"] = 30_000
    dest = tmp_path / "model.pt"
    with pytest.raises(DownloadError):
        model_sources.download(f"{base}/tiny/1/model.pt", dest, sha256=sha(MODEL_BYTES), progress=False)
    kept = (tmp_path / "model.pt.part").stat().st_size
    assert 0 < kept <= 30_000 and not dest.exists()
    model_sources.download(f"{base}/tiny/1/model.pt", dest, sha256=sha(MODEL_BYTES), progress=False)
    assert dest.read_bytes() == MODEL_BYTES
    assert files.requests[-1] == ("/tiny/1/model.pt", f"bytes={kept}-")
    assert not (tmp_path / "model.pt.part").exists()


def test_cached_download_is_not_fetched_again(server, tmp_path: Path) -> None:
    base, files = server
    serve_tiny(files)
    source = tiny_source(base, sha(MODEL_BYTES))
    model_sources.fetch_source(source, cache=tmp_path, progress=False)
    asked = len(files.requests)
    said: list[str] = []
    again = model_sources.fetch_source(source, cache=tmp_path, progress=False, say=said.append)
    assert len(files.requests) == asked and not again.is_standin
    assert "cached download" in said[0]
    # a damaged cached file no longer matches its sha256: fetched again
    (again.path / "1" / "model.pt").write_bytes(b"damaged")
    fixed = model_sources.fetch_source(source, cache=tmp_path, progress=False, say=said.append)
    assert (fixed.path / "1" / "model.pt").read_bytes() == MODEL_BYTES and len(files.requests) > asked


def test_files_placed_by_a_user_are_used_as_they_are(server, tmp_path: Path) -> None:
    base, files = server
    fake_standin(tmp_path / "tiny")  # placed by hand: no marker
    said: list[str] = []
    found = model_sources.fetch_source(tiny_source(base, sha(MODEL_BYTES)), cache=tmp_path, progress=False,
                                       say=said.append)
    assert not found.is_standin and found.path == tmp_path / "tiny" and files.requests == []
    assert (found.path / "1" / "model.pt").read_bytes() == b"stand-in"
    assert "placed" in found.source


def test_no_network_falls_back_to_a_stand_in_that_says_so(tmp_path: Path) -> None:
    source = tiny_source("http://127.0.0.1:9")  # nothing listens on the discard port
    said: list[str] = []
    found = model_sources.fetch_source(source, cache=tmp_path, progress=False, say=said.append)
    assert found.is_standin and found.path == tmp_path / "standin" / "tiny"
    assert "cannot download" in said[0] and "STAND-IN" in said[1] and "made up" in said[1]
    # offline=True never tries; the stand-in is reused
    again = model_sources.fetch_source(source, offline=True, cache=tmp_path, progress=False, say=said.append)
    assert again.is_standin and len(said) == 3


def test_inception_archive_member_and_prepared_files(server, tmp_path: Path) -> None:
    base, files = server
    graph = b"frozen graph bytes" * 100
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("inception_v3_2016_08_28_frozen.pb")
        info.size = len(graph)
        tar.addfile(info, io.BytesIO(graph))
    files.content["/inception.tar.gz"] = archive.getvalue()
    real = model_sources.SOURCES["inception"]
    source = replace(real, files=(replace(real.files[0], url=f"{base}/inception.tar.gz"),))
    found = model_sources.fetch_source(source, cache=tmp_path, progress=False)
    assert (found.path / "1" / "model.graphdef").read_bytes() == graph
    labels = (found.path / "inception_labels.txt").read_text().splitlines()
    assert len(labels) == 1001 and labels[0] == "background"
    config = (found.path / "config.pbtxt").read_text().splitlines()
    assert not any(line.startswith("name:") for line in config)  # the folder's name is used: `inception`


def test_registry_points_at_the_guides_public_sources() -> None:
    cifar, inception = model_sources.SOURCES["cifar10"], model_sources.SOURCES["inception"]
    assert [f.url for f in cifar.files] == [
        "https://storage.googleapis.com/kfserving-examples/models/torchscript/cifar10/config.pbtxt",
        "https://storage.googleapis.com/kfserving-examples/models/torchscript/cifar10/1/model.pt"]
    assert inception.files[0].url == ("https://storage.googleapis.com/download.tensorflow.org/models/"
                                      "inception_v3_2016_08_28_frozen.pb.tar.gz")
    with pytest.raises(Exception) as err:
        model_sources.fetch("resnet")
    assert "cifar10" in str(err.value)
