"""Installs the lock into a fresh virtualenv from a wheelhouse of its exact files, then the project.

Usage (make setup): .venv/bin/python scripts/install-locked.py LOCK [MORE_REQUIREMENTS...] --project SPEC

The lock (constraints.txt, from `make lock`) pins every package, so nothing is left for pip to
resolve; yet `pip install -c LOCK -e .[...]` took 31 s here, and it spent them on two things:
- reading the package index: every version of every package, some 130,000 links, for 12 s;
- unpacking one wheel at a time on one core (torch and TensorFlow are 1.4 GB of files).

So, stdlib only (the venv holds nothing else yet):
1. The lock's wheels are kept once, `pip wheel --no-deps` into MMS_CACHE_DIR/wheels/<key>/ (default
   ~/.cache/mms-notebooks), with pip itself and the project's build requirement. <key> hashes the
   requirement files, the build requirement and the interpreter, so a changed lock gets a new
   wheelhouse; the previous ones are removed. A second `make setup` needs no index at all.
2. Two pips install them side by side from there (`--no-index --no-deps`), each about half of the
   bytes: the packages are disjoint, each pip writes its own files.
3. The project, editable, resolved against what is installed and the wheelhouse alone: a dependency
   of pyproject.toml missing from the lock fails here, by name, as it would have before.
About 18 s instead of 33 s here, and offline once the wheelhouse exists.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]


def say(line: str) -> None:
    print(f"install-locked: {line}", flush=True)


def cache_root() -> Path:
    base = os.environ.get("MMS_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mms-notebooks"
    return Path(base) / "wheels"


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
    return cache_root() / wheelhouse_key(requirement_files, extra), extra


def ensure_wheelhouse(requirement_files: list[Path], project_dir: Path) -> Path:
    """The folder holding a wheel for every pinned requirement, filled from the index the first time."""
    house, extra = wheelhouse(requirement_files, project_dir)
    root = house.parent
    if (house / ".complete").exists():
        say(f"wheels from {house}")
        return house
    root.mkdir(parents=True, exist_ok=True)
    say(f"fetching the locked wheels once into {house} (needs the package index)")
    filling = Path(tempfile.mkdtemp(prefix=".filling-", dir=root))
    try:
        args = [a for path in requirement_files for a in ("-r", str(path))]
        run(PIP + ["wheel", "-q", "--no-deps", "-w", str(filling), *args, *extra],
            "pip could not fetch the locked wheels; `make setup` needs the package index the first time")
        (filling / ".complete").touch()
        try:
            filling.rename(house)
        except OSError:  # another setup filled it meanwhile
            shutil.rmtree(filling)
    except BaseException:
        shutil.rmtree(filling, ignore_errors=True)
        raise
    for old in root.iterdir():  # one lock at a time: a wheelhouse is ~0.8 GB
        if old.is_dir() and old != house and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
    return house


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


def install_side_by_side(house: Path, parts: tuple[list[str], list[str]]) -> None:
    base = PIP + ["install", "-q", "--no-compile", "--no-index", "--find-links", str(house), "--no-deps"]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path, help="constraints.txt: every package pinned")
    parser.add_argument("more", type=Path, nargs="*", help="requirement files installed alike, with --no-deps")
    parser.add_argument("--project", required=True, help="what to install editable, e.g. '.[local,lab,dev]'")
    args = parser.parse_args()
    files = [args.lock, *args.more]
    house = ensure_wheelhouse(files, Path.cwd())
    run(PIP + ["install", "-q", "--no-compile", "--no-index", "--find-links", str(house), "--upgrade", "pip"],
        "pip could not upgrade itself from the wheelhouse")
    install_side_by_side(house, halves(house, pinned(files)))
    run(PIP + ["install", "-q", "--no-compile", "--no-index", "--find-links", str(house), "-c", str(args.lock),
               "-e", args.project],
        f"pip could not install {args.project}: is a dependency of pyproject.toml missing from {args.lock}? "
        "(`make lock`)")


if __name__ == "__main__":
    main()
