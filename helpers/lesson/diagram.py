"""The architecture of multi-model serving as a picture, drawn from the project's own names; and
the hand-off of one TrainedModel (controller -> ConfigMap -> agent -> S3 -> Triton) with the times
a run measured (`handoff`, 03_cifar10 and 04_inception).

Explained in 00_cluster_prep, which opens with the architecture. Every name in a box (the API group's
resources, the `modelconfig-<isvc>-0` ConfigMap and its `models.json`, the pod's containers and
mount paths, Triton's port, MinIO's Service, the ingress gateway) is read from
`helpers.core.constants` when the figure is drawn, so the picture changes when the contract does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from helpers.core import constants
from helpers.core.constants import ApiGroup
from helpers.core.i18n import _
from helpers.lesson import plots


@dataclass(frozen=True)
class Box:
    """One part: where it sits (x, y, width, height in a 15 x 7.6 canvas, inches), a bold title, detail lines."""

    key: str
    xy: tuple[float, float, float, float]
    title: str
    lines: tuple[str, ...]
    color: str


@dataclass(frozen=True)
class Arrow:
    """A step from one box to another, with what it carries."""

    start: str
    end: str
    label: str


def parts(group: ApiGroup, server_name: str, namespace: str, bucket: str,
          model: str = "cifar10") -> tuple[list[Box], list[Arrow]]:
    """The boxes and arrows of the picture, their text taken from `helpers.core.constants` now."""
    c = constants
    config_map = c.model_config_map_name(server_name)
    boxes = [
        Box("you", (0.2, 6.2, 4.4, 1.1), _("you: notebook, kubectl, curl"),
            (_("namespace {namespace}").format(namespace=namespace),), "#ddf4ff"),
        Box("controller", (0.2, 0.6, 4.4, 1.8),
            "KFServing controller" if group.group == c.KFSERVING_GROUP else "KServe controller",
            (_("watches {resource}").format(resource=group.tm_resource), _("and {resource}").format(resource=group.isvc_resource),
             f"({group.tm_api_version})"), "#fff8c5"),
        Box("configmap", (5.6, 0.6, 3.8, 1.8), f"ConfigMap {config_map}",
            (_("key {file}:").format(file=c.MODEL_CONFIG_FILE), '[{"modelName", "modelSpec":',
             ' {"storageUri", "memory"}}]'), "#fff8c5"),
        Box("agent", (10.4, 0.7, 4.1, 1.6), f"container {c.AGENT_CONTAINER}",
            (_("watches {path}").format(path=f"{c.CONFIG_DIR}/{c.MODEL_CONFIG_FILE}"),
             _("writes {path}").format(path=f"{c.MODEL_DIR}/<model>/"),
             "+ " + _("{marker}<sha256 of spec>").format(marker=c.SUCCESS_MARKER_PREFIX)), "#dafbe1"),
        Box("triton", (10.4, 3.4, 4.1, 1.6), f"container {group.server_container}",
            (f"tritonserver, HTTP :{c.TRITON_HTTP_PORT}", f"--model-store={c.MODEL_DIR}",
             "--model-control-mode=explicit"), "#dafbe1"),
        Box("s3", (5.6, 3.4, 3.8, 1.5), "MinIO (S3)",
            (f"{c.MINIO_SERVICE}.{c.KUBEFLOW_NAMESPACE}:{c.MINIO_PORT}", f"s3://{bucket}/<prefix>/{model}/"),
            "#ffebe9"),
        Box("gateway", (10.4, 6.2, 4.1, 1.1), f"{c.INGRESS_GATEWAY} ({c.ISTIO_NAMESPACE})",
            (_("routes by Host: {host}").format(host=f"{server_name}.{namespace}..."),), "#ddf4ff"),
    ]
    arrows = [
        Arrow("you", "controller", f"kubectl apply TrainedModel {model}"),
        Arrow("controller", "configmap", _("writes\n{file}").format(file=c.MODEL_CONFIG_FILE)),
        Arrow("configmap", "agent", _("mounted at\n{path}").format(path=c.CONFIG_DIR)),
        Arrow("agent", "s3", _("downloads the files")),
        Arrow("agent", "triton", f"POST /v2/repository/models/{model}/load"),
        Arrow("you", "gateway", f"POST /v2/models/{model}/infer"),
        Arrow("gateway", "triton", _("to :{port}").format(port=c.TRITON_HTTP_PORT)),
    ]
    return boxes, arrows


def _edge(box: Box, toward: tuple[float, float]) -> tuple[float, float]:
    """The point where the line from the box's centre toward `toward` leaves the box."""
    x, y, w, h = box.xy
    cx, cy = x + w / 2, y + h / 2
    dx, dy = toward[0] - cx, toward[1] - cy
    scale = min(w / 2 / abs(dx) if dx else float("inf"), h / 2 / abs(dy) if dy else float("inf"))
    return cx + dx * scale, cy + dy * scale


