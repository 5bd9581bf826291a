"""Memory cgroups for the server containers' processes, as the kubelet's runtime makes them.

On a node, each container runs in a memory cgroup whose limit is the container's
`resources.limits.memory`; a container that goes over it is killed by the kernel's OOM killer, and
the kubelet reports `lastState.terminated.reason: OOMKilled` (exit code 137) and restarts it.
The local controller does the same for Triton: a group per server under the controller's own
memory cgroup (`<its cgroup>/mms-<stack>/<namespace>.<name>`), its limit written, and Triton's
PID (so also its Python-backend stubs, its children) put in it. A run ended by the OOM killer is
told from the group's OOM kill counter, as containerd tells it from the cgroup's OOM events.

Both cgroup layouts are handled: v1 (`/sys/fs/cgroup/memory/.../memory.limit_in_bytes`,
`memory.oom_control`'s `oom_kill`) and v2 (`memory.max`, `memory.events`' `oom_kill`). Where
neither is writable (not root, a read-only mount, no memory controller), `probe()` says why; the
stack then runs Triton without a limit and `python -m helpers.local status` shows that line.
Groups are removed when their server stops and, all at once, on `down`.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from helpers.core.i18n import _

log = logging.getLogger("cgroups")

ROOT = Path("/sys/fs/cgroup")
MAX = "max"


@dataclass(frozen=True)
class Hierarchy:
    """Where this process's memory cgroup is, and which layout it has (`v1`, `v2`)."""

    version: str
    own: Path  # this process's memory cgroup folder

    @property
    def limit_file(self) -> str:
        return "memory.limit_in_bytes" if self.version == "v1" else "memory.max"


@dataclass(frozen=True)
class Probe:
    """Whether container memory limits can be enforced here, and if not, why not.

    `why` names the reason ("not-root", "no-controller", "cannot-write"), `where` the folder it is
    about and `error` the system's own words, so that `status` says it in its reader's language
    (the controller that probed may run in another)."""

    hierarchy: Optional[Hierarchy]
    why: str = ""
    where: str = ""
    error: str = ""

    @property
    def usable(self) -> bool:
        return self.hierarchy is not None

    @property
    def reason(self) -> str:
        texts = {"not-root": _("not root: only root may make cgroups here"),
                 "no-controller": _("no memory cgroup controller under {where}"),
                 "cannot-write": _("cannot write {where}: {error}")}
        text = texts.get(self.why)
        return text.format(where=self.where, error=self.error) if text else self.why

    def line(self) -> str:
        if self.hierarchy:
            return _("memory limits: enforced (cgroup {version} under {folder}): a container over its limits.memory "
                     "is OOMKilled and restarted").format(version=self.hierarchy.version, folder=self.hierarchy.own)
        return _("memory limits: NOT enforced ({reason}): Triton runs without its limits.memory, so it is never "
                 "OOMKilled here as it would be on a node").format(reason=self.reason)


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """`/proc/self/cgroup` as {controller: path}; the v2 entry (`0::/path`) under the key ""."""
    found = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                found[controller] = parts[2]
    return found


def find(root: Path = ROOT, proc_cgroup: Optional[str] = None) -> Optional[Hierarchy]:
    """This process's memory cgroup: the v1 memory controller if mounted, else the v2 unified tree."""
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    paths = _own_paths(proc_cgroup)
    if "memory" in paths and (root / "memory" / "memory.limit_in_bytes").exists():
        return Hierarchy("v1", root / "memory" / paths["memory"].lstrip("/"))
    for unified in (root, root / "unified"):
        if "" in paths and (unified / "cgroup.controllers").exists():
            if "memory" in (unified / "cgroup.controllers").read_text().split():
                return Hierarchy("v2", unified / paths[""].lstrip("/"))
    return None


