"""Downloader: copies every object under a model's `s3://bucket/prefix` into `<model-dir>/<name>/`.

Then it writes the marker `SUCCESS.<sha256 of the spec>` last, with the spec in it, as KServe's
downloader does; a model whose marker is there already is not downloaded again.

How it lists is the release's (`release.Behaviour`): one ListObjects (v1) page of at most 1000 keys
with the prefix as written, a directory-marker key made an empty file on KFServing 0.5.1 (whose agent
also panics without an S3 endpoint), errors worded as the Go agent wraps them. The friendly agent
follows every page, reads the prefix as a folder and skips markers.
"""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import Callable, Optional, Union
from urllib.parse import quote

from minio import Minio
from minio.error import S3Error

from helpers.clients.storage import S3Settings, StorageError, connect, list_objects, parse_s3_uri, s3_errors
from helpers.core.constants import SUCCESS_MARKER_PREFIX
from helpers.local.agent.log import Logger
from helpers.local.agent.release import FRIENDLY, Behaviour
from helpers.local.agent.s3config import AgentS3, bucket_settings
from helpers.local.agent.spec import ModelSpec

PAGE = 1000  # S3's default MaxKeys: what one ListObjects call answers at most
# What to do when the listing was refused before the pod's Istio proxy listened (kserve/kserve#1370).
SIDECAR_FIX = ("the pod's Istio sidecar was not up yet: annotate the InferenceService "
               "proxy.istio.io/config: '{\"holdApplicationUntilProxyStarts\": true}' and re-create it; until then "
               "delete and re-apply the TrainedModel")
Item = tuple[str, int, Path]  # (key, size, file it goes to)


class Cancelled(Exception):
    """The agent is stopping: the download was abandoned (no marker written)."""


def marker_path(model_dir: Path, name: str, spec: ModelSpec) -> Path:
    """Where the `SUCCESS.<sha>` marker of `spec` lives for model `name`."""
    return Path(model_dir) / name / f"{SUCCESS_MARKER_PREFIX}{spec.sha}"


def go_wrap(inner: str) -> str:
    """A listing or download error as the Go agent's puller logs it: `DownloadModel` and `download` each
    wrap it in "failed to download model" (kf v0.5.1, ks v0.15.2 `pkg/agent/downloader.go`)."""
    return f"failed to download model: failed to download model: {inner}"


def aws_text(exc: S3Error) -> str:
    """An S3 error as aws-sdk-go's awserr prints it."""
    status = getattr(getattr(exc, "response", None), "status", "") or ""
    return (f"{exc.code}: {exc.message}\n\tstatus code: {status}, request id: {getattr(exc, '_request_id', '') or ''}, "
            f"host id: {getattr(exc, '_host_id', '') or ''}")


def _go_mkdir_all(path: Path) -> Optional[str]:
    """Go's os.MkdirAll: None, or its error (`mkdir <the file in the way>: not a directory`)."""
    if path.is_dir():
        return None
    if path.exists():
        return f"mkdir {path}: not a directory"
    if path.parent != path:
        error = _go_mkdir_all(path.parent)
        if error:
            return error
    try:
        path.mkdir()
    except OSError as exc:
        return None if path.is_dir() else f"mkdir {path}: {(exc.strerror or str(exc)).lower()}"
    return None


def _go_create(target: Path) -> Optional[str]:
    """storage.Create after FileExists/os.Remove, as GetAllObjects makes each file before downloading."""
    if target.is_file():
        target.unlink()
    error = _go_mkdir_all(target.parent)
    if error:
        return error
    try:
        open(target, "wb").close()
    except OSError as exc:
        return f"open {target}: {(exc.strerror or str(exc)).lower()}"
    return None


def _go_join(folder: Path, sub_key: str) -> Path:
    """filepath.Join(modelDir, modelName, subObjectKey): joined and cleaned ("/" -> the folder itself)."""
    joined = Path(os.path.normpath(os.path.join(str(folder), sub_key.lstrip("/"))))
    if joined != folder and folder not in joined.parents:
        # Go would write there; the local agent refuses to write outside the model folder.
        raise StorageError(f"object key {sub_key!r} would be written outside the model folder",
                           "rename the object so its key stays under the model's prefix")
    return joined


