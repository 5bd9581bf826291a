"""Downloader: copies every object under a model's `s3://bucket/prefix` into `<model-dir>/<name>/`.

Then it writes the marker `SUCCESS.<sha256 of the spec>` last, with the spec in it, as KServe's
downloader does; a model whose marker is there already is not downloaded again. Unlike
KFServing 0.5 it lists past 1000 keys (minio's `list_objects` follows the continuation
token) and ignores directory-marker objects (keys ending in "/").
"""
from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path, PurePosixPath
from typing import Optional, Union

from minio import Minio

from helpers.clients.storage import S3Settings, StorageError, connect, list_objects, parse_s3_uri, s3_errors
from helpers.core.constants import SUCCESS_MARKER_PREFIX
from helpers.local.agent.log import Logger
from helpers.local.agent.s3config import AgentS3, bucket_settings
from helpers.local.agent.spec import ModelSpec


class Cancelled(Exception):
    """The agent is stopping: the download was abandoned (no marker written)."""


def marker_path(model_dir: Path, name: str, spec: ModelSpec) -> Path:
    """Where the `SUCCESS.<sha>` marker of `spec` lives for model `name`."""
    return Path(model_dir) / name / f"{SUCCESS_MARKER_PREFIX}{spec.sha}"


def _relative(key: str, base: str) -> PurePosixPath:
    relative = PurePosixPath(key[len(base):].lstrip("/") if base else key)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise StorageError(f"object key {key!r} would be written outside the model folder",
                           "rename the object so its key stays under the model's prefix")
    return relative


class Downloader:
    """Fetches models from S3 with a small thread pool, logging progress."""

    def __init__(self, model_dir: Path, s3: Union[S3Settings, AgentS3], log: Logger, workers: int = 4,
                 stop: Optional[threading.Event] = None, progress_every: float = 1.0) -> None:
        self.model_dir = Path(model_dir)
        self.s3 = s3
        self.log = log.named("Downloader")
        self.workers = workers
        self.stop = stop or threading.Event()
        self.progress_every = progress_every
        self._clients: dict[str, Minio] = {}

    def _client(self, bucket: str) -> Minio:
        """One client per bucket: with virtual-host addressing each bucket is its own host."""
        if bucket not in self._clients:
            self._clients[bucket] = connect(bucket_settings(self.s3, bucket))
        return self._clients[bucket]

    def download(self, name: str, spec: ModelSpec) -> bool:
        """Make `<model-dir>/<name>` hold `spec`'s files and marker. False if the marker was there already.

        Raises StorageError (S3's reason, naming the URI) or Cancelled.
        """
        marker = marker_path(self.model_dir, name, spec)
        self.log.info("Downloading to model dir", modelName=name, modelUri=spec.storage_uri,
                      modelDir=str(self.model_dir))
        if marker.is_file():
            self.log.info("Model successFile exists already for", modelName=name, successFile=str(marker))
            return False
        folder = self.model_dir / name
        if folder.exists():
            # Another spec's files, or a download cut short: start from an empty folder.
            self.log.info("Removing stale model dir", modelName=name, modelDir=str(folder))
            shutil.rmtree(folder)
        bucket, prefix = parse_s3_uri(spec.storage_uri)
        objects = list_objects(self._client(bucket), bucket, prefix)
        if not objects:
            raise StorageError(f"no objects under {spec.storage_uri} on {self.s3.endpoint}",
                               "upload the model there first (e.g. `mc cp -r <folder> myminio/<bucket>/<prefix>`), "
                               "or fix the TrainedModel's storageUri")
        self._fetch_all(name, bucket, prefix, objects, folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(f".{marker.name}.tmp")
        tmp.write_text(spec.canonical())
        tmp.replace(marker)
        self.log.info("Creating successFile", modelName=name, successFile=str(marker))
        return True

    def _fetch_all(self, name: str, bucket: str, prefix: str, objects: list[tuple[str, int]], folder: Path) -> None:
        total_bytes = sum(size for _, size in objects)
        done = {"objects": 0, "bytes": 0}
        lock = threading.Lock()
        last_report = [time.monotonic()]

        def fetch(key: str, size: int) -> None:
            if self.stop.is_set():
                raise Cancelled()
            target = folder / _relative(key, prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            client = self._client(bucket)
            with s3_errors(client, bucket, key):
                client.fget_object(bucket, key, str(target))
            with lock:
                done["objects"] += 1
                done["bytes"] += size
                now = time.monotonic()
                if now - last_report[0] >= self.progress_every:
                    last_report[0] = now
                    self._progress(name, done, len(objects), total_bytes)

        # A top-level object named like the marker would fake (or clobber) it.
        fakes = [key for key, _ in objects if str(_relative(key, prefix)).startswith(SUCCESS_MARKER_PREFIX)]
        if fakes:
            self.log.warn("Ignoring objects named like the success marker", modelName=name, keys=fakes)
            objects = [(key, size) for key, size in objects if key not in fakes]
            total_bytes = sum(size for _, size in objects)
        self.log.info("Downloading objects", modelName=name, objects=len(objects), bytes=total_bytes)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=f"dl-{name}") as pool:
            futures = [pool.submit(fetch, key, size) for key, size in objects]
            finished, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in finished:
                error = future.exception()
                if error is not None:
                    raise error
        self._progress(name, done, len(objects), total_bytes)

    def _progress(self, name: str, done: dict, objects: int, total_bytes: int) -> None:
        self.log.info("Download progress", modelName=name, objects=f"{done['objects']}/{objects}",
                      bytes=f"{done['bytes']}/{total_bytes}")
