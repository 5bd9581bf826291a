"""The local model agent: KServe's agent contract, one role per module.

watcher (models.json -> operations), puller (operations in order per model; with `reload_lost`,
which no release's agent has, also what a restarted Triton lost),
downloader (S3 -> model folder + `SUCCESS.<sha>` marker), syncer (state from markers at start),
release (what the stack's release does where the friendly agent does more),
status (the file the local controller turns into TrainedModel status), log (KServe-shaped JSON
lines). `run` wires them; `python -m helpers.local.agent` runs it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from helpers.clients.storage import S3Settings
from helpers.core.constants import MODEL_CONFIG_FILE
from helpers.local.agent.downloader import Downloader
from helpers.local.agent.log import Logger
from helpers.local.agent.puller import Backoff, Puller
from helpers.local.agent.release import RELEASES, Behaviour
from helpers.local.agent.s3config import AgentS3
from helpers.local.agent.spec import ConfigError, Op
from helpers.local.agent.status import StatusFile
from helpers.local.agent.syncer import sync
from helpers.local.agent.triton import TritonServer
from helpers.local.agent.watcher import Watcher, read_config


@dataclass(frozen=True)
class Settings:
    """Where the agent reads its config, keeps models, finds Triton and S3, and writes status."""

    config_dir: Path
    model_dir: Path
    triton_url: str
    status_file: Path
    s3: Union[S3Settings, AgentS3]
    resync_interval: float = 10.0  # the safety net: inotify wakes the watcher at once
    check_interval: float = 1.5
    # Load again what a restarted Triton lost. No release's agent does (KFServing 0.5.1 and KServe
    # 0.14-0.15 `pkg/agent`: loads happen on models.json events and at the pod's start only); the
    # switch is for benchmarks and `MMS_AGENT_RELOADS=1`.
    reload_lost: bool = False
    backoff: Backoff = Backoff(first=1.0, cap=30.0)
    download_workers: int = 4
    # What the release's agent does (one attempt, one listing page, the raw prefix, ...); the
    # friendly one only with `--friendly` (MMS_AGENT_FRIENDLY=1), for benchmarks.
    behaviour: Behaviour = RELEASES["v0.15.2"]


def run(settings: Settings, stop: threading.Event, log: Optional[Logger] = None) -> None:
    """Run the agent until `stop` is set."""
    log = log or Logger("modelAgent")
    log.named("modelAgent").info("Starting agent", configDir=str(settings.config_dir),
                                 modelDir=str(settings.model_dir), tritonUrl=settings.triton_url,
                                 s3Endpoint=settings.s3.endpoint, statusFile=str(settings.status_file),
                                 release=settings.behaviour.release, friendly=settings.behaviour.friendly)
    settings.model_dir.mkdir(parents=True, exist_ok=True)
    try:
        desired = read_config(settings.config_dir / MODEL_CONFIG_FILE)
        decisions = sync(settings.model_dir, desired, log)
    except ConfigError as exc:
        # An unreadable config must not delete downloaded models: skip the clean-up this once.
        log.named("Syncer").error("Failed to sync model dir", error=str(exc))
        desired, decisions = {}, {}
    status = StatusFile(settings.status_file)
    status.write()
    downloader = Downloader(settings.model_dir, settings.s3, log, settings.download_workers, stop,
                            behaviour=settings.behaviour)
    puller = Puller(downloader, TritonServer(settings.triton_url), status, log,
                    settings.backoff, settings.check_interval, settings.reload_lost, settings.behaviour)
    watcher = Watcher(settings.config_dir, puller.enqueue, log, settings.resync_interval)
    puller.start()
    for name in sorted(n for n, decision in decisions.items() if decision == "unload"):
        puller.enqueue(Op("remove", name))  # removed while the agent was away; Triton may still serve it
    watcher.start()
    # Wake now and then: SIGTERM may land in another thread, and Python runs its handler (which sets
    # `stop`) only when the main thread wakes; a plain `stop.wait()` then slept through it until SIGKILL.
    while not stop.wait(0.5):
        pass
    log.named("modelAgent").info("Stopping agent")
    watcher.stop()
    puller.stop()
