"""Unit tests of the local model agent's pure parts and of agent-log parsing (no processes)."""
from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from helpers.clients.storage import StorageError
from helpers.core.wait import poll_until
from helpers.local.agent import s3config, syncer
from helpers.local.agent.downloader import marker_path
from helpers.local.agent.log import Logger
from helpers.local.agent.puller import Backoff, LoadRefused, Puller, ServerUnreachable
from helpers.local.agent.spec import ConfigError, ModelSpec, Op, parse_model_configs
from helpers.local.agent.status import StatusFile, read_status
from helpers.local.agent.watcher import Watcher, diff
from helpers.steps.models import agent_log

CIFAR = ModelSpec("s3://triton/torchscript/cifar10", "pytorch", "100Mi")
INCEPTION = ModelSpec("s3://triton/models/inception_graphdef", "tensorflow", "1Gi")

# The two agent logs shown in the guide (reference/kfserving-multi-model-serving-guide.ko.md).
KFSERVING_05_LOG = agent_log.guide_log("cifar10")
KSERVE_LOG = agent_log.guide_log("inception")


# --- watcher: diff and config parsing ----------------------------------------------------------
def test_diff_adds_replaces_and_removes():
    changed = ModelSpec("s3://triton/torchscript/cifar10-v2", "pytorch", "100Mi")
    assert diff({}, {"cifar10": CIFAR}) == [Op("add", "cifar10", CIFAR)]
    assert diff({"cifar10": CIFAR}, {"cifar10": CIFAR}) == []
    assert diff({"cifar10": CIFAR}, {"cifar10": changed}) == [Op("replace", "cifar10", changed)]
    assert diff({"cifar10": CIFAR, "inception": INCEPTION}, {"inception": INCEPTION}) == [Op("remove", "cifar10")]
    assert diff({"cifar10": CIFAR}, {"inception": INCEPTION}) == [Op("add", "inception", INCEPTION),
                                                                   Op("remove", "cifar10")]


def test_diff_sees_memory_and_framework_changes():
    assert diff({"m": CIFAR}, {"m": ModelSpec(CIFAR.storage_uri, "pytorch", "200Mi")})[0].kind == "replace"
    assert diff({"m": CIFAR}, {"m": ModelSpec(CIFAR.storage_uri, "onnx", "100Mi")})[0].kind == "replace"


def test_parse_model_configs_reads_kserve_format():
    text = json.dumps([{"modelName": "cifar10", "modelSpec": CIFAR.to_json()},
                       {"modelName": "inception", "modelSpec": {"storageUri": INCEPTION.storage_uri,
                                                                 "framework": "tensorflow", "memory": "1Gi"}}])
    models, problems = parse_model_configs(text)
    assert models == {"cifar10": CIFAR, "inception": INCEPTION} and problems == []


@pytest.mark.parametrize("text", ["", "  \n", "[]", "null"])
def test_empty_config_means_no_models(text):
    assert parse_model_configs(text) == ({}, [])


def test_bad_entries_are_skipped_with_a_reason():
    text = json.dumps([{"modelName": "../etc", "modelSpec": CIFAR.to_json()},
                       {"modelName": "nouri", "modelSpec": {"framework": "pytorch"}},
                       {"modelName": "ok", "modelSpec": CIFAR.to_json()}])
    models, problems = parse_model_configs(text)
    assert list(models) == ["ok"]
    assert len(problems) == 2 and "../etc" in problems[0] and "storageUri" in problems[1]


@pytest.mark.parametrize("text", ["[{", '{"modelName": "x"}'])
def test_unusable_config_raises(text):
    with pytest.raises(ConfigError):
        parse_model_configs(text)


def _write(path: Path, models: dict[str, ModelSpec]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"modelName": n, "modelSpec": s.to_json()} for n, s in models.items()]))
    tmp.replace(path)


