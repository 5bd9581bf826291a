"""The architecture of multi-model serving as a picture, drawn from the project's own names.

Explained in 00_cluster_prep, which opens with it. Every name in a box (the API group's
resources, the `modelconfig-<isvc>-0` ConfigMap and its `models.json`, the pod's containers and
mount paths, Triton's port, MinIO's Service, the ingress gateway) is read from
`helpers.core.constants` when the figure is drawn, so the picture changes when the contract does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from helpers.core import constants
from helpers.core.constants import ApiGroup
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
        Box("you", (0.2, 6.2, 4.4, 1.1), "you: notebook, kubectl, curl", (f"namespace {namespace}",), "#ddf4ff"),
        Box("controller", (0.2, 0.6, 4.4, 1.8),
            "KFServing controller" if group.group == c.KFSERVING_GROUP else "KServe controller",
            (f"watches {group.tm_resource}", f"and {group.isvc_resource}", f"({group.tm_api_version})"), "#fff8c5"),
        Box("configmap", (5.6, 0.6, 3.8, 1.8), f"ConfigMap {config_map}",
            (f"key {c.MODEL_CONFIG_FILE}:", '[{"modelName", "modelSpec":', ' {"storageUri", "memory"}}]'), "#fff8c5"),
        Box("agent", (10.4, 0.7, 4.1, 1.6), f"container {c.AGENT_CONTAINER}",
            (f"watches {c.CONFIG_DIR}/{c.MODEL_CONFIG_FILE}", f"writes {c.MODEL_DIR}/<model>/",
             f"+ {c.SUCCESS_MARKER_PREFIX}<sha256 of spec>"), "#dafbe1"),
        Box("triton", (10.4, 3.4, 4.1, 1.6), f"container {group.server_container}",
            (f"tritonserver, HTTP :{c.TRITON_HTTP_PORT}", f"--model-store={c.MODEL_DIR}",
             "--model-control-mode=explicit"), "#dafbe1"),
        Box("s3", (5.6, 3.4, 3.8, 1.5), "MinIO (S3)",
            (f"{c.MINIO_SERVICE}.{c.KUBEFLOW_NAMESPACE}:{c.MINIO_PORT}", f"s3://{bucket}/<prefix>/{model}/"),
            "#ffebe9"),
        Box("gateway", (10.4, 6.2, 4.1, 1.1), f"{c.INGRESS_GATEWAY} ({c.ISTIO_NAMESPACE})",
            (f"routes by Host: {server_name}.{namespace}...",), "#ddf4ff"),
    ]
    arrows = [
        Arrow("you", "controller", f"kubectl apply TrainedModel {model}"),
        Arrow("controller", "configmap", f"writes\n{c.MODEL_CONFIG_FILE}"),
        Arrow("configmap", "agent", f"mounted at\n{c.CONFIG_DIR}"),
        Arrow("agent", "s3", "downloads the files"),
        Arrow("agent", "triton", f"POST /v2/repository/models/{model}/load"),
        Arrow("you", "gateway", f"POST /v2/models/{model}/infer"),
        Arrow("gateway", "triton", f"to :{c.TRITON_HTTP_PORT}"),
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
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    boxes, arrows = parts(group, server_name, namespace, bucket)
    by_key = {box.key: box for box in boxes}
    fig, ax = plt.subplots(figsize=(15, 7.6))
    ax.set_xlim(0, 15)
    ax.set_ylim(0, 7.6)
    ax.axis("off")
    ax.add_patch(FancyBboxPatch((10.2, 0.1), 4.5, 5.5, boxstyle="round,pad=0.02", facecolor="none",
                                edgecolor="#57606a", linestyle="--"))
    ax.text(10.3, 0.2, f"Pod of InferenceService {server_name} ({namespace})", fontsize=9, color="#57606a")
    for box in boxes:
        x, y, w, h = box.xy
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", facecolor=box.color,
                                    edgecolor="#24292f"))
        ax.text(x + 0.12, y + h - 0.18, box.title, fontsize=10, fontweight="bold", va="top", family="monospace")
        ax.text(x + 0.12, y + h - 0.55, "\n".join(box.lines), fontsize=8.5, va="top", family="monospace",
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
    fig.suptitle(f"Multi-model serving: one Triton, many TrainedModels ({group.group})", fontsize=12)
    return plots._finish(fig, folder, filename)
