"""The guide's two models, as stand-ins when the real files cannot be fetched (offline).

A stand-in has the real model's folder layout, config, tensor names, types and shapes, so
Triton, the agent and the notebooks treat it exactly like the original; only its weights are
made up (fixed seeds, so every run gives the same numbers). Explained in notebooks 03_cifar10
and 04_inception. torch and tensorflow are imported inside the builders: importing `helpers`
stays light.
"""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from helpers.core.resources import data_path

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

INCEPTION_INPUT = "input"
INCEPTION_OUTPUT = "InceptionV3/Predictions/Softmax"
INCEPTION_SIZE = 299
INCEPTION_CLASSES = 1001  # 1000 ImageNet classes plus "background" at index 0


def _model_data(name: str) -> Path:
    return data_path("models", name)


def write_cifar10_standin(folder: Path, seed: int = 0) -> Path:
    """Write a stand-in for the guide's TorchScript CIFAR-10 model into `folder` and return it.

    Layout as in `gs://kfserving-examples/models/torchscript/cifar10`: `config.pbtxt` and
    `1/model.pt`, a small CNN taking INPUT__0 FP32 [-1,3,32,32] to OUTPUT__0 FP32 [-1,10] logits.
    """
    import torch
    from torch import nn

    class Cifar10StandIn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
            self.classifier = nn.Linear(16, len(CIFAR10_CLASSES))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.features(x), 1))

    folder = Path(folder)
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_model_data("cifar10") / "config.pbtxt", folder / "config.pbtxt")
    with torch.random.fork_rng():  # fixed weights without touching the caller's random state
        torch.manual_seed(seed)
        model = Cifar10StandIn().eval()
    with warnings.catch_warnings():
        # torch 2.x marks TorchScript deprecated; Triton's pytorch_libtorch still needs it.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), str(folder / "1" / "model.pt"))
    return folder


def write_inception_standin(folder: Path, seed: int = 0) -> Path:
    """Write a stand-in for the guide's Inception v3 frozen GraphDef into `folder` and return it.

    Layout as in Triton's `inception_graphdef` example: `config.pbtxt`, `inception_labels.txt`
    (1001 labels) and `1/model.graphdef`, a frozen graph from placeholder `input` FP32
    [-1,299,299,3] to `InceptionV3/Predictions/Softmax` FP32 [-1,1001]: colour means over a
    4x4 grid, a fixed dense layer, softmax.
    """
    import numpy as np

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter
    import tensorflow as tf

    folder = Path(folder)
    (folder / "1").mkdir(parents=True, exist_ok=True)
    for name in ("config.pbtxt", "inception_labels.txt"):
        shutil.copyfile(_model_data("inception_graphdef") / name, folder / name)

    rng = np.random.default_rng(seed)
    grid = 4
    features = grid * grid * 3
    weights = rng.normal(0.0, 2.0, size=(features, INCEPTION_CLASSES)).astype(np.float32)
    bias = rng.normal(0.0, 0.5, size=(INCEPTION_CLASSES,)).astype(np.float32)
    pool = INCEPTION_SIZE // grid  # 74: the last 3 rows/columns are left out, as VALID pooling does
    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, INCEPTION_SIZE, INCEPTION_SIZE, 3],
                                          name=INCEPTION_INPUT)
        pooled = tf.nn.avg_pool2d(images, ksize=pool, strides=pool, padding="VALID", name="StandIn/Pool")
        flat = tf.reshape(pooled, [-1, features], name="StandIn/Flatten")
        logits = tf.nn.bias_add(tf.matmul(flat, tf.constant(weights)), tf.constant(bias), name="StandIn/Logits")
        tf.nn.softmax(logits, name=INCEPTION_OUTPUT)
    # Constants only, no variables: the graph is frozen as written.
    (folder / "1" / "model.graphdef").write_bytes(graph.as_graph_def().SerializeToString())
    return folder