def test_watcher_polls_the_file(tmp_path):
    out = io.StringIO()
    seen: list[Op] = []
    watcher = Watcher(tmp_path, seen.append, Logger("test", out))
    path = tmp_path / "models.json"
    assert watcher.poll() == []  # missing file: no models
    _write(path, {"cifar10": CIFAR})
    assert watcher.poll() == [Op("add", "cifar10", CIFAR)]
    assert watcher.poll() == []  # unchanged
    path.write_text("[{half")  # a half-written file keeps the last good state
    assert watcher.poll() == []
    _write(path, {"inception": INCEPTION})
    assert watcher.poll() == [Op("add", "inception", INCEPTION), Op("remove", "cifar10")]
    path.unlink()
    assert watcher.poll() == [Op("remove", "inception")]
    assert [op.kind for op in seen] == ["add", "add", "remove", "remove"]
    messages = [json.loads(line)["msg"] for line in out.getvalue().splitlines()]
    assert messages.count("Processing event") == 5
    assert "Failed to sync model config file" in messages
    assert messages.count("adding model") == 2 and messages.count("removing model") == 2


def _watching(tmp_path, resync: float, inotify: bool = True) -> tuple[Watcher, list[Op]]:
    seen: list[Op] = []
    watcher = Watcher(tmp_path, seen.append, Logger("test", io.StringIO()), resync=resync)
    if not inotify:
        watcher._events.add = lambda folder: False  # as on a filesystem without inotify
    watcher.start()
    return watcher, seen


def test_watcher_is_woken_by_the_projection_not_the_timer(tmp_path):
    watcher, seen = _watching(tmp_path, resync=3600)  # the timer cannot be what notices
    try:
        _write(tmp_path / "models.json", {"cifar10": CIFAR})  # tmp + rename, as the controller projects it
        poll_until(lambda: seen, "the watcher to emit the add", timeout=5, interval=0.01)
        assert seen == [Op("add", "cifar10", CIFAR)]
        assert watcher.noticed_by == {"cifar10": "event"} and watcher.wakeups["resync"] == 0
        (tmp_path / "notes.txt").write_text("other files in the folder do not wake it")
        _write(tmp_path / "models.json", {})
        poll_until(lambda: len(seen) == 2, "the watcher to emit the remove", timeout=5, interval=0.01)
        assert seen[1] == Op("remove", "cifar10") and watcher.noticed_by["cifar10"] == "event"
    finally:
        watcher.stop()
    assert not watcher._thread.is_alive()  # stop() interrupts the wait; it does not sit out the timer


def test_watcher_resync_catches_a_change_inotify_did_not_report(tmp_path):
    watcher, seen = _watching(tmp_path, resync=0.05, inotify=False)
    try:
        _write(tmp_path / "models.json", {"cifar10": CIFAR})
        poll_until(lambda: seen, "the resync to emit the add", timeout=5, interval=0.01)
        assert watcher.noticed_by == {"cifar10": "resync"} and watcher.wakeups["event"] == 0
    finally:
        watcher.stop()


# --- marker sha -----------------------------------------------------------------------------------
def test_spec_sha_is_sha256_of_canonical_json():
    canonical = '{"framework":"pytorch","memory":"100Mi","storageUri":"s3://triton/torchscript/cifar10"}'
    assert CIFAR.canonical() == canonical
    assert CIFAR.sha == hashlib.sha256(canonical.encode()).hexdigest()
    assert ModelSpec.from_json(json.loads(canonical)) == CIFAR
    assert ModelSpec(CIFAR.storage_uri, "pytorch", "200Mi").sha != CIFAR.sha
    assert marker_path(Path("/m"), "cifar10", CIFAR) == Path(f"/m/cifar10/SUCCESS.{CIFAR.sha}")


# --- syncer -------------------------------------------------------------------------------------
def _model_folder(root: Path, name: str, spec: ModelSpec | None, content: str | None = None) -> Path:
    folder = root / name
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.pt").write_bytes(b"weights")
    if spec is not None:
        marker_path(root, name, spec).write_text(content if content is not None else spec.canonical())
    return folder


def test_syncer_plan_decisions():
    stale = ModelSpec("s3://triton/old", "pytorch", "100Mi")
    on_disk = {"cifar10": CIFAR, "inception": stale, "partial": None, "gone": CIFAR}
    desired = {"cifar10": CIFAR, "inception": INCEPTION, "partial": CIFAR}
    assert syncer.plan(on_disk, desired) == {"cifar10": "load", "inception": "clean",
                                             "partial": "clean", "gone": "unload"}
    assert syncer.plan({"orphan": None}, {}) == {"orphan": "clean"}
    assert syncer.plan({}, desired) == {}


