"""Carry the real models to machines without internet: one checksummed archive, packed and unpacked.

Explained in the README's instructor's checklist. Where there is internet, `python -m
helpers.steps.models.model_sources fetch` downloads the guide's models into the model cache, and
`python -m helpers.models pack models.tar` writes them into one archive whose first member,
`MANIFEST.json`, lists every file with its size and sha256. On each offline machine
`python -m helpers.models unpack models.tar` checks every file against that manifest (and
against the registry's sha256 where one is known) in a staging folder, and only then moves the
models into `$MMS_CACHE_DIR/models/<folder>/` with the cache's marker: `model_sources.fetch` then
uses them instead of building stand-ins.

An archive that does not check out (a file changed, missing or added, a path leaving its folder, a
link) is refused as a whole and the cache is left as it was. A model already in the cache with other
contents is left alone unless `replace=True`.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Optional

from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.steps.models import model_sources

MANIFEST = "MANIFEST.json"
FORMAT = "mms-notebooks-models/1"
PREFIX = "models"  # members are models/<folder>/<path inside the model folder>


class ArchiveError(SetupError):
    """A model archive that is damaged, tampered with or not one of ours."""


@dataclass(frozen=True)
class Installed:
    """What `unpack` did with one model: `installed`, `unchanged` (already there) or `replaced`."""

    name: str
    folder: Path
    action: str
    files: int


def _sources(names: Optional[Iterable[str]]) -> list[model_sources.ModelSource]:
    chosen = list(names) if names else list(model_sources.SOURCES)
    unknown = [n for n in chosen if n not in model_sources.SOURCES]
    if unknown:
        raise SetupError(_("no model source {names}").format(names=", ".join(unknown)),
                         _("use one of: {names}").format(names=", ".join(model_sources.SOURCES)))
    return [model_sources.SOURCES[n] for n in chosen]


def _folder_files(folder: Path) -> dict[str, dict[str, object]]:
    return {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": model_sources.sha256_of(p)}
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_cached(source: model_sources.ModelSource, folder: Path, files: dict[str, dict[str, object]],
                  cache: Path) -> str:
    """Refuse a cache entry whose files no longer match its marker or the registry; say where it came from."""
    marker = model_sources.marker_path(cache, source.folder)
    recorded: dict[str, str] = {}
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text()).get("files", {})
        except ValueError:
            recorded = {}
    known = {item.dest: item.sha256 for item in source.files if item.sha256 and item.member is None}
    for rel, want in {**recorded, **known}.items():
        if want and rel in files and files[rel]["sha256"] != want:
            raise SetupError(_("{path} has sha256 {found}, not the {expected} it was downloaded with: the cache is "
                               "damaged").format(path=folder / rel, found=files[rel]["sha256"], expected=want),
                             _("delete {folder} and run `python -m helpers.models fetch {name}` again").format(
                                 folder=folder, name=source.name))
    return "downloaded" if marker.is_file() else "placed in the cache by hand"


def pack(archive: Path, names: Optional[Iterable[str]] = None, cache: Optional[Path] = None,
         say: Callable[[str], None] = print) -> dict[str, object]:
    """Write the real models found in the cache into `archive` (a `.tar`, or `.tar.gz`/`.tgz`); return its manifest.

    Stand-ins are never packed: only complete folders at `<cache>/<folder>/`. Models missing from
    the cache are named; an archive with no model at all is refused.
    """
    cache = Path(cache) if cache else model_sources.cache_root()
    archive = Path(archive)
    manifest: dict[str, object] = {"format": FORMAT, "models": {}}
    models: dict[str, dict[str, object]] = {}
    missing = []
    for source in _sources(names):
        folder = cache / source.folder
        if not all((folder / rel).is_file() for rel in source.required):
            missing.append(source.name)
            continue
        files = _folder_files(folder)
        origin = _check_cached(source, folder, files, cache)
        models[source.name] = {"folder": source.folder, "origin": origin, "guide_uri": source.guide_uri,
                               "files": files}
    if not models:
        raise SetupError(_("no real model in {cache} to pack ({missing} missing; stand-ins are never packed)").format(
                             cache=cache, missing=", ".join(missing)),
                         _("on a machine with internet run `python -m helpers.models fetch` first"))
    manifest["models"] = models
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".part")
    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    with tarfile.open(partial, "w:gz" if archive.name.endswith((".gz", ".tgz")) else "w") as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode = len(body), 0o644
        tar.addfile(info, io.BytesIO(body))
        for entry in models.values():
            folder = cache / str(entry["folder"])
            for rel in entry["files"]:  # type: ignore[union-attr]
                tar.add(folder / rel, arcname=f"{PREFIX}/{entry['folder']}/{rel}", recursive=False)
    partial.replace(archive)
    digest = model_sources.sha256_of(archive)
    for name, entry in models.items():
        count = len(entry["files"])  # type: ignore[arg-type]
        say(_("packed {name}: {count} files from {folder} ({origin})").format(
            name=name, count=count, folder=cache / str(entry["folder"]), origin=entry["origin"]))
    if missing:
        say(_("not in the cache, not packed: {names}").format(names=", ".join(missing)))
    say(_("wrote {archive} ({size} bytes), sha256 {digest}").format(archive=archive, size=f"{archive.stat().st_size:,}",
                                                                    digest=digest))
    return manifest


def _manifest(tar: tarfile.TarFile, archive: Path) -> dict[str, object]:
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isfile():
        raise ArchiveError(_("{archive} does not start with {manifest}: it is not a model archive of this project").format(
                               archive=archive, manifest=MANIFEST),
                           _("make one with `python -m helpers.models pack FILE`"))
    handle = tar.extractfile(first)
    try:
        manifest = json.loads(handle.read() if handle else b"")
    except ValueError:
        raise ArchiveError(_("{archive}: its {manifest} is not valid JSON").format(archive=archive, manifest=MANIFEST),
                           _("pack the archive again")) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("models"), dict):
        raise ArchiveError(_("{archive}: {manifest} is not of format {format}").format(
                               archive=archive, manifest=MANIFEST, format=FORMAT),
                           _("pack the archive again with this version of the project"))
    return manifest


def _expected(manifest: dict[str, object], archive: Path) -> dict[str, tuple[str, str, int, str]]:
    """member name -> (model, path in folder, size, sha256), checking names against the registry."""
    expected = {}
    for name, entry in manifest["models"].items():  # type: ignore[union-attr]
        source = model_sources.SOURCES.get(name)
        if source is None or not isinstance(entry, dict) or entry.get("folder") != source.folder:
            raise ArchiveError(_("{archive}: model {name} is not one of this project's ({names}) or names another "
                                 "folder").format(archive=archive, name=repr(name), names=", ".join(model_sources.SOURCES)),
                               _("pack the archive again with this version of the project"))
        files = entry.get("files") or {}
        absent = [rel for rel in source.required if rel not in files]
        if absent:
            raise ArchiveError(_("{archive}: model {name} lacks {files}").format(archive=archive, name=name,
                                                                                 files=", ".join(absent)),
                               _("pack it again from a complete cache"))
        known = {item.dest: item.sha256 for item in source.files if item.sha256 and item.member is None}
        for rel, meta in files.items():
            parts = PurePosixPath(rel).parts
            if not parts or rel.startswith("/") or ".." in parts or "\\" in rel:
                raise ArchiveError(_("{archive}: path {path} of model {name} leaves its folder").format(
                                       archive=archive, path=repr(rel), name=name),
                                   _("do not use this archive: pack it again from a trusted cache"))
            if known.get(rel) and meta.get("sha256") != known[rel]:
                raise ArchiveError(_("{archive}: {path} is listed with sha256 {found}, not the published {expected}").format(
                                       archive=archive, path=f"{name}/{rel}", found=meta.get("sha256"), expected=known[rel]),
                                   _("pack it again from a verified download"))
            expected[f"{PREFIX}/{source.folder}/{rel}"] = (name, rel, int(meta.get("size", -1)), str(meta.get("sha256")))
    return expected


def _extract_checked(archive: Path, staging: Path) -> dict[str, object]:
    """Extract every member into `staging`, checking it against the manifest; raise ArchiveError on any difference."""
    try:
        tar = tarfile.open(archive)
    except (OSError, tarfile.TarError) as exc:
        raise ArchiveError(_("cannot read {archive} as a tar archive ({error})").format(archive=archive, error=exc),
                           _("copy the archive again: it is damaged or not complete")) from None
    seen: set[str] = set()
    with tar:
        manifest = _manifest(tar, archive)
        expected = _expected(manifest, archive)
        try:
            for member in tar:
                if member.isdir() or member.offset == 0:  # 0: the manifest, read already
                    continue
                want = expected.get(member.name)
                if want is None or not member.isfile() or member.name in seen:
                    what = _("a link") if member.issym() or member.islnk() else _("not in its manifest")
                    raise ArchiveError(_("{archive}: member {member} is {what}").format(
                                           archive=archive, member=repr(member.name), what=what),
                                       _("do not use this archive: pack it again from a trusted cache"))
                seen.add(member.name)
                name, rel, size, sha = want
                target = staging / model_sources.SOURCES[name].folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                handle = tar.extractfile(member)
                with handle as src, open(target, "wb") as out:  # type: ignore[union-attr]
                    for block in iter(lambda: src.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
                if digest.hexdigest() != sha or target.stat().st_size != size:
                    raise ArchiveError(_("{archive}: {path} has sha256 {found}, not the {expected} its manifest lists: "
                                         "the archive is damaged or was changed").format(
                                           archive=archive, path=f"{name}/{rel}", found=digest.hexdigest(), expected=sha),
                                       _("copy the archive again, or pack it again from a verified cache"))
        except (OSError, EOFError, tarfile.TarError) as exc:
            raise ArchiveError(_("{archive} is cut off or damaged ({error})").format(
                                   archive=archive, error=f"{type(exc).__name__}: {exc}"),
                               _("copy the archive again")) from None
    absent = sorted(set(expected) - seen)
    if absent:
        raise ArchiveError(_("{archive}: {count} file(s) its manifest lists are not in it, e.g. {example}").format(
                               archive=archive, count=len(absent), example=absent[0]),
                           _("copy the archive again, or pack it again"))
    return manifest


def _plan(name: str, entry: dict[str, object], cache: Path, replace: bool) -> str:
    """What installing `name` does to the cache: `installed`, `unchanged`, `completed` or `replaced`."""
    folder = cache / model_sources.SOURCES[name].folder
    files: dict[str, dict[str, object]] = entry["files"]  # type: ignore[assignment]
    existing = _folder_files(folder) if folder.exists() else {}
    wanted = {rel: {"size": m["size"], "sha256": m["sha256"]} for rel, m in files.items()}
    if not existing:
        return "installed"
    if existing == wanted:
        return "unchanged"
    if all(wanted.get(rel) == meta for rel, meta in existing.items()):
        return "completed"  # a partial folder holding only the archive's own files
    if not replace:
        raise SetupError(_("{folder} already holds {name} with other files than the archive's; it is left as it is").format(
                             folder=folder, name=name),
                         _("keep it, or unpack with --replace to put the archive's {name} there instead").format(name=name))
    return "replaced"


def _install(name: str, entry: dict[str, object], action: str, staged: Path, cache: Path) -> Installed:
    source = model_sources.SOURCES[name]
    folder = cache / source.folder
    files: dict[str, dict[str, object]] = entry["files"]  # type: ignore[assignment]
    if action != "unchanged":
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staged.replace(folder)
    marker = model_sources.marker_path(cache, source.folder)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"source": [f"unpacked ({entry.get('origin', '')}: {entry.get('guide_uri', '')})"],
                                  "files": {rel: m["sha256"] for rel, m in files.items()}}, indent=1))
    return Installed(name, folder, action, len(files))


def unpack(archive: Path, cache: Optional[Path] = None, replace: bool = False, sha256: Optional[str] = None,
           say: Callable[[str], None] = print) -> list[Installed]:
    """Check `archive` completely, then install its models into the cache; return what was done.

    `sha256`: the archive's digest as `pack` printed it (checked first, if given). Nothing in
    the cache changes unless every file of the archive matches its manifest.
    """
    archive = Path(archive)
    cache = Path(cache) if cache else model_sources.cache_root()
    if not archive.is_file():
        raise SetupError(_("no file {archive}").format(archive=archive),
                         _("give the path of an archive made by `python -m helpers.models pack`"))
    digest = model_sources.sha256_of(archive)
    if sha256 and digest != sha256.strip().lower():
        raise ArchiveError(_("{archive} has sha256 {digest}, not the {expected} you expected").format(
                               archive=archive, digest=digest, expected=sha256),
                           _("copy the archive again from the instructor's copy"))
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))  # same file system: moves are renames
    try:
        manifest = _extract_checked(archive, staging)
        say(_("{archive}: sha256 {digest}; every file matches its manifest").format(archive=archive, digest=digest))
        models: dict[str, dict[str, object]] = manifest["models"]  # type: ignore[assignment]
        plan = {name: _plan(name, entry, cache, replace) for name, entry in models.items()}  # all checked first
        done = [_install(name, entry, plan[name], staging / model_sources.SOURCES[name].folder, cache)
                for name, entry in models.items()]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for item in done:
        say(_("{name}: {action} in {folder} ({count} files); the notebooks now use it").format(
            name=item.name, action=item.action, folder=item.folder, count=item.files))
    return done
