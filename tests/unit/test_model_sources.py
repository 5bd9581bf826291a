"""helpers.steps.models.model_sources: the real download path against a local HTTP server on 127.0.0.1.

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

from helpers.core.errors import SetupError
from helpers.steps.models import __main__ as models_cli
from helpers.steps.models import model_pack, model_sources
from helpers.steps.models.model_sources import DownloadError, ModelSource, RemoteFile

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

        def do_GET(self) -> None:
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


# --- pack / unpack: carrying the real models to offline machines -------------------------------

GRAPH = b"frozen graph bytes " * 500


def place_real_models(cache: Path) -> None:
    """A cache as `fetch` leaves it after downloads: both models' folders with markers."""
    cifar = cache / "cifar10"
    (cifar / "1").mkdir(parents=True)
    (cifar / "config.pbtxt").write_bytes(CONFIG_BYTES)
    (cifar / "1" / "model.pt").write_bytes(MODEL_BYTES)
    inception = cache / "inception_graphdef"
    (inception / "1").mkdir(parents=True)
    (inception / "1" / "model.graphdef").write_bytes(GRAPH)
    (inception / "config.pbtxt").write_text('platform: "tensorflow_graphdef"\n')
    (inception / "inception_labels.txt").write_text("background\ntench\n")
    (cache / ".markers").mkdir()
    (cache / ".markers" / "cifar10.json").write_text(json.dumps(
        {"files": {"config.pbtxt": sha(CONFIG_BYTES), "1/model.pt": sha(MODEL_BYTES)}}))