def test_syncer_reads_markers_and_cleans(tmp_path):
    _model_folder(tmp_path, "cifar10", CIFAR)
    _model_folder(tmp_path, "inception", ModelSpec("s3://triton/old"))
    _model_folder(tmp_path, "partial", None)
    _model_folder(tmp_path, "forged", CIFAR, content=INCEPTION.canonical())  # content does not match its sha
    _model_folder(tmp_path, "gone", CIFAR)
    assert syncer.scan(tmp_path)["forged"] is None
    out = io.StringIO()
    decisions = syncer.sync(tmp_path, {"cifar10": CIFAR, "inception": INCEPTION}, Logger("test", out))
    assert decisions == {"cifar10": "load", "forged": "clean", "gone": "unload", "inception": "clean",
                         "partial": "clean"}
    # "gone" stays for the puller, which unloads it from Triton before deleting it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10", "gone"]
    assert (tmp_path / "cifar10" / "1" / "model.pt").exists()
    assert "recovered model" in out.getvalue()


# --- status file and log ---------------------------------------------------------------------------
def test_status_file_is_written_whole_on_every_change(tmp_path):
    path = tmp_path / "status.json"
    status = StatusFile(path)
    assert read_status(path) == {}
    status.write()
    assert read_status(path) == {}
    status.set("cifar10", "Downloading", sha=CIFAR.sha)
    status.set("cifar10", "Failed", "s3://triton/torchscript/cifar10: bucket 'triton' does not exist")
    entry = read_status(path)["cifar10"]
    assert entry["state"] == "Failed" and entry["sha"] == CIFAR.sha and "bucket" in entry["message"]
    assert isinstance(entry["time"], float)
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temporary file left behind


def test_log_lines_are_zap_shaped_and_hide_secrets():
    out = io.StringIO()
    Logger("Downloader", out).info("Downloading to model dir", modelName="cifar10", aws_secret_access_key="s3cr3t")
    record = json.loads(out.getvalue())
    assert record["level"] == "info" and record["logger"] == "Downloader"
    assert record["msg"] == "Downloading to model dir" and record["modelName"] == "cifar10"
    assert isinstance(record["ts"], float) and "s3cr3t" not in out.getvalue()


KSERVE_ENV = {"AWS_ACCESS_KEY_ID": "minio", "AWS_SECRET_ACCESS_KEY": "minio123",
              "AWS_ENDPOINT_URL": "http://minio-service.kubeflow:9000", "S3_ENDPOINT": "minio-service.kubeflow:9000",
              "S3_USE_HTTPS": "0", "AWS_REGION": "us-east-1", "S3_USER_VIRTUAL_BUCKET": "false"}
SERVICES = {"minio-service.kubeflow:9000": "127.0.0.1:9000"}  # the Service objects, as cluster DNS


def resolve_services(address: str) -> str:
    return SERVICES.get(address, address)


def test_s3_settings_from_kserve_env():
    s3 = s3config.from_env(KSERVE_ENV, resolve_services).for_bucket("triton")
    assert (s3.endpoint, s3.secure, s3.region, s3.access_key) == ("127.0.0.1:9000", False, "us-east-1", "minio")
    assert "minio123" not in repr(s3) and "minio123" not in repr(s3config.from_env(KSERVE_ENV))
    env = {**KSERVE_ENV, "AWS_ENDPOINT_URL": "https://minio.example:443/", "AWS_REGION": "eu-west-1",
           "S3_USER_VIRTUAL_BUCKET": "true"}
    resolve = {"triton.minio.example:443": "10.0.0.7:443"}.get  # where virtual hosts resolve
    s3 = s3config.from_env(env, lambda a: resolve(a, a)).for_bucket("triton")
    assert (s3.endpoint, s3.secure, s3.region) == ("10.0.0.7:443", True, "eu-west-1")


def test_missing_region_fails_as_kserves_agent_does():
    env = {k: v for k, v in KSERVE_ENV.items() if k != "AWS_REGION"}
    with pytest.raises(StorageError, match="MissingRegion") as caught:
        s3config.from_env(env, resolve_services).for_bucket("triton")
    assert "s3-region" in caught.value.fix


