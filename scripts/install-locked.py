"""Creates .venv with the lock installed, linked from a venv kept in the cache, then the project.

Usage (make setup): python3 scripts/install-locked.py --venv .venv LOCK [MORE_REQUIREMENTS...] --project SPEC

The lock (constraints.txt, from `make lock`) pins every package, so nothing is left for pip to
resolve; yet `python -m venv` + `pip install -c LOCK -e .[...]` + compiling took ~70 s here, on three
things: reading the package index (every version of every package, some 130,000 links, 12 s),
unpacking 1.4 GB of torch and TensorFlow one wheel at a time on one core, and compiling them.

So, stdlib only (it runs before the venv exists):
1. The lock's wheels are kept once, `pip wheel --no-deps` into MMS_CACHE_DIR/wheels/<key>/ (default
   ~/.cache/mms-notebooks), with pip itself and the project's build requirement. <key> hashes the
   requirement files, the build requirement and the interpreter, so a changed lock gets a new
   wheelhouse; the previous ones are removed. No setup after the first needs the index.
2. A venv of exactly those wheels is built once beside them, in MMS_CACHE_DIR/venvs/<key>/: two pips
   install them side by side (`--no-index --no-deps`, each about half of the bytes: the packages are
   disjoint), then every file a process here imports is compiled (PYTHONDONTWRITEBYTECODE may be set,
   and then each process would compile what it imports again). Its key adds the interpreter's place
   and the code that builds it.
3. .venv is that venv's tree with its files hard-linked, not copied (~2 s for 70,000 entries; conda's
   package cache and uv link the same way), and the paths in bin/ rewritten. A file edited in place
   in .venv changes in the cache too; pip replaces files, so `pip install` in .venv never does. Where
   links cannot be made (the cache on another file system) the files are copied.
4. The project, editable, resolved against what is installed and the wheelhouse alone: a dependency
   of pyproject.toml missing from the lock fails here, by name, as it would have before.
~8 s instead of ~50 s for a new clone here, and offline once the cache is filled.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # helpers.core.config: stdlib only, no venv yet
from helpers.core import config

PIP = ["-m", "pip", "--disable-pip-version-check"]
# Left out of the compile, as no process of the project imports them (a whole suite run reads none of
# their files): the packages' own tests (tests/, Crypto's SelfTest/, tornado/test/), sympy, networkx
# and mpmath, torch's _inductor, _dynamo and onnx (torch.compile and ONNX export), and kubernetes'
# asyncio client (aio/): 4,900 of 16,645 files, so 11,700 are compiled. Files that are not Python 3
# (templates, Python 2 leftovers in some packages) fail to compile, as under pip, and are left so.
NOT_COMPILED = r"/(tests|SelfTest|sympy|networkx|mpmath)/|/tornado/test/|/kubernetes/aio/|/torch/(_inductor|_dynamo|onnx)/"


def say(line: str) -> None:
    print(f"install-locked: {line}", flush=True)


def pip_of(venv: Path) -> list[str]:
    return [str(venv / "bin" / "python"), *PIP]


def build_requires(project_dir: Path) -> list[str]:
    """pyproject.toml's [build-system] requires: pip builds the editable project with them."""
    text = (project_dir / "pyproject.toml").read_text()
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # 3.10: the one list of quoted strings is enough
        table = re.search(r"^\[build-system\][^\[]*?^requires\s*=\s*\[(.*?)\]", text, re.M | re.S)
        return re.findall(r'"([^"]+)"', table.group(1)) if table else ["setuptools", "wheel"]
    return list(tomllib.loads(text).get("build-system", {}).get("requires", ["setuptools", "wheel"]))


def wheelhouse_key(requirement_files: list[Path], extra: list[str]) -> str:
    digest = hashlib.sha256()
    for path in requirement_files:
        digest.update(path.read_bytes())
    digest.update("\n".join(extra + [sys.implementation.cache_tag, platform.machine()]).encode())
    return digest.hexdigest()[:16]


def wheelhouse(requirement_files: list[Path], project_dir: Path) -> tuple[Path, list[str]]:
    """Where the wheels of these files are kept, and what else is kept there (pip, the build requirement)."""
    extra = ["pip", *build_requires(project_dir)]
    return config.cache_dir() / "wheels" / wheelhouse_key(requirement_files, extra), extra


