"""What kube-scheduler's resource filter decides for the one node of the local stack, and how it says it.

Pure arithmetic, no API calls: the controller (`controller/pods.py`) lists the pods, asks `fit`
whether a new server pod fits what the node has left, and binds it or leaves it Pending with the
scheduler's words. Only the NodeResourcesFit filter is imitated (pods count, cpu, memory); a
single node, so the message always says `0/1 nodes`.

Sources (kubernetes/kubernetes):
- requests of a pod: the sum over its containers, at least the largest init container's, plus
  the pod's overhead (`pkg/scheduler/framework/plugins/noderesources/fit.go`,
  `computePodResourceRequest`); a container that names only a limit has it as its request,
  because the apiserver defaults requests from limits when the pod is created;
- what the node has given away: the requests of every pod bound to it that has not ended;
- the reasons, in the filter's order: `Too many pods`, `Insufficient cpu`, `Insufficient memory`
  (`fitsRequest`);
- the message: `0/<nodes> nodes are available: <count> <reason>, ....` with the `count reason`
  strings sorted (`FitError.Error`, v1.20 `pkg/scheduler/core/generic_scheduler.go`); later
  releases add DefaultPreemption's verdict after it: ` preemption: 0/1 nodes are available: 1 No
  preemption victims found for incoming pod.` when no pod of lower priority could make room.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Iterable, Mapping, Optional

_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
            "P": Decimal("1e15"), "E": Decimal("1e18")}
_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")

NO_VICTIMS = "No preemption victims found for incoming pod"
ENDED = ("Succeeded", "Failed")


def quantity(text: str) -> Decimal:
    """A Kubernetes quantity (`1`, `500m`, `16Gi`, `1e3`, `2G`) as a number of base units."""
    found = _QUANTITY.match(str(text).strip())
    if not found:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 16Gi)")
    number, suffix = found.group(1), found.group(2) or ""
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 16Gi)") from None
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    if suffix[:1] in "eE" and suffix:
        return value * Decimal(10) ** int(suffix[1:])
    return value * _DECIMAL[suffix]


def millicores(text: str) -> int:
    """CPU in millicores, rounded up as resource.Quantity.MilliValue() rounds (`0.1` -> 100, `1` -> 1000)."""
    value = quantity(text) * 1000
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def memory_bytes(text: str) -> int:
    """Memory in bytes, rounded up as resource.Quantity.Value() rounds."""
    return int(quantity(text).to_integral_value(rounding="ROUND_CEILING"))


@dataclass(frozen=True)
class Resources:
    """cpu in millicores, memory in bytes."""

    cpu: int = 0
    memory: int = 0

    def __add__(self, other: "Resources") -> "Resources":
        return Resources(self.cpu + other.cpu, self.memory + other.memory)

    def at_least(self, other: "Resources") -> "Resources":
        return Resources(max(self.cpu, other.cpu), max(self.memory, other.memory))

    @classmethod
    def of(cls, values: Optional[Mapping[str, str]]) -> "Resources":
        values = values or {}
        return cls(millicores(values["cpu"]) if values.get("cpu") is not None else 0,
                   memory_bytes(values["memory"]) if values.get("memory") is not None else 0)


def container_requests(container: Mapping) -> Resources:
    """A container's requests; where it names only a limit, the limit (the apiserver's defaulting)."""
    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    return Resources.of({k: requests.get(k, limits.get(k)) for k in ("cpu", "memory")})


def pod_requests(spec: Mapping) -> Resources:
    """What a pod asks of a node: its containers summed, at least each init container, plus overhead."""
    total = Resources()
    for container in spec.get("containers") or []:
        total = total + container_requests(container)
    for init in spec.get("initContainers") or []:
        total = total.at_least(container_requests(init))
    return total + Resources.of(spec.get("overhead"))


def holds_resources(pod: Mapping, node: str) -> bool:
    """Whether a pod counts against `node`: bound to it and not ended (Succeeded or Failed)."""
    return (pod.get("spec") or {}).get("nodeName") == node and (pod.get("status") or {}).get("phase") not in ENDED


@dataclass(frozen=True)
class Allocatable:
    """What the node offers: cpu (millicores), memory (bytes) and a number of pods."""

    cpu: int
    memory: int
    pods: int = 110

    @classmethod
    def of(cls, values: Mapping[str, str]) -> "Allocatable":
        return cls(millicores(values.get("cpu", "0")), memory_bytes(values.get("memory", "0")),
                   int(quantity(values.get("pods", "110"))))


def insufficient(wanted: Resources, allocatable: Allocatable, placed: Iterable[Resources]) -> list[str]:
    """The filter's reasons `wanted` does not fit next to the pods `placed` on the node ([] if it fits)."""
    placed = list(placed)
    used = sum(placed, Resources())
    reasons = []
    if len(placed) + 1 > allocatable.pods:
        reasons.append("Too many pods")
    if wanted.cpu == 0 and wanted.memory == 0:
        return reasons
    if wanted.cpu > allocatable.cpu - used.cpu:
        reasons.append("Insufficient cpu")
    if wanted.memory > allocatable.memory - used.memory:
        reasons.append("Insufficient memory")
    return reasons


def fit_error(reasons: Iterable[str], nodes: int = 1, preemption: bool = False) -> str:
    """The FailedScheduling message for a pod every node turned down for `reasons` (one node here)."""
    histogram = sorted(f"{nodes} {reason}" for reason in dict.fromkeys(reasons))
    message = f"0/{nodes} nodes are available: {', '.join(histogram)}."
    if preemption:
        message += f" preemption: 0/{nodes} nodes are available: {nodes} {NO_VICTIMS}."
    return message


def scheduled_message(namespace: str, pod: str, node: str) -> str:
    """The `Scheduled` Event's message once the pod is bound."""
    return f"Successfully assigned {namespace}/{pod} to {node}"
