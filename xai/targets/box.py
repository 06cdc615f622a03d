"""``Box``: explain a detection model's score for the detection matching a given box."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch

from xai.core.errors import XAIValueError
from xai.core.targets import Target, describe
from xai.core.validate import Real, check
from xai.targets._data import as_tensor, categories, check_count

__all__ = ["Box", "box_iou"]


def box_iou(boxes: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """IoU of each of ``boxes`` (..., 4) with ``box`` (4,), boxes as (x0, y0, x1, y1)."""
    x0 = torch.maximum(boxes[..., 0], box[0])
    y0 = torch.maximum(boxes[..., 1], box[1])
    x1 = torch.minimum(boxes[..., 2], box[2])
    y1 = torch.minimum(boxes[..., 3], box[3])
    inter = (x1 - x0).clamp_min(0) * (y1 - y0).clamp_min(0)
    area = (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(
        0
    )
    own = (box[2] - box[0]).clamp_min(0) * (box[3] - box[1]).clamp_min(0)
    union = area + own - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


def _get(output: Any, key: str) -> Any:
    if isinstance(output, Mapping):
        return output.get(key)
    return getattr(output, key, None)


def _rows(output: Any) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """Per row of the output: candidate boxes (M, 4) and their class scores (M, K), or
    (M,) scores with labels folded in as -inf elsewhere; None if no known format."""
    if isinstance(output, (list, tuple)) and output and all(isinstance(o, Mapping) for o in output):
        rows = []
        for item in output:  # torchvision: one dict per image
            boxes, scores, labels = item.get("boxes"), item.get("scores"), item.get("labels")
            if not all(isinstance(v, torch.Tensor) for v in (boxes, scores, labels)):
                return None
            rows.append((boxes, _one_hot(scores, labels)))
        return rows
    boxes, scores, labels = _get(output, "boxes"), _get(output, "scores"), _get(output, "labels")
    if not isinstance(boxes, torch.Tensor) or not isinstance(scores, torch.Tensor):
        return None
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        return None
    if scores.ndim == 3:  # dense: a score per class for every candidate
        return list(zip(boxes, scores, strict=True))
    if scores.ndim == 2 and isinstance(labels, torch.Tensor):
        return [(b, _one_hot(s, lab)) for b, s, lab in zip(boxes, scores, labels, strict=True)]
    return None


def _one_hot(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(M,) scores with (M,) labels as (M, K) class scores, NaN for other classes."""
    k = int(labels.max()) + 1 if labels.numel() else 1
    out = torch.full((scores.shape[0], k), float("nan"), dtype=scores.dtype, device=scores.device)
    return out.scatter(1, labels.long()[:, None], scores[:, None])


