"""The size of the local stack's one Node: the allocatable cpu and memory its scheduler hands out.

A real node's size is its machine's; here it is a setting, so that a laptop can play the node of
a shared workshop cluster (where the guide's 16Gi server may not fit) or of the guide's own big
one. Chosen per state folder, in this order:

1. `python -m helpers.local up --node-cpu 8 --node-memory 32Gi`;
2. MMS_NODE_CPU, MMS_NODE_MEMORY when `up` runs;
3. what the state folder's `node.json` kept from an earlier `up`;
4. the release's default (`Profile.node_cpu`, `Profile.node_memory`).

The values are the node's allocatable. Its capacity is shown as a kubelet with default flags
shows it: the same cpu (no cpu is reserved), memory plus the 100Mi of the default hard eviction
threshold (`memory.available<100Mi`). The controller writes both into the Node's status and
re-reads `node.json` on every pass, so `up --node-memory ...` on a running stack resizes the node
and the scheduler then retries Pending pods against the new size.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.local.cluster import scheduler

CPU_ENV = "MMS_NODE_CPU"  # read by `up`; helpers.core.config.ENV_VARS and the README list it
MEMORY_ENV = "MMS_NODE_MEMORY"
FILE = "node.json"
EVICTION_HARD_MEMORY = 100 * 2 ** 20  # the kubelet's default evictionHard memory.available<100Mi
PODS = "110"  # the kubelet's default --max-pods


@dataclass(frozen=True)
class NodeSize:
    cpu: str
    memory: str
    source: str = "release default"

    def allocatable(self) -> dict[str, str]:
        return {"cpu": self.cpu, "memory": self.memory, "pods": PODS}

    def capacity(self) -> dict[str, str]:
        memory = scheduler.memory_bytes(self.memory) + EVICTION_HARD_MEMORY
        return {"cpu": self.cpu, "memory": f"{memory // 1024}Ki" if memory % 1024 == 0 else str(memory),
                "pods": PODS}

    def describe(self) -> str:
        """One line for `status`, in the reader's language (`source` stays English in `node.json`)."""
        return _("{cpu} cpu, {memory} allocatable ({source})").format(cpu=self.cpu, memory=self.memory,
                                                                      source=shown_source(self.source))


def shown_source(source: str) -> str:
    """Where a size came from, as `choose` keeps it (a flag, a variable, "<profile> default", "set earlier"
    or "cpu from A, memory from B"), in the reader's language; flags and variables stay as typed."""
    mixed = re.fullmatch(r"cpu from (.+), memory from (.+)", source)
    if mixed:
        return _("cpu from {cpu}, memory from {memory}").format(cpu=shown_source(mixed[1]),
                                                                memory=shown_source(mixed[2]))
    fixed = {"set earlier": _("set earlier"), "release default": _("release default")}
    if source in fixed:
        return fixed[source]
    default = re.fullmatch(r"(\S+) default", source)
    return _("{profile} default").format(profile=default[1]) if default else source


def _checked(cpu: str, memory: str, source: str) -> NodeSize:
    for name, value, parse in (("cpu", cpu, scheduler.millicores), ("memory", memory, scheduler.memory_bytes)):
        try:
            ok = parse(value) > 0
        except ValueError:
            ok = False
        if not ok:
            raise SetupError(_("the node's {name} {value!r} ({source}) is not a positive Kubernetes quantity").format(
                                 name=name, value=value, source=shown_source(source)),
                             _("give e.g. --node-cpu 8 --node-memory 32Gi (or {cpu_env}, {memory_env})").format(
                                 cpu_env=CPU_ENV, memory_env=MEMORY_ENV))
    return NodeSize(str(cpu), str(memory), source)


def saved(state_root: Path) -> Optional[NodeSize]:
    """The size `node.json` keeps, if any."""
    try:
        data = json.loads((Path(state_root) / FILE).read_text())
        return NodeSize(str(data["cpu"]), str(data["memory"]), str(data.get("source") or "set earlier"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def current(state_root: Path, profile) -> NodeSize:
    """The node's size now: `node.json`, else the release's default."""
    return saved(state_root) or NodeSize(profile.node_cpu, profile.node_memory, f"{profile.name} default")


def choose(state_root: Path, profile, cpu: Optional[str] = None, memory: Optional[str] = None) -> NodeSize:
    """The size for `up` (flag > env > kept > release default), validated and kept in `node.json`."""
    kept = current(state_root, profile)
    chosen_cpu, cpu_from = (cpu, "--node-cpu") if cpu else (os.environ.get(CPU_ENV), CPU_ENV) \
        if os.environ.get(CPU_ENV) else (kept.cpu, kept.source)
    chosen_memory, memory_from = (memory, "--node-memory") if memory else (os.environ.get(MEMORY_ENV), MEMORY_ENV) \
        if os.environ.get(MEMORY_ENV) else (kept.memory, kept.source)
    source = cpu_from if cpu_from == memory_from else f"cpu from {cpu_from}, memory from {memory_from}"
    size = _checked(chosen_cpu, chosen_memory, source)
    if saved(state_root) != size:
        path = Path(state_root) / FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"cpu": size.cpu, "memory": size.memory, "source": size.source}, indent=2) + "\n")
        tmp.replace(path)
    return size
