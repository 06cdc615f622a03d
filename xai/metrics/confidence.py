"""Average drop and increase in confidence: how much of the class's probability survives
when the image is dimmed by its own explanation map?

Chattopadhay, Sarkar, Howlader & Balasubramanian, *Grad-CAM++: Generalized
Gradient-based Visual Explanations for Deep Convolutional Networks*, WACV 2018,
section 5.1.

For image i with target class c, ``Y_i`` is the class's softmax probability on the image
and ``O_i`` on the image multiplied element-wise by its explanation map ``L_i`` (values
in [0, 1], the same map for every channel):

    average drop            = (100 / N) · Σ_i max(0, Y_i − O_i) / Y_i      (lower is better)
    increase in confidence  = (100 / N) · Σ_i 1[O_i > Y_i]                  (higher is better)

A map that keeps what the model needs loses little probability; a map of ones keeps it
all (drop 0) and so scores perfectly, which is why the two are read together with the
deletion and insertion curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xai.core.errors import XAIValueError
from xai.core.targets import TargetLike
from xai.core.validate import Constraint, Integer, validate
from xai.metrics._inputs import SaliencyLike, as_saliency, explanation_targets
from xai.metrics._model import class_scores, prepare, resolve_classes

__all__ = ["ConfidenceChange", "average_drop"]


@dataclass(frozen=True, eq=False)
class ConfidenceChange:
    """Average drop and increase in confidence for N images.

    Attributes:
        original: ``(N,)`` float64, ``Y``: the target's probability on each image.
        explained: ``(N,)`` float64, ``O``: its probability on the image × its map.
        drop: ``(N,)`` float64, ``100 · max(0, Y − O) / Y`` per image (0 where Y is 0).
        increased: ``(N,)`` bool, ``O > Y``.
        targets: ``(N,)`` int64, the class scored for each image.
    """

    original: np.ndarray
    explained: np.ndarray
    drop: np.ndarray
    increased: np.ndarray
    targets: np.ndarray

    @property
    def average_drop(self) -> float:
        """Mean of ``drop`` over the images, in percent (lower is better)."""
        return float(self.drop.mean())

    @property
    def increase_in_confidence(self) -> float:
        """Percentage of images whose probability rose (higher is better)."""
        return float(100.0 * self.increased.mean())

    def __len__(self) -> int:
        return int(self.original.shape[0])

    def __repr__(self) -> str:
        return (
            f"ConfidenceChange(n={len(self)}, average_drop={self.average_drop:.2f}%, "
            f"increase_in_confidence={self.increase_in_confidence:.1f}%)"
        )


# The constraints of ``average_drop``'s options, declared once.
_AVERAGE_DROP: dict[str, Sequence[Constraint]] = {"batch_size": [Integer(1)]}


def average_drop(
    model: torch.nn.Module,
    images: torch.Tensor,
    saliency: SaliencyLike,
    target: TargetLike = None,
    *,
    batch_size: int = 256,
) -> ConfidenceChange:
    """Average drop and increase in confidence (Grad-CAM++, Chattopadhay et al. 2018).

    ``Y_i`` = softmax probability of class c on image ``x_i``, ``O_i`` = on
    ``x_i ⊙ L_i`` (the map broadcast over the channels);
    ``average drop = (100/N) Σ_i max(0, Y_i − O_i) / Y_i`` and
    ``increase in confidence = (100/N) Σ_i 1[O_i > Y_i]``.

    Args:
        model: an image classifier returning ``(N, classes)`` logits; run under
            ``torch.no_grad()`` in eval mode, every submodule's flag restored after.
        images: ``(N, C, H, W)`` float, scaled as the model expects. The product
            ``x ⊙ L`` is taken on these values, so 0 should mean "nothing there" (true of
            images scaled to [0, 1] with the normalisation inside the model).
        saliency: an ``Explanation`` (its ``maps``) or ``(N, H, W)`` maps with
            values in [0, 1] at the images' resolution.
        target: ``None`` (the Explanation's targets, or else each image's top-1 class),
            an int, or one int per image.
        batch_size: images per forward pass; the result does not depend on it.

    Returns:
        A ``ConfidenceChange``; ``.average_drop`` and ``.increase_in_confidence``
        are percentages.
    """
    batch_size = validate("average_drop", _AVERAGE_DROP, batch_size=batch_size)["batch_size"]
    x = prepare(model, images)
    n, _, height, width = x.shape
    maps = as_saliency(saliency, n=n, size=(height, width))
    if maps.numel() and (maps.min() < 0 or maps.max() > 1):
        raise XAIValueError(
            f"saliency maps must lie in [0, 1] to multiply the image; got values in "
            f"[{maps.min().item():.4g}, {maps.max().item():.4g}]. Use Explanation.maps or "
            f"min-max normalise each map first."
        )
    default = explanation_targets(saliency) if target is None else None
    classes = resolve_classes(model, x, target, default, batch_size)
    masks = maps.to(device=x.device, dtype=x.dtype)[:, None]

    def make_rows(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        # rows 0..N-1 are the images, rows N..2N-1 the images times their maps
        row = torch.arange(start, stop, device=x.device)
        owner = row % n
        rows = torch.where((row < n)[:, None, None, None], x[owner], x[owner] * masks[owner])
        return rows, owner

    scores = class_scores(model, make_rows, 2 * n, classes, softmax=True, batch_size=batch_size)
    original, explained = scores[:n], scores[n:]
    loss = (original - explained).clamp_min(0.0)
    safe = torch.where(original > 0, original, torch.ones_like(original))
    drop = torch.where(original > 0, 100.0 * loss / safe, torch.zeros_like(loss))
    return ConfidenceChange(
        original=original.numpy(),
        explained=explained.numpy(),
        drop=drop.numpy(),
        increased=(explained > original).numpy(),
        targets=classes.numpy(),
    )