def probe(root: Path = ROOT) -> Probe:
    """Try to make (and remove) a group with a limit; say why not where it fails."""
    if os.geteuid() != 0:
        return Probe(None, "not-root")
    hierarchy = find(root)
    if hierarchy is None:
        return Probe(None, "no-controller", str(root))
    trial = hierarchy.own / f"mms-probe-{os.getpid()}"
    try:
        trial.mkdir()
        try:
            (trial / hierarchy.limit_file).write_text(str(64 * 2 ** 20))
        finally:
            trial.rmdir()
    except OSError as exc:
        return Probe(None, "cannot-write", str(hierarchy.own), str(exc.strerror or exc))
    return Probe(hierarchy)


RECORD = "cgroups.json"  # in the state folder: where the stack's groups are, and the probe's line


def stack_group(hierarchy: Hierarchy, state_root: Path) -> Path:
    """The folder that holds one stack's groups (a name from its state folder, so stacks never share),
    under the controller's own cgroup; kept in the state folder for `down`, which runs elsewhere."""
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", str(Path(state_root).resolve()).strip("/"))[-60:]
    return hierarchy.own / f"mms-{tag}"


def publish(state_root: Path, found: Probe) -> None:
    """Write what the controller found (`status` shows its line, in its own reader's language; `down`
    removes the groups it names)."""
    data = {"line": found.line(), "usable": found.usable,
            "groups": str(stack_group(found.hierarchy, state_root)) if found.hierarchy else "",
            "version": found.hierarchy.version if found.hierarchy else "",
            "own": str(found.hierarchy.own) if found.hierarchy else "",
            "why": found.why, "where": found.where, "error": found.error}
    path = Path(state_root) / RECORD
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def published(state_root: Path) -> dict:
    try:
        return json.loads((Path(state_root) / RECORD).read_text())
    except (OSError, ValueError):
        return {}


def published_probe(state_root: Path) -> Optional[Probe]:
    """What the controller found, as a Probe (None when it published nothing, or only the older `line`)."""
    data = published(state_root)
    if data.get("version") and data.get("own"):
        return Probe(Hierarchy(data["version"], Path(data["own"])))
    if data.get("why"):
        return Probe(None, data["why"], data.get("where", ""), data.get("error", ""))
    return None


def _enable_memory_v2(folder: Path) -> None:
    """v2: a child gets `memory.max` only if its parent delegates the controller to it."""
    try:
        (folder / "cgroup.subtree_control").write_text("+memory")
    except OSError:
        pass  # already on, or the parent has processes (v2's no-internal-processes rule): the write of the limit says


def ensure(hierarchy: Hierarchy, state_root: Path, name: str, limit: Optional[int]) -> Path:
    """The group `name` of this stack with `limit` bytes (None: no limit), made if needed."""
    parent = stack_group(hierarchy, state_root)
    parent.mkdir(exist_ok=True)
    if hierarchy.version == "v2":
        _enable_memory_v2(parent)
    group = parent / name
    group.mkdir(exist_ok=True)
    value = str(limit) if limit else ("-1" if hierarchy.version == "v1" else MAX)
    (group / hierarchy.limit_file).write_text(value)
    return group


def add(group: Path, pid: int) -> None:
    """Move process `pid` into `group` (its later children start there too)."""
    (group / "cgroup.procs").write_text(str(pid))


def oom_kills(group: Path) -> int:
    """How many processes the OOM killer ended in `group` (0 if it cannot be read)."""
    for name in ("memory.events", "memory.oom_control"):
        try:
            text = (group / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return 0


def remove(group: Path) -> bool:
    """Remove an empty group (a folder of a cgroup filesystem goes with rmdir, never rm -r)."""
    try:
        group.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError as exc:
        log.warning("cannot remove cgroup %s: %s", group, exc.strerror or exc)
        return False


def remove_all(state_root: Path) -> list[Path]:
    """Remove this stack's groups (after its processes stopped); returns those that stay (still busy)."""
    where = published(state_root).get("groups")
    parent = Path(where) if where else None
    if parent is None or not parent.name.startswith("mms-") or ROOT not in parent.parents or not parent.is_dir():
        return []
    stay = [group for group in sorted(p for p in parent.iterdir() if p.is_dir()) if not remove(group)]
    if not stay:
        remove(parent)
    return stay
