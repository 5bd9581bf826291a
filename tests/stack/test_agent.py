"""The local model agent against a real S3 server and a real tritonserver, run as a subprocess.

One module-scoped bench (S3, Triton and the agent started as `support.parts.Parts`); the tests run in
order and build on each other's state, as a learner's session does (add, add more, remove, change,
break things, restart the agent, restart Triton).
"""
from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pytest

from helpers.clients import triton
from helpers.clients.storage import S3Settings, connect, upload_folder
from helpers.core.wait import poll_until
from helpers.local.agent.downloader import Downloader, marker_path
from helpers.local.agent.log import Logger
from helpers.local.agent.spec import ModelSpec
from helpers.local.agent.status import read_status
from helpers.local.stack import process, tritonserver
from helpers.steps.models import agent_log
from helpers.steps.models.standins import write_cifar10_standin
from support.parts import Parts

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
class AgentBench:
    """S3, Triton and the agent as separate parts, for tests that restart one of them."""

    parts: Parts
    s3: S3Settings
    triton_record: process.ProcessRecord
    agent_record: Optional[process.ProcessRecord] = None

    @property
    def root(self) -> Path:
        return self.parts.root

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
        """Triton again on its ports, as a restarted container keeps its pod's address."""
        self.triton_record = self.parts.triton(self.model_dir, on=self.triton_record.ports).record

    def start_agent(self, *options: str) -> float:
        """Start the agent (with `options`, e.g. --reload-lost-models); returns the log offset where this run's
        lines begin."""
        self.status_file.unlink(missing_ok=True)
        offset = self.agent_log.stat().st_size if self.agent_log.exists() else 0
        # What KServe's credential builder injects for s3_secret.yaml's annotations.
        env = {"AWS_ACCESS_KEY_ID": self.s3.access_key, "AWS_SECRET_ACCESS_KEY": self.s3.secret_key,
               "S3_ENDPOINT": self.s3.endpoint, "AWS_ENDPOINT_URL": f"http://{self.s3.endpoint}",
               "S3_USE_HTTPS": "0", "AWS_REGION": "us-east-1", "S3_USER_VIRTUAL_BUCKET": "false"}
        self.agent_record = self.parts.agent(config_dir=self.config_file.parent, model_dir=self.model_dir,
                                             triton_url=self.triton_url, status_file=self.status_file,
                                             log=self.agent_log, env=env, options=options)
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


def spec(uri: str) -> ModelSpec:
    return ModelSpec(uri, "pytorch", "100Mi")


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentBench]:
    with Parts(tmp_path_factory.mktemp("agent")) as parts:
        s3 = parts.s3().settings
        client = connect(s3)
        root = parts.root
        upload_folder(client, _standin(root / "src" / "cifar10", seed=0), BUCKET, "torchscript/cifar10", progress=False)
        upload_folder(client, _standin(root / "src" / "cifar10-v2", seed=1), BUCKET, "torchscript/cifar10-v2",
                      progress=False)
        broken = _standin(root / "src" / "broken", seed=0)
        (broken / "1" / "model.pt").write_bytes(b"this is not a TorchScript file")
        upload_folder(client, broken, BUCKET, "torchscript/broken", progress=False)
        bench = AgentBench(parts, s3, parts.triton(root / "models").record)
        bench.write_config({})
        bench.start_agent()
        yield bench


