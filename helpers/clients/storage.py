"""S3 storage through the `minio` client: buckets, folder upload with progress, list, download.

Explained in notebooks 01_minio (reachability) and 03_cifar10 (upload). Every failure that a
learner can fix is raised as one `StorageError` naming the cause and the fix, whether the
server is MinIO (standard S3 error bodies) or the local rclone server (non-standard ones).

Where a bucket is asked for, a *location* may be given instead: `bucket/folder`, a folder of a
shared bucket (Kubeflow 1.11's SeaweedFS gives each namespace `mlpipeline/private/<ns>` and no
bucket of its own). Keys are then listed and returned relative to that folder, the bucket itself
is never made nor removed, and no request needs a right on the whole bucket (HEAD bucket, a list
without a prefix): such a key has none.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error

from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.progress import progress as progress_bar


class StorageError(SetupError):
    """An S3 operation failed for a reason the user can fix."""

    missing = False  # the bucket or object does not exist (its message is in the learner's language)


def _missing(error: StorageError) -> StorageError:
    error.missing = True
    return error


@dataclass(frozen=True)
class S3Settings:
    """Where the S3 server is and how to sign in (never printed: see `__repr__`)."""

    endpoint: str  # host:port
    access_key: str
    secret_key: str
    secure: bool = False
    region: str = "us-east-1"  # rclone's server fails minio's bucket-location probe without it

    def __repr__(self) -> str:
        return f"S3Settings(endpoint={self.endpoint!r}, secure={self.secure}, credentials=<hidden>)"


def connect(settings: S3Settings, retries: int = 1) -> Minio:
    """A minio client with short timeouts, so an unreachable endpoint fails in seconds."""
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=3, read=60),
        retries=urllib3.Retry(total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    return Minio(settings.endpoint, access_key=settings.access_key, secret_key=settings.secret_key,
                 secure=settings.secure, region=settings.region, http_client=http)


_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"}


def _endpoint(client: Minio) -> str:
    return client._base_url.host


@contextlib.contextmanager
def s3_errors(client: Minio, bucket: str = "", key: str = "") -> Iterator[None]:
    """Turn S3 and connection failures into a StorageError with the cause and the fix."""
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}" if bucket else _("the S3 server")
    endpoint = _endpoint(client)
    try:
        yield
    except S3Error as exc:
        raise _classify(exc.code or "", exc.message or str(exc), endpoint, bucket, key, where) from None
    except InvalidResponseError as exc:
        # rclone answers with bodies minio cannot parse: classify by HTTP status instead.
        status = getattr(exc, "_code", None) or _status_from_text(str(exc))
        code = {403: "AccessDenied", 404: "NoSuchKey" if key else "NoSuchBucket"}.get(status, "")
        raise _classify(code, f"HTTP {status}", endpoint, bucket, key, where) from None
    except (urllib3.exceptions.MaxRetryError, urllib3.exceptions.NewConnectionError,
            urllib3.exceptions.ProtocolError, ConnectionError) as exc:
        raise StorageError(
            _("cannot reach the S3 server at {endpoint} ({kind})").format(endpoint=endpoint, kind=type(exc).__name__),
            _("check the endpoint and that the server runs: on the local target `python -m helpers.local status`, on a "
              "cluster `kubectl get svc minio-service -n kubeflow`"),
        ) from None


def _status_from_text(text: str) -> int:
    for word in text.replace(",", " ").split():
        if word.isdigit() and len(word) == 3:
            return int(word)
    return 0


def _classify(code: str, message: str, endpoint: str, bucket: str, key: str, where: str) -> StorageError:
    if code in _CREDENTIAL_CODES:
        return StorageError(
            _("the S3 server at {endpoint} refused the credentials ({code})").format(endpoint=endpoint, code=code),
            _("use the access and secret key from the minio pod's env (`kubectl get pods -l app=minio -n kubeflow -o "
              "jsonpath={.items[0].spec.containers[0].env}`)"),
        )
    if code == "NoSuchBucket":
        return _missing(StorageError(
            _("bucket {bucket!r} does not exist on {endpoint}").format(bucket=bucket, endpoint=endpoint),
            _("create it first (`ensure_bucket(client, {bucket!r})`, or `mc mb myminio/{bucket}`)").format(bucket=bucket)))
    if code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
        return _missing(StorageError(
            _("{where} does not exist on {endpoint}").format(where=where, endpoint=endpoint),
            _("upload it first, and check the bucket and path (`list_objects`, or `mc tree`)")))
    return StorageError(_("S3 request for {where} at {endpoint} failed: {code} {message}").format(
                            where=where, endpoint=endpoint, code=code or 'error', message=message),
                        _("check the S3 server's log"))


def split_location(location: str) -> tuple[str, str]:
    """`mlpipeline/private/mms` -> ("mlpipeline", "private/mms"); a bare bucket -> (bucket, "")."""
    bucket, _, base = location.strip("/").partition("/")
    return bucket, base.strip("/")


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def ensure_bucket(client: Minio, location: str) -> bool:
    """Create the bucket if it is missing. Returns True if it was created.

    For a folder of a shared bucket (`bucket/folder`) nothing is made: the folder is listed, which
    fails (with the fix) if the bucket is missing or the key may not read there."""
    bucket, base = split_location(location)
    if base:
        list_objects(client, location)
        return False
    with s3_errors(client, bucket):
        if client.bucket_exists(bucket):
            return False
        client.make_bucket(bucket)
        return True


def bucket_exists(client: Minio, location: str) -> bool:
    """True if the bucket (or the shared bucket of a `bucket/folder`) exists; credentials and
    reachability errors still raise."""
    bucket, base = split_location(location)
    if base:
        try:
            list_objects(client, location)
        except StorageError as exc:
            if exc.missing:
                return False
            raise
        return True
    with s3_errors(client, bucket):
        return client.bucket_exists(bucket)


def list_objects(client: Minio, location: str, prefix: str = "") -> list[tuple[str, int]]:
    """(key, size) of every object under `prefix` of a bucket or `bucket/folder` (keys relative to
    the folder), directory markers left out. Lists first, as KServe's agent does; only an empty
    answer asks whether the bucket exists (a key limited to prefixes may not ask: then it does)."""
    bucket, base = split_location(location)
    full = _join(base, prefix)
    with s3_errors(client, bucket):
        found = [(o.object_name, o.size or 0)
                 for o in client.list_objects(bucket, prefix=full + "/" if full else "", recursive=True)
                 if not o.object_name.endswith("/")]
        if not found:
            try:
                exists = client.bucket_exists(bucket)
            except S3Error as exc:
                exists = exc.code == "AccessDenied"  # HEAD bucket needs a right on the whole bucket
            if not exists:
                raise S3Error(None, "NoSuchBucket", "", "", "", "")  # type: ignore[arg-type]
    return [(key[len(base):].lstrip("/") if base else key, size) for key, size in found]


def delete_prefix(client: Minio, location: str, prefix: str) -> list[str]:
    """Delete every object under `prefix` (none when the bucket is missing); return their keys (99_cleanup)."""
    if not bucket_exists(client, location):
        return []
    bucket, base = split_location(location)
    keys = [key for key, _ in list_objects(client, location, prefix)]
    with s3_errors(client, bucket, prefix):
        for key in keys:
            client.remove_object(bucket, _join(base, key))
    return keys


def remove_bucket_if_empty(client: Minio, location: str) -> bool:
    """Remove the bucket when it holds no object; True if it was removed (99_cleanup). A shared
    bucket (`bucket/folder`) is never removed."""
    bucket = location
    if split_location(location)[1] or not bucket_exists(client, bucket) or list_objects(client, bucket):
        return False
    with s3_errors(client, bucket):
        client.remove_bucket(bucket)
    return True


def upload_folder(client: Minio, folder: Path, bucket: str, prefix: str, progress: bool = True) -> list[str]:
    """Upload every file under `folder` to s3://bucket/prefix/..., keeping relative paths.

    Like `mc cp -r folder myminio/bucket/prefix`. Creates the bucket if missing. Objects that are
    already there with the same size are skipped, so running it twice is cheap.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise StorageError(_("{folder} is not a folder").format(folder=folder),
                           _("give the model's folder (the one holding config.pbtxt)"))
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    location, (bucket, base) = bucket, split_location(bucket)
    ensure_bucket(client, location)
    existing = dict(list_objects(client, location, prefix))
    keys = []
    total = sum(p.stat().st_size for p in files)
    with progress_bar(total=total, unit="B", unit_scale=True, desc=f"upload s3://{_join(location, prefix)}",
              disable=not progress, mininterval=0.5) as bar:
        for path in files:
            key = f"{prefix.strip('/')}/{path.relative_to(folder).as_posix()}".lstrip("/")
            size = path.stat().st_size
            if existing.get(key) != size:
                with s3_errors(client, bucket, _join(base, key)):
                    client.fput_object(bucket, _join(base, key), str(path))
            keys.append(key)
            bar.update(size)
    return keys