def rewrite(archive: Path, out: Path, change) -> None:
    """Copy a tar member by member, letting `change(name, data) -> (name, data) | None` alter or drop each."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src:
            data = src.extractfile(member).read() if member.isfile() else b""
            changed = change(member.name, data)
            if changed is None:
                continue
            info = tarfile.TarInfo(changed[0])
            info.size = len(changed[1])
            dst.addfile(info, io.BytesIO(changed[1]))


@pytest.fixture()
def packed(tmp_path: Path) -> tuple[Path, Path]:
    cache = tmp_path / "online"
    place_real_models(cache)
    archive = tmp_path / "models.tar.gz"
    model_pack.pack(archive, cache=cache, say=lambda _: None)
    return archive, cache


def test_pack_then_unpack_round_trip_makes_fetch_use_the_real_models(packed, tmp_path: Path) -> None:
    archive, online = packed
    offline = tmp_path / "offline"
    said: list[str] = []
    done = model_pack.unpack(archive, cache=offline, sha256=model_sources.sha256_of(archive), say=said.append)
    assert {(d.name, d.action) for d in done} == {("cifar10", "installed"), ("inception", "installed")}
    for folder in ("cifar10", "inception_graphdef"):
        for path in (online / folder).rglob("*"):
            if path.is_file():
                assert (offline / folder / path.relative_to(online / folder)).read_bytes() == path.read_bytes()
    assert not [p for p in offline.iterdir() if p.name.startswith(".unpack-")]  # staging removed
    # fetch now takes the unpacked files, offline, with no stand-in built
    found = model_sources.fetch_source(model_sources.SOURCES["cifar10"], offline=True, cache=offline,
                                       progress=False, say=said.append)
    assert not found.is_standin and found.path == offline / "cifar10" and "cached download" in said[-1]
    assert not (offline / "standin").exists()
    # unpacking again changes nothing
    again = model_pack.unpack(archive, cache=offline, say=said.append)
    assert {d.action for d in again} == {"unchanged"}


def test_pack_refuses_an_empty_cache_and_a_damaged_download(tmp_path: Path) -> None:
    with pytest.raises(SetupError) as err:
        model_pack.pack(tmp_path / "m.tar", cache=tmp_path / "empty", say=lambda _: None)
    assert "no real model" in err.value.cause and "fetch" in err.value.fix
    cache = tmp_path / "cache"
    place_real_models(cache)
    (cache / "cifar10" / "1" / "model.pt").write_bytes(b"bit rot")
    with pytest.raises(SetupError) as err:
        model_pack.pack(tmp_path / "m.tar", ["cifar10"], cache=cache, say=lambda _: None)
    assert "damaged" in err.value.cause and not (tmp_path / "m.tar").exists()


@pytest.mark.parametrize("tamper, expect", [
    (lambda n, d: (n, d[:-1] + b"X") if n.endswith("model.pt") else (n, d), "not the"),
    (lambda n, d: None if n.endswith("model.graphdef") else (n, d), "not in it"),
    (lambda n, d: (n, d) if n != "models/cifar10/config.pbtxt" else ("models/cifar10/../../evil", d),
     "not in its manifest"),
    (lambda n, d: (n, b"{not json") if n == "MANIFEST.json" else (n, d), "not valid JSON"),
    (lambda n, d: None if n == "MANIFEST.json" else (n, d), "does not start with"),
])
def test_a_tampered_archive_is_refused_and_the_cache_is_untouched(packed, tmp_path: Path, tamper, expect) -> None:
    archive, online = packed
    bad = tmp_path / "bad.tar"
    rewrite(archive, bad, tamper)
    offline = tmp_path / "offline"
    place_real_models(offline)  # a verified cache entry already there
    before = {p: p.read_bytes() for p in offline.rglob("*") if p.is_file()}
    with pytest.raises(model_pack.ArchiveError) as err:
        model_pack.unpack(bad, cache=offline, say=lambda _: None)
    assert expect in err.value.cause and err.value.fix
    assert {p: p.read_bytes() for p in offline.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "evil").exists()


def test_a_truncated_archive_or_wrong_digest_is_refused(packed, tmp_path: Path) -> None:
    archive, _ = packed
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(model_pack.ArchiveError) as err:
        model_pack.unpack(cut, cache=tmp_path / "offline", say=lambda _: None)
    assert "cut off" in err.value.cause or "cannot read" in err.value.cause
    assert not (tmp_path / "offline" / "cifar10").exists()
    with pytest.raises(model_pack.ArchiveError) as err:
        model_pack.unpack(archive, cache=tmp_path / "offline", sha256="0" * 64, say=lambda _: None)
    assert "not the" in err.value.cause


def test_unpack_leaves_a_different_cached_model_alone_unless_told(packed, tmp_path: Path) -> None:
    archive, _ = packed
    offline = tmp_path / "offline"
    (offline / "cifar10" / "1").mkdir(parents=True)
    (offline / "cifar10" / "config.pbtxt").write_bytes(CONFIG_BYTES)
    (offline / "cifar10" / "1" / "model.pt").write_bytes(b"someone's own model")
    with pytest.raises(SetupError) as err:
        model_pack.unpack(archive, cache=offline, say=lambda _: None)
    assert "--replace" in err.value.fix
    assert (offline / "cifar10" / "1" / "model.pt").read_bytes() == b"someone's own model"
    assert not (offline / "inception_graphdef").exists()  # all or nothing
    done = model_pack.unpack(archive, cache=offline, replace=True, say=lambda _: None)
    assert ("cifar10", "replaced") in {(d.name, d.action) for d in done}
    assert (offline / "cifar10" / "1" / "model.pt").read_bytes() == MODEL_BYTES


def test_the_command_line_packs_and_unpacks(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MMS_CACHE_DIR", str(tmp_path / "online"))
    place_real_models(tmp_path / "online" / "models")
    assert models_cli.main(["pack", str(tmp_path / "m.tar")]) == 0
    assert "sha256" in capsys.readouterr().out
    monkeypatch.setenv("MMS_CACHE_DIR", str(tmp_path / "offline"))
    assert models_cli.main(["unpack", str(tmp_path / "m.tar")]) == 0
    assert (tmp_path / "offline" / "models" / "cifar10" / "1" / "model.pt").read_bytes() == MODEL_BYTES
    assert models_cli.main(["unpack", str(tmp_path / "missing.tar")]) == 1
    assert "fix:" in capsys.readouterr().err
