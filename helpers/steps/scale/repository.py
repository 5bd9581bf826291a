"""The other way to serve many models: one InferenceService whose `storageUri` holds a whole Triton model repository.

Explained in 07_one_server_many_models. The same copies of cifar10 that section 2 added as TrainedModels go
into one folder of folders, `scale/repository/<model>/`, and an InferenceService of their own,
`<server>-repo` (manifests/triton_repository_server.yaml), points at it. KServe gives its pod the
`storage-initializer` init container, which copies the whole prefix before Triton starts; Triton then runs
without explicit model control and loads every model it finds. There is no agent and no `models.json`:
nothing can be added to the running server, and a TrainedModel aimed at it is never served (KFServing
0.5.1 even calls it Ready). Adding or removing a model means a new repository and a new pod.

`start` applies it and times it to Ready and to every model READY in its own repository index; its memory
comes from the metrics API as in section 2. `side_by_side` sets both ways next to each other.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from kubernetes import client

from helpers.clients import inference, manifests, storage
from helpers.core.i18n import _
from helpers.core.show import show_not_in_guide
from helpers.core.wait import poll_until
from helpers.steps.scale import packing
from helpers.steps.scale.footprint import _table

if TYPE_CHECKING:
    from helpers.clients.target import Endpoint, Target
    from helpers.core.constants import ApiGroup

MANIFEST = "triton_repository_server"
FOLDER = f"{packing.FOLDER}/repository"  # s3://<bucket>/scale/repository/<model>/...
# It holds a few small models: the `small` preset's resources, whatever the walkthrough's preset is.
RESOURCES = {"server_cpu": "1", "server_memory": "2Gi"}


def server_name(server: str) -> str:
    """The repository server's name beside the multi-model server's: `<server>-repo`."""
    return f"{server}-repo"


def upload(s3: Any, bucket: str, nameless: Path, models: Sequence[str]) -> list[str]:
    """The repository: the nameless cifar10 folder (packing.prepare_files) once under each model's name."""
    return [key for name in models for key in storage.upload_folder(s3, nameless, bucket, f"{FOLDER}/{name}",
                                                                     progress=False)]


def show_upload(place: "Target", bucket: str, models: Sequence[str]) -> None:
    """The same from a shell, from the folder `packing.show_copy` made (`scale-cifar10`)."""
    from helpers.steps.objectstore import mc

    mc_lines = "\n".join(f"./mc cp -r scale-cifar10/ myminio/{bucket}/{FOLDER}/{name}/" for name in models)
    rclone = "\n".join(f"rclone copy scale-cifar10 myminio:{bucket}/{FOLDER}/{name}" for name in models)
    show_not_in_guide(mc.with_rclone(place, mc_lines, rclone) + (f"\nrclone tree myminio:{bucket}/{FOLDER}"
                                                                  if place.shell_env else ""),
                      _("a Triton model repository: one folder per model, the same files under each name"))


def manifest(values: dict[str, str], server: str, bucket: str) -> list[dict]:
    """manifests/triton_repository_server.yaml for `<server>-repo`, its storageUri on the repository folder."""
    docs = manifests.render(MANIFEST, **{**values, **RESOURCES, "server_name": server_name(server)})
    predictor = docs[0]["spec"]["predictor"]
    predictor["triton"]["storageUri"] = f"s3://{bucket}/{FOLDER}"
    return docs


@dataclass
class Started:
    """The repository server once it serves: seconds from `kubectl apply` to Ready and to every model READY,
    its pod's containers, and Triton's memory then (bytes; None when the metrics API is not readable)."""

    name: str
    ready_s: float
    served_s: float
    models: list[str]
    pod: str
    init_containers: list[str]
    containers: list[str]
    memory: Optional[int] = None
    unread: str = ""
    requests: dict[str, Any] = field(default_factory=dict)


def start(api: client.ApiClient, place: "Target", group: "ApiGroup", namespace: str, docs: Sequence[dict],
          models: Sequence[str], timeout: float = 300.0) -> tuple[Started, "Endpoint"]:
    """Apply the repository server; wait for Ready and for every model of `models` READY in its own index."""
    from helpers.clients import triton
    from helpers.steps.serving.server_pod import server_pod

    name = docs[0]["metadata"]["name"]
    remove(api, group, namespace, name.removesuffix("-repo"))  # what an earlier run left: time a fresh start
    applied = time.time()
    manifests.apply(api, docs)
    isvc = inference.wait_ready(api, group, inference.ISVC, name, namespace, timeout=timeout, progress=False)
    ready_s = time.time() - applied
    endpoint = place.server_endpoint(api, isvc)

    def all_ready() -> list[str]:
        index = [row["name"] for row in triton.repository_index(endpoint.base_url, endpoint.headers)
                 if row["state"] == "READY"]
        return index if set(models) <= set(index) else []

    served = poll_until(all_ready, _("every model of {name} to be READY").format(name=name), timeout=timeout,
                        interval=0.2)
    served_s = time.time() - applied
    pod = server_pod(api, group, name, namespace)
    top = packing.Top(api, namespace, pod.metadata.name)
    usage = top.after(time.time(), timeout=45.0)  # a new pod shows from its second sample on
    cpu, memory = 0.0, 0
    from helpers.steps.scale.footprint import cores, nbytes

    for one in pod.spec.containers:
        requests = (one.resources.requests if one.resources else None) or {}
        cpu, memory = cpu + cores(requests.get("cpu")), memory + nbytes(requests.get("memory"))
    return Started(name, round(ready_s, 3), round(served_s, 3), sorted(served), pod.metadata.name,
                   [c.name for c in pod.spec.init_containers or []], [c.name for c in pod.spec.containers],
                   usage.memory.get(group.server_container) if usage else None, top.unread,
                   {"cpu": cpu, "memory": memory}), endpoint


