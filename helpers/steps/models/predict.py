"""From a model's output tensors to named classes, and what the results JSON keeps of them.

Explained in 03_cifar10 (logits -> softmax -> top-k with CIFAR-10's class names) and
04_inception (Triton's classification extension already returns labelled scores).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from tritonclient.utils import np_to_triton_dtype

from helpers.core.i18n import _


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits, along the last axis (numerically stable)."""
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k(scores: np.ndarray, labels: Sequence[str], k: int = 3) -> list[tuple[str, float]]:
    """The k best (label, score) of one score vector, best first."""
    scores = np.asarray(scores).reshape(-1)
    if len(labels) != scores.size:
        raise ValueError(f"{scores.size} scores but {len(labels)} labels")
    order = np.argsort(scores)[::-1][:k]
    return [(labels[i], float(scores[i])) for i in order]


def from_classification(rows: Sequence[Sequence[tuple[float, int, str]]]) -> list[list[tuple[str, float]]]:
    """`triton.classify` rows (score, index, label) as (label, score), the label else `class <index>`."""
    return [[(label or _("class {index}").format(index=index), float(score)) for score, index, label in row] for row in rows]


def describe_outputs(outputs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Name, Triton datatype and shape of each output tensor (as the guide's response shows them)."""
    return [{"name": name, "datatype": np_to_triton_dtype(array.dtype) or str(array.dtype),
             "shape": [int(d) for d in array.shape]} for name, array in outputs.items()]


def as_records(names: Sequence[str], top: Sequence[Sequence[tuple[str, float]]]) -> list[dict[str, Any]]:
    """`[{"image": name, "top": [[label, score], ...]}, ...]` for the results JSON."""
    return [{"image": name, "top": [[label, round(score, 6)] for label, score in row]}
            for name, row in zip(names, top)]


def response_outputs(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Name, datatype and shape of each output of a v2 JSON response, as Triton wrote them."""
    return [{"name": o["name"], "datatype": o["datatype"], "shape": [int(d) for d in o["shape"]]}
            for o in response.get("outputs") or []]


def table(names: Sequence[str], top: Sequence[Sequence[tuple[str, float]]], standin: bool) -> str:
    """One line a photo: its top classes with scores. A stand-in model's table opens with a line that
    says its classes mean nothing, before any of them."""
    width = max((len(n) for n in names), default=0)
    lines = [_("STAND-IN MODEL: made-up weights, so the scores and classes below mean nothing; they only show "
               "that requests and responses work.")] if standin else []
    lines += [f"{name:<{width}}  " + " | ".join(f"{label} {score:.1%}" for label, score in row)
              for name, row in zip(names, top)]
    return "\n".join(lines)


def standin_warning(standin: bool) -> None:
    """Print, before any prediction is shown, that a stand-in model's answers mean nothing (nothing for a real model)."""
    if standin:
        print(_("STAND-IN MODEL: made-up weights, so the scores and classes below mean nothing; they only show "
                "that requests and responses work."))
