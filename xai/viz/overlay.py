"""Saliency maps as coloured heat maps over their images, as RGB ``uint8`` arrays.

    >>> import numpy as np
    >>> from xai.viz.overlay import colorize, overlay
    >>> colorize(np.array([[0.0, 1.0]]), "jet").tolist()   # blue for 0, red for 1: RGB
    [[[0, 0, 128], [128, 0, 0]]]
    >>> gray = np.zeros((2, 2))                               # a black image ...
    >>> overlay(gray, np.ones((1, 1)), alpha=0.5)[0, 0].tolist()   # ... half red
    [64, 0, 0]

The colours are OpenCV's colour maps (``cv2.applyColorMap``), converted from OpenCV's
BGR order to RGB, so arrays from here can go straight to matplotlib's ``imshow`` or,
flipped back with ``[..., ::-1]``, to ``cv2.imwrite``. OpenCV is imported on first use.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np

from xai.core.errors import XAITypeError, XAIValueError
from xai.core.validate import Constraint, Interval, validate

__all__ = ["colorize", "colormaps", "overlay", "resolve_colormap", "to_rgb"]

_PREFIX = "COLORMAP_"


def _cv2() -> Any:
    import cv2

    return cv2


def colormaps() -> tuple[str, ...]:
    """The valid colour-map names: OpenCV's ``COLORMAP_*`` constants, lower-cased, sorted.

    >>> {"jet", "turbo", "viridis"} <= set(colormaps())
    True
    """
    cv2 = _cv2()
    return tuple(
        sorted(name[len(_PREFIX) :].lower() for name in dir(cv2) if name.startswith(_PREFIX))
    )


def resolve_colormap(colormap: str) -> str:
    """The name in ``colormaps`` that ``colormap`` means (case-insensitive,
    ``COLORMAP_`` prefix optional).

    Raises:
        ValueError: an unknown name; the message gives the closest and the valid ones.

    >>> resolve_colormap("COLORMAP_Viridis")
    'viridis'
    """
    if not isinstance(colormap, str):
        raise XAITypeError(f"colormap must be a name such as 'jet'; got {type(colormap).__name__}")
    key = colormap.strip().lower()
    if key.startswith(_PREFIX.lower()):
        key = key[len(_PREFIX) :]
    valid = colormaps()
    if key not in valid:
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise XAIValueError(
            f"unknown colormap {colormap!r}.{hint} Valid colormaps: {', '.join(valid)}."
        )
    return key


def _colormap_code(colormap: str) -> int:
    """OpenCV's constant for ``colormap``."""
    return int(getattr(_cv2(), _PREFIX + resolve_colormap(colormap).upper()))


