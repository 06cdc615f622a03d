"""Items pasted at random positions into a larger, empty canvas: images whose object is
small and somewhere unknown, with its box and its mask as ground truth for localisation
metrics (``xai.metrics.pointing_game``, ``energy_pointing_game``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xai.core.errors import XAITypeError, XAIValueError
from xai.core.validate import Constraint, Integer, Interval, NoneValue, validate
from xai.data.datasets import load
from xai.data.splits import stratified_subsample

if TYPE_CHECKING:
    import torch

__all__ = ["Canvas", "load_canvas", "paste"]


@dataclass(frozen=True, eq=False)
class Canvas:
    """Items pasted into canvases, and where each one is.

    Attributes:
        canvases: ``(N, 1, S, S)`` float32 in [0, 1], zero outside the item.
        labels: ``(N,)`` int64, the items' labels.
        boxes: ``(N, 4)`` int64 ``(x0, y0, x1, y1)``, the pasted item's rows ``y0 <= y < y1``
            and columns ``x0 <= x < x1`` (``canvases[i, 0, y0:y1, x0:x1]`` is item i): the
            box convention of ``xai.metrics``, so they can be passed to it as they are.
        masks: ``(N, S, S)`` bool, the item's pixels brighter than ``threshold``, in place.
        threshold: the intensity the mask's pixels exceed.
        class_names: the labels' names, when known.
    """

    canvases: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray
    threshold: float
    class_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Any) -> Canvas:
        """The canvases at ``indices`` (any numpy index), with their boxes and masks."""
        return Canvas(
            self.canvases[indices],
            self.labels[indices],
            self.boxes[indices],
            self.masks[indices],
            self.threshold,
            self.class_names,
        )

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Canvases (N, 1, S, S) float32 and labels int64, as ``xai.training.fit`` takes."""
        import torch

        return torch.from_numpy(self.canvases), torch.from_numpy(self.labels)

    def __repr__(self) -> str:
        size = self.canvases.shape[-1]
        return f"Canvas(n={len(self)}, canvas={size}x{size}, threshold={self.threshold:g})"


def _items(items: Any) -> np.ndarray:
    """(N, h, w) float32 in [0, 1] from (N, h, w) or (N, 1, h, w), uint8 or float."""
    if hasattr(items, "detach"):  # a torch tensor; torch is not imported here
        items = items.detach().cpu().numpy()
    array = np.asarray(items)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise XAIValueError(
            f"items must be (N, h, w) or (N, 1, h, w) single-channel images; got shape "
            f"{array.shape}. Stack them into one array (RGB is not supported)."
        )
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise XAITypeError(f"items must be uint8 or real numbers; got dtype {array.dtype}")
    array = array.astype(np.float32)
    if array.size and (not np.isfinite(array).all() or array.min() < 0 or array.max() > 1):
        raise XAIValueError(
            f"float items must lie in [0, 1]; got values in [{array.min():g}, {array.max():g}]. "
            f"Divide 0-255 images by 255 (or pass them as uint8)."
        )
    return array


# The constraints of ``paste``'s and ``load_canvas``'s options, declared once. ``size``
# must also hold the item, and ``count`` at most the split's size: checked against the
# data.
_PASTE: dict[str, Sequence[Constraint]] = {
    "size": [Integer(1)],
    "seed": [Integer(0)],
    "threshold": [Interval(0.0, 1.0, high_open=True)],
}
_LOAD_CANVAS: dict[str, Sequence[Constraint]] = {**_PASTE, "count": [Integer(), NoneValue()]}


