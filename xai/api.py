"""``xai.explain``: one call for every registered image method."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from xai import registry
from xai.core.errors import XAITypeError
from xai.core.targets import TargetLike
from xai.explanation import Explanation

__all__ = ["explain", "explainer"]


def explainer(
    model: nn.Module,
    method: str = "gradcam",
    layer: str | nn.Module | Sequence[str | nn.Module] | None = None,
    **options: Any,
) -> Any:
    """Build the explainer object for ``method`` (reuse it to explain many batches).

    Unknown options get an error that lists the method's valid ones.
    """
    info = registry.get(method)
    cls = info.load()
    parameters = inspect.signature(cls.__init__).parameters
    valid = [p for p in parameters if p not in ("self", "model", "layer")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listed = ", ".join(valid) if valid else "none"
        raise XAITypeError(
            f"method {info.name!r} got unknown option(s) {', '.join(unknown)}; its options "
            f"are: {listed}."
        )
    return cls(model, layer=layer, **options)


def explain(
    model: nn.Module,
    inputs: torch.Tensor,
    method: str = "gradcam",
    layer: str | nn.Module | Sequence[str | nn.Module] | None = None,
    target: TargetLike = None,
    **options: Any,
) -> Explanation:
    """Explain a batch of images with any registered method.

    Args:
        model: a ``torch.nn.Module`` taking images; left exactly as it was (also when
            several threads explain it at once).
        inputs: ``(N, C, H, W)`` float tensor, finite, scaled as the model expects.
        method: a name from ``xai.methods`` (``"cam"``, ``"gradcam"``,
            ``"gradcam++"``, ...); case, ``-`` and ``_`` are ignored.
        layer: a dotted name from ``model.named_modules()`` (with a selector for a layer
            returning a tuple or dict: ``"fpn['p3']"``, ``"block[0]"``), a submodule, or
            ``None`` for the default: a CNN's last spatial feature maps (the maps a GAP
            head pools), a transformer's last attention input. Found once per model and
            input shape, then cached.
        target: ``None`` (each sample's top-1 class), an ``int`` (all samples), N ints
            (one per sample), a ``xai.targets.Target`` (``Class``, ``Segmentation``,
            ``Box``, ``Similarity``, your own subclass) or a list of N of them, or a
            callable mapping the model's output to (N,) scores. Class scores are read
            from a tensor output, an output's ``.logits`` or a ``"logits"`` key.
        **options: the method's own options, e.g. ``batch_size`` for Score-CAM, and
            ``reshape`` (``"auto"``, or a callable mapping the layer's tensor to
            (N, C, h, w); ``"auto"`` folds a transformer's tokens into their patch grid),
            and for the layer methods ``eigen_smooth`` (the first principal component of
            the per-channel terms instead of their sum), ``aug_smooth`` (the mean map of
            six flipped and rescaled copies) and ``fuse`` (see ``xai.cam.base.BaseCAM``).

    Returns:
        An ``Explanation``: ``maps`` (N, H, W) in [0, 1], ``raw``,
        ``targets``, ``scores``, ``method``, ``layer`` and ``explained``.

    Example:
        >>> import torch, xai
        >>> model = xai.models.GAPCNN(in_channels=1, num_classes=10)
        >>> e = xai.explain(model, torch.rand(2, 1, 28, 28), method="gradcam")
        >>> tuple(e.maps.shape), e.layer
        ((2, 28, 28), 'features.19')
    """
    return explainer(model, method, layer, **options)(inputs, target=target)
