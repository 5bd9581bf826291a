"""Plots a learner looks at: photos with their top-k classes, and the memory the models declare.

Explained in 03_cifar10, 04_inception and 05_lifecycle (the agent's hand-off is drawn by
`helpers.lesson.diagram.handoff`). Each plot is shown inline in Jupyter and
saved as a PNG (under `build/plots`, or the folder given), and the function returns the path.
Labels are wrapped, never cut off; a stand-in model's plot shows no classes and says why in red.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import numpy as np

from helpers.core import config
from helpers.core.i18n import _

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def standin_note() -> str:
    """The banner of a stand-in model's plot, in the learner's language."""
    return _("stand-in model: made-up weights, so its predictions mean nothing")


LABEL_WIDTH = 24  # characters per line of a class label
# Fonts with Hangul, the first one installed drawing what the default font cannot (matplotlib falls
# back glyph by glyph): Korean labels, never empty boxes.
CJK_FONTS = ("Noto Sans CJK KR", "Noto Sans KR", "NanumGothic", "NanumBarunGothic", "Malgun Gothic",
             "AppleGothic", "UnDotum", "Noto Sans CJK JP")


def _cjk_fonts() -> list[str]:
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return [name for name in CJK_FONTS if name in installed]


def family(generic: str = "sans-serif") -> list[str]:
    """A font family list for a text: the generic family, then the installed CJK fonts. matplotlib takes
    each glyph from the first family that has it, and a generic family stands for one font only, so
    Hangul needs the CJK font named in the list."""
    return [generic, *_cjk_fonts()]


def use_fonts() -> None:
    """Let every plot draw the learner's language: Korean glyphs from an installed CJK font."""
    import matplotlib

    matplotlib.rcParams["font.family"] = family()


def plots_dir(folder: Optional[Path] = None) -> Path:
    path = Path(folder) if folder else config.build_dir() / "plots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def figure(**options: Any) -> "Figure":
    """A matplotlib Figure of its own, not pyplot's: the plots are saved as PNGs and shown from there
    (`_finish`), so no kernel needs pyplot and its backend (about a tenth of a notebook's CPU)."""
    from matplotlib.figure import Figure

    return Figure(**options)


def _finish(fig: "Figure", folder: Optional[Path], filename: str) -> Path:
    path = plots_dir(folder) / filename
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.2, facecolor="white")
    from IPython import get_ipython
    from IPython.display import Image, display

    if get_ipython() is not None:
        display(Image(filename=str(path)))  # the saved PNG, not a second rendering of the figure
    return path


def _wrap(label: str) -> str:
    return "\n".join(textwrap.wrap(label, LABEL_WIDTH)) or label


def predictions(images: Mapping[str, np.ndarray], top: Sequence[Sequence[tuple[str, float]]], title: str,
                standin: bool, filename: str, score_name: str = "",
                folder: Optional[Path] = None, columns: int = 2, triton_labels: bool = False) -> Path:
    """Each photo beside a bar chart of its top-k classes (best on top); returns the PNG's path.

    `title`: the model's name, to which the plot adds what it shows (top-k classes, `triton_labels`:
    named by Triton). `top[i]` is a list of (class name, score) for the i-th image, best first;
    `score_name` labels the axis (default: probability). A `standin` model's scores are not drawn at all: its weights are
    made up, so bars would pass nonsense off as a confident answer. The photos are shown under a red
    banner that says so.
    """
    use_fonts()
    names = list(images)
    if len(names) != len(top):
        raise ValueError(f"{len(names)} images but {len(top)} prediction lists")
    if standin:
        return _standin_photos(images, title, filename, folder)
    probability = not score_name
    score_name = score_name or _("probability")
    k = max((len(t) for t in top), default=1)
    rows = (len(names) + columns - 1) // columns
    height = max(2.2, 0.42 * k + 1.0)
    fig = figure(figsize=(6.4 * columns, height * rows + 0.5), layout="constrained")
    grid = fig.add_gridspec(rows, columns * 2, width_ratios=[1, 1.6] * columns)
    scores = [s for t in top for _label, s in t]
    limit = max(1.0, max(scores, default=1.0)) if probability else None
    for i, name in enumerate(names):
        r, c = divmod(i, columns)
        ax_img = fig.add_subplot(grid[r, 2 * c])
        ax_img.imshow(images[name])
        ax_img.set_title(name, fontsize=11)
        ax_img.axis("off")
        ax_bar = fig.add_subplot(grid[r, 2 * c + 1])
        labels = [_wrap(label) for label, _score in top[i]][::-1]
        values = [score for _label, score in top[i]][::-1]
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
                        f"{value:.1%}" if probability else f"{value:.2f}",
                        va="center", ha="left" if x >= 0 else "right", fontsize=8)
        ax_bar.spines[["top", "right"]].set_visible(False)
    heading = _("{model}: top-{k} classes").format(model=title, k=k)
    fig.suptitle(heading + (" " + _("(labels from Triton)") if triton_labels else ""), fontsize=13)
    return _finish(fig, folder, filename)