def test_virtual_host_addressing_unless_told_otherwise():
    env = {k: v for k, v in KSERVE_ENV.items() if k != "S3_USER_VIRTUAL_BUCKET"}
    with pytest.raises(StorageError, match="lookup triton.minio-service.kubeflow: no such host") as caught:
        s3config.from_env(env, resolve_services).for_bucket("triton")
    assert 's3-usevirtualbucket: "false"' in caught.value.fix


def test_no_endpoint_means_no_s3():
    with pytest.raises(StorageError, match="no S3 endpoint"):
        s3config.from_env({"AWS_REGION": "us-east-1"}).for_bucket("triton")


# --- puller, with an in-memory server and downloader (threads, no processes) -------------------------
class FakeServer:
    def __init__(self) -> None:
        self.ready: set[str] = set()
        self.up = True
        self.refuse: dict[str, str] = {}
        self.calls: list[str] = []

    def _check(self) -> None:
        if not self.up:
            raise ServerUnreachable("connection refused")

    def load(self, name: str) -> None:
        self._check()
        self.calls.append(f"load {name}")
        if name in self.refuse:
            raise LoadRefused(self.refuse[name])
        self.ready.add(name)

    def unload(self, name: str) -> None:
        self._check()
        self.calls.append(f"unload {name}")
        self.ready.discard(name)

    def index(self) -> dict[str, str]:
        self._check()
        return {name: "READY" for name in self.ready}


class FakeDownloader:
    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.stop = threading.Event()
        self.missing: set[str] = set()
        self.downloads: list[str] = []

    def download(self, name: str, spec: ModelSpec) -> bool:
        marker = marker_path(self.model_dir, name, spec)
        if marker.exists():
            return False
        if spec.storage_uri in self.missing:
            raise StorageError(f"bucket {spec.storage_uri.split('/')[2]!r} does not exist on 127.0.0.1:1", "create it")
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(spec.canonical())
        self.downloads.append(name)
        return True


def _wait(check, timeout: float = 5.0):
    return poll_until(check, "the puller", timeout=timeout, interval=0.01)


@pytest.fixture()
def puller(tmp_path):
    server, downloader = FakeServer(), FakeDownloader(tmp_path / "models")
    status = StatusFile(tmp_path / "status.json")
    p = Puller(downloader, server, status, Logger("test", io.StringIO()), Backoff(0.05, 0.2), check_interval=0.05)
    p.start()
    yield p, server, downloader, status
    p.stop()


def test_puller_adds_replaces_and_removes(puller):
    p, server, downloader, status = puller
    p.enqueue(Op("add", "cifar10", CIFAR))
    _wait(lambda: (status.get("cifar10") or {}).get("state") == "Loaded")
    v2 = ModelSpec("s3://triton/cifar10-v2", "pytorch")
    p.enqueue(Op("replace", "cifar10", v2))
    _wait(lambda: status.get("cifar10")["sha"] == v2.sha and status.get("cifar10")["state"] == "Loaded")
    p.enqueue(Op("remove", "cifar10"))
    _wait(lambda: status.get("cifar10")["state"] == "Unloaded")
    assert server.calls == ["load cifar10", "unload cifar10", "load cifar10", "unload cifar10"]
    assert not (downloader.model_dir / "cifar10").exists()


def test_a_failing_download_retries_until_a_newer_op_supersedes_it(puller):
    p, server, downloader, status = puller
    downloader.missing.add(CIFAR.storage_uri)
    p.enqueue(Op("add", "cifar10", CIFAR))
    _wait(lambda: (status.get("cifar10") or {}).get("state") == "Failed")
    assert "bucket 'triton' does not exist" in status.get("cifar10")["message"]
    assert status.get("cifar10")["message"].startswith(CIFAR.storage_uri)
    fixed = ModelSpec("s3://other/cifar10", "pytorch")
    p.enqueue(Op("replace", "cifar10", fixed))
    _wait(lambda: status.get("cifar10")["state"] == "Loaded" and status.get("cifar10")["sha"] == fixed.sha)
    assert p.idle()


def test_a_refused_load_fails_with_tritons_message_and_others_load(puller):
    p, server, downloader, status = puller
    server.refuse["bad"] = "failed to load 'bad': model.pt is not a loadable TorchScript file"
    p.enqueue(Op("add", "bad", CIFAR))
    p.enqueue(Op("add", "good", INCEPTION))
    _wait(lambda: (status.get("good") or {}).get("state") == "Loaded")
    _wait(lambda: (status.get("bad") or {}).get("state") == "Failed")
    assert "not a loadable TorchScript" in status.get("bad")["message"]