def template(requirement_files: list[Path], project_dir: Path) -> Path:
    """Where the venv of these files' wheels is kept: its key adds the interpreter's place and the recipe
    (the code that builds it: a changed docstring elsewhere does not build it again)."""
    _, extra = wheelhouse(requirement_files, project_dir)
    code = NOT_COMPILED + "".join(inspect.getsource(f) for f in (build_template, install_side_by_side, halves, pinned))
    recipe = hashlib.sha256(code.encode()).hexdigest()[:16]
    interpreter = [sys.base_prefix, platform.python_version()]
    return config.cache_dir() / "venvs" / wheelhouse_key(requirement_files, [*extra, *interpreter, recipe])


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """One setup at a time fills the cache; a second waits, then finds it filled."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another setup is filling {root}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def keep_only(root: Path, current: Path) -> None:
    """Remove the other entries of `root` (older locks, fillings a killed setup left): each is ~1-4 GB."""
    for old in root.iterdir():
        if old.is_dir() and old != current:
            shutil.rmtree(old, ignore_errors=True)


def ensure_wheelhouse(requirement_files: list[Path], project_dir: Path, pip: list[str]) -> tuple[Path, list[str]]:
    """The folder holding a wheel for every pinned requirement, filled by `pip` from the index the first
    time, and what else it holds (`wheelhouse`)."""
    house, extra = wheelhouse(requirement_files, project_dir)
    root = house.parent
    if (house / ".complete").exists():
        say(f"wheels from {house}")
        return house, extra
    root.mkdir(parents=True, exist_ok=True)
    say(f"fetching the locked wheels once into {house} (needs the package index)")
    filling = Path(tempfile.mkdtemp(prefix=".filling-", dir=root))
    try:
        args = [a for path in requirement_files for a in ("-r", str(path))]
        run(pip + ["wheel", "-q", "--no-deps", "-w", str(filling), *args, *extra],
            "pip could not fetch the locked wheels; `make setup` needs the package index the first time")
        (filling / ".complete").touch()
        filling.rename(house)
    except BaseException:
        shutil.rmtree(filling, ignore_errors=True)
        raise
    keep_only(root, house)
    return house, extra


def normalized(name: str) -> str:
    """A distribution's name as wheel file names spell it (PEP 503 and 427: `tensorflow-cpu` -> `tensorflow_cpu`)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def halves(house: Path, pins: list[str]) -> tuple[list[str], list[str]]:
    """The pins split in two lists of about equal wheel bytes (the biggest first, each to the lighter list)."""
    sizes = {normalized(wheel.name.split("-", 1)[0]): wheel.stat().st_size for wheel in house.glob("*.whl")}

    def size(pin: str) -> int:
        return sizes.get(normalized(pin.split("==", 1)[0]), 0)

    parts: tuple[list[str], list[str]] = ([], [])
    loads = [0, 0]
    for pin in sorted(pins, key=size, reverse=True):
        lighter = loads.index(min(loads))
        parts[lighter].append(pin)
        loads[lighter] += size(pin)
    return parts


def pinned(requirement_files: list[Path]) -> list[str]:
    """Every `name==version` line of the files (comments and options left out)."""
    pins = []
    for path in requirement_files:
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                pins.append(line)
    return pins


def run(argv: list[str], failure: str) -> None:
    if subprocess.run(argv).returncode != 0:
        sys.exit(f"install-locked: {failure}")