def _standin_photos(images: Mapping[str, np.ndarray], title: str, filename: str, folder: Optional[Path]) -> Path:
    """The photos a stand-in model was sent, under a red banner: no classes, no scores."""
    names = list(images)
    fig = figure(figsize=(3.2 * max(1, len(names)), 3.9), layout="constrained")
    axes = fig.subplots(1, max(1, len(names)), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.imshow(images[name])
        ax.set_title(name, fontsize=11)
        ax.axis("off")
    fig.suptitle(_("{model}: the photos sent (stand-in model)").format(model=title), fontsize=13)
    fig.text(0.5, -0.02, standin_note(), ha="center", va="top", color="#cf222e", fontsize=11, weight="bold")
    return _finish(fig, folder, filename)


def memory_per_model(declared: Mapping[str, float], limit_gib: float, filename: str,
                     folder: Optional[Path] = None, refused: Sequence[str] = (),
                     title: str = "") -> Path:
    """One row per model: its declared memory (GiB), starting where the models before it end; the
    server's memory limit as a line. What KServe's MemoryResourceAvailable adds up (05_lifecycle).

    `refused` models (not admitted) are drawn hatched in red, after the admitted ones.
    """
    use_fonts()
    title = title or _("Memory the TrainedModels declare, against the server's limit")
    order = [m for m in declared if m not in refused] + [m for m in declared if m in refused]
    fig = figure(figsize=(9.5, 1.4 + 0.55 * len(order)), layout="constrained")
    ax = fig.subplots()
    left = 0.0
    for y, model in enumerate(order):
        size, hatch = declared[model], model in refused
        ax.barh(y, size, left=left, height=0.55, color="white" if hatch else "#3182bd",
                edgecolor="#cf222e" if hatch else "#3182bd", hatch="//" if hatch else None, linewidth=1.2)
        note = _("{size} GiB, total {total} GiB").format(size=f"{size:g}", total=f"{left + size:g}")
        note += "  " + _("(refused)") if hatch else ""
        ax.text(left + size, y, f"  {note}", va="center", fontsize=9, color="#cf222e" if hatch else "black")
        left += size
    ax.axvline(limit_gib, color="#cf222e", linestyle="--", linewidth=1.5)
    ax.text(limit_gib, -0.75, _("server's memory limit {limit} GiB").format(limit=f"{limit_gib:g}"), color="#cf222e", fontsize=9,
            ha="center", va="bottom")
    ax.set_yticks(range(len(order)), order, fontsize=10)
    ax.tick_params(axis="y", length=0, pad=8)
    ax.set_ylim(len(order) - 0.4, -1.0)  # the first model on top, room for the limit's label
    ax.set_xlim(0, max(left, limit_gib) * 1.35)
    ax.set_xlabel(_("GiB (spec.model.memory of each TrainedModel of this server, in creation order)"), fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title, fontsize=12)
    return _finish(fig, folder, filename)


def one_server_or_many(cost: Mapping, filename: str, folder: Optional[Path] = None) -> Path:
    """N one-model InferenceServices beside one server with N TrainedModels: the pods, cpu and memory each way
    reserves on the nodes (`helpers.steps.scale.footprint.compare`, 07_one_server_many_models); the nodes'
    allocatable room is written under each panel when it is known."""
    use_fonts()
    n, room = cost["n"], cost["room"]
    ways = [_("one InferenceService\nper model"), _("one server,\n{n} TrainedModels").format(n=n)]
    panels = [(_("pods"), "pods", 1.0, "{:g}", room.get("pods")),
              (_("cpu requested (cores)"), "cpu", 1.0, "{:.2f}", room.get("cpu")),
              (_("memory requested (GiB)"), "memory", 2**30, "{:.1f}", (room.get("memory") or 0) / 2**30)]
    fig = figure(figsize=(11, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (label, key, unit, fmt, allocatable) in zip(axes, panels):
        values = [cost["per_model"][key] / unit, cost["one_server"][key] / unit]
        bars = ax.bar(range(2), values, color=["#fdae6b", "#3182bd"], width=0.6)
        for bar, value in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, value, fmt.format(value), ha="center", va="bottom", fontsize=10)
        ax.set_xticks(range(2), ways, fontsize=9)
        ax.set_title(label, fontsize=11)
        ax.set_ylim(0, max(values + [1e-9]) * 1.25)
        ax.spines[["top", "right"]].set_visible(False)
        if room.get("nodes"):
            ax.set_xlabel(_("the nodes hold {room}").format(room=fmt.format(allocatable)), fontsize=9, color="#636363")
    fig.suptitle(_("What {n} models reserve on the nodes, each way").format(n=n), fontsize=13)
    return _finish(fig, folder, filename)


def models_on_one_server(before_mib: Optional[float], added: Sequence[Mapping], filename: str,
                         folder: Optional[Path] = None) -> Path:
    """Left: Triton's memory (MiB, from the metrics API) after each model added, from the one before them;
    right: each model's time from `kubectl apply` to served, split into the hand-off (apply -> the agent
    sees it), the agent's download and Triton's load (07_one_server_many_models). A refused model has no bar.

    `added`: dicts with `name`, `triton_memory` (bytes or None), `served_s`, `handoff_s`, `download_s`, `load_s`."""
    use_fonts()
    fig = figure(figsize=(11.5, 4.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    points = [(0, before_mib)] if before_mib else []
    points += [(i, a["triton_memory"] / 2**20) for i, a in enumerate(added, 1) if a.get("triton_memory")]
    if points:
        xs, ys = zip(*points)
        left.plot(xs, ys, marker="o", color="#3182bd")
        for x, y in points:
            left.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        low, high = min(ys), max(ys)
        left.set_ylim(low - max(1.0, (high - low)), high + max(1.0, (high - low)))
    else:
        left.text(0.5, 0.5, _("no memory figures (the metrics API was not readable)"), ha="center", va="center",
                  transform=left.transAxes, fontsize=10, color="#cf222e")
    left.set_xlabel(_("TrainedModels added to the one server"), fontsize=9)
    left.set_ylabel(_("Triton's memory, MiB (kubectl top)"), fontsize=9)
    left.set_xticks(range(0, len(added) + 1))
    left.set_title(_("Memory after each model"), fontsize=11)
    names = [a["name"] for a in added]
    parts = [("handoff_s", _("hand-off (apply → agent)"), "#c6dbef"), ("download_s", _("download"), "#6baed6"),
             ("load_s", _("Triton's load"), "#08519c")]
    bottom = [0.0] * len(added)
    for key, label, colour in parts:
        values = [a.get(key) or 0.0 for a in added]
        right.barh(range(len(added)), values, left=bottom, color=colour, label=label, height=0.55)
        bottom = [b + v for b, v in zip(bottom, values)]
    served = [(i, a["served_s"]) for i, a in enumerate(added) if a.get("served_s") is not None]
    if served:
        right.scatter([s for _i, s in served], [i for i, _s in served], marker="|", s=300, color="#cf222e",
                      label=_("served (repository index READY)"), zorder=3)
    right.set_yticks(range(len(added)), names, fontsize=9)
    right.invert_yaxis()
    right.set_xlabel(_("seconds from kubectl apply"), fontsize=9)
    right.set_title(_("Time to serve each model"), fontsize=11)
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    for ax in (left, right):
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(_("{n} TrainedModels added to one running server").format(n=len(added)), fontsize=13)
    return _finish(fig, folder, filename)