def download_folder(client: Minio, location: str, prefix: str, dest: Path) -> list[Path]:
    """Download every object under `prefix` of a bucket (or `bucket/folder`) into `dest`, keeping the
    paths below `prefix` (`mc cp -r myminio/bucket/prefix dest`); return the files written.

    StorageError (with the fix) when nothing is there: a model that was never uploaded."""
    bucket, base = split_location(location)
    found = list_objects(client, location, prefix)
    if not found:
        raise _missing(StorageError(_("nothing under s3://{location}").format(location=_join(location, prefix)),
                                    _("upload it first (03_cifar10 uploads cifar10)")))
    dest = Path(dest)
    written = []
    for key, _size in found:
        path = dest / key[len(prefix.strip("/")):].lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        with s3_errors(client, bucket, _join(base, key)):
            client.fget_object(bucket, _join(base, key), str(path))
        written.append(path)
    return written


def tree(client: Minio, bucket: str, depth: int = 3) -> str:
    """Folders in a bucket (or `bucket/folder`) as `mc tree` prints them, `depth` levels deep."""
    root: dict = {}
    for key, _size in list_objects(client, bucket):
        node = root
        for part in key.split("/")[:-1][:depth]:
            node = node.setdefault(part, {})
    lines = [bucket]

    def walk(node: dict, indent: str) -> None:
        names = sorted(node)
        for i, name in enumerate(names):
            last = i == len(names) - 1
            lines.append(f"{indent}{'└─' if last else '├─'} {name}")
            walk(node[name], indent + ("   " if last else "│  "))

    walk(root, "")
    return "\n".join(lines)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    if not uri.startswith("s3://"):
        raise StorageError(_("{uri!r} is not an s3:// URI").format(uri=uri), _("write it as s3://<bucket>/<path>"))
    bucket, _slash, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise StorageError(_("{uri!r} names no bucket").format(uri=uri), _("write it as s3://<bucket>/<path>"))
    return bucket, prefix.strip("/")


