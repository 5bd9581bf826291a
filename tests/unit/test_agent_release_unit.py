"""The local agent behaves as the stack's release's agent by default, and friendlier only with the switch.

Each behaviour is checked both ways: it fires with the release's `Behaviour` and stays quiet with the
friendly one (`--friendly`, MMS_AGENT_FRIENDLY=1). Threads and in-memory fakes only, except the panic,
which runs the agent as a process the way the controller starts it.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

from helpers.clients.storage import S3Settings, StorageError
from helpers.core.wait import poll_until
from helpers.local.agent import release, s3config
from helpers.local.agent.downloader import Downloader, marker_path
from helpers.local.agent.log import Logger
from helpers.local.agent.puller import Backoff, LoadRefused, Puller, ServerUnreachable, go_body
from helpers.local.agent.spec import ModelSpec, Op
from helpers.local.agent.status import StatusFile
from helpers.local.stack import releases

KFSERVING_05 = release.RELEASES["v0.5.1"]
KSERVE_015 = release.RELEASES["v0.15.2"]
FRIENDLY = release.FRIENDLY


# --- an S3 server that lists lazily, page by page, as minio's generator does ------------------------------
class Listing:
    """Answers list_objects like a real server: `page` keys a request, the next page fetched only when read."""

    def __init__(self, keys: dict[str, bytes], page: int = 1000) -> None:
        self.objects, self.page = keys, page
        self.pages_read = 0
        self.fetched: list[str] = []
        self._base_url = SimpleNamespace(host="127.0.0.1:1")

    def bucket_exists(self, bucket: str) -> bool:
        return bucket == "triton"

    def list_objects(self, bucket: str, prefix: str = "", recursive: bool = False,
                     use_api_v1: bool = False) -> Iterator[SimpleNamespace]:
        if bucket != "triton":
            return
        keys = [k for k in sorted(self.objects) if k.startswith(prefix)]
        for start in range(0, max(len(keys), 1), self.page):
            self.pages_read += 1
            for key in keys[start:start + self.page]:
                yield SimpleNamespace(object_name=key, size=len(self.objects[key]))

    def fget_object(self, bucket: str, key: str, path: str) -> None:
        self.fetched.append(key)
        Path(path).write_bytes(self.objects[key])


def downloader(tmp_path: Path, keys: dict[str, bytes], behaviour: release.Behaviour,
               s3=None) -> tuple[Downloader, Listing, io.StringIO]:
    out = io.StringIO()
    d = Downloader(tmp_path / "models", s3 or S3Settings("127.0.0.1:1", "k", "s"), Logger("test", out),
                   workers=2, behaviour=behaviour, crash=_raise_panic)
    fake = Listing(keys)
    d._client = lambda _bucket: fake  # only the S3 server is replaced
    return d, fake, out


class Panicked(Exception):
    pass


def _raise_panic(text: str) -> None:
    raise Panicked(text)


# --- listing: one page of at most 1000 keys ---------------------------------------------------------------
MANY = {f"m/big/1/part-{i:04d}": b"x" for i in range(1105)}


@pytest.mark.parametrize("behaviour", [KFSERVING_05, KSERVE_015], ids=["v0.5.1", "v0.15.2"])
def test_a_release_lists_one_page_of_1000_keys(tmp_path, behaviour):
    d, fake, _ = downloader(tmp_path, MANY, behaviour)
    assert d.download("big", ModelSpec("s3://triton/m/big")) is True  # no error: the rest is silently missing
    assert len(fake.fetched) == 1000 and fake.pages_read == 1
    assert len(list((tmp_path / "models" / "big" / "1").iterdir())) == 1000


def test_the_friendly_agent_lists_every_page(tmp_path):
    d, fake, _ = downloader(tmp_path, MANY, FRIENDLY)
    assert d.download("big", ModelSpec("s3://triton/m/big")) is True
    assert len(fake.fetched) == 1105


# --- the prefix as written -----------------------------------------------------------------------------------
SIBLINGS = {"m/cifar10/config.pbtxt": b"cfg", "m/cifar10/1/model.pt": b"new",
            "m/cifar10-old/config.pbtxt": b"old cfg", "m/cifar10-old/1/model.pt": b"old"}


@pytest.mark.parametrize("behaviour", [KFSERVING_05, KSERVE_015], ids=["v0.5.1", "v0.15.2"])
def test_a_release_takes_the_prefix_as_written_and_fetches_the_sibling_too(tmp_path, behaviour):
    d, fake, _ = downloader(tmp_path, SIBLINGS, behaviour)
    d.download("cifar10", ModelSpec("s3://triton/m/cifar10"))
    folder = tmp_path / "models" / "cifar10"
    assert (folder / "1" / "model.pt").read_bytes() == b"new"
    assert (folder / "-old" / "1" / "model.pt").read_bytes() == b"old"  # TrimPrefix leaves "-old/1/model.pt"
    assert len(fake.fetched) == 4


def test_the_friendly_agent_reads_the_prefix_as_a_folder(tmp_path):
    d, fake, _ = downloader(tmp_path, SIBLINGS, FRIENDLY)
    d.download("cifar10", ModelSpec("s3://triton/m/cifar10"))
    assert sorted(fake.fetched) == ["m/cifar10/1/model.pt", "m/cifar10/config.pbtxt"]
    assert not (tmp_path / "models" / "cifar10" / "-old").exists()


# --- directory markers -----------------------------------------------------------------------------------------
MARKED = {"m/cifar10/1/": b"", "m/cifar10/1/model.pt": b"weights", "m/cifar10/config.pbtxt": b"cfg"}


def test_kfserving_05_makes_a_file_of_a_directory_marker_and_fails_not_a_directory(tmp_path):
    d, _, _ = downloader(tmp_path, MARKED, KFSERVING_05)
    spec = ModelSpec("s3://triton/m/cifar10")
    with pytest.raises(StorageError) as caught:
        d.download("cifar10", spec)
    folder = tmp_path / "models" / "cifar10"
    assert caught.value.cause == (f"failed to download model: failed to download model: unable to get batch objects "
                                  f"file is already created: mkdir {folder / '1'}: not a directory")  # kserve#1769
    assert (folder / "1").is_file() and not marker_path(tmp_path / "models", "cifar10", spec).exists()
    assert "delete those keys" in caught.value.fix


def test_kfserving_05_turns_the_model_folders_own_marker_into_a_file(tmp_path):
    d, _, _ = downloader(tmp_path, {"m/cifar10/": b"", **MARKED}, KFSERVING_05)
    with pytest.raises(StorageError, match=r"mkdir .*/models/cifar10: not a directory"):
        d.download("cifar10", ModelSpec("s3://triton/m/cifar10/"))
    assert (tmp_path / "models" / "cifar10").is_file()


@pytest.mark.parametrize("behaviour", [KSERVE_015, FRIENDLY], ids=["v0.15.2", "friendly"])
def test_kserve_and_the_friendly_agent_skip_directory_markers(tmp_path, behaviour):
    d, fake, _ = downloader(tmp_path, {"m/cifar10/": b"", **MARKED}, behaviour)
    d.download("cifar10", ModelSpec("s3://triton/m/cifar10"))
    assert sorted(fake.fetched) == ["m/cifar10/1/model.pt", "m/cifar10/config.pbtxt"]
    assert (tmp_path / "models" / "cifar10" / "1" / "model.pt").read_bytes() == b"weights"


def test_a_release_words_an_empty_listing_as_the_go_agent(tmp_path):
    d, _, _ = downloader(tmp_path, {"m/a/x": b"1"}, KSERVE_015)
    with pytest.raises(StorageError) as caught:
        d.download("b", ModelSpec("s3://triton/m/b"))
    assert caught.value.cause == ("failed to download model: failed to download model: unable to get batch objects "
                                  "s3://triton/m/b has no objects or does not exist")
    d, _, _ = downloader(tmp_path, {"m/b/": b""}, KSERVE_015)  # only a marker: KServe's foundObject check
    with pytest.raises(StorageError, match="has no objects or does not exist"):
        d.download("b", ModelSpec("s3://triton/m/b"))


# --- no S3 endpoint: KFServing 0.5.1 panics (kserve#1317) ---------------------------------------------------------
NO_ENDPOINT = s3config.from_env({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1"})


def test_kfserving_05_panics_without_an_s3_endpoint(tmp_path):
    d, _, _ = downloader(tmp_path, {"m/a/x": b"1"}, KFSERVING_05, s3=NO_ENDPOINT)
    with pytest.raises(Panicked) as caught:
        d.download("a", ModelSpec("s3://triton/m/a"))
    text = str(caught.value)
    assert text.startswith("panic: runtime error: invalid memory address or nil pointer dereference\n")
    assert "github.com/kubeflow/kfserving/pkg/agent.(*Downloader).download" in text


@pytest.mark.parametrize("behaviour", [KSERVE_015, FRIENDLY], ids=["v0.15.2", "friendly"])
def test_later_agents_and_the_friendly_one_report_a_missing_endpoint(tmp_path, behaviour):
    out = io.StringIO()
    d = Downloader(tmp_path, NO_ENDPOINT, Logger("test", out), behaviour=behaviour, crash=_raise_panic)
    with pytest.raises(StorageError, match="no S3 endpoint"):
        d.download("a", ModelSpec("s3://triton/m/a"))


def test_the_kfserving_05_agent_process_exits_2_with_the_go_panic(tmp_path):
    config = tmp_path / "configs"
    config.mkdir()
    (config / "models.json").write_text(json.dumps(
        [{"modelName": "cifar10", "modelSpec": {"storageUri": "s3://triton/m/cifar10", "framework": "pytorch",
                                                "memory": "100Mi"}}]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_")) and k != "KUBECONFIG"}
    env.update(AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_REGION="us-east-1")
    done = subprocess.run(
        [sys.executable, "-m", "helpers.local.agent", "--config-dir", str(config), "--model-dir",
         str(tmp_path / "models"), "--triton-url", "http://127.0.0.1:1", "--status-file", str(tmp_path / "s.json"),
         *releases.PROFILES["kfserving-0.5"].agent_args],
        env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "panic: runtime error: invalid memory address or nil pointer dereference" in done.stderr
    assert "[signal SIGSEGV: segmentation violation" in done.stderr


# --- the puller: one attempt each ---------------------------------------------------------------------------------
class Server:
    def __init__(self) -> None:
        self.up, self.refuse, self.calls = True, {}, []

    def load(self, name: str) -> None:
        self.calls.append(f"load {name}")
        if not self.up:
            raise ServerUnreachable("connection refused")
        if name in self.refuse:
            raise LoadRefused(f"Triton could not load model {name!r}: {self.refuse[name]}", self.refuse[name])

    def unload(self, name: str) -> None:
        self.calls.append(f"unload {name}")

    def index(self) -> dict[str, str]:
        return {}


class Downloads:
    def __init__(self, model_dir: Path) -> None:
        self.model_dir, self.stop = model_dir, threading.Event()
        self.missing: set[str] = set()
        self.calls = 0

    def download(self, name: str, spec: ModelSpec) -> bool:
        self.calls += 1
        if spec.storage_uri in self.missing:
            raise StorageError(go_cause(spec.storage_uri), "upload it")
        marker = marker_path(self.model_dir, name, spec)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(spec.canonical())
        return True


def go_cause(uri: str) -> str:
    return f"failed to download model: failed to download model: unable to get batch objects {uri} has no objects"


def run_puller(tmp_path: Path, behaviour: release.Behaviour):
    server, downloads, out = Server(), Downloads(tmp_path / "models"), io.StringIO()
    status = StatusFile(tmp_path / "status.json")
    puller = Puller(downloads, server, status, Logger("test", out), Backoff(0.02, 0.05), check_interval=0.05,
                    reload_lost=False, behaviour=behaviour)
    puller.start()
    return puller, server, downloads, status, out


def records(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.parametrize("behaviour", [KFSERVING_05, KSERVE_015], ids=["v0.5.1", "v0.15.2"])
def test_a_release_tries_a_download_once_and_leaves_the_model_unloaded(tmp_path, behaviour):
    puller, server, downloads, status, out = run_puller(tmp_path, behaviour)
    try:
        spec = ModelSpec("s3://triton/late")
        downloads.missing.add(spec.storage_uri)
        puller.enqueue(Op("add", "late", spec))
        poll_until(lambda: (status.get("late") or {}).get("state") == "Failed", "the add to fail", timeout=5)
        downloads.missing.clear()  # the learner uploads the model now: nothing picks it up
        time.sleep(0.4)  # many backoff periods of the friendly agent
        assert downloads.calls == 1 and server.calls == [] and status.get("late")["state"] == "Failed"
        failed = [r for r in records(out) if r["level"] == "error"]
        assert [r["msg"] for r in failed] == [f"Failed to download model late with err {go_cause(spec.storage_uri)}"]
    finally:
        puller.stop()


def test_the_friendly_agent_retries_the_download_until_it_loads(tmp_path):
    puller, server, downloads, status, out = run_puller(tmp_path, FRIENDLY)
    try:
        spec = ModelSpec("s3://triton/late")
        downloads.missing.add(spec.storage_uri)
        puller.enqueue(Op("add", "late", spec))
        poll_until(lambda: downloads.calls >= 2, "a second attempt", timeout=5)
        downloads.missing.clear()
        poll_until(lambda: (status.get("late") or {}).get("state") == "Loaded", "the retry to load it", timeout=5)
        assert not [r for r in records(out) if r["msg"].startswith("Failed to download model late with err")]
    finally:
        puller.stop()


def test_a_release_posts_the_load_once_when_triton_does_not_answer(tmp_path):
    puller, server, _, status, out = run_puller(tmp_path, KSERVE_015)
    try:
        server.up = False
        puller.enqueue(Op("add", "cifar10", ModelSpec("s3://triton/c")))
        poll_until(lambda: (status.get("cifar10") or {}).get("state") == "Failed", "the load to fail", timeout=5)
        server.up = True
        time.sleep(0.3)
        assert server.calls == ["load cifar10"]
        assert "Failed to Load model cifar10" in [r["msg"] for r in records(out)]
    finally:
        puller.stop()


@pytest.mark.parametrize("behaviour, body", [
    (KFSERVING_05, "[123 34 101 114 114 111 114 34 58 34 110 111 34 125]"),  # %v of []byte(`{"error":"no"}`)
    (KSERVE_015, '{"error":"no"}'),
], ids=["v0.5.1", "v0.15.2"])
def test_a_refused_load_is_logged_at_info_with_the_body_as_the_release_prints_it(tmp_path, behaviour, body):
    puller, server, _, status, out = run_puller(tmp_path, behaviour)
    try:
        server.refuse["bad"] = "no"
        puller.enqueue(Op("add", "bad", ModelSpec("s3://triton/bad")))
        poll_until(lambda: (status.get("bad") or {}).get("state") == "Failed", "the load to be refused", timeout=5)
        refused = [r for r in records(out) if r["msg"].startswith("Failed to load model bad")]
        assert [(r["level"], r["msg"]) for r in refused] == [
            ("info", f"Failed to load model bad with status [400] and resp:{body}")]
    finally:
        puller.stop()


def test_go_body_formats():
    assert go_body("x", as_bytes=False) == '{"error":"x"}'
    assert go_body("x", as_bytes=True) == "[123 34 101 114 114 111 114 34 58 34 120 34 125]"


# --- the profile passes the release, the switch adds the friendly agent ---------------------------------------------
def test_each_profile_starts_its_releases_agent_and_the_switch_the_friendly_one(monkeypatch):
    monkeypatch.delenv(releases.AGENT_FRIENDLY_ENV, raising=False)
    monkeypatch.delenv(releases.AGENT_RELOADS_ENV, raising=False)
    for profile in releases.PROFILES.values():
        assert profile.agent_args == ["--release", profile.release]
        assert profile.release in release.RELEASES and not release.for_release(profile.release).friendly
    assert release.for_release("v0.5.1").markers_as_files and release.for_release("v0.5.1").panic_without_endpoint
    assert not release.for_release("v0.14.1").markers_as_files
    monkeypatch.setenv(releases.AGENT_FRIENDLY_ENV, "1")
    assert releases.get("kfserving-0.5").agent_args == ["--release", "v0.5.1", "--friendly"]
    friendly = release.for_release("v0.5.1", friendly=True)
    assert friendly.retry and friendly.all_pages and friendly.prefix_as_folder
    assert not friendly.markers_as_files and not friendly.panic_without_endpoint


def test_a_missing_region_fails_the_listing_in_the_go_agents_words(tmp_path):
    no_region = s3config.from_env({"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "k",
                                   "AWS_SECRET_ACCESS_KEY": "s"}, region_env="AWS_DEFAULT_REGION")
    d = Downloader(tmp_path, no_region, Logger("test", io.StringIO()), behaviour=KSERVE_015, crash=_raise_panic)
    with pytest.raises(StorageError) as caught:
        d.download("a", ModelSpec("s3://triton/m/a"))
    assert caught.value.cause.startswith("failed to download model: failed to download model: unable to get batch "
                                         "objects MissingRegion: could not find region configuration")
