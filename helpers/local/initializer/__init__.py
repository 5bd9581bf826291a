"""The storage-initializer init container: copies an InferenceService's `storageUri` into the pod's
`/mnt/models` before its server starts, as KServe's does (`python/storage-initializer/scripts/
initializer-entrypoint SRC DEST` -> `Storage.download`, kfserving v0.5.1 and kserve v0.14.1-v0.15.2).

Its S3 settings come from the env the credential builder gave the init container, the same
Secret / service account path as the model agent's (`controller/servers.py`); its files are fetched
by the agent's `Downloader`. What it lists, what it logs and how it fails are the release's:

- KServe v0.14.1-v0.15.2 (boto3, `storage.py _download_s3`): every page of `ListObjects` with the
  prefix as written, so `s3://b/models` also takes `models-old/...` (landing in `-old/`); keys ending
  in "/" skipped; a key equal to the prefix is copied alone, under its last name. v0.15 strips the
  prefix with `re.sub("^<prefix>/?", "")`; v0.14.1 removes every occurrence of it and flattens a key
  whose file name starts with the prefix's last part. Path-style addressing unless
  `S3_USER_VIRTUAL_BUCKET` is "true"; the region (`AWS_DEFAULT_REGION`) is optional. It logs one
  line a step in KServe's format (`kserve/logging.py`): `Initializing, args: ...`, `Copying contents
  of ...`, one `Downloaded object <key> to <file>` per file, `Successfully copied ...` and `Model
  downloaded in <s> seconds.`. Nothing found: `RuntimeError: Failed to fetch model. No model found
  in <prefix>.`.
- KFServing v0.5.1 (minio-py 6, `storage.py _download_s3`): every page, each key with the first
  occurrence of the prefix removed and "/" stripped (a key equal to the prefix keeps its full name);
  path-style addressing; the region from `AWS_REGION`. It logs nothing on success (its
  `logging.info` goes to an unconfigured root logger); nothing found: `RuntimeError: Failed to fetch
  model. The path or model <uri> does not exist.`.

A failure ends the process with exit code 1 and, on stderr, the traceback a learner finds with
`kubectl logs <pod> -c storage-initializer`: its frames in the image's files (line numbers at the
tag; frames inside boto3 or minio are left out) and the library's own last line
(`botocore.errorfactory.NoSuchBucket: An error occurred (NoSuchBucket) when calling the ListObjects
operation: ...`, `minio.error.NoSuchBucket: NoSuchBucket: message: The specified bucket does not
exist.`). The pod then shows Init:Error, and Init:CrashLoopBackOff while the kubelet (the local
controller) waits to run it again. `python -m helpers.local.initializer` runs it.
"""
from __future__ import annotations

import http
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, TextIO
from urllib.parse import urlparse
from xml.etree import ElementTree

import urllib3
from minio.error import InvalidResponseError, S3Error

from helpers.clients.storage import S3Settings, StorageError, connect
from helpers.core.constants import MODEL_DIR
from helpers.local.agent.downloader import Downloader
from helpers.local.agent.log import Logger
from helpers.local.agent.release import FRIENDLY

CONTAINER = "storage-initializer"
Resolver = Callable[[str], str]


@dataclass(frozen=True)
class Release:
    """Where the storage initializer of one release differs (see the module's docstring)."""

    tag: str

    @property
    def kserve(self) -> bool:
        return not self.tag.startswith("v0.5")

    @property
    def region_env(self) -> str:
        return "AWS_DEFAULT_REGION" if self.kserve else "AWS_REGION"

    def line(self, name: str) -> int:
        """The line number of a statement in the release's files, for log lines and tracebacks."""
        return _LINES["v0.14.1" if self.tag == "v0.14.1" else "kserve" if self.kserve else "v0.5.1"][name]