def panic_text(behaviour: Behaviour) -> str:
    """What the Go runtime prints when the agent calls DownloadModel on its nil S3 provider (kserve/kserve#1317)."""
    module = behaviour.go_module
    return ("panic: runtime error: invalid memory address or nil pointer dereference\n"
            "[signal SIGSEGV: segmentation violation code=0x1 addr=0x18 pc=0x0]\n\n"
            "goroutine 1 [running]:\n"
            f"{module}/pkg/agent.(*Downloader).download(...)\n\t/go/src/{module}/pkg/agent/downloader.go:86\n"
            f"{module}/pkg/agent.(*Downloader).DownloadModel(...)\n\t/go/src/{module}/pkg/agent/downloader.go:51\n"
            f"{module}/pkg/agent.(*Puller).modelProcessor(...)\n\t/go/src/{module}/pkg/agent/puller.go:130\n"
            f"created by {module}/pkg/agent.(*Puller).enqueueModelOp\n\t/go/src/{module}/pkg/agent/puller.go:89\n")


def _exit_like_go(text: str) -> None:
    """A Go panic ends the process: stderr gets the trace, the exit status is 2."""
    sys.stdout.flush()
    sys.stderr.write(text)
    sys.stderr.flush()
    os._exit(2)


def _relative(key: str, base: str) -> PurePosixPath:
    relative = PurePosixPath(key[len(base):].lstrip("/") if base else key)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise StorageError(f"object key {key!r} would be written outside the model folder",
                           "rename the object so its key stays under the model's prefix")
    return relative