def architecture(group: ApiGroup, server_name: str = constants.DEFAULT_SERVER_NAME,
                 namespace: str = constants.DEFAULT_NAMESPACE, bucket: str = constants.DEFAULT_BUCKET,
                 filename: str = "00_architecture.png", folder: Optional[Path] = None) -> Path:
    """Draw controller -> ConfigMap -> agent -> S3 / Triton <- gateway; save it as a PNG and return its path."""
    from matplotlib.patches import FancyBboxPatch

    plots.use_fonts()
    boxes, arrows = parts(group, server_name, namespace, bucket)
    by_key = {box.key: box for box in boxes}
    fig = plots.figure(figsize=(15, 7.6))
    ax = fig.subplots()
    ax.set_xlim(0, 15)
    ax.set_ylim(0, 7.6)
    ax.axis("off")
    ax.add_patch(FancyBboxPatch((10.2, 0.1), 4.5, 5.5, boxstyle="round,pad=0.02", facecolor="none",
                                edgecolor="#57606a", linestyle="--"))
    ax.text(10.3, 0.2, _("Pod of InferenceService {server} ({namespace})").format(server=server_name, namespace=namespace),
            fontsize=9, color="#57606a")
    for box in boxes:
        x, y, w, h = box.xy
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", facecolor=box.color,
                                    edgecolor="#24292f"))
        ax.text(x + 0.12, y + h - 0.18, box.title, fontsize=10, fontweight="bold", va="top", family=plots.family("monospace"))
        ax.text(x + 0.12, y + h - 0.55, "\n".join(box.lines), fontsize=8.5, va="top", family=plots.family("monospace"),
                linespacing=1.45)
    for arrow in arrows:
        a, b = by_key[arrow.start], by_key[arrow.end]
        centre = lambda box: (box.xy[0] + box.xy[2] / 2, box.xy[1] + box.xy[3] / 2)
        start, end = _edge(a, centre(b)), _edge(b, centre(a))
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "color": "#0969da", "lw": 1.6})
        mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
        upright = abs(end[0] - start[0]) < abs(end[1] - start[1])  # label beside a vertical arrow, above others
        ax.text(mid[0] + (0.1 if upright else 0), mid[1] + (0 if upright else 0.08), arrow.label, fontsize=8.5,
                color="#0969da", ha="left" if upright else "center", va="center" if upright else "bottom",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0, "alpha": 0.85})
    fig.suptitle(_("Multi-model serving: one Triton, many TrainedModels ({group})").format(group=group.group), fontsize=12)
    return plots._finish(fig, folder, filename)


def _seconds(value: Optional[float]) -> str:
    return _("{seconds} s").format(seconds=f"{value:.2f}") if value is not None else "—"


def handoff_labels(timelines: Sequence[Mapping], applied: Optional[Mapping[str, float]] = None) -> dict[str, str]:
    """The measured times written on each arrow of `handoff`, one line a model: `seen` (apply to the
    agent's config event; a model applied again unchanged has none, and says so), `download` (config
    event to the `SUCCESS.<sha>` marker), `load` (marker to "Successfully loaded"), `served` (config
    event to loaded)."""
    applied = applied or {}
    labels: dict[str, list[str]] = {"seen": [], "download": [], "load": [], "served": []}
    for t in timelines:
        model, start = t.get("model", "?"), t.get("start")
        download, load = t.get("download_s"), t.get("load_s")
        seen = start - applied[model] if start is not None and model in applied else None
        if seen is not None and seen < 0:  # applied again unchanged: the agent's last event is older
            about = _("no change, loaded before")
        else:
            about = _("≈ {seconds}").format(seconds=_seconds(seen)) if seen is not None else "—"
        labels["seen"].append(f"{model}: {about}")
        if download is not None and t.get("downloaded") is False:
            there = _("files there already")
            labels["download"].append(f"{model}: {there}")
        else:
            labels["download"].append(f"{model}: {_seconds(download)}")
        if t.get("failed"):
            failed = _("FAILED: {error}").format(error=t["failed"])
            labels["load"].append(f"{model}: {failed}")
        else:
            labels["load"].append(f"{model}: {_seconds(load - (download or 0.0) if load is not None else None)}")
        labels["served"].append(f"{model}: {_seconds(load)}")
    return {key: "\n".join(lines) for key, lines in labels.items()}