def test_add_cifar10_loads_it(bench: AgentBench) -> None:
    bench.write_config({"cifar10": CIFAR10})
    entry = bench.wait_state("cifar10", "Loaded")
    assert entry["sha"] == spec(CIFAR10).sha and entry["message"] == ""
    assert bench.ready("cifar10")
    marker = marker_path(bench.model_dir, "cifar10", spec(CIFAR10))
    assert json.loads(marker.read_text()) == spec(CIFAR10).to_json()
    assert (bench.model_dir / "cifar10" / "1" / "model.pt").is_file()
    # The release's prefix as written: `torchscript/cifar10` also lists `torchscript/cifar10-v2/`, whose files
    # land under `-v2/`; Triton skips a version folder that is not a number, so the model still loads.
    assert (bench.model_dir / "cifar10" / "-v2" / "1" / "model.pt").is_file()
    assert bench.infer("cifar10").shape == (1, 10)
    messages = [e["msg"] for e in bench.events() if e["model"] == "cifar10"]
    for expected in ("adding model", "worker is started for", "Downloading model", "Downloading to model dir",
                     "Creating successFile", "Successfully loaded model", "completion event for model"):
        assert expected in messages
    line = agent_log.timeline(bench.log_lines(), "cifar10")
    assert line["downloaded"] is True and 0 <= line["download_s"] <= line["load_s"]
    assert bench.s3.secret_key not in bench.agent_log.read_text()


def test_two_more_models_load_in_parallel(bench: AgentBench) -> None:
    bench.write_config({"cifar10": CIFAR10, "second": CIFAR10_V2, "third": CIFAR10})
    bench.wait_state("second", "Loaded")
    bench.wait_state("third", "Loaded")
    assert bench.ready("second") and bench.ready("third") and bench.ready("cifar10")
    events = bench.events()
    started = {e["model"]: e["ts"] for e in events if e["msg"] == "Downloading model" and e["model"] in ("second", "third")}
    loaded = {e["model"]: e["ts"] for e in events if e["msg"] == "Successfully loaded model"
              and e["model"] in ("second", "third")}
    # Both were under way at once, each in its model's worker: each began (its download) before the other
    # was loaded. Triton's own load of this model takes milliseconds, so its start alone can come after
    # the other's end even when the two run side by side.
    assert set(started) == {"second", "third"} and max(started.values()) < min(loaded.values()), (started, loaded)


def test_remove_unloads_and_deletes_the_folder(bench: AgentBench) -> None:
    bench.write_config({"cifar10": CIFAR10, "second": CIFAR10_V2, "third": CIFAR10})
    bench.wait_state("third", "Loaded", sha=spec(CIFAR10).sha)
    bench.write_config({"cifar10": CIFAR10, "second": CIFAR10_V2})
    bench.wait_state("third", "Unloaded")
    assert not (bench.model_dir / "third").exists()
    poll_until(lambda: not bench.ready("third"), "third to leave Triton", timeout=15)
    assert bench.ready("cifar10") and bench.ready("second")


def test_spec_change_reloads_the_new_files(bench: AgentBench) -> None:
    bench.write_config({"cifar10": CIFAR10, "second": CIFAR10_V2})
    bench.wait_state("cifar10", "Loaded", sha=spec(CIFAR10).sha)
    bench.wait_state("second", "Loaded", sha=spec(CIFAR10_V2).sha)
    before = bench.infer("cifar10")
    bench.write_config({"cifar10": CIFAR10_V2, "second": CIFAR10_V2})
    bench.wait_state("cifar10", "Loaded", sha=spec(CIFAR10_V2).sha)
    folder = bench.model_dir / "cifar10"
    assert [p.name for p in folder.glob("SUCCESS.*")] == [f"SUCCESS.{spec(CIFAR10_V2).sha}"]
    after = bench.infer("cifar10")
    assert not np.allclose(before, after)  # other weights: Triton serves the new files
    np.testing.assert_allclose(after, bench.infer("second"), rtol=1e-5)
    assert "unloading model" in [e["msg"] for e in bench.events() if e["model"] == "cifar10"]