class Box(Target):
    r"""A detection model's score for the detection that matches ``box``.

    Among the model's candidate detections of class ``category``, the one with the
    largest IoU with ``box`` (at least ``iou``; ties broken by score) is matched, and
    its class score is explained:

    $$
    y = s_{m^\ast c}, \qquad m^\ast = \arg\max_{m:\,\mathrm{IoU}(b_m, B) \ge t} \mathrm{IoU}(b_m, B)
    $$

    The match is chosen without gradients; the score is differentiated. On masked
    copies (Score-CAM, Ablation-CAM) a row with no match scores 0, as
    pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``; on the image itself a box with no
    match is an error.

    Args:
        box: ``(x0, y0, x1, y1)`` in the output's coordinates, one for all samples or
            ``(N, 4)`` one per sample.
        category: the class, one for all samples or one per sample.
        iou: the least IoU that counts as a match.

    The model must return either a mapping (or object) with ``boxes`` ``(N, M, 4)`` and
    ``scores`` ``(N, M, classes)`` (dense detectors), or ``scores`` ``(N, M)`` with
    ``labels`` ``(N, M)``, or torchvision's list of N dicts with ``boxes``, ``scores``,
    ``labels``.
    """

    def __init__(self, box: Any, category: int | Sequence[int] | torch.Tensor, *, iou: float = 0.5):
        self.box = as_tensor(box, "box", torch.float32)
        if self.box.ndim not in (1, 2) or self.box.shape[-1] != 4:
            raise XAIValueError(
                f"box must be (x0, y0, x1, y1) or (N, 4); got shape {tuple(self.box.shape)}"
            )
        if bool(
            ((self.box[..., 2] <= self.box[..., 0]) | (self.box[..., 3] <= self.box[..., 1])).any()
        ):
            raise XAIValueError(f"box must have x1 > x0 and y1 > y0; got {self.box.tolist()}")
        self.category = categories(category)
        self.iou = check(iou, [Real(0.0, 1.0, low_open=True)], "iou", "Box")

    def _candidates(self, output: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
        rows = _rows(output)
        if rows is None:
            raise XAIValueError(
                f"Box needs a detection output: boxes (N, M, 4) with scores (N, M, classes) "
                f"or (N, M) and labels, or torchvision's list of dicts; this model returned "
                f"{describe(output)}."
            )
        return rows

    def _match(self, boxes: torch.Tensor, scores: torch.Tensor, sample: int) -> tuple[int, float]:
        """The matched candidate's index (-1 if none) and the best IoU seen."""
        category = self.class_index(sample)
        ref = self.box if self.box.ndim == 1 else self.box[sample]
        with torch.no_grad():
            ious = box_iou(boxes.detach().float().cpu(), ref)
            if category < scores.shape[1]:
                column = scores[:, category].detach().float().cpu()
            else:
                column = torch.full((boxes.shape[0],), float("nan"))
            eligible = (ious >= self.iou) & ~torch.isnan(column)
            best = (
                float(ious[~torch.isnan(column)].max())
                if bool((~torch.isnan(column)).any())
                else 0.0
            )
            if not bool(eligible.any()):
                return -1, best
            key = torch.where(eligible, ious, torch.full_like(ious, -1.0))
            top = key.max()
            tied = eligible & (key == top)
            index = int(torch.where(tied, column, torch.full_like(column, -float("inf"))).argmax())
        return index, best

    def check(self, output: Any, n: int) -> None:
        rows = self._candidates(output)
        check_count(self.box, 1, n, "box")
        check_count(self.category, 0, n, "category")
        if len(rows) != n:
            raise XAIValueError(f"Box: the detection output has {len(rows)} rows for {n} samples")
        for sample, (boxes, scores) in enumerate(rows):
            index, best = self._match(boxes, scores, sample)
            if index < 0:
                raise XAIValueError(
                    f"Box: sample {sample} has no detection of class "
                    f"{self.class_index(sample)} with IoU >= {self.iou:g} with the box "
                    f"{self.box.tolist() if self.box.ndim == 1 else self.box[sample].tolist()} "
                    f"(best IoU {best:.3f}); pass the box of a detection, or a lower iou=."
                )

    def score(
        self, output: Any, samples: torch.Tensor, *, probabilities: bool = False
    ) -> torch.Tensor:
        rows = self._candidates(output)
        values = []
        for (boxes, scores), sample in zip(rows, samples.tolist(), strict=True):
            index, _ = self._match(boxes, scores, sample)
            if index < 0:
                values.append(scores.new_zeros(()))
            else:
                values.append(scores[index, self.class_index(sample)])
        return torch.stack(values)

    def class_index(self, sample: int) -> int:
        return int(self.category if self.category.ndim == 0 else self.category[sample])

    def describe(self, sample: int) -> str:
        box = self.box if self.box.ndim == 1 else self.box[sample]
        shown = ", ".join(f"{v:g}" for v in box.tolist())
        return f"box ({shown}) class {self.class_index(sample)}"

    @classmethod
    def merge(cls, targets: Sequence[Target], n: int) -> Target | None:
        items = [cast(Box, t) for t in targets]
        if len({t.iou for t in items}) != 1:
            return None
        boxes = torch.stack([t.box if t.box.ndim == 1 else t.box[i] for i, t in enumerate(items)])
        return Box(boxes, [t.class_index(i) for i, t in enumerate(items)], iou=items[0].iou)

    def __repr__(self) -> str:
        return f"Box(box={self.box.tolist()}, category={self.category.tolist()}, iou={self.iou:g})"