def handoff(timelines: Sequence[Mapping], group: ApiGroup, server_name: str, bucket: str,
            applied: Optional[Mapping[str, float]] = None, filename: str = "handoff.png",
            folder: Optional[Path] = None) -> Path:
    """How a TrainedModel reaches Triton, drawn as the hand-off it is, with the times this run measured.

    you -> controller -> ConfigMap (`models.json`) -> agent -> S3 -> Triton: each arrow carries what
    passes and, per model, how long it took (`handoff_labels`, from `agent_log.timeline` and, in
    `applied`, when the notebook applied each TrainedModel). Explained in 03_cifar10 and 04_inception.
    """
    from matplotlib.patches import FancyBboxPatch

    plots.use_fonts()
    c = constants
    rows = [t for t in timelines if t]
    times = handoff_labels(rows, applied)
    boxes = [
        ("you", _("you"), "kubectl apply\nTrainedModel"),
        ("controller", _("controller"), group.group),
        ("configmap", "ConfigMap", f"{c.model_config_map_name(server_name)}\n{c.MODEL_CONFIG_FILE}"),
        ("agent", _("agent"), _("server pod, container\n{name}").format(name=c.AGENT_CONTAINER)),
        ("s3", "S3 (MinIO)", f"s3://{bucket}/..."),
        ("triton", "Triton", _("server pod, container\n{name}").format(name=group.server_container)),
    ]
    arrows = [
        _("applies"),
        _("writes an entry"),
        _("the agent sees\nthe new file:\n{times}").format(times=times["seen"]),
        _("download,\nSUCCESS.<sha>:\n{times}").format(times=times["download"]),
        _("load into Triton:\n{times}").format(times=times["load"]),
    ]
    width, gap, height = 2.2, 0.95, 1.2
    extra = 0.32 * max(0, len(rows) - 1)
    fig = plots.figure(figsize=(len(boxes) * (width + gap) * 1.0, 2.6 + extra))
    ax = fig.subplots()
    ax.set_xlim(0, len(boxes) * (width + gap))
    ax.set_ylim(-1.0 - extra, 1.6)
    ax.axis("off")
    for i, (key, title, detail) in enumerate(boxes):
        x = 0.3 + i * (width + gap)
        colour = "#dafbe1" if key in ("agent", "triton") else "#ffebe9" if key == "s3" else "#fff8c5"
        ax.add_patch(FancyBboxPatch((x, 0.2), width, height, boxstyle="round,pad=0.03", facecolor=colour,
                                    edgecolor="#24292f"))
        ax.text(x + width / 2, 0.2 + height - 0.15, title, ha="center", va="top", fontsize=10.5, fontweight="bold")
        ax.text(x + width / 2, 0.2 + height - 0.5, detail, ha="center", va="top", fontsize=7.5, family=plots.family("monospace"))
        if i < len(arrows):
            start, end = x + width + 0.03, x + width + gap - 0.03
            ax.annotate("", xy=(end, 0.8), xytext=(start, 0.8),
                        arrowprops={"arrowstyle": "-|>", "color": "#0969da", "lw": 1.8})
            ax.text((start + end) / 2, 0.05, arrows[i], ha="center", va="top", fontsize=8, color="#0969da")
    served = _("from the new models.json to served: {times}").format(times=times["served"].replace("\n", ", "))
    ax.set_title(_("How a TrainedModel reaches Triton (times measured in this run)") + "\n" + served, fontsize=11)
    return plots._finish(fig, folder, filename)