def test_missing_bucket_and_prefix_fail_once_as_every_releases_agent(bench: AgentBench) -> None:
    """One attempt, logged in the Go agent's words; a fix in S3 is not picked up until the model is added again."""
    offset = bench.agent_log.stat().st_size
    bench.write_config({"cifar10": CIFAR10_V2, "second": CIFAR10_V2,
                        "nobucket": "s3://no-such-bucket/torchscript/cifar10",
                        "noprefix": f"s3://{BUCKET}/torchscript/not-uploaded"})
    nobucket = bench.wait_state("nobucket", "Failed")
    noprefix = bench.wait_state("noprefix", "Failed")
    bench.wait_state("cifar10", "Loaded", sha=spec(CIFAR10_V2).sha)
    bench.wait_state("second", "Loaded", sha=spec(CIFAR10_V2).sha)
    wrapped = "failed to download model: failed to download model: unable to get batch objects "
    assert wrapped in nobucket["message"] and "no-such-bucket" in nobucket["message"], nobucket
    assert noprefix["message"].startswith(f"s3://{BUCKET}/torchscript/not-uploaded: {wrapped}s3://{BUCKET}/"
                                          "torchscript/not-uploaded has no objects or does not exist"), noprefix
    assert bench.ready("cifar10") and bench.ready("second")
    client = connect(bench.s3)
    upload_folder(client, _standin(bench.root / "src" / "late", seed=0), "no-such-bucket", "torchscript/cifar10",
                  progress=False)
    time.sleep(3)  # the friendly agent's first retries come within 3 s
    assert bench.status()["nobucket"]["state"] == "Failed" and not bench.ready("nobucket")
    failed = [e["msg"] for e in bench.events(offset) if e["model"] == "nobucket" and e["msg"].startswith("Failed")]
    assert len(failed) == 1 and failed[0].startswith(f"Failed to download model nobucket with err {wrapped}"), failed
    # What a user does upstream: delete the TrainedModel and apply it again (a Remove, then an Add).
    bench.write_config({"cifar10": CIFAR10_V2, "second": CIFAR10_V2})
    bench.wait_state("nobucket", "Unloaded")
    bench.write_config({"cifar10": CIFAR10_V2, "second": CIFAR10_V2, "nobucket": "s3://no-such-bucket/torchscript/cifar10"})
    bench.wait_state("nobucket", "Loaded", timeout=120)
    bench.write_config({"cifar10": CIFAR10_V2, "second": CIFAR10_V2})
    bench.wait_state("noprefix", "Unloaded")
    bench.wait_state("nobucket", "Unloaded")


def test_the_friendly_agent_retries_until_the_bucket_is_there(bench: AgentBench) -> None:
    """`--friendly` (MMS_AGENT_FRIENDLY=1): a retrying add picks up the fix without a config change."""
    process.stop(bench.agent_record)
    bench.start_agent("--friendly")
    bench.write_config({"cifar10": CIFAR10_V2, "second": CIFAR10_V2, "later": "s3://later-bucket/torchscript/cifar10"})
    entry = bench.wait_state("later", "Failed")
    assert "(retry " in entry["message"] and "failed to download model" not in entry["message"], entry
    client = connect(bench.s3)
    upload_folder(client, _standin(bench.root / "src" / "later", seed=0), "later-bucket", "torchscript/cifar10",
                  progress=False)
    bench.wait_state("later", "Loaded", timeout=120)
    bench.write_config({"cifar10": CIFAR10_V2, "second": CIFAR10_V2})
    bench.wait_state("later", "Unloaded")
    process.stop(bench.agent_record)
    bench.start_agent()  # the release's agent again for the tests that follow


def test_corrupt_model_fails_with_tritons_message(bench: AgentBench) -> None:
    bench.write_config({"cifar10": CIFAR10_V2, "second": CIFAR10_V2, "broken": BROKEN})
    entry = bench.wait_state("broken", "Failed")
    assert "not a loadable TorchScript file" in entry["message"], entry
    bench.wait_state("cifar10", "Loaded", sha=spec(CIFAR10_V2).sha)
    bench.wait_state("second", "Loaded", sha=spec(CIFAR10_V2).sha)
    assert "broken" in entry["message"]
    assert not bench.ready("broken")
    assert bench.ready("cifar10") and bench.infer("cifar10").shape == (1, 10)
    assert bench.status()["second"]["state"] == "Loaded"
    assert agent_log.timeline(bench.log_lines(), "broken")["failed"]