def test_models_are_reloaded_without_download_after_a_server_restart(puller):
    p, server, downloader, status = puller
    p.enqueue(Op("add", "cifar10", CIFAR))
    _wait(lambda: (status.get("cifar10") or {}).get("state") == "Loaded")
    server.up = False
    _wait(lambda: p._server_down)  # the puller's check saw the outage
    server.ready.clear()  # the restarted server knows no models
    server.up = True
    _wait(lambda: "cifar10" in server.ready)
    _wait(lambda: status.get("cifar10")["state"] == "Loaded")
    assert downloader.downloads == ["cifar10"]
    assert server.calls.count("load cifar10") == 2


def test_a_server_that_lost_models_without_being_seen_down_is_noticed(puller):
    p, server, downloader, status = puller
    p.enqueue(Op("add", "cifar10", CIFAR))
    _wait(lambda: "cifar10" in server.ready)
    server.ready.clear()
    _wait(lambda: "cifar10" in server.ready)
    assert downloader.downloads == ["cifar10"]


# --- agent log timelines ---------------------------------------------------------------------------
def test_parse_kfserving_05_log():
    events = agent_log.parse(KFSERVING_05_LOG)
    assert len(events) == 10
    assert events[0] == {**events[0], "ts": 1605449512.0457177, "logger": "Watcher", "msg": "Processing event",
                         "model": None}
    assert [e["model"] for e in events[1:4]] == ["cifar10"] * 3


def test_timeline_kfserving_05_log():
    line = agent_log.timeline(KFSERVING_05_LOG, "cifar10")
    assert line["load_s"] == pytest.approx(0.645, abs=0.001)
    assert line["download_s"] is None and line["failed"] is None
    assert line["start"] == pytest.approx(1605449512.0457177)


def test_parse_and_timeline_kserve_log():
    events = agent_log.parse(["not json", "=== header", *KSERVE_LOG])
    assert len(events) == 8
    assert [e["logger"] for e in events[:3]] == ["Watcher", "Watcher", "modelProcessor"]
    assert [e["model"] for e in events] == [None, "inception", "inception", None, None,
                                            "inception", "inception", "inception"]
    line = agent_log.timeline(KSERVE_LOG, "inception")
    assert line["download_s"] == pytest.approx(0.863, abs=0.001) and line["downloaded"] is True
    assert line["load_s"] == pytest.approx(2.383, abs=0.001)


def test_timeline_of_this_agents_log_with_a_failure_and_a_skip():
    out = io.StringIO()
    log = Logger("x", out)
    log.named("Watcher").info("Processing event", event='"/c/models.json": CREATE')
    log.named("modelWatcher").info("adding model", modelName="bad")
    log.named("modelProcessor").error("Failed to load model", modelName="bad", error="Triton says no")
    log.named("modelOnComplete").info("completion event for model", modelName="bad", inFlight=0)
    log.named("modelWatcher").info("adding model", modelName="cifar10")
    log.named("Downloader").info("Model successFile exists already for", modelName="cifar10")
    log.named("modelProcessor").info("Successfully loaded model", modelName="cifar10")
    lines = out.getvalue().splitlines()
    bad = agent_log.timeline(lines, "bad")
    assert bad["failed"] == "Triton says no" and bad["load_s"] is None
    good = agent_log.timeline(lines, "cifar10")
    assert good["downloaded"] is False and good["load_s"] >= good["download_s"] >= 0
    with pytest.raises(ValueError):
        agent_log.timeline(lines, "nothing")


def test_an_agent_that_panicked_is_a_verdict_not_a_wait(monkeypatch):
    """KFServing 0.5.1's agent without an S3 endpoint dies of a Go panic: the wait ends at once, failed."""
    from helpers.local.agent.downloader import panic_text
    from helpers.local.agent.release import for_release

    panicked = panic_text(for_release("v0.5.1")).splitlines()
    assert agent_log.crash(KFSERVING_05_LOG) is None
    assert agent_log.crash(panicked) == "panic: runtime error: invalid memory address or nil pointer dereference"
    monkeypatch.setattr(agent_log, "agent_lines", lambda *args: panicked)
    lines, found = agent_log.wait_agent_loaded(None, None, None, "triton-doctor", "mms", "cifar10", timeout=30)
    assert lines == panicked and found["load_s"] is None
    assert found["failed"].startswith("panic: runtime error")


