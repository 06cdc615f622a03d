"""Checking what the metrics are given: saliency maps, ground truth, targets, baselines.

Every metric takes its saliency the same way (an ``Explanation``, whose
``maps`` are used, or an ``(N, H, W)`` tensor or array), so the checks live here once.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import torch

from xai.core.errors import XAITypeError, XAIValueError
from xai.explanation import Explanation

__all__ = [
    "SaliencyLike",
    "as_ground_truth",
    "as_saliency",
    "explanation_targets",
]

SaliencyLike: TypeAlias = Explanation | torch.Tensor | np.ndarray
"""An ``Explanation`` (its ``maps`` are used) or ``(N, H, W)`` maps."""


def as_saliency(
    saliency: Any,
    *,
    n: int | None = None,
    size: tuple[int, int] | None = None,
    name: str = "saliency",
) -> torch.Tensor:
    """``saliency`` as a finite ``(N, H, W)`` float64 CPU tensor, checked against ``n``
    samples and the spatial ``size`` (H, W) when they are given."""
    if isinstance(saliency, Explanation):
        maps = saliency.maps
        source = "the Explanation's maps"
    elif isinstance(saliency, torch.Tensor | np.ndarray):
        maps = torch.as_tensor(saliency)
        source = name
    else:
        raise XAITypeError(
            f"{name} must be an xai.Explanation or an (N, H, W) tensor or array of maps; got "
            f"{type(saliency).__name__}. Pass e.g. xai.explain(model, x) or its .maps."
        )
    if maps.ndim != 3:
        fix = " Drop the channel axis, e.g. maps[:, 0]." if maps.ndim == 4 else ""
        raise XAIValueError(
            f"{name} must have shape (N, H, W), one map per image; {source} has shape "
            f"{tuple(maps.shape)}.{fix}"
        )
    if maps.dtype == torch.bool or not (maps.is_floating_point() or _is_integer(maps)):
        raise XAITypeError(f"{name} must hold real numbers; {source} has dtype {maps.dtype}.")
    maps = maps.detach().to("cpu", torch.float64)
    if n is not None and maps.shape[0] != n:
        raise XAIValueError(
            f"{name} holds {maps.shape[0]} maps but there are {n} images; pass one map per "
            f"image, in the same order."
        )
    if size is not None and tuple(maps.shape[1:]) != tuple(size):
        raise XAIValueError(
            f"{name} maps are {tuple(maps.shape[1:])} but the images are {tuple(size)} "
            f"(H, W); the metrics need maps at the input's resolution. Use Explanation.maps "
            f"(not .raw), or resize with torch.nn.functional.interpolate."
        )
    if maps.numel() and not torch.isfinite(maps).all():
        raise XAIValueError(f"{name} contains NaN or infinite values; every map must be finite.")
    return maps


def _is_integer(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def explanation_targets(saliency: Any) -> torch.Tensor | None:
    """The classes an Explanation explains, or ``None`` if ``saliency`` is not one."""
    if not isinstance(saliency, Explanation):
        return None
    targets = saliency.targets.to(torch.int64)
    if (targets < 0).any():
        raise XAIValueError(
            "this Explanation was made with a callable target, so it names no class; pass "
            "target= (an int or one int per image) to the metric."
        )
    return targets


def as_ground_truth(ground_truth: Any, n: int, size: tuple[int, int]) -> torch.Tensor:
    """Masks ``(N, H, W)`` (bool, or 0/1 numbers) or boxes ``(N, 4)`` as bool masks.

    A box is ``(x0, y0, x1, y1)`` in pixels, the first corner inclusive and the second
    exclusive: it covers the columns ``x0 <= x < x1`` and the rows ``y0 <= y < y1``, as the
    slice ``mask[y0:y1, x0:x1]`` does.
    """
    if not isinstance(ground_truth, torch.Tensor | np.ndarray):
        raise XAITypeError(
            f"ground_truth must be (N, H, W) boolean masks or (N, 4) boxes (x0, y0, x1, y1) "
            f"as a tensor or array; got {type(ground_truth).__name__}."
        )
    truth = torch.as_tensor(ground_truth).detach().cpu()
    height, width = size
    if truth.ndim == 2 and truth.shape[1] == 4:
        return _boxes_to_masks(truth, n, height, width)
    if truth.ndim != 3:
        raise XAIValueError(
            f"ground_truth must be (N, H, W) masks or (N, 4) boxes; got shape {tuple(truth.shape)}."
        )
    if truth.shape[0] != n or tuple(truth.shape[1:]) != (height, width):
        raise XAIValueError(
            f"ground_truth masks are {tuple(truth.shape)} but the saliency maps are "
            f"{(n, height, width)}; pass one mask per map, at the maps' resolution."
        )
    if truth.dtype != torch.bool:
        if truth.is_complex() or not ((truth == 0) | (truth == 1)).all():
            raise XAIValueError(
                "ground_truth masks must be boolean (or hold only 0 and 1); threshold them "
                "first, e.g. images[:, 0] > 0.05."
            )
        truth = truth != 0
    return truth


def _boxes_to_masks(boxes: torch.Tensor, n: int, height: int, width: int) -> torch.Tensor:
    if boxes.shape[0] != n:
        raise XAIValueError(f"ground_truth has {boxes.shape[0]} boxes but there are {n} maps.")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise XAITypeError(f"ground_truth boxes must be numbers; got dtype {boxes.dtype}.")
    if boxes.is_floating_point() and (
        not torch.isfinite(boxes).all() or (boxes != boxes.round()).any()
    ):
        raise XAIValueError(
            "ground_truth boxes must be whole pixel coordinates (x0, y0, x1, y1); round them first."
        )
    masks = torch.zeros(n, height, width, dtype=torch.bool)
    for i, box in enumerate(boxes.to(torch.int64).tolist()):
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise XAIValueError(
                f"ground_truth box {i} is {tuple(box)}; a box (x0, y0, x1, y1) needs "
                f"0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height} (x1 and y1 are "
                f"exclusive). Clip it to the image first."
            )
        masks[i, y0:y1, x0:x1] = True
    return masks
