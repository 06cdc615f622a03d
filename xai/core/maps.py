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
    low = flat.min(dim=1, keepdim=True).values
    high = flat.max(dim=1, keepdim=True).values
    span = high - low
    scale = torch.maximum(high.abs(), low.abs())
    constant = span <= torch.finfo(torch.float32).eps * scale
    safe = torch.where(constant, torch.ones_like(span), span)
    out = torch.where(constant, torch.zeros_like(flat), (flat - low) / safe)
    return out.clamp_(0.0, 1.0).reshape(maps.shape)