# --- downloader against an in-memory S3 client (pagination is minio's; markers are ours) -----------
class FakeObject:
    def __init__(self, name: str, size: int) -> None:
        self.object_name, self.size = name, size


class FakeMinio:
    """Answers like MinIO: keys ending in "/" are directory markers."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.fetched: list[str] = []
        self._base_url = SimpleNamespace(host="127.0.0.1:1")  # helpers.clients.storage names the endpoint from it

    def bucket_exists(self, bucket: str) -> bool:
        return bucket == "triton"

    def list_objects(self, bucket: str, prefix: str = "", recursive: bool = False):
        if bucket != "triton":
            return []  # (a real server answers NoSuchBucket; the lister then asks bucket_exists)
        return [FakeObject(k, len(v)) for k, v in sorted(self.objects.items()) if k.startswith(prefix)]

    def fget_object(self, bucket: str, key: str, path: str) -> None:
        self.fetched.append(key)
        Path(path).write_bytes(self.objects[key])


def _fake_downloader(tmp_path: Path, objects: dict[str, bytes]) -> tuple[Any, FakeMinio, io.StringIO]:
    from helpers.clients.storage import S3Settings
    from helpers.local.agent.downloader import Downloader

    out = io.StringIO()
    downloader = Downloader(tmp_path, S3Settings("127.0.0.1:1", "k", "s"), Logger("test", out), workers=3)
    fake = FakeMinio(objects)
    downloader._client = lambda _bucket: fake  # the S3 server is replaced, nothing else
    return downloader, fake, out


def test_downloader_skips_directory_markers_and_writes_the_marker_last(tmp_path):
    objects = {"m/cifar10/": b"", "m/cifar10/1/": b"", "m/cifar10/config.pbtxt": b"cfg",
               "m/cifar10/1/model.pt": b"weights", "m/cifar10-other/x": b"not ours"}
    downloader, fake, out = _fake_downloader(tmp_path, objects)
    spec = ModelSpec("s3://triton/m/cifar10", "pytorch", "")
    assert downloader.download("cifar10", spec) is True
    assert sorted(fake.fetched) == ["m/cifar10/1/model.pt", "m/cifar10/config.pbtxt"]
    assert (tmp_path / "cifar10" / "1" / "model.pt").read_bytes() == b"weights"
    assert marker_path(tmp_path, "cifar10", spec).read_text() == spec.canonical()
    messages = [json.loads(line)["msg"] for line in out.getvalue().splitlines()]
    assert messages[-1] == "Creating successFile"
    assert downloader.download("cifar10", spec) is False and len(fake.fetched) == 2


def test_downloader_reports_a_missing_bucket_or_prefix(tmp_path):
    downloader, _, _ = _fake_downloader(tmp_path, {"m/a/x": b"1"})
    with pytest.raises(StorageError, match="bucket 'nope' does not exist"):
        downloader.download("a", ModelSpec("s3://nope/m/a"))
    with pytest.raises(StorageError, match="no objects under s3://triton/m/b"):
        downloader.download("b", ModelSpec("s3://triton/m/b"))
    assert not (tmp_path / "b" / f"SUCCESS.{ModelSpec('s3://triton/m/b').sha}").exists()


def test_downloader_refuses_keys_that_escape_the_model_folder(tmp_path):
    downloader, _, _ = _fake_downloader(tmp_path, {"m/a/../../evil": b"x"})
    with pytest.raises(StorageError, match="outside the model folder"):
        downloader.download("a", ModelSpec("s3://triton/m/a"))


def test_warm_up_resolves_the_endpoint_once_and_never_raises():
    asked = []
    s3config.from_env(KSERVE_ENV, lambda address: asked.append(address) or address).warm_up()
    assert asked == ["minio-service.kubeflow:9000"]

    def down(_address: str) -> str:
        raise ConnectionError("apiserver away")
    s3config.from_env(KSERVE_ENV, down).warm_up()  # the first download resolves again, and says why