def paste(
    items: Any, labels: Any, *, size: int = 64, seed: int = 0, threshold: float = 0.05
) -> Canvas:
    """Paste each item at a seeded, uniformly random position into a zero ``size`` x
    ``size`` canvas.

    Item i, of h x w pixels, gets its top row ``y0`` and left column ``x0`` drawn
    independently and uniformly from ``0 .. size - h`` and ``0 .. size - w`` (both ends
    included) by ``numpy.random.default_rng(seed)``: ``y0 = rng.integers(0, size - h + 1,
    N)``, then ``x0`` likewise. The canvas there equals the item; everywhere else it is 0.

    Args:
        items: ``(N, h, w)`` or ``(N, 1, h, w)`` images, uint8 (scaled by 1/255, as
            ``Dataset.tensors`` does) or floats in [0, 1]; numpy or torch.
        labels: ``(N,)`` integer labels.
        size: the canvas's side in pixels, at least the item's height and width.
        seed: seeds the positions; the same seed gives the same canvases.
        threshold: the mask holds the item's pixels brighter than this (0.05, the model
            card's definition of a garment pixel).

    Returns:
        A ``Canvas`` with ``canvases``, ``labels``, ``boxes`` and ``masks``.

    Example:
        >>> import numpy as np
        >>> c = paste(np.ones((1, 2, 2)), [3], size=4, seed=0)
        >>> c.boxes.tolist(), int(c.canvases.sum()), int(c.masks.sum())
        ([[1, 2, 3, 4]], 4, 4)
    """
    options = validate("paste", _PASTE, size=size, seed=seed, threshold=threshold)
    size, threshold = options["size"], options["threshold"]
    array = _items(items)
    label_array = np.asarray(labels)
    n, h, w = array.shape
    if label_array.shape != (n,) or not np.issubdtype(label_array.dtype, np.integer):
        raise XAIValueError(
            f"labels must be {n} integers, one per item; got shape {label_array.shape} of "
            f"dtype {label_array.dtype}"
        )
    if size < max(h, w):
        raise XAIValueError(
            f"paste: size must be at least the item's height and width ({h} x {w}) so the "
            f"item fits; got size={size!r}. Use size >= {max(h, w)}."
        )
    rng = np.random.default_rng(options["seed"])
    tops = rng.integers(0, size - h + 1, n)
    lefts = rng.integers(0, size - w + 1, n)
    rows = (tops[:, None] + np.arange(h))[:, :, None]
    cols = (lefts[:, None] + np.arange(w))[:, None, :]
    index = np.arange(n)[:, None, None]
    canvases = np.zeros((n, 1, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=bool)
    canvases[index, 0, rows, cols] = array
    masks[index, rows, cols] = array > threshold
    boxes = np.stack([lefts, tops, lefts + w, tops + h], axis=1).astype(np.int64)
    return Canvas(canvases, label_array.astype(np.int64), boxes, masks, threshold)


def load_canvas(
    name: str = "fashion-mnist",
    split: str = "train",
    *,
    count: int | None = None,
    size: int = 64,
    seed: int = 0,
    threshold: float = 0.05,
    root: str | Path | None = None,
) -> Canvas:
    """A split of an MNIST-family data set (``xai.data.load``) pasted into canvases.

    Args:
        name: the data set, as for ``load``.
        split: ``"train"`` or ``"test"``.
        count: keep a stratified, seeded subsample of about this many items
            (``stratified_subsample``); ``None`` keeps them all.
        size: the canvas's side in pixels.
        seed: seeds both the subsample and the positions (see ``paste``).
        threshold: the mask holds the item's pixels brighter than this.
        root: the data set's folder; by default found with ``find_root``.

    Returns:
        A ``Canvas`` with the data set's ``class_names``.
    """
    options = validate(
        "load_canvas", _LOAD_CANVAS, count=count, size=size, seed=seed, threshold=threshold
    )
    count = options["count"]
    data = load(name, root, split)
    if count is not None:
        if not 0 < count <= len(data):
            raise XAIValueError(
                f"load_canvas: count must be an int in 1..{len(data)} (or None); got {count!r}."
            )
        data = data.subset(stratified_subsample(data.labels, count / len(data), seed))
    pasted = paste(data.images, data.labels, size=size, seed=seed, threshold=threshold)
    return replace(pasted, class_names=data.class_names)