def show_apply(group: "ApiGroup", server: str, namespace: str, path: Path) -> None:
    """`kubectl apply -f` of the written manifest, then where to see the init container and the models."""
    name = server_name(server)
    show_not_in_guide("\n".join([
        f"cd {Path(path).parent}  # " + _("where this notebook wrote {file}").format(file=Path(path).name),
        f"kubectl apply -f {Path(path).name}",
        f"kubectl wait --for=condition=Ready {group.isvc_resource}/{name} -n {namespace} --timeout=300s",
        f"kubectl get pods -l {group.isvc_label}={name} -n {namespace}",
        f"REPO=$(kubectl get pod -l {group.isvc_label}={name} -o name -n {namespace})",
        f"kubectl get $REPO -n {namespace} -o jsonpath='{{.spec.initContainers[*].name}}{{\"\\n\"}}'",
        f"kubectl logs $REPO {group.server_container} -n {namespace} | grep 'successfully loaded'"]),
        _("one InferenceService for a whole model repository, and what its pod does at start"))


def side_by_side(before: Optional[packing.Usage], added: Sequence[packing.Added], started: Started,
                 group: "ApiGroup", server_requests: dict[str, Any]) -> str:
    """Both ways for the same models: pods, requests, time to serve, Triton's memory, and what a change takes."""
    from helpers.steps.scale.footprint import cpu_text, memory_text

    served = [a for a in added if not a.refused]
    last = next((a.triton_memory for a in reversed(served) if a.triton_memory), None)
    grew = (last - before.memory[group.server_container]) if last and before is not None \
        and before.memory.get(group.server_container) else None
    header = ["", _("TRAINEDMODELS IN THE RUNNING SERVER"), _("ONE INFERENCESERVICE, WHOLE REPOSITORY")]
    rows = [
        [_("models served"), str(len(served)), str(len(started.models))],
        [_("pods"), _("1 (already running)"), _("1 more")],
        [_("requests"), f"{cpu_text(server_requests['cpu'])} cpu, {memory_text(server_requests['memory'])}",
         f"{cpu_text(started.requests['cpu'])} cpu, {memory_text(started.requests['memory'])}"],
        [_("kubectl apply → every model served"), _("{s} s, one model at a time").format(
            s=f"{sum(a.served_s or 0 for a in served):.2f}"), _("{s} s, every model at start").format(
            s=f"{started.served_s:.2f}")],
        [_("Triton's memory"), _("+{grew} MiB on {base} MiB").format(grew=f"{grew / 2**20:.1f}",
                                                                     base=packing.mib(before.memory.get(
                                                                         group.server_container)))
         if grew is not None and before is not None else "-",
         _("{memory} MiB").format(memory=packing.mib(started.memory)) if started.memory else "-"],
        [_("one more model"), _("kubectl apply: about {s} s, nothing restarts").format(
            s=f"{packing._median([a.served_s for a in served]) or 0:.2f}"),
         _("a new repository and a new pod: about {s} s again").format(s=f"{started.served_s:.0f}")],
        [_("its limits"), _("the memory rule, the ConfigMap's 1 MiB"), _("the pod's memory; no list to outgrow")],
    ]
    return _table(header, rows)


def remove(api: client.ApiClient, group: "ApiGroup", namespace: str, server: str, timeout: float = 120.0) -> bool:
    """Delete the repository server and wait until its pod is gone; False when it was not there."""
    from helpers.steps.serving.server_pod import server_pods

    name = server_name(server)
    if not inference.delete(api, group, inference.ISVC, name, namespace):
        return False
    poll_until(lambda: inference.get(api, group, inference.ISVC, name, namespace) is None
               and not server_pods(api, group, name, namespace),
               _("InferenceService {name} and its pod to be deleted").format(name=f"{namespace}/{name}"),
               timeout=timeout, interval=0.5)
    return True


def summary(names: dict[str, Any]) -> dict[str, Any]:
    """Section 5 for 07's results JSON, from the notebook's own variables (`locals()`)."""
    return {"repository": {**asdict(names["started"]), "uploaded": names["repo_keys"]}}
