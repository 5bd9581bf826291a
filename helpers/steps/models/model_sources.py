"""Get the guide's models: from the cache, else a real download, else a stand-in that says so.

Explained in 03_cifar10 and 04_inception. A registry names each model's public source (the
guide's `gsutil cp gs://...` and `wget https://...` become plain HTTPS downloads), a sha256
where one is known, and the files prepared in advance (`data/models/...`: Inception's
`config.pbtxt` and labels). `fetch(name)` returns a folder ready to upload:

1. files a user placed in the cache folder (`<cache>/models/<folder>/`) are used as they are;
2. else a download is tried with a short timeout (resumed from a `.part` file, checked against
   the sha256, written to the cache only when complete, then a marker);
3. else (offline, as in CI and workshops) a stand-in with the same tensor names, types and
   shapes is built with `helpers.steps.models.standins`, and the output says so.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import requests

from helpers.core import config, resources
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.steps.models import standins

if TYPE_CHECKING:
    from helpers.clients.target import Target

TIMEOUT = (3.0, 30.0)  # connect, read: offline machines fail in well under a second
GCS = "https://storage.googleapis.com"


class DownloadError(SetupError):
    """A download failed (network, HTTP status, or checksum)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a model: where it comes from and where it goes in the model folder."""

    url: str
    dest: str  # path inside the model folder, e.g. "1/model.pt"
    sha256: Optional[str] = None  # None: unknown, the completed-download marker is trusted
    member: Optional[str] = None  # for a .tar.gz: the member extracted as `dest`


@dataclass(frozen=True)
class ModelSource:
    """A model of the guide: its files, the files prepared in advance, and its stand-in."""

    name: str
    folder: str  # folder name in the cache (and the last part of its S3 prefix)
    guide_uri: str  # where the guide gets it
    files: tuple[RemoteFile, ...]
    prepared: tuple[str, ...]  # copied from data/models/<folder>/
    required: tuple[str, ...]  # what a usable folder must contain
    standin: Callable[[Path], Path] = field(compare=False, repr=False)
    standin_builder: str = ""


@dataclass(frozen=True)
class ModelFolder:
    """A model folder ready to upload; `is_standin` says its weights are made up."""

    path: Path
    is_standin: bool
    source: str


SOURCES: dict[str, ModelSource] = {
    "cifar10": ModelSource(
        name="cifar10", folder="cifar10",
        guide_uri="gs://kfserving-examples/models/torchscript/cifar10",
        files=(RemoteFile(f"{GCS}/kfserving-examples/models/torchscript/cifar10/config.pbtxt", "config.pbtxt"),
               RemoteFile(f"{GCS}/kfserving-examples/models/torchscript/cifar10/1/model.pt", "1/model.pt")),
        prepared=(), required=("config.pbtxt", "1/model.pt"),
        standin=standins.write_cifar10_standin, standin_builder="helpers.steps.models.standins.write_cifar10_standin"),
    "inception": ModelSource(
        name="inception", folder="inception_graphdef",
        guide_uri=f"{GCS}/download.tensorflow.org/models/inception_v3_2016_08_28_frozen.pb.tar.gz",
        files=(RemoteFile(f"{GCS}/download.tensorflow.org/models/inception_v3_2016_08_28_frozen.pb.tar.gz",
                          "1/model.graphdef", member="inception_v3_2016_08_28_frozen.pb"),),
        prepared=("config.pbtxt", "inception_labels.txt"),
        required=("config.pbtxt", "inception_labels.txt", "1/model.graphdef"),
        standin=standins.write_inception_standin, standin_builder="helpers.steps.models.standins.write_inception_standin"),
}


def cache_root() -> Path:
    """`<MMS_CACHE_DIR>/models`: put a model folder here and it is used as it is."""
    return config.cache_dir() / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "NameResolution" in text or "Failed to resolve" in text or "Name or service not known" in text:
        return _("no network (the host name does not resolve)")
    return text[:160]


def download(url: str, dest: Path, sha256: Optional[str] = None, timeout: tuple[float, float] = TIMEOUT,
             progress: bool = True) -> Path:
    """Download `url` to `dest`, resuming a `dest.part` left by an earlier try; check the sha256.

    The file appears at `dest` only when complete and checked; a checksum mismatch deletes the
    partial file and raises DownloadError.
    """
    from helpers.core.progress import progress as tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        answer = requests.get(url, stream=True, timeout=timeout, headers=headers)
    except requests.RequestException as exc:
        raise DownloadError(_("cannot download {url}: {reason}").format(url=url, reason=_short(exc)),
                            _("check the network, or place the files in the cache folder yourself")) from None
    with answer:
        if answer.status_code == 416 and have:  # the .part is complete already
            mode, start, total = "ab", have, have
        elif answer.status_code == 206 and have:
            mode, start = "ab", have
            total = have + int(answer.headers.get("Content-Length", 0))
        elif answer.status_code == 200:
            mode, start = "wb", 0
            total = int(answer.headers.get("Content-Length", 0))
        else:
            raise DownloadError(_("cannot download {url}: HTTP {status}").format(url=url, status=answer.status_code),
                                _("check the URL, or place the files in the cache folder yourself"))
        with open(part, mode) as out, tqdm(total=total or None, initial=start, unit="B", unit_scale=True,
                                           desc=_("download {name}").format(name=dest.name), disable=not progress,
                                           mininterval=0.5) as bar:
            if answer.status_code != 416:
                try:
                    for block in answer.iter_content(1 << 13):  # small: a cut loses little
                        out.write(block)
                        bar.update(len(block))
                except requests.RequestException as exc:
                    raise DownloadError(_("download of {url} was cut off: {reason}").format(url=url, reason=_short(exc)),
                                        _("run it again: it resumes where it stopped")) from None
    if sha256:
        found = sha256_of(part)
        if found != sha256:
            part.unlink()
            raise DownloadError(_("{url} has sha256 {found}, not the expected {expected}").format(
                url=url, found=found, expected=sha256),
                _("the file changed or is damaged: try again, or place a good copy in the cache"))
    part.replace(dest)
    return dest


def marker_path(cache: Path, name: str) -> Path:
    """The marker that records a cached model's download (its files' sha256), `<cache>/.markers/<name>.json`."""
    return cache / ".markers" / f"{name}.json"


def _complete(folder: Path, source: ModelSource) -> bool:
    return all((folder / rel).is_file() for rel in source.required)


def _verified(folder: Path, source: ModelSource, marker: Path) -> bool:
    """A downloaded folder is good if each file with a known sha256 still matches it."""
    try:
        recorded = json.loads(marker.read_text()).get("files", {})
    except (OSError, ValueError):
        return False
    for item in source.files:
        if item.sha256 and item.member is None and recorded.get(item.dest) != item.sha256:
            return False
        if item.sha256 and item.member is None and sha256_of(folder / item.dest) != item.sha256:
            return False
    return True


def _download_into(source: ModelSource, cache: Path, progress: bool) -> Path:
    """Download (or resume) every file, assemble the folder in a staging area, then move it in."""
    downloads = cache / ".downloads"
    staging = Path(tempfile.mkdtemp(prefix=f".{source.folder}-", dir=cache))
    try:
        files: dict[str, Optional[str]] = {}
        for item in source.files:
            stored = download(item.url, downloads / source.folder / Path(item.url).name, item.sha256,
                              progress=progress)
            target = staging / item.dest
            target.parent.mkdir(parents=True, exist_ok=True)
            if item.member:
                with tarfile.open(stored) as archive:
                    member = archive.extractfile(item.member)
                    if member is None:
                        raise DownloadError(_("{url} has no file {member}").format(url=item.url, member=item.member),
                                            _("report the changed archive"))
                    with member, open(target, "wb") as out:
                        shutil.copyfileobj(member, out)
            else:
                shutil.copyfile(stored, target)
            files[item.dest] = item.sha256 or sha256_of(target)
        prepared = resources.data_path("models", source.folder)
        for rel in source.prepared:
            shutil.copyfile(prepared / rel, staging / rel)
        folder = cache / source.folder
        folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            target = folder / path.relative_to(staging)
            if not target.exists():  # never overwrite a file a user placed there
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), target)
        marker = marker_path(cache, source.folder)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"source": [i.url for i in source.files], "files": files}, indent=1))
        return folder
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _build_standin(source: ModelSource, folder: Path) -> None:
    """Run the stand-in builder. `helpers` builders run in a child Python, so the notebook's kernel
    never loads torch or TensorFlow (hundreds of MB) and their start-up chatter stays out of it."""
    builder = source.standin
    module = getattr(builder, "__module__", "")
    if not module.startswith("helpers."):
        builder(folder)
        return
    code = f"from {module} import {builder.__name__} as build; build({str(folder)!r})"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=str(config.project_root()))
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise SetupError(_("building the {model} stand-in failed:").format(model=source.name) + "\n" + tail,
                         _("the stand-in needs torch (cifar10) or tensorflow-cpu (inception): `make setup` installs them"))


# What each stand-in builder imports, and how a user without root gets it (CPU builds).
STANDIN_NEEDS = {
    "cifar10": ("torch", "pip install --user torch --index-url https://download.pytorch.org/whl/cpu"),
    "inception": ("tensorflow", "pip install --user tensorflow-cpu"),
}


def require_builder(source: ModelSource, cache: Path) -> None:
    """SetupError, before any build, when the stand-in's library is missing: what to install, or
    which model files to place in the cache instead (the base install has neither torch nor TF)."""
    module, command = STANDIN_NEEDS.get(source.name, ("", ""))
    if not module or importlib.util.find_spec(module) is not None:
        return
    raise SetupError(
        _("{model}: no model files in {folder}, no download, and building the offline stand-in needs {module}, "
          "which this Python ({python}) does not have").format(model=source.name, folder=cache / source.folder,
                                                               module=module, python=sys.executable),
        _("either install it: `{command}` (then restart the kernel), or place the real model's files ({files}, "
          "from {uri}) in {folder}/").format(command=command, files=", ".join(source.required), uri=source.guide_uri,
                                             folder=cache / source.folder))


def _standin(source: ModelSource, cache: Path) -> Path:
    """Build the stand-in once into `<cache>/standin/<folder>` (reused while its marker is there)."""
    folder = cache / "standin" / source.folder
    marker = marker_path(cache, f"standin-{source.folder}")
    if marker.is_file() and _complete(folder, source):
        return folder
    if source.standin_builder.startswith("helpers."):
        require_builder(source, cache)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{source.folder}-", dir=folder.parent))
    try:
        _build_standin(source, staging)
        shutil.rmtree(folder, ignore_errors=True)
        staging.replace(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"builder": source.standin_builder}))
    return folder


def _standin_message(source: ModelSource, path: Path, folder: Path, width: int = 96) -> str:
    """Say that `path` holds a stand-in: wrapped to `width` columns, each cache path on its own line."""
    def wrap(text: str, first: str = "  ") -> str:
        return textwrap.fill(text, width, initial_indent=first, subsequent_indent="  ",
                             break_long_words=False, break_on_hyphens=False)

    head = _("{model}: using a STAND-IN model ({builder}) in").format(model=source.name, builder=source.standin_builder)
    body = _("It has the real model's files, tensor names, types and shapes, so serving works exactly the same, "
             "but its weights are made up: its predictions mean nothing. For the real model, download {uri} "
             "and place its files in").format(uri=source.guide_uri)
    return "\n".join([wrap(head, first=""), f"  {path}.", wrap(body),
                      f"  {folder}/ ({', '.join(source.required)})."])


def fetch_source(source: ModelSource, offline: Optional[bool] = None, cache: Optional[Path] = None,
                 progress: bool = True, say: Callable[[str], None] = print) -> ModelFolder:
    """`fetch` for a ModelSource (tests pass one pointing at a local HTTP server).

    `offline`: True never tries the network; False must download (raises if it cannot);
    None (default) tries briefly and falls back to the stand-in. MMS_OFFLINE=1 means True.
    """
    cache = Path(cache) if cache else cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    if offline is None and config.env_flag("MMS_OFFLINE"):
        offline = True
    folder = cache / source.folder
    marker = marker_path(cache, source.folder)
    if _complete(folder, source):
        if not marker.exists():
            say(_("{model}: using the files placed in {folder}").format(model=source.name, folder=folder))
            return ModelFolder(folder, False, f"files placed in the cache ({folder})")
        if _verified(folder, source, marker):
            say(_("{model}: using the cached download in {folder}").format(model=source.name, folder=folder))
            return ModelFolder(folder, False, f"cache ({source.files[0].url})")
        say(_("{model}: the cached download does not match its checksum: downloading again").format(model=source.name))
        for item in source.files:
            (folder / item.dest).unlink(missing_ok=True)
        marker.unlink()
    if offline is not True:
        try:
            path = _download_into(source, cache, progress)
            say(_("{model}: downloaded from {url} into {path}").format(model=source.name, url=source.files[0].url, path=path))
            return ModelFolder(path, False, source.files[0].url)
        except (DownloadError, OSError, tarfile.TarError) as exc:
            if offline is False:
                raise
            reason = exc.cause if isinstance(exc, SetupError) else _short(exc)
            say(f"{source.name}: {reason}")
    path = _standin(source, cache)
    say(_standin_message(source, path, folder))
    return ModelFolder(path, True, f"stand-in ({source.standin_builder})")


def fetch(name: str, offline: Optional[bool] = None, progress: bool = True,
          say: Callable[[str], None] = print) -> ModelFolder:
    """The model folder for `name` ("cifar10" or "inception"): cache, download, or stand-in."""
    if name not in SOURCES:
        raise SetupError(_("no model source {name}").format(name=repr(name)),
                         _("use one of: {names}").format(names=", ".join(SOURCES)))
    return fetch_source(SOURCES[name], offline, None, progress, say)


def folder_listing(folder: Path) -> list[tuple[str, int]]:
    """(relative path, size) of every file in a model folder, for display and results."""
    folder = Path(folder)
    return [(p.relative_to(folder).as_posix(), p.stat().st_size) for p in sorted(folder.rglob("*")) if p.is_file()]


# The guide's commands that fetch each model, verbatim ("예제로 사용할 model 다운로드").
GUIDE_DOWNLOAD = {
    "cifar10": "./gsutil cp -r gs://kfserving-examples/models/torchscript/cifar10 ../models",
    "inception": "mkdir -p ./models/inception_graphdef/1\n"
                 "wget -O /tmp/inception_v3_2016_08_28_frozen.pb.tar.gz \\\n"
                 "     https://storage.googleapis.com/download.tensorflow.org/models/"
                 "inception_v3_2016_08_28_frozen.pb.tar.gz\n"
                 "(cd /tmp && tar xzf inception_v3_2016_08_28_frozen.pb.tar.gz)\n"
                 "mv /tmp/inception_v3_2016_08_28_frozen.pb ./models/inception_graphdef/1/model.graphdef",
}
# The guide's upload of each model to MinIO (its bucket `triton` in place of {bucket}), then `mc tree`.
GUIDE_UPLOAD = {
    "cifar10": "./mc cp -r models/cifar10 myminio/{bucket}/torchscript\n./mc tree myminio/",
    "inception": "./mc cp -r models/inception_graphdef myminio/{bucket}/models\n./mc tree myminio/",
}
UPLOAD_PREFIX = {"cifar10": "torchscript/cifar10", "inception": "models/inception_graphdef"}


def show_download(name: str) -> None:
    """The guide's download of model `name`, verbatim (this notebook fetched it over HTTPS, or built a stand-in)."""
    from helpers.core.show import show_guide

    show_guide(GUIDE_DOWNLOAD[name])


def show_upload(place: "Target", name: str, folder: Path, bucket: str) -> None:
    """The guide's `mc cp` of model `name` to MinIO; on the local stack, where mc is not set up, rclone's
    lines that do the same (its remote is called `myminio` too)."""
    from helpers.core.constants import DEFAULT_BUCKET
    from helpers.core.show import show_adapted, show_guide
    from helpers.steps.objectstore import mc

    guide = GUIDE_UPLOAD[name].format(bucket=bucket)
    if place.shell_env:
        prefix = UPLOAD_PREFIX[name]
        rclone = f"rclone copy {folder} myminio:{bucket}/{prefix}\nrclone tree myminio:{bucket}"
        show_adapted(mc.with_rclone(place, guide, rclone), _("rclone, as the local stack has no mc"))
    elif bucket == DEFAULT_BUCKET:
        show_guide(guide)
    else:
        show_adapted(guide, _("your bucket {bucket}").format(bucket=bucket))
