"""Sample photos for predictions, and the preprocessing each model expects.

Explained in 03_cifar10 and 04_inception. The photos ship inside scikit-image
(`skimage.data`): nothing is downloaded at run time. cifar10 takes N x 3 x 32 x 32 FP32,
normalised per channel with mean 0.5 and std 0.5 (KServe's CIFAR-10 example:
`transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))`); Inception v3 takes N x 299 x 299 x 3
FP32 scaled to [-1, 1] (TF-slim's inception preprocessing).
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import numpy as np

def _motorcycle() -> np.ndarray:
    from skimage import data

    return data.stereo_motorcycle()[0]


def _loader(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


# name -> (loader, what it shows). Each loader returns an RGB array.
SAMPLES: dict[str, tuple[Callable[[], np.ndarray], str]] = {
    "cat": (_loader("chelsea"), "Chelsea the cat (skimage.data.chelsea)"),
    "coffee": (_loader("coffee"), "a cup of coffee (skimage.data.coffee)"),
    "rocket": (_loader("rocket"), "a rocket on its launch pad (skimage.data.rocket)"),
    "astronaut": (_loader("astronaut"), "astronaut Eileen Collins (skimage.data.astronaut)"),
    "motorcycle": (_motorcycle, "a motorcycle (skimage.data.stereo_motorcycle)"),
}
DEFAULT_SAMPLES = ("cat", "rocket", "coffee", "motorcycle")


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.shape[-1] == 4:
        image = image[..., :3]
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8) if image.max() <= 1.0 else image.astype(np.uint8)
    return image


def sample_images(names: Optional[Iterable[str]] = None) -> dict[str, np.ndarray]:
    """RGB uint8 photos by name (default: cat, rocket, coffee, motorcycle)."""
    chosen = list(names or DEFAULT_SAMPLES)
    unknown = [n for n in chosen if n not in SAMPLES]
    if unknown:
        raise ValueError(f"no sample image {', '.join(unknown)}: choose from {', '.join(SAMPLES)}")
    return {name: _rgb(SAMPLES[name][0]()) for name in chosen}


def center_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of the image (so resizing does not squash it)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top:top + side, left:left + side]


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """A centred square crop resized to size x size, as float32 in [0, 1]."""
    from skimage.transform import resize as sk_resize

    square = center_square(_rgb(image))
    return sk_resize(square, (size, size), anti_aliasing=True, preserve_range=False).astype(np.float32)


def cifar10_batch(images: Iterable[np.ndarray]) -> np.ndarray:
    """N x 3 x 32 x 32 FP32, each channel (x - 0.5) / 0.5: the input of the guide's cifar10 model."""
    batch = np.stack([resize(image, 32) for image in images])  # N, 32, 32, 3 in [0, 1]
    return ((batch - 0.5) / 0.5).transpose(0, 3, 1, 2).astype(np.float32)


def inception_batch(images: Iterable[np.ndarray]) -> np.ndarray:
    """N x 299 x 299 x 3 FP32 in [-1, 1]: the input of Inception v3 (NHWC)."""
    batch = np.stack([resize(image, 299) for image in images])
    return (batch * 2.0 - 1.0).astype(np.float32)
