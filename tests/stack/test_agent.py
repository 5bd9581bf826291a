"""The local model agent against a real S3 server and a real tritonserver, run as a subprocess.

One module-scoped stack; the tests run in order and build on each other's state, as a learner's
session does (add, add more, remove, change, break things, restart the agent, restart Triton).
"""
from __future__ import annotations

import io
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pytest

from helpers.clients import triton
from helpers.clients.storage import S3Settings, connect, upload_folder
from helpers.core.config import project_root
from helpers.core.wait import poll_until
from helpers.local.agent.downloader import Downloader, marker_path
from helpers.local.agent.log import Logger
from helpers.local.agent.spec import ModelSpec
from helpers.local.agent.status import read_status
from helpers.local.stack import process, s3server, tritonserver
from helpers.steps.models import agent_log
from helpers.steps.models.standins import write_cifar10_standin

pytestmark = pytest.mark.stack

BUCKET = "triton"
CIFAR10 = f"s3://{BUCKET}/torchscript/cifar10"
CIFAR10_V2 = f"s3://{BUCKET}/torchscript/cifar10-v2"
BROKEN = f"s3://{BUCKET}/torchscript/broken"


def _standin(folder: Path, seed: int) -> Path:
    """A cifar10 stand-in whose config leaves the name out (so any TrainedModel name fits) and
    asks for one CPU instance (each costs a python stub with torch, ~235 MB)."""
    write_cifar10_standin(folder, seed=seed)
    config = folder / "config.pbtxt"
    text = re.sub(r'(?m)^name:.*\n', "", config.read_text())
    config.write_text(text + "\ninstance_group [{ count: 1, kind: KIND_CPU }]\n")
    return folder


