"""Plots a learner looks at: photos with their top-k classes, and the agent's timeline.

Explained in 03_cifar10 (both) and 04_inception. Each plot is shown inline in Jupyter and
saved as a PNG (under `build/plots`, or the folder given), and the function returns the path.
Labels are wrapped, never cut off; a stand-in model's plot says so in red.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from helpers.core import config

STANDIN_NOTE = "STAND-IN MODEL: made-up weights, so these predictions mean nothing"
LABEL_WIDTH = 24  # characters per line of a class label


def plots_dir(folder: Optional[Path] = None) -> Path:
    path = Path(folder) if folder else config.build_dir() / "plots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _finish(fig, folder: Optional[Path], filename: str) -> Path:
    import matplotlib.pyplot as plt

    path = plots_dir(folder) / filename
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.2, facecolor="white")
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display(fig)
    finally:
        plt.close(fig)
    return path


def _wrap(label: str) -> str:
    return "\n".join(textwrap.wrap(label, LABEL_WIDTH)) or label


def predictions(images: Mapping[str, np.ndarray], top: Sequence[Sequence[tuple[str, float]]], title: str,
                standin: bool, filename: str, score_name: str = "probability",
                folder: Optional[Path] = None, columns: int = 2) -> Path:
    """Each photo beside a bar chart of its top-k classes (best on top); returns the PNG's path.

    `top[i]` is a list of (class name, score) for the i-th image, best first.
    """
    import matplotlib.pyplot as plt

    names = list(images)
    if len(names) != len(top):
        raise ValueError(f"{len(names)} images but {len(top)} prediction lists")
    k = max((len(t) for t in top), default=1)
    rows = (len(names) + columns - 1) // columns
    height = max(2.2, 0.42 * k + 1.0)
    fig = plt.figure(figsize=(6.4 * columns, height * rows + (0.9 if standin else 0.5)),
                     layout="constrained")
    grid = fig.add_gridspec(rows, columns * 2, width_ratios=[1, 1.6] * columns)
    scores = [s for t in top for _, s in t]
    limit = max(1.0, max(scores, default=1.0)) if score_name == "probability" else None
    for i, name in enumerate(names):
        r, c = divmod(i, columns)
        ax_img = fig.add_subplot(grid[r, 2 * c])
        ax_img.imshow(images[name])
        ax_img.set_title(name, fontsize=11)
        ax_img.axis("off")
        ax_bar = fig.add_subplot(grid[r, 2 * c + 1])
        labels = [_wrap(label) for label, _ in top[i]][::-1]
        values = [score for _, score in top[i]][::-1]
        colours = ["#9ecae1"] * (len(values) - 1) + ["#3182bd"] if values else []
        bars = ax_bar.barh(range(len(values)), values, color=colours)
        ax_bar.set_yticks(range(len(values)), labels, fontsize=9)
        ax_bar.tick_params(axis="x", labelsize=8)
        ax_bar.set_xlabel(score_name, fontsize=9)
        if limit is not None:
            ax_bar.set_xlim(0, limit * 1.18)
        else:
            low, high = min(values + [0.0]), max(values + [0.0])
            span = (high - low) or 1.0
            ax_bar.set_xlim(low - 0.05 * span, high + 0.22 * span)
        for bar, value in zip(bars, values):
            x = bar.get_width()
            ax_bar.text(x + (0.01 * (limit or span)) * (1 if x >= 0 else -1), bar.get_y() + bar.get_height() / 2,
                        f"{value:.2f}" if score_name != "probability" else f"{value:.1%}",
                        va="center", ha="left" if x >= 0 else "right", fontsize=8)
        ax_bar.spines[["top", "right"]].set_visible(False)
    fig.suptitle(f"{title}  (stand-in model)" if standin else title, fontsize=13)
    if standin:
        fig.text(0.5, -0.01, STANDIN_NOTE, ha="center", va="top", color="#cf222e", fontsize=11, weight="bold")
    return _finish(fig, folder, filename)


def agent_timeline(timelines: Sequence[Mapping], filename: str, folder: Optional[Path] = None,
                   title: str = "Model agent: from config change to model served") -> Path:
    """One row per model: download (config event at 0 s to files on disk), then load into Triton.

    `timelines` are `helpers.steps.models.agent_log.timeline` results; the numbers are written beside each bar.
    """
    import matplotlib.pyplot as plt

    rows = [t for t in timelines if t]
    fig, ax = plt.subplots(figsize=(9.5, 1.3 + 0.75 * len(rows)), layout="constrained")
    longest = max([t.get("load_s") or t.get("download_s") or 0.0 for t in rows] + [0.1])
    for y, t in enumerate(rows):
        download, load = t.get("download_s"), t.get("load_s")
        parts = []
        if download is not None:
            ax.barh(y, max(download, longest * 0.008), left=0, color="#9ecae1", height=0.5, zorder=3,
                    label="download from S3" if y == 0 else None)  # a sliver stays visible, on top
            parts.append(f"download {download:.2f}s" if t.get("downloaded", True) else "files on disk already")
        if load is not None:
            start = download or 0.0
            ax.barh(y, load - start, left=start, color="#3182bd", height=0.5,
                    label="load into Triton" if y == 0 else None)
            parts.append(f"load {load - start:.2f}s")
            parts.append(f"served at {load:.2f}s")
        end = load if load is not None else download or 0.0
        if t.get("failed"):
            parts.append(f"FAILED: {t['failed']}")
        elif load is None:
            parts.append("not loaded (yet)")
        ax.text(end + longest * 0.015, y, _wrap_long(" | ".join(parts), 60), va="center", fontsize=9,
                color="#cf222e" if t.get("failed") else "black")
    ax.set_yticks(range(len(rows)), [t.get("model", "?") for t in rows], fontsize=10)
    ax.tick_params(axis="y", length=0, pad=8)
    ax.set_ylim(len(rows) - 0.4, -0.6)  # the first model on top
    ax.set_xlim(0, longest * 1.6)
    ax.set_xlabel("seconds since the agent saw the config change (the TrainedModel was applied)", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title, fontsize=12)
    if rows:
        fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return _finish(fig, folder, filename)


def _wrap_long(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def memory_per_model(declared: Mapping[str, float], limit_gib: float, filename: str,
                     folder: Optional[Path] = None, refused: Sequence[str] = (),
                     title: str = "Memory the TrainedModels declare, against the server's limit") -> Path:
    """One row per model: its declared memory (GiB), starting where the models before it end; the
    server's memory limit as a line. What KServe's MemoryResourceAvailable adds up (05_lifecycle).

    `refused` models (not admitted) are drawn hatched in red, after the admitted ones.
    """
    import matplotlib.pyplot as plt

    order = [m for m in declared if m not in refused] + [m for m in declared if m in refused]
    fig, ax = plt.subplots(figsize=(9.5, 1.4 + 0.55 * len(order)), layout="constrained")
    left = 0.0
    for y, model in enumerate(order):
        size, hatch = declared[model], model in refused
        ax.barh(y, size, left=left, height=0.55, color="white" if hatch else "#3182bd",
                edgecolor="#cf222e" if hatch else "#3182bd", hatch="//" if hatch else None, linewidth=1.2)
        note = f"{size:g} GiB, total {left + size:g} GiB" + ("  (refused)" if hatch else "")
        ax.text(left + size, y, f"  {note}", va="center", fontsize=9, color="#cf222e" if hatch else "black")
        left += size
    ax.axvline(limit_gib, color="#cf222e", linestyle="--", linewidth=1.5)
    ax.text(limit_gib, -0.75, f"server's memory limit {limit_gib:g} GiB", color="#cf222e", fontsize=9,
            ha="center", va="bottom")
    ax.set_yticks(range(len(order)), order, fontsize=10)
    ax.tick_params(axis="y", length=0, pad=8)
    ax.set_ylim(len(order) - 0.4, -1.0)  # the first model on top, room for the limit's label
    ax.set_xlim(0, max(left, limit_gib) * 1.35)
    ax.set_xlabel("GiB (spec.model.memory of each TrainedModel of this server, in creation order)", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title, fontsize=12)
    return _finish(fig, folder, filename)
