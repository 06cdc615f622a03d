"""From raw layer-resolution maps to ``Explanation.maps``: resize, then normalise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["minmax", "upsample"]


def upsample(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(N, h, w)`` maps to ``(N, H, W)``: bilinear, ``align_corners=False``."""
    if tuple(raw.shape[-2:]) == tuple(size):
        return raw.clone()
    return F.interpolate(raw[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max normalisation of ``(N, ...)`` maps to [0, 1].

    A map whose range is zero, or within float32 rounding of its magnitude, is constant
    and becomes all zeros (never NaN).
    """
    flat = maps.reshape(maps.shape[0], -1).float()
    low, high = torch.aminmax(flat, dim=1, keepdim=True)
    span = high - low
    scale = torch.maximum(high.abs(), low.abs())
    constant = span <= torch.finfo(torch.float32).eps * scale
    out = (flat - low).div_(span.masked_fill(constant, 1.0))
    out.masked_fill_(constant, 0.0)
    return out.clamp_(0.0, 1.0).reshape(maps.shape)
