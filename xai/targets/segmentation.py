"""``Segmentation``: explain a segmentation model's score for one category in a region."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch

from xai.core.errors import XAIValueError
from xai.core.targets import Target, describe, logits_of
from xai.targets._data import as_tensor, categories, check_count, rows_of

__all__ = ["Segmentation"]


class Segmentation(Target):
    r"""A segmentation model's score for ``category``, summed over ``mask``.

    $$
    y = \sum_{i,j} M_{ij}\, S_{c,ij}
    $$

    with $S$ the model's per-pixel class scores (logits; probabilities, a softmax
    over the classes at each pixel, where a method asks for them) and $M$ the mask,
    as pytorch-grad-cam's ``SemanticSegmentationTarget``.

    Args:
        category: the class, one for all samples or one per sample.
        mask: ``(h, w)`` shared by all samples or ``(N, h, w)`` one per sample; bool,
            or float weights. ``h, w`` are the model output's spatial size.

    The model must return ``(N, classes, h, w)`` scores: a tensor, or an output with
    ``.logits`` (Hugging Face) or ``["out"]`` (torchvision).
    """

    def __init__(self, category: int | Sequence[int] | torch.Tensor, mask: Any) -> None:
        self.category = categories(category)
        self.mask = as_tensor(mask, "mask", torch.float32)
        if self.mask.ndim not in (2, 3):
            raise XAIValueError(
                f"mask must be (h, w) for all samples or (N, h, w) one per sample; got "
                f"shape {tuple(self.mask.shape)}."
            )

    def _scores(self, output: Any) -> torch.Tensor:
        scores = logits_of(output)
        if scores is None or scores.ndim != 4:
            raise XAIValueError(
                f"Segmentation needs a model that returns (N, classes, h, w) scores; this "
                f"model returned {describe(output)}."
            )
        return scores

    def check(self, output: Any, n: int) -> None:
        scores = self._scores(output)
        check_count(self.category, 0, n, "category")
        check_count(self.mask, 2, n, "mask")
        classes, size = scores.shape[1], tuple(scores.shape[2:])
        bad = self.category[(self.category < 0) | (self.category >= classes)]
        if len(bad):
            raise XAIValueError(
                f"Segmentation category {int(bad[0])} is out of range for a model with "
                f"{classes} classes; valid categories are 0..{classes - 1}."
            )
        if tuple(self.mask.shape[-2:]) != size:
            raise XAIValueError(
                f"Segmentation mask is {tuple(self.mask.shape[-2:])} but the model's output "
                f"is {size}; resize the mask to the output (nearest neighbour), e.g. "
                f"F.interpolate(mask[None, None].float(), size={size}, mode='nearest')[0, 0]."
            )

    def score(
        self, output: Any, samples: torch.Tensor, *, probabilities: bool = False
    ) -> torch.Tensor:
        scores = self._scores(output)
        if probabilities:
            scores = torch.softmax(scores.float(), dim=1)
        device = scores.device
        category = rows_of(self.category, 0, samples).to(device)
        mask = rows_of(self.mask, 2, samples).to(device, scores.dtype)
        rows = torch.arange(scores.shape[0], device=device)
        return (scores[rows, category] * mask).flatten(1).sum(dim=1)

    def class_index(self, sample: int) -> int:
        return int(self.category if self.category.ndim == 0 else self.category[sample])

    def describe(self, sample: int) -> str:
        mask = self.mask if self.mask.ndim == 2 else self.mask[sample]
        return f"segmentation: class {self.class_index(sample)} over mask sum {float(mask.sum()):g}"

    @classmethod
    def merge(cls, targets: Sequence[Target], n: int) -> Target | None:
        items = [cast(Segmentation, t) for t in targets]
        masks = [t.mask if t.mask.ndim == 2 else t.mask[i] for i, t in enumerate(items)]
        if len({tuple(m.shape) for m in masks}) != 1:
            return None
        return Segmentation([t.class_index(i) for i, t in enumerate(items)], torch.stack(masks))

    def __repr__(self) -> str:
        return f"Segmentation(category={self.category.tolist()}, mask={tuple(self.mask.shape)})"
