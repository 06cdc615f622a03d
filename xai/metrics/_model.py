"""Running the user's model for a metric: inputs checked, targets resolved, rows scored in
chunks, the model left exactly as it was (eval for the call, flags restored, no grad)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from xai.core.errors import XAITypeError
from xai.core.inputs import prepare_inputs
from xai.core.state import evaluation_mode
from xai.core.targets import TargetLike, class_logits, resolve_target

__all__ = ["class_scores", "prepare", "resolve_classes"]


def prepare(model: Any, images: Any) -> torch.Tensor:
    """The checked (N, C, H, W) images on the model's device and dtype.

    The metrics' options (``batch_size`` ...) are checked by each metric against its own
    constraint table, so that an error names the metric it was given to.
    """
    return prepare_inputs(model, images)


def resolve_classes(
    model: nn.Module,
    x: torch.Tensor,
    target: TargetLike,
    default: torch.Tensor | None,
    batch_size: int,
) -> torch.Tensor:
    """One class per image: ``target`` if given, else ``default`` (an Explanation's
    targets), else each image's top-1 class. Validated against the model's output."""
    if callable(target) and not isinstance(target, torch.Tensor):
        raise XAITypeError(
            "target must be None, an int or one int per image; a callable target is not "
            "supported here because the metrics score a class's softmax probability."
        )
    if target is None and default is not None:
        target = default
    with torch.no_grad(), evaluation_mode(model):
        if target is not None:
            # A target that names no class (a segmentation mask, a box, a similarity)
            # is refused: the metrics score one class's probability per image.
            resolved = resolve_target(target, model(x[:1]), len(x))
            return resolved.class_indices("the metrics")
        top1 = []
        for start in range(0, len(x), batch_size):
            chunk = x[start : start + batch_size]
            top1.append(resolve_target(None, model(chunk), len(chunk)).classes)
    return torch.cat(top1)


def class_scores(
    model: nn.Module,
    make_rows: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
    total: int,
    classes: torch.Tensor,
    *,
    softmax: bool,
    batch_size: int,
) -> torch.Tensor:
    """Score ``total`` rows, ``batch_size`` at a time, as a float64 CPU tensor.

    ``make_rows(start, stop)`` returns the images of rows ``start..stop-1`` and, for each,
    the image (0..N-1) it was made from, whose class in ``classes`` is scored: its softmax
    probability if ``softmax``, else its logit.
    """
    scores = []
    with torch.no_grad(), evaluation_mode(model):
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            rows, owners = make_rows(start, stop)
            output = class_logits(model(rows), "the metrics")  # a tensor, or .logits
            logits = output.detach().to(torch.float64)
            if softmax:
                logits = torch.softmax(logits, dim=1)
            index = classes.to(logits.device)[owners.to(logits.device)]
            scores.append(logits.gather(1, index[:, None])[:, 0].cpu())
    return torch.cat(scores)