def _to_numpy(array: Any) -> np.ndarray:
    """A numpy array from a numpy array, a torch tensor (on any device) or a nested list."""
    if hasattr(array, "detach"):  # a torch tensor; torch is not imported here
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _check_map(saliency: Any, what: str = "saliency") -> np.ndarray:
    """``saliency`` as a finite-or-clippable (H, W) float64 array."""
    array = _to_numpy(saliency)
    if array.ndim != 2:
        raise XAIValueError(
            f"{what} must be one (H, W) map; received an array of shape {array.shape}"
        )
    if array.size == 0:
        raise XAIValueError(f"{what} is empty: shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise XAITypeError(f"{what} must hold numbers in [0, 1]; received dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise XAITypeError(f"{what} must hold real numbers; received dtype {array.dtype}")
    array = array.astype(np.float64)
    if np.isnan(array).any():
        raise XAIValueError(
            f"{what} contains {int(np.isnan(array).sum())} NaN value(s); a map must be numbers "
            f"in [0, 1]"
        )
    return array


def colorize(saliency: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """Colour a map with one of OpenCV's colour maps.

    Args:
        saliency: ``(H, W)`` map with values in [0, 1] (numpy array or torch tensor);
            values outside are clipped. It is quantised to 256 levels,
            ``round(255 * value)``, as ``cv2.applyColorMap`` needs.
        colormap: a name from ``colormaps``, e.g. ``"jet"``, ``"turbo"``,
            ``"viridis"``.

    Returns:
        ``(H, W, 3)`` ``uint8`` RGB (not OpenCV's BGR).

    Raises:
        ValueError: a map that is not 2-D or contains NaN; an unknown colour map (the
            message lists the valid ones and the closest name).
    """
    code = _colormap_code(colormap)
    levels = np.rint(np.clip(_check_map(saliency), 0.0, 1.0) * 255.0).astype(np.uint8)
    bgr = _cv2().applyColorMap(levels, code)
    return np.ascontiguousarray(bgr[..., ::-1])


def _channels_last(array: np.ndarray, from_torch: bool) -> np.ndarray:
    if from_torch and array.ndim == 3:  # torch images are (C, H, W)
        if array.shape[0] not in (1, 3, 4):
            raise XAIValueError(
                f"expected a torch image of shape (C, H, W) with C in 1, 3 or 4, or (H, W); "
                f"received shape {tuple(array.shape)}"
            )
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or 0 in array.shape:
        raise XAIValueError(
            f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA; "
            f"received shape {tuple(array.shape)}"
        )
    return array


def _unit_scale(array: np.ndarray) -> np.ndarray:
    """The pixels as float64 in [0, 1], from uint8, uint16 or float in [0, 1]."""
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float64) / 65535.0
    if array.dtype == bool:
        return array.astype(np.float64)
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise XAIValueError("the image contains NaN or infinite pixels")
        low, high = float(values.min()), float(values.max())
        if low < -1e-6 or high > 1.0 + 1e-6:
            hint = " (divide 0-255 pixels by 255)" if high <= 255.0 and low >= 0.0 else ""
            raise XAIValueError(
                f"a float image must be scaled to [0, 1]; received values in "
                f"[{low:g}, {high:g}]{hint}"
            )
        return np.clip(values, 0.0, 1.0)
    raise XAITypeError(
        f"expected an image of dtype uint8, uint16 or float in [0, 1]; received {array.dtype}"
    )


def to_rgb(image: Any) -> np.ndarray:
    """Any common image layout as ``(H, W, 3)`` ``uint8`` RGB.

    Args:
        image: numpy ``(H, W)`` gray, ``(H, W, 1)``, ``(H, W, 3)`` RGB or ``(H, W, 4)``
            RGBA, of dtype ``uint8``, ``uint16`` or float in [0, 1]; or a torch tensor
            ``(C, H, W)`` (C = 1, 3 or 4) or ``(H, W)`` float in [0, 1]. RGBA is
            composited on white: ``rgb * a + 1 * (1 - a)``.

    Returns:
        ``(H, W, 3)`` ``uint8``: ``round(255 * value)`` of each channel.

    Raises:
        ValueError: another shape (the message gives the expected and the received one),
            or a float image outside [0, 1].

    >>> to_rgb(np.array([[0.0, 1.0]])).tolist()
    [[[0, 0, 0], [255, 255, 255]]]
    """
    from_torch = hasattr(image, "detach")
    array = _channels_last(_to_numpy(image), from_torch)
    unit = _unit_scale(array)
    if unit.shape[-1] == 4:
        alpha = unit[..., 3:]
        unit = unit[..., :3] * alpha + (1.0 - alpha)
    elif unit.shape[-1] == 1:
        unit = np.repeat(unit, 3, axis=-1)
    return np.rint(unit * 255.0).astype(np.uint8)


# The constraints of ``overlay``'s numeric options, declared once (the grids that draw
# overlays check theirs against it too).
_OVERLAY: dict[str, Sequence[Constraint]] = {"alpha": [Interval(0.0, 1.0)]}


def overlay(
    image: Any,
    saliency: Any,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> np.ndarray:
    """A saliency map as a coloured heat map blended over its image.

    ``round((1 - alpha) * to_rgb(image) + alpha * colorize(saliency, colormap))``, per
    pixel and channel. A map of another size than the image is first resized to the
    image's size bilinearly (``cv2.resize`` with ``INTER_LINEAR``, pixel centres aligned
    the way ``torch.nn.functional.interpolate(..., align_corners=False)`` aligns them).

    Args:
        image: any layout ``to_rgb`` accepts.
        saliency: ``(H', W')`` map in [0, 1] (numpy array or torch tensor).
        alpha: weight of the heat map, in [0, 1]: 0 gives the image, 1 the heat map.
        colormap: a name from ``colormaps``.

    Returns:
        ``(H, W, 3)`` ``uint8`` RGB at the image's size.
    """
    alpha = validate("overlay", _OVERLAY, alpha=alpha)["alpha"]  # NaN refused too
    rgb = to_rgb(image)
    heat_map = _check_map(saliency)
    height, width = rgb.shape[:2]
    if heat_map.shape != (height, width):
        heat_map = (
            _cv2()
            .resize(heat_map.astype(np.float32), (width, height), interpolation=_cv2().INTER_LINEAR)
            .astype(np.float64)
        )
    heat = colorize(heat_map, colormap)
    blended = (1.0 - alpha) * rgb.astype(np.float64) + alpha * heat.astype(np.float64)
    return np.rint(blended).astype(np.uint8)