def install_side_by_side(pip: list[str], house: Path, parts: tuple[list[str], list[str]]) -> None:
    base = pip + ["install", "-q", "--no-compile", "--no-index", "--find-links", str(house), "--no-deps"]
    procs = [subprocess.Popen(base + part, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for part in parts if part]
    failed = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            failed.append(out)
    if failed:
        sys.exit("install-locked: pip could not install from the wheelhouse:\n" + "\n".join(failed)
                 + f"\n(if a wheel there is missing or damaged, remove {house} and run `make setup` again)")


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def build_template(requirement_files: list[Path], project_dir: Path, target: Path) -> None:
    """A venv at `target` holding the lock's wheels, compiled: made in a scratch folder, then renamed."""
    filling = Path(tempfile.mkdtemp(prefix=".filling-", dir=target.parent))
    filling.chmod(0o755)  # mkdtemp's 0700 would be copied to every .venv
    try:
        run([sys.executable, "-m", "venv", str(filling)],
            f"{sys.executable} -m venv failed: on Debian install python3-venv (`make setup` does, as root)")
        pip = pip_of(filling)
        house, extra = ensure_wheelhouse(requirement_files, project_dir, pip)
        run(pip + ["install", "-q", "--no-compile", "--no-index", "--find-links", str(house), "--upgrade", *extra],
            "pip could not upgrade itself from the wheelhouse")
        install_side_by_side(pip, house, halves(house, pinned(requirement_files)))
        # pip installs with --no-compile, then compileall on every core: pip compiles torch and
        # TensorFlow on one core (~50 s here, ~20 s this way).
        subprocess.run([str(filling / "bin" / "python"), "-m", "compileall", "-qq", "-j", "0", "-x", NOT_COMPILED,
                        str(site_packages(filling))])
        (filling / ".prefix").write_text(str(filling))
        (filling / ".complete").touch()
        filling.rename(target)
    except BaseException:
        shutil.rmtree(filling, ignore_errors=True)
        raise


def ensure_template(requirement_files: list[Path], project_dir: Path) -> Path:
    """The cached venv of the lock, built the first time (with the wheelhouse, if that is missing too)."""
    target = template(requirement_files, project_dir)
    with locked(target.parent):
        if (target / ".complete").exists():
            say(f"the lock's packages from {target}")
            return target
        keep_only(target.parent, target)  # older locks, and what a killed setup left
        say(f"installing the lock once into {target}")
        build_template(requirement_files, project_dir, target)
    return target


def can_link(source: Path, folder: Path) -> bool:
    probe = folder / ".link-probe"
    try:
        os.link(source, probe)
    except OSError:
        return False
    probe.unlink()
    return True


def relocate(venv: Path, old: str, new: str) -> None:
    """Point the scripts in bin/ and pyvenv.cfg at `new`, each written as a new file (the cache's stays)."""
    for path in [venv / "pyvenv.cfg", *sorted((venv / "bin").iterdir())]:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if data.startswith(b"\x7fELF") or old.encode() not in data:
            continue
        fresh = path.with_name(path.name + ".relocating")
        fresh.write_bytes(data.replace(old.encode(), new.encode()))
        shutil.copymode(path, fresh)
        os.replace(fresh, path)


def clone(source: Path, venv: Path) -> bool:
    """`venv` (replaced if there) as a copy of the cached venv `source`, its files hard links where possible
    (then True)."""
    venv = venv.absolute()
    partial = venv.with_name(f".{venv.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    link = can_link(source / "pyvenv.cfg", partial)
    if not link:
        say(f"{source} and {venv} are on different file systems: copying the files, not linking them")
    if link and shutil.which("cp") and sys.platform.startswith("linux"):
        run(["cp", "-al", f"{source}/.", str(partial)], f"could not link {source} into {partial}")  # GNU cp: 3x quicker
    else:
        partial.rmdir()
        shutil.copytree(source, partial, symlinks=True, copy_function=os.link if link else shutil.copy2)
    for mark in (".complete", ".prefix"):
        (partial / mark).unlink()
    relocate(partial, (source / ".prefix").read_text(), str(venv))
    if venv.is_symlink() or venv.is_file():
        venv.unlink()
    elif venv.exists():
        shutil.rmtree(venv)
    partial.rename(venv)
    return link


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path, help="constraints.txt: every package pinned")
    parser.add_argument("more", type=Path, nargs="*", help="requirement files installed alike, with --no-deps")
    parser.add_argument("--venv", type=Path, required=True, help="the venv to create (replaced if there)")
    parser.add_argument("--project", required=True, help="what to install editable, e.g. '.[local,lab,dev]'")
    args = parser.parse_args()
    files = [args.lock, *args.more]
    source = ensure_template(files, Path.cwd())
    linked = clone(source, args.venv)
    say(f"{args.venv} {'linked' if linked else 'copied'} from {source}")
    house, _ = wheelhouse(files, Path.cwd())
    find_links = ["--find-links", str(house)] if house.is_dir() else []
    run(pip_of(args.venv) + ["install", "-q", "--no-compile", "--no-index", "--no-build-isolation", *find_links,
                             "-c", str(args.lock), "-e", args.project],
        f"pip could not install {args.project}: is a dependency of pyproject.toml missing from {args.lock}? "
        "(`make lock`)")


if __name__ == "__main__":
    main()
