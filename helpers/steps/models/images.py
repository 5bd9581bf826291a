"""Sample photos for predictions, and the preprocessing each model expects.

Explained in 03_cifar10 and 04_inception. The photos ship inside scikit-image
(`skimage.data`): nothing is downloaded at run time. CIFAR-10 knows ten classes (airplane,
automobile, bird, cat, deer, dog, frog, horse, ship, truck); of the photos scikit-image ships,
Chelsea is a cat, `horse` a horse's silhouette, and a crop of `astronaut` holds a winged Space
Shuttle model (CIFAR-10's nearest class: airplane), so those three are 03's. Inception's 1001
ImageNet classes also cover the coffee cup and the motorcycle. cifar10 takes N x 3 x 32 x 32 FP32,
normalised per channel with mean 0.5 and std 0.5 (KServe's CIFAR-10 example:
`transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))`); Inception v3 takes N x 299 x 299 x 3
FP32 scaled to [-1, 1] (TF-slim's inception preprocessing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import numpy as np

from helpers.core.i18n import _


@dataclass(frozen=True)
class Sample:
    """A photo from scikit-image: how to load it, what it shows, and the class each model should see."""

    load: Callable[[], np.ndarray]
    shows: str
    cifar10: Optional[str]  # the CIFAR-10 class it shows, None when it shows none of the ten
    imagenet: str  # the ImageNet class(es) Inception v3 should name


def _loader(name: str, rows: Optional[slice] = None, cols: Optional[slice] = None) -> Callable[[], np.ndarray]:
    """Load `skimage.data.<name>()` (the first image of a pair), cropped to `rows`, `cols` when given."""
    def load() -> np.ndarray:
        from skimage import data

        image = getattr(data, name)()
        image = image[0] if isinstance(image, tuple) else image
        return image[rows or slice(None), cols or slice(None)]

    return load


# name -> Sample. Only files the scikit-image wheel ships (no download at run time).
SAMPLES: dict[str, Sample] = {
    "cat": Sample(_loader("chelsea"), "Chelsea the cat (skimage.data.chelsea)", "cat", "tabby, tiger cat, Egyptian cat"),
    "horse": Sample(_loader("horse"), "a horse's silhouette, black on white (skimage.data.horse)", "horse", "sorrel"),
    "shuttle": Sample(_loader("astronaut", slice(60, 240), slice(310, 490)),
                      "a Space Shuttle model, a winged orbiter (a crop of skimage.data.astronaut)",
                      "airplane", "space shuttle"),
    "coffee": Sample(_loader("coffee"), "a cup of coffee (skimage.data.coffee)", None, "espresso, cup"),
    "motorcycle": Sample(_loader("stereo_motorcycle"), "a motorcycle in a garage (skimage.data.stereo_motorcycle)",
                         None, "moped, motor scooter"),
    "rocket": Sample(_loader("rocket"), "a rocket on its launch pad (skimage.data.rocket)", None, "missile, projectile"),
    "astronaut": Sample(_loader("astronaut"), "astronaut Eileen Collins (skimage.data.astronaut)", None, "(no person class)"),
}
# The photos each notebook classifies: for CIFAR-10 only photos of its ten classes.
CIFAR10_SAMPLES = ("cat", "horse", "shuttle")
INCEPTION_SAMPLES = ("cat", "shuttle", "coffee", "motorcycle")
DEFAULT_SAMPLES = CIFAR10_SAMPLES


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
    """RGB uint8 photos by name (default: `CIFAR10_SAMPLES`)."""
    chosen = list(names or DEFAULT_SAMPLES)
    unknown = [n for n in chosen if n not in SAMPLES]
    if unknown:
        raise ValueError(_("no sample image {names}: choose from {choices}").format(
            names=", ".join(unknown), choices=", ".join(SAMPLES)))
    return {name: _rgb(SAMPLES[name].load()) for name in chosen}


def _shows() -> dict[str, str]:
    """What each photo shows, in the learner's language (`Sample.shows` in English)."""
    return {"cat": _("Chelsea the cat (skimage.data.chelsea)"),
            "horse": _("a horse's silhouette, black on white (skimage.data.horse)"),
            "shuttle": _("a Space Shuttle model, a winged orbiter (a crop of skimage.data.astronaut)"),
            "coffee": _("a cup of coffee (skimage.data.coffee)"),
            "motorcycle": _("a motorcycle in a garage (skimage.data.stereo_motorcycle)"),
            "rocket": _("a rocket on its launch pad (skimage.data.rocket)"),
            "astronaut": _("astronaut Eileen Collins (skimage.data.astronaut)")}


def describe(names: Iterable[str], model: str = "cifar10") -> str:
    """One line per photo: what it shows and the class `model` ("cifar10" or "inception") should name."""
    lines, shows = [], _shows()
    for name in names:
        sample = SAMPLES[name]
        expected = (sample.cifar10 or _("none of the ten classes")) if model == "cifar10" else sample.imagenet
        lines.append(_("{name} {shows}; expected: {expected}").format(
            name=f"{name:<11}", shows=shows.get(name, sample.shows), expected=expected))
    return "\n".join(lines)


def preprocessing_source(model: str = "cifar10") -> str:
    """The source of the functions that turn a photo into `model`'s input tensor, in call order
    (shown in 03_cifar10: crop to a square, resize, scale, lay out the channels)."""
    import inspect

    last = cifar10_batch if model == "cifar10" else inception_batch
    return "\n\n".join(inspect.getsource(f).rstrip() for f in (center_square, resize, last))


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
    batch = (batch - 0.5) / 0.5  # each channel to [-1, 1]: Normalize(mean=0.5, std=0.5)
    return batch.transpose(0, 3, 1, 2).astype(np.float32)  # channels first (CHW): N, 3, 32, 32


def inception_batch(images: Iterable[np.ndarray]) -> np.ndarray:
    """N x 299 x 299 x 3 FP32 in [-1, 1]: the input of Inception v3 (NHWC)."""
    batch = np.stack([resize(image, 299) for image in images])
    return (batch * 2.0 - 1.0).astype(np.float32)