def test_agent_restart_downloads_nothing_again(bench: AgentBench) -> None:
    bench.write_config({"cifar10": CIFAR10_V2, "second": CIFAR10_V2})
    bench.wait_state("cifar10", "Loaded", sha=spec(CIFAR10_V2).sha)
    bench.wait_state("second", "Loaded", sha=spec(CIFAR10_V2).sha)
    assert bench.agent_record is not None
    t0 = time.monotonic()
    assert process.stop(bench.agent_record)
    stopped_in = time.monotonic() - t0
    assert stopped_in < 2.5, f"the agent took {stopped_in:.1f}s to stop on SIGTERM"
    assert bench.ready("cifar10") and bench.ready("second")  # Triton keeps serving while the agent is away
    (bench.model_dir / "leftover").mkdir()  # a folder without a marker: cleaned up at start
    bench.write_config({"cifar10": CIFAR10_V2})  # "second" is deleted while the agent is away
    offset = bench.start_agent()
    bench.wait_state("cifar10", "Loaded", sha=spec(CIFAR10_V2).sha)
    bench.wait_state("second", "Unloaded")
    messages = [(e["model"], e["msg"]) for e in bench.events(offset)]
    assert ("cifar10", "recovered model") in messages
    assert ("cifar10", "Model successFile exists already for") in messages
    assert not [m for m in messages if m[1] in ("Creating successFile", "Downloading objects")]
    assert not (bench.model_dir / "leftover").exists() and not (bench.model_dir / "second").exists()
    assert bench.ready("cifar10")
    poll_until(lambda: not bench.ready("second"), "second to leave Triton", timeout=15)


def test_triton_restart_leaves_the_models_unloaded_as_every_releases_agent(bench: AgentBench) -> None:
    """No release's agent watches Triton: what a restarted Triton lost stays unloaded until the pod is
    replaced or the spec changes."""
    bench.write_config({"cifar10": CIFAR10_V2})
    bench.wait_state("cifar10", "Loaded", sha=spec(CIFAR10_V2).sha)
    offset = bench.agent_log.stat().st_size
    process.stop(bench.triton_record)
    bench.start_triton()
    deadline = time.monotonic() + 5.0  # more than three of the reloading agent's 1.5 s checks
    while time.monotonic() < deadline:
        assert not bench.ready("cifar10")
        time.sleep(0.5)
    assert bench.status()["cifar10"]["state"] == "Loaded"  # as far as the agent knows
    assert "Triton restarted: reloading models from disk" not in [e["msg"] for e in bench.events(offset)]


def test_triton_restart_reloads_from_disk_with_the_switch(bench: AgentBench) -> None:
    """`--reload-lost-models` (MMS_AGENT_RELOADS=1): the local agent loads them again, without downloading."""
    process.stop(bench.agent_record)
    bench.start_agent("--reload-lost-models")
    bench.write_config({"cifar10": CIFAR10_V2})
    bench.wait_state("cifar10", "Loaded", sha=spec(CIFAR10_V2).sha)
    offset = bench.agent_log.stat().st_size
    process.stop(bench.triton_record)
    assert not bench.ready("cifar10")
    bench.start_triton()
    poll_until(lambda: bench.ready("cifar10"), "the agent to load cifar10 again", timeout=90)
    bench.wait_state("cifar10", "Loaded")
    messages = [e["msg"] for e in bench.events(offset)]
    assert "Triton restarted: reloading models from disk" in messages
    assert "Creating successFile" not in messages and "Downloading objects" not in messages
    assert bench.infer("cifar10").shape == (1, 10)


def test_downloader_lists_past_1000_objects_and_skips_directory_markers(bench: AgentBench, tmp_path: Path) -> None:
    client = connect(bench.s3)
    client.make_bucket("many")
    client.put_object("many", "model/empty-dir/", io.BytesIO(b""), 0)  # a directory marker, as consoles make
    from concurrent.futures import ThreadPoolExecutor

    def put(i: int) -> None:
        body = f"object {i}".encode()
        client.put_object("many", f"model/{i % 7}/part-{i:04d}.txt", io.BytesIO(body), len(body))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(1105)))
    out = io.StringIO()
    downloader = Downloader(tmp_path, bench.s3, Logger("test", out), workers=4)
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