# Line numbers read at each tag (entrypoint: python/storage-initializer/scripts/initializer-entrypoint;
# the rest: kserve/storage/storage.py, kfserving/storage.py).
_LINES = {
    "kserve": {"entry-log": 16, "entry-download": 17, "download-s3": 91, "copying": 64, "copied": 110,
               "took": 111, "list": 242, "downloaded": 274, "none": 281},
    "v0.14.1": {"entry-log": 16, "entry-download": 17, "download-s3": 91, "copying": 64, "copied": 110,
                "took": 111, "list": 231, "downloaded": 268, "none": 275},
    "v0.5.1": {"entry-download": 14, "download-s3": 62, "list": 89, "none": 100},
}


class InitializerError(Exception):
    """What ends the initializer: `where` names the frame that raised, `text` is the exception's last line."""

    def __init__(self, where: str, text: str) -> None:
        super().__init__(text)
        self.where = where
        self.text = text


# --- what gets copied where (pure) -----------------------------------------------------------
def split_uri(release: Release, uri: str) -> tuple[str, str]:
    """(bucket, prefix) as the release's `_download_s3` splits `s3://bucket/prefix`."""
    if release.kserve:
        parsed = urlparse(uri, scheme="s3")
        return parsed.netloc, parsed.path.lstrip("/")
    parts = uri.replace("s3://", "", 1).split("/", 1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def plan(release: Release, prefix: str, keys: list[str]) -> list[tuple[str, str]]:
    """(key, file under the destination) of each object the release copies from a listing of `prefix`.

    `keys` are the listing's keys in order. Raises InitializerError when the release finds nothing.
    """
    if not release.kserve:
        found = [(key, key.replace(prefix, "", 1).strip("/") or key) for key in keys if not key.endswith("/")]
        if not keys:  # directory markers count as found (`count` grows for them too)
            raise InitializerError("none", "")
        return found
    copied: list[tuple[str, str]] = []
    last_part = prefix.split("/")[-1]
    for key in keys:
        if key.endswith("/"):
            continue
        if key == prefix:
            copied.append((key, key.rsplit("/", 1)[-1]))
            break
        if release.tag == "v0.14.1":
            name = key.split("/")[-1]
            target = name if last_part and name.startswith(last_part) else key.replace(prefix, "").lstrip("/")
        else:
            target = re.sub(r"^" + re.escape(prefix) + r"/?", "", key)
        copied.append((key, target))
    if not copied:
        raise InitializerError("none", "")
    return copied


def nothing_found(release: Release, uri: str, prefix: str) -> str:
    """The RuntimeError's last line when the listing gave nothing to copy."""
    if release.kserve:
        return f"RuntimeError: Failed to fetch model. No model found in {prefix}."
    return f"RuntimeError: Failed to fetch model. The path or model {uri} does not exist."


# The messages minio-py 6 gives its known S3 errors (minio/error.py at 6.0.2); others print as ResponseError.
_MINIO6_MESSAGES = {
    "NoSuchBucket": "The specified bucket does not exist.",
    "AccessDenied": "Access Denied",
    "InvalidAccessKeyId": "The access key Id you provided does not exist in our records.",
    "SignatureDoesNotMatch": "The request signature we calculated does not match the signature you provided.",
    "NoSuchKey": "The specified key does not exist.",
}


def s3_error_line(release: Release, code: str, message: str, status: int, bucket: str) -> str:
    """A failed `ListObjects` as the release's S3 library prints it (the traceback's last line).

    `code`/`message` are the server's (empty when its body could not be read: then the HTTP status).
    """
    if release.kserve:
        if not code:  # botocore's generic parsing: the status and its reason phrase
            code, message = str(status), _phrase(status)
        kind = "botocore.errorfactory.NoSuchBucket" if code == "NoSuchBucket" else "botocore.exceptions.ClientError"
        return f"{kind}: An error occurred ({code}) when calling the ListObjects operation: {message}"
    if not code:  # minio-py 6 names an empty-bodied answer by its status
        code = {404: "NoSuchBucket", 403: "AccessDenied"}.get(status, "")
    if code in _MINIO6_MESSAGES:
        return f"minio.error.{code}: {code}: message: {_MINIO6_MESSAGES[code]}"
    return (f"minio.error.ResponseError: ResponseError: code: {code}, message: {message}, bucket_name: {bucket}, "
            "object_name: None, request_id: , host_id: , region: ")


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def traceback_text(release: Release, error: InitializerError) -> str:
    """The uncaught exception's traceback as the release's image prints it (library frames left out)."""
    if release.kserve:
        entry, storage = "/storage-initializer/scripts/initializer-entrypoint", "/kserve/kserve/storage/storage.py"
        frames = [(entry, release.line("entry-download"), "<module>", "Storage.download(src_uri, dest_path)"),
                  (storage, release.line("download-s3"), "download", "model_dir = Storage._download_s3(uri, out_dir)")]
        last = {"list": "for obj in bucket.objects.filter(Prefix=bucket_path):", "none": "raise RuntimeError("}
    else:
        entry, storage = ("/storage-initializer/scripts/initializer-entrypoint",
                          "/usr/local/lib/python3.7/site-packages/kfserving/storage.py")
        frames = [(entry, release.line("entry-download"), "<module>", "kfserving.Storage.download(src_uri, dest_path)"),
                  (storage, release.line("download-s3"), "download", "Storage._download_s3(uri, out_dir)")]
        last = {"list": "for obj in objects:", "none": 'raise RuntimeError("Failed to fetch model. \\'}
    if error.where in last:
        frames.append((storage, release.line(error.where), "_download_s3", last[error.where]))
    lines = ["Traceback (most recent call last):"]
    for path, number, function, code in frames:
        lines += [f'  File "{path}", line {number}, in {function}', f"    {code}"]
    return "\n".join(lines + [error.text]) + "\n"


# --- the copy ---------------------------------------------------------------------------------
class Output:
    """The container's stdout: KServe's log lines (none on KFServing 0.5.1, whose root logger is unset)."""

    def __init__(self, release: Release, stream: TextIO, clock: Callable[[], float] = time.time) -> None:
        self.release = release
        self.stream = stream
        self.clock = clock

    def info(self, where: str, function: str, line: str, message: str) -> None:
        """One line from `function` of file `where` at the statement named `line` (see `Release.line`)."""
        if not self.release.kserve:
            return
        number = self.release.line(line)
        now = self.clock()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"
        # PID 1: the entrypoint is the container's first process.
        self.stream.write(f"{stamp} 1 kserve INFO [{where}:{function}():{number}] {message}\n")
        self.stream.flush()


def s3_settings(release: Release, env: Mapping[str, str], bucket: str, resolve: Optional[Resolver]) -> S3Settings:
    """The S3 client the release's initializer makes from its env (endpoint, keys, region, addressing)."""
    default = "https://s3.amazonaws.com" if release.kserve else "http://s3.amazonaws.com"
    url = urlparse(env.get("AWS_ENDPOINT_URL") or default)
    secure = url.scheme == "https" if url.scheme else bool(env.get("S3_USE_HTTPS", "true"))
    host = url.netloc or url.path
    if release.kserve and env.get("S3_USER_VIRTUAL_BUCKET", "false").lower() == "true":
        host = f"{bucket}.{host}"
    address = resolve(host) if resolve else host
    # boto3 signs for us-east-1 without a region; minio-py probes the bucket's location, which the
    # local S3 server cannot answer: give both the region they end up signing for.
    region = env.get(release.region_env) or "us-east-1"
    return S3Settings(address, env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", ""), secure, region)


def error_body(body: str) -> tuple[str, str]:
    """(Code, Message) of an S3 error body, ("", "") if it holds none."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return "", ""
    return (root.findtext("Code") or "").strip(), (root.findtext("Message") or "").strip()


def _connection_line(release: Release, settings: S3Settings, bucket: str, prefix: str, exc: Exception) -> str:
    if release.kserve:
        scheme = "https" if settings.secure else "http"
        return (f'botocore.exceptions.EndpointConnectionError: Could not connect to the endpoint URL: '
                f'"{scheme}://{settings.endpoint}/{bucket}?prefix={prefix}&encoding-type=url"')
    return f"urllib3.exceptions.{type(exc).__name__}: {exc}"


def list_keys(release: Release, settings: S3Settings, bucket: str, prefix: str) -> list[str]:
    """Every key under `prefix` (all pages of ListObjects v1, as both libraries page), or InitializerError."""
    try:
        client = connect(settings, retries=0)
        return [o.object_name for o in client.list_objects(bucket, prefix=prefix, recursive=True, use_api_v1=True)]
    except S3Error as exc:
        status = getattr(getattr(exc, "response", None), "status", 0) or 0
        raise InitializerError("list", s3_error_line(release, exc.code or "", exc.message or "", status, bucket)) \
            from None
    except InvalidResponseError as exc:  # a body minio-py 7 will not read, which boto3 and minio-py 6 read
        code, message = error_body(str(getattr(exc, "_body", "") or ""))
        status = int(getattr(exc, "_code", None) or 0)
        raise InitializerError("list", s3_error_line(release, code, message, status, bucket)) from None
    except (urllib3.exceptions.HTTPError, OSError, StorageError) as exc:
        raise InitializerError("list", _connection_line(release, settings, bucket, prefix, exc)) from None


def copy(release: Release, uri: str, dest: Path, env: Mapping[str, str], out: Output,
         resolve: Optional[Resolver] = None, mount: str = MODEL_DIR) -> list[str]:
    """Copy `uri` into `dest` (the pod's `mount`) as the release's initializer does; the files written,
    relative to `dest`. Raises InitializerError (the traceback's last line) when it fails."""
    start = time.monotonic()
    out.info("initializer-entrypoint", "<module>", "entry-log",
             f"Initializing, args: src_uri [{uri}] dest_path[ [{mount}]")
    out.info("storage.py", "download", "copying",
             f"Copying contents of {uri} to local")
    if not uri.startswith("s3://"):
        raise InitializerError("", f"Exception: the local stack's storage initializer copies s3:// URIs only, "
                                   f"not {uri}")
    bucket, prefix = split_uri(release, uri)
    dest.mkdir(parents=True, exist_ok=True)
    settings = s3_settings(release, env, bucket, resolve)
    try:
        wanted = plan(release, prefix, list_keys(release, settings, bucket, prefix))
    except InitializerError as exc:
        if exc.where == "none":
            raise InitializerError("none", nothing_found(release, uri, prefix)) from None
        raise
    items = [(key, 0, dest / relative) for key, relative in wanted]
    quiet = Logger(CONTAINER, open(os.devnull, "w"))  # the agent's own lines are not the initializer's
    try:
        Downloader(dest, settings, quiet, behaviour=FRIENDLY).fetch(CONTAINER, bucket, items, dest)
    except StorageError as exc:
        raise InitializerError("", f"{type(exc).__name__}: {exc.cause}") from None
    for key, relative in wanted:
        out.info("storage.py", "_download_s3", "downloaded",
                 f"Downloaded object {key} to {mount}/{relative}")
    out.info("storage.py", "download", "copied",
             f"Successfully copied {uri} to {mount}")
    out.info("storage.py", "download", "took",
             f"Model downloaded in {time.monotonic() - start} seconds.")
    return [relative for _key, relative in wanted]


def run(release: Release, uri: str, dest: Path, env: Mapping[str, str], resolve: Optional[Resolver] = None,
        mount: str = MODEL_DIR, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    """The entrypoint: copy, or print the traceback; the exit code (0, or 1 as Python's on an uncaught error)."""
    try:
        copy(release, uri, dest, env, Output(release, stdout), resolve, mount)
    except InitializerError as exc:
        stdout.flush()
        stderr.write(traceback_text(release, exc))
        stderr.flush()
        return 1
    return 0
