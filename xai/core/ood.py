"""Is an input far from what the model was trained on? Cheap checks, before explaining.

A model answers for any input, with a confident score, even for a colour photo turned
gray and squeezed to 28 x 28. These checks say when an image is far from the training
images, one reason per kind of distance, so a command can warn instead of staying silent.
They are pure functions over arrays and the statistics a model card records
(``input_statistics``): no model is run.

Reasons (``InputWarning.reason``):

* ``"colour"``: a colour image (its channels really differ, not gray saved as RGB) was
  turned gray for a one-channel model.
* ``"aspect"``: the image's aspect ratio is more than ``MAX_ASPECT`` times off the model
  input's, so stretching it distorts the shapes.
* ``"size"``: a side is resized by more than ``MAX_RESIZE`` times either way.
* ``"intensity"``: the model input's mean pixel is more than ``MAX_MEAN_Z`` standard
  deviations (of the training images' own means) from the training images' mean.
* ``"background"``: the model input's border (its outer pixel ring) is far lighter or
  darker than the training images' (``MAX_BORDER_GAP``): e.g. a dark-on-light drawing
  given to a model trained on light-on-dark images (then ``--invert`` fixes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from xai.core.errors import XAIValueError

__all__ = [
    "InputWarning",
    "check_input",
    "colourful",
    "input_statistics",
]

#: A channel spread (max - min of R, G, B) above this, on [0, 1] pixels, is colour ...
COLOUR_SPREAD = 0.1
#: ... and an image is colourful when more than this share of its pixels have one
#: (JPEG noise on a gray picture saved as RGB stays far below both).
COLOUR_SHARE = 0.02
#: The most the image's aspect ratio may differ from the input's, as a factor.
MAX_ASPECT = 1.5
#: The most a side may be resized by, as a factor, either way.
MAX_RESIZE = 4.0
#: The farthest an input's mean may be from the training images' mean, in standard
#: deviations of the training images' means (the 10,000 Fashion-MNIST test images: at
#: most 3.6).
MAX_MEAN_Z = 4.0
#: The largest gap between an input's border mean and the training images' (on [0, 1]).
MAX_BORDER_GAP = 0.4
#: A pixel within this of the background value (on [0, 1]) counts as background.
BACKGROUND_TOLERANCE = 0.05


@dataclass(frozen=True)
class InputWarning:
    """Why an input looks unlike the training images: ``reason`` (one of the module's
    list) and a one-line ``message`` with the numbers."""

    reason: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message}


def _border(images: np.ndarray) -> np.ndarray:
    """The outer pixel ring of each ``(N, H, W)`` image, ``(N, 2H + 2W - 4)``."""
    top, bottom = images[:, 0, :], images[:, -1, :]
    left, right = images[:, 1:-1, 0], images[:, 1:-1, -1]
    return np.concatenate([top, bottom, left, right], axis=1)


def input_statistics(images: Any) -> dict[str, float]:
    """The training images' pixel statistics that ``check_input`` compares an input with.

    Args:
        images: ``(N, H, W)`` or ``(N, C, H, W)`` pixels, uint8 (0..255) or float in
            [0, 1] (counted at 256 levels), as the model takes them (channels pooled).

    Returns:
        ``pixel_mean`` and ``pixel_std`` (over every pixel), ``image_mean_mean`` and
        ``image_mean_std`` (of each image's mean pixel), ``border_mean`` (of the images'
        outer pixel ring), ``background`` (the most common pixel value, rounded to 1/255)
        and ``background_share`` (the share of pixels within ``BACKGROUND_TOLERANCE`` of
        it), each rounded to 4 decimals, and ``images`` (how many).
    """
    array = np.asarray(images)
    if array.ndim == 4:
        array = array.reshape(-1, *array.shape[-2:])
    if array.ndim != 3 or array.shape[0] == 0 or min(array.shape[1:]) < 2:
        raise XAIValueError(
            f"input_statistics: expected (N, H, W) or (N, C, H, W) images, at least 2 x 2; "
            f"received shape {np.asarray(images).shape}"
        )
    if array.dtype != np.uint8:  # floats in [0, 1]: to the 256 levels the counts use
        array = np.rint(np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    values = np.arange(256) / 255.0
    counts = np.bincount(array.ravel(), minlength=256)  # exact and fast on uint8
    total = counts.sum()
    mean = float(counts @ values / total)
    pixels = array.shape[1] * array.shape[2]
    means = array.reshape(len(array), -1).sum(axis=1, dtype=np.int64) / (255.0 * pixels)
    background = float(values[counts.argmax()])
    near = np.abs(values - background) <= BACKGROUND_TOLERANCE + 1e-9
    stats = {
        "pixel_mean": mean,
        "pixel_std": float(np.sqrt(counts @ (values - mean) ** 2 / total)),
        "image_mean_mean": float(means.mean()),
        "image_mean_std": float(means.std()),
        "border_mean": float(_border(array).astype(np.int64).mean() / 255.0),
        "background": background,
        "background_share": float(counts[near].sum() / total),
    }
    return {**{k: round(v, 4) for k, v in stats.items()}, "images": int(array.shape[0])}


def colourful(pixels: np.ndarray) -> float:
    """The share of pixels whose channels differ by more than ``COLOUR_SPREAD`` (0 for a
    gray image, or an ``(H, W)`` one): how much colour turning it gray throws away."""
    if pixels.ndim != 3 or pixels.shape[2] < 3:
        return 0.0
    top = 65535.0 if pixels.dtype == np.uint16 else 255.0 if pixels.dtype == np.uint8 else 1.0
    rgb = pixels[:, :, :3]
    spread = (rgb.max(axis=2).astype(np.float64) - rgb.min(axis=2)) / top
    return float((spread > COLOUR_SPREAD).mean())


def _factor(a: float, b: float) -> float:
    """How many times ``a`` is from ``b``, either way (>= 1)."""
    return max(a / b, b / a)


def check_input(
    pixels: np.ndarray,
    model_input: Any,
    statistics: Mapping[str, Any] | None = None,
    *,
    inverted: bool = False,
) -> list[InputWarning]:
    """Why ``model_input``, made from ``pixels``, looks unlike the training images.

    Args:
        pixels: the image as read, ``(H, W)`` gray or ``(H, W, 3)`` RGB.
        model_input: what the model was given, ``(C, H', W')`` in [0, 1] (numpy or torch).
        statistics: the training images' ``input_statistics`` (a model card's
            ``input_statistics``); ``None`` skips the intensity and background checks.
        inverted: whether the input was made with ``1 - pixel`` (``--invert``); the
            background hint then suggests leaving it off.

    Returns:
        One ``InputWarning`` per reason found, in the module's order; empty when none.
    """
    x = model_input.detach().cpu().numpy() if hasattr(model_input, "detach") else model_input
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise XAIValueError(f"check_input: model_input must be (C, H, W); received {x.shape}")
    channels, height, width = x.shape
    found: list[InputWarning] = []
    share = colourful(pixels)
    if channels == 1 and share > COLOUR_SHARE:
        found.append(
            InputWarning(
                "colour",
                f"a colour image ({share:.0%} of its pixels coloured) was turned gray for a "
                f"model of 1-channel images: its colours are lost to the model",
            )
        )
    image_height, image_width = int(pixels.shape[0]), int(pixels.shape[1])
    aspect = _factor(image_width / image_height, width / height)
    if aspect > MAX_ASPECT:
        found.append(
            InputWarning(
                "aspect",
                f"its aspect ratio {image_width}:{image_height} is {aspect:.1f}x off the "
                f"model input's {width}:{height}: it was stretched, shapes are distorted",
            )
        )
    resize = max(_factor(image_height, height), _factor(image_width, width))
    if resize > MAX_RESIZE:
        way = "shrunk" if image_height * image_width > height * width else "enlarged"
        found.append(
            InputWarning(
                "size",
                f"{image_width} x {image_height} pixels were {way} {resize:.0f}x to the model "
                f"input's {width} x {height}: detail is lost or made up",
            )
        )
    if statistics:
        found += _intensity(x, statistics, inverted)
    return found


def _intensity(x: np.ndarray, stats: Mapping[str, Any], inverted: bool) -> list[InputWarning]:
    found = []
    mean, spread = stats.get("image_mean_mean"), stats.get("image_mean_std")
    if mean is not None and spread:
        own = float(x.mean())
        z = abs(own - float(mean)) / float(spread)
        if z > MAX_MEAN_Z:
            found.append(
                InputWarning(
                    "intensity",
                    f"its mean pixel {own:.2f} is {z:.1f} standard deviations from the "
                    f"training images' mean {float(mean):.2f} (std {float(spread):.2f})",
                )
            )
    border = stats.get("border_mean")
    if border is not None and min(x.shape[1:]) >= 2:
        own = float(_border(x).mean())
        gap = own - float(border)
        if abs(gap) > MAX_BORDER_GAP:
            shade = "lighter" if gap > 0 else "darker"
            flipped = abs((1.0 - own) - float(border)) < abs(gap)  # would 1 - x be closer?
            hint = ""
            if flipped:
                hint = (
                    "; try without --invert" if inverted else "; drawn dark on light? try --invert"
                )
            found.append(
                InputWarning(
                    "background",
                    f"its border (mean {own:.2f}) is much {shade} than the training images' "
                    f"({float(border):.2f}){hint}",
                )
            )
    return found