class Downloader:
    """Fetches models from S3 with a small thread pool, logging progress."""

    def __init__(self, model_dir: Path, s3: Union[S3Settings, AgentS3], log: Logger, workers: int = 4,
                 stop: Optional[threading.Event] = None, progress_every: float = 1.0,
                 behaviour: Behaviour = FRIENDLY, crash: Callable[[str], None] = _exit_like_go) -> None:
        self.model_dir = Path(model_dir)
        self.behaviour = behaviour
        self.crash = crash  # how a Go panic ends the agent (tests catch it instead)
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

    def _refused(self, bucket: str, prefix: str) -> Optional[str]:
        """The listing's refusal while the pod's Istio proxy does not listen yet (None otherwise): aws-sdk-go's
        ListObjects GET, path-style or virtual-host as the agent addresses the bucket."""
        if not isinstance(self.s3, AgentS3):
            return None
        scheme = "https" if self.s3.endpoint_url.startswith("https://") else "http"
        query = f"?prefix={quote(prefix, safe='')}" if prefix else ""
        url = f"{scheme}://{bucket}.{self.s3.endpoint}/{query}" if self.s3.virtual_host \
            else f"{scheme}://{self.s3.endpoint}/{bucket}{query}"
        return self.s3.refused(url)

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
        # A file here is what a directory-marker key made of the folder (KFServing 0.5.1): it stays, as it
        # does in the pod, until the listing's first Create removes it or fails on it.
        if folder.is_dir() and not folder.is_symlink():
            # Another spec's files, or a download cut short: start from an empty folder.
            self.log.info("Removing stale model dir", modelName=name, modelDir=str(folder))
            shutil.rmtree(folder)
        if self.behaviour.panic_without_endpoint and isinstance(self.s3, AgentS3) and not self.s3.endpoint_url:
            # KFServing 0.5.1's GetProvider makes no S3 provider without AWS_ENDPOINT_URL and returns nil.
            self.crash(panic_text(self.behaviour))
        if self.behaviour.prefix_as_folder:
            items = self._list_folder(spec, folder)
        else:
            items = self._list_as_released(spec, folder)
        bucket = spec.storage_uri[len("s3://"):].partition("/")[0]
        self._fetch_all(name, bucket, items, folder)
        error = _go_mkdir_all(folder)
        if error:
            raise StorageError(f"failed to create success file: {error}",
                               "the storageUri names a single object: point it at the model's folder")
        tmp = marker.with_name(f".{marker.name}.tmp")
        tmp.write_text(spec.canonical())
        tmp.replace(marker)
        self.log.info("Creating successFile", modelName=name, successFile=str(marker))
        return True

    def _list_folder(self, spec: ModelSpec, folder: Path) -> list[Item]:
        """The friendly listing: every page, the prefix read as a folder, directory markers left out."""
        bucket, prefix = parse_s3_uri(spec.storage_uri)
        client = self._client(bucket)
        refused = self._refused(bucket, prefix)
        if refused:
            raise StorageError(refused, SIDECAR_FIX)
        objects = list_objects(client, bucket, prefix)
        if not objects:
            raise StorageError(f"no objects under {spec.storage_uri} on {self.s3.endpoint}",
                               "upload the model there first (e.g. `mc cp -r <folder> myminio/<bucket>/<prefix>`), "
                               "or fix the TrainedModel's storageUri")
        return [(key, size, folder / _relative(key, prefix)) for key, size in objects]

    def _list_as_released(self, spec: ModelSpec, folder: Path) -> list[Item]:
        """`GetAllObjects` as the release has it: one ListObjects (v1) page with the prefix as written,
        each file made before any download; errors in the Go agent's words."""
        uri = spec.storage_uri
        if not uri.startswith("s3://"):
            raise StorageError(f"unsupported protocol: protocol not supported for storageUri {uri!r}",
                               "write it as s3://<bucket>/<path>")
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        try:
            client = self._client(bucket)
        except StorageError as exc:  # no region, a bucket host that does not resolve: the call fails in Go
            raise StorageError(go_wrap(f"unable to get batch objects {exc.cause}"), exc.fix) from None
        refused = self._refused(bucket, prefix)
        if refused:
            raise StorageError(go_wrap(f"unable to get batch objects {refused}"), SIDECAR_FIX) from None
        fix = ("upload the model there first (e.g. `mc cp -r <folder> myminio/<bucket>/<prefix>`), or fix the "
               "TrainedModel's storageUri")
        said = ""  # the S3 error as aws-sdk-go prints it, when the server answered one
        try:
            with s3_errors(client, bucket):
                try:
                    listing = client.list_objects(bucket, prefix=prefix, recursive=True, use_api_v1=True)
                    page = [(o.object_name, o.size or 0)
                            for o in (listing if self.behaviour.all_pages else islice(listing, PAGE))]
                except S3Error as exc:
                    said = aws_text(exc)
                    raise
        except StorageError as exc:
            raise StorageError(go_wrap(f"unable to get batch objects {said or exc.cause}"), exc.fix) from None
        items: list[Item] = []
        for key, size in page:
            if key.endswith("/") and not self.behaviour.markers_as_files:
                continue  # KServe >= 0.7 skips directory markers
            target = _go_join(folder, key[len(prefix):] if key.startswith(prefix) else key)
            error = _go_create(target)
            if error:
                raise StorageError(go_wrap(f"unable to get batch objects file is already created: {error}"),
                                   "this agent makes a file of each directory-marker object (a key ending in /): "
                                   "delete those keys under the prefix, then delete and re-apply the TrainedModel; "
                                   "if the marker was the model folder's own (<prefix>/), replace the server's pod too")
            items.append((key, size, target))
        if not items:
            raise StorageError(go_wrap(f"unable to get batch objects {uri} has no objects or does not exist"), fix)
        return items

    def fetch(self, name: str, bucket: str, items: list[Item], folder: Path) -> None:
        """Fetch `items` ((key, size, file)) of `bucket` into `folder` in parallel, with no marker: what
        the storage initializer (`helpers.local.initializer`) copies, listed by its own rules."""
        self._fetch_all(name, bucket, items, folder)

    def _fetch_all(self, name: str, bucket: str, items: list[Item], folder: Path) -> None:
        total_bytes = sum(size for _, size, _ in items)
        done = {"objects": 0, "bytes": 0}
        lock = threading.Lock()
        last_report = [time.monotonic()]

        def fetch(key: str, size: int, target: Path) -> None:
            if self.stop.is_set():
                raise Cancelled()
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
                    self._progress(name, done, len(items), total_bytes)

        # A top-level object named like the marker would fake (or clobber) it.
        fakes = [key for key, _, target in items
                 if target.parent == folder and target.name.startswith(SUCCESS_MARKER_PREFIX)]
        if fakes:
            self.log.warn("Ignoring objects named like the success marker", modelName=name, keys=fakes)
            items = [item for item in items if item[0] not in fakes]
            total_bytes = sum(size for _, size, _ in items)
        self.log.info("Downloading objects", modelName=name, objects=len(items), bytes=total_bytes)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=f"dl-{name}") as pool:
            futures = [pool.submit(fetch, key, size, target) for key, size, target in items]
            finished, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in finished:
                error = future.exception()
                if error is not None:
                    if isinstance(error, StorageError) and not self.behaviour.prefix_as_folder:
                        raise StorageError(go_wrap(error.cause), error.fix) from None
                    raise error
        self._progress(name, done, len(items), total_bytes)

    def _progress(self, name: str, done: dict, objects: int, total_bytes: int) -> None:
        self.log.info("Download progress", modelName=name, objects=f"{done['objects']}/{objects}",
                      bytes=f"{done['bytes']}/{total_bytes}")