@dataclass
class Stack:
    root: Path
    s3: S3Settings
    s3_record: process.ProcessRecord
    triton_record: process.ProcessRecord
    backends: Path
    agent_record: Optional[process.ProcessRecord] = None

    @property
    def config_file(self) -> Path:
        return self.root / "configs" / "models.json"

    @property
    def model_dir(self) -> Path:
        return self.root / "models"

    @property
    def status_file(self) -> Path:
        return self.root / "agent-status.json"

    @property
    def agent_log(self) -> Path:
        return self.root / "agent.log"

    @property
    def triton_url(self) -> str:
        return tritonserver.http_url(self.triton_record)

    def start_triton(self) -> None:
        self.triton_record = tritonserver.start("triton", self.model_dir, self.backends, self.triton_record.ports,
                                                self.root / "triton.log", timeout=120)

    def start_agent(self) -> float:
        """Start the agent; returns the log offset where this run's lines begin."""
        self.status_file.unlink(missing_ok=True)
        offset = self.agent_log.stat().st_size if self.agent_log.exists() else 0
        argv = process.python_argv("helpers.local.agent", "--config-dir", str(self.config_file.parent),
                                   "--model-dir", str(self.model_dir), "--triton-url", self.triton_url,
                                   "--status-file", str(self.status_file))
        # What KServe's credential builder injects for s3_secret.yaml's annotations.
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.s3.access_key, "AWS_SECRET_ACCESS_KEY": self.s3.secret_key,
               "S3_ENDPOINT": self.s3.endpoint, "AWS_ENDPOINT_URL": f"http://{self.s3.endpoint}",
               "S3_USE_HTTPS": "0", "AWS_REGION": "us-east-1", "S3_USER_VIRTUAL_BUCKET": "false"}
        self.agent_record = process.start("agent", argv, self.agent_log, self.status_file.exists,
                                          env=env, cwd=project_root(), timeout=60)
        return offset

    def write_config(self, models: dict[str, str]) -> None:
        """Project the model-config ConfigMap into the agent's file, atomically (as the kubelet does)."""
        entries = [{"modelName": name, "modelSpec": {"storageUri": uri, "framework": "pytorch", "memory": "100Mi"}}
                   for name, uri in sorted(models.items())]
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.config_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        tmp.replace(self.config_file)

    def status(self) -> dict[str, dict]:
        return read_status(self.status_file)

    def wait_state(self, name: str, state: str, timeout: float = 90, sha: str = "") -> dict:
        def check() -> Optional[dict]:
            entry = self.status().get(name)
            if entry and entry["state"] == state and (not sha or entry["sha"] == sha):
                return entry
            return None

        return poll_until(check, f"model {name} to be {state} (status: {self.status().get(name)})",
                          timeout=timeout, interval=0.1)

    def log_lines(self, offset: int = 0) -> list[str]:
        with open(self.agent_log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace").splitlines()

    def events(self, offset: int = 0) -> list[dict]:
        return agent_log.parse(self.log_lines(offset))

    def ready(self, name: str) -> bool:
        try:
            return triton.model_ready(self.triton_url, name)
        except triton.TritonError:  # unreachable counts as not ready
            return False

    def infer(self, name: str) -> np.ndarray:
        data = np.linspace(-1, 1, 3 * 32 * 32, dtype=np.float32).reshape(1, 3, 32, 32)
        return triton.infer(self.triton_url, name, data)["OUTPUT__0"]


def stop(record: process.ProcessRecord) -> bool:
    """process.stop, then reap the child: a record alone cannot wait for it, and it would stay a zombie."""
    stopped = process.stop(record)
    try:
        os.waitpid(record.pid, 0)
    except ChildProcessError:
        pass
    return stopped


def spec(uri: str) -> ModelSpec:
    return ModelSpec(uri, "pytorch", "100Mi")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = Path(tmp_path_factory.mktemp("agent"))
    started: list[process.ProcessRecord] = []
    the_stack: Optional[Stack] = None
    try:
        creds = s3server.load_or_create_credentials(root / "credentials" / "s3.json")
        s3_port = process.free_port()
        s3_record = s3server.start(root / "s3data", s3_port, creds, root / "s3.log")
        started.append(s3_record)
        s3 = S3Settings(f"127.0.0.1:{s3_port}", creds.access_key, creds.secret_key)
        client = connect(s3)
        upload_folder(client, _standin(root / "src" / "cifar10", seed=0), BUCKET, "torchscript/cifar10", progress=False)
        upload_folder(client, _standin(root / "src" / "cifar10-v2", seed=1), BUCKET, "torchscript/cifar10-v2",
                      progress=False)
        broken = _standin(root / "src" / "broken", seed=0)
        (broken / "1" / "model.pt").write_bytes(b"this is not a TorchScript file")
        upload_folder(client, broken, BUCKET, "torchscript/broken", progress=False)

        backends = tritonserver.prepare_backends(root / "backends")
        ports = {kind: process.free_port() for kind in ("http", "grpc", "metrics")}
        (root / "models").mkdir()
        triton_record = tritonserver.start("triton", root / "models", backends, ports, root / "triton.log",
                                           timeout=120)
        started.append(triton_record)
        the_stack = Stack(root, s3, s3_record, triton_record, backends)
        the_stack.write_config({})
        the_stack.start_agent()
        yield the_stack
    finally:
        if the_stack is not None:
            for record in (the_stack.agent_record, the_stack.triton_record):
                if record is not None:
                    stop(record)
        for record in reversed(started):
            stop(record)


def test_add_cifar10_loads_it(stack: Stack) -> None:
    stack.write_config({"cifar10": CIFAR10})
    entry = stack.wait_state("cifar10", "Loaded")
    assert entry["sha"] == spec(CIFAR10).sha and entry["message"] == ""
    assert stack.ready("cifar10")
    marker = marker_path(stack.model_dir, "cifar10", spec(CIFAR10))
    assert json.loads(marker.read_text()) == spec(CIFAR10).to_json()
    assert (stack.model_dir / "cifar10" / "1" / "model.pt").is_file()
    assert stack.infer("cifar10").shape == (1, 10)
    messages = [e["msg"] for e in stack.events() if e["model"] == "cifar10"]
    for expected in ("adding model", "worker is started for", "Downloading model", "Downloading to model dir",
                     "Creating successFile", "Successfully loaded model", "completion event for model"):
        assert expected in messages
    line = agent_log.timeline(stack.log_lines(), "cifar10")
    assert line["downloaded"] is True and 0 <= line["download_s"] <= line["load_s"]
    assert stack.s3.secret_key not in stack.agent_log.read_text()


def test_two_more_models_load_in_parallel(stack: Stack) -> None:
    stack.write_config({"cifar10": CIFAR10, "second": CIFAR10_V2, "third": CIFAR10})
    stack.wait_state("second", "Loaded")
    stack.wait_state("third", "Loaded")
    assert stack.ready("second") and stack.ready("third") and stack.ready("cifar10")
    events = stack.events()
    loading = {e["model"]: e["ts"] for e in events if e["msg"] == "loading model" and e["model"] in ("second", "third")}
    loaded = {e["model"]: e["ts"] for e in events if e["msg"] == "Successfully loaded model"
              and e["model"] in ("second", "third")}
    # Both loads were under way at once: each started before the other finished.
    assert max(loading.values()) < min(loaded.values())


def test_remove_unloads_and_deletes_the_folder(stack: Stack) -> None:
    stack.write_config({"cifar10": CIFAR10, "second": CIFAR10_V2, "third": CIFAR10})
    stack.wait_state("third", "Loaded", sha=spec(CIFAR10).sha)
    stack.write_config({"cifar10": CIFAR10, "second": CIFAR10_V2})
    stack.wait_state("third", "Unloaded")
    assert not (stack.model_dir / "third").exists()
    poll_until(lambda: not stack.ready("third"), "third to leave Triton", timeout=15)
    assert stack.ready("cifar10") and stack.ready("second")


def test_spec_change_reloads_the_new_files(stack: Stack) -> None:
    stack.write_config({"cifar10": CIFAR10, "second": CIFAR10_V2})
    stack.wait_state("cifar10", "Loaded", sha=spec(CIFAR10).sha)
    stack.wait_state("second", "Loaded", sha=spec(CIFAR10_V2).sha)
    before = stack.infer("cifar10")
    stack.write_config({"cifar10": CIFAR10_V2, "second": CIFAR10_V2})
    stack.wait_state("cifar10", "Loaded", sha=spec(CIFAR10_V2).sha)
    folder = stack.model_dir / "cifar10"
    assert [p.name for p in folder.glob("SUCCESS.*")] == [f"SUCCESS.{spec(CIFAR10_V2).sha}"]
    after = stack.infer("cifar10")
    assert not np.allclose(before, after)  # other weights: Triton serves the new files
    np.testing.assert_allclose(after, stack.infer("second"), rtol=1e-5)
    assert "unloading model" in [e["msg"] for e in stack.events() if e["model"] == "cifar10"]


def test_missing_bucket_and_prefix_fail_with_a_clear_message(stack: Stack) -> None:
    stack.write_config({"cifar10": CIFAR10_V2, "second": CIFAR10_V2,
                        "nobucket": "s3://no-such-bucket/torchscript/cifar10",
                        "noprefix": f"s3://{BUCKET}/torchscript/not-uploaded"})
    nobucket = stack.wait_state("nobucket", "Failed")
    noprefix = stack.wait_state("noprefix", "Failed")
    stack.wait_state("cifar10", "Loaded", sha=spec(CIFAR10_V2).sha)
    stack.wait_state("second", "Loaded", sha=spec(CIFAR10_V2).sha)
    assert nobucket["message"].startswith("s3://no-such-bucket/torchscript/cifar10: bucket 'no-such-bucket' "
                                          "does not exist"), nobucket
    assert noprefix["message"].startswith(f"s3://{BUCKET}/torchscript/not-uploaded: no objects under"), noprefix
    assert stack.status()["cifar10"]["state"] == "Loaded" and stack.ready("cifar10") and stack.ready("second")
    # The learner fixes the bucket: the retrying add picks it up without a config change.
    client = connect(stack.s3)
    upload_folder(client, _standin(stack.root / "src" / "late", seed=0), "no-such-bucket", "torchscript/cifar10",
                  progress=False)
    stack.wait_state("nobucket", "Loaded", timeout=120)
    stack.write_config({"cifar10": CIFAR10_V2, "second": CIFAR10_V2})  # a remove supersedes the retrying add
    stack.wait_state("noprefix", "Unloaded")
    stack.wait_state("nobucket", "Unloaded")


def test_corrupt_model_fails_with_tritons_message(stack: Stack) -> None:
    stack.write_config({"cifar10": CIFAR10_V2, "second": CIFAR10_V2, "broken": BROKEN})
    entry = stack.wait_state("broken", "Failed")
    assert "not a loadable TorchScript file" in entry["message"], entry
    stack.wait_state("cifar10", "Loaded", sha=spec(CIFAR10_V2).sha)
    stack.wait_state("second", "Loaded", sha=spec(CIFAR10_V2).sha)
    assert "broken" in entry["message"]
    assert not stack.ready("broken")
    assert stack.ready("cifar10") and stack.infer("cifar10").shape == (1, 10)
    assert stack.status()["second"]["state"] == "Loaded"
    assert agent_log.timeline(stack.log_lines(), "broken")["failed"]


def test_agent_restart_downloads_nothing_again(stack: Stack) -> None:
    stack.write_config({"cifar10": CIFAR10_V2, "second": CIFAR10_V2})
    stack.wait_state("cifar10", "Loaded", sha=spec(CIFAR10_V2).sha)
    stack.wait_state("second", "Loaded", sha=spec(CIFAR10_V2).sha)
    assert stack.agent_record is not None
    t0 = time.monotonic()
    assert stop(stack.agent_record)
    stopped_in = time.monotonic() - t0
    assert stopped_in < 2.5, f"the agent took {stopped_in:.1f}s to stop on SIGTERM"
    assert stack.ready("cifar10") and stack.ready("second")  # Triton keeps serving while the agent is away
    (stack.model_dir / "leftover").mkdir()  # a folder without a marker: cleaned up at start
    stack.write_config({"cifar10": CIFAR10_V2})  # "second" is deleted while the agent is away
    offset = stack.start_agent()
    stack.wait_state("cifar10", "Loaded", sha=spec(CIFAR10_V2).sha)
    stack.wait_state("second", "Unloaded")
    messages = [(e["model"], e["msg"]) for e in stack.events(offset)]
    assert ("cifar10", "recovered model") in messages
    assert ("cifar10", "Model successFile exists already for") in messages
    assert not [m for m in messages if m[1] in ("Creating successFile", "Downloading objects")]
    assert not (stack.model_dir / "leftover").exists() and not (stack.model_dir / "second").exists()
    assert stack.ready("cifar10")
    poll_until(lambda: not stack.ready("second"), "second to leave Triton", timeout=15)


def test_triton_restart_reloads_from_disk(stack: Stack) -> None:
    stack.write_config({"cifar10": CIFAR10_V2})
    stack.wait_state("cifar10", "Loaded", sha=spec(CIFAR10_V2).sha)
    offset = stack.agent_log.stat().st_size
    stop(stack.triton_record)
    assert not stack.ready("cifar10")
    stack.start_triton()
    poll_until(lambda: stack.ready("cifar10"), "the agent to load cifar10 again", timeout=90)
    stack.wait_state("cifar10", "Loaded")
    messages = [e["msg"] for e in stack.events(offset)]
    assert "Triton restarted: reloading models from disk" in messages
    assert "Creating successFile" not in messages and "Downloading objects" not in messages
    assert stack.infer("cifar10").shape == (1, 10)


def test_downloader_lists_past_1000_objects_and_skips_directory_markers(stack: Stack, tmp_path: Path) -> None:
    client = connect(stack.s3)
    client.make_bucket("many")
    client.put_object("many", "model/empty-dir/", io.BytesIO(b""), 0)  # a directory marker, as consoles make
    from concurrent.futures import ThreadPoolExecutor

    def put(i: int) -> None:
        body = f"object {i}".encode()
        client.put_object("many", f"model/{i % 7}/part-{i:04d}.txt", io.BytesIO(body), len(body))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(1105)))
    out = io.StringIO()
    downloader = Downloader(tmp_path, stack.s3, Logger("test", out), workers=4)
    many = ModelSpec("s3://many/model", "triton", "")
    t0 = time.monotonic()
    assert downloader.download("many", many) is True
    elapsed = time.monotonic() - t0
    files = [p for p in (tmp_path / "many").rglob("*.txt")]
    assert len(files) == 1105, elapsed
    assert (tmp_path / "many" / "3" / "part-0003.txt").read_text() == "object 3"
    assert marker_path(tmp_path, "many", many).is_file()
    progress = [json.loads(line) for line in out.getvalue().splitlines() if "Download progress" in line]
    # rclone lists an empty "dir/" marker as a zero-byte object "dir" (no slash), so it counts here and
    # lands as an empty file; a real MinIO lists "dir/", which the downloader skips (unit-tested).
    assert progress[-1]["objects"] == "1106/1106"
    assert downloader.download("many", many) is False  # marker present: nothing fetched again
