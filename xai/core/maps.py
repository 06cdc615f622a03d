"""From raw layer-resolution maps to ``Explanation.maps``: resize, then normalise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["minmax", "principal_projection", "upsample"]


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


def principal_projection(terms: torch.Tensor, *, center: bool = False) -> torch.Tensor:
    r"""The (N, h, w) projection of (N, C, h, w) terms on their first principal direction.

    Per sample, with the terms as the columns of $M \in \mathbb{R}^{hw \times C}$
    (one row per position; with ``center=True`` each column minus its mean over the
    positions, as pytorch-grad-cam's ``get_2d_projection`` does) and the thin SVD
    $M = U \Sigma V^\top$, the map is $M v_1 = \sigma_1 u_1$. The SVD fixes $v_1$
    only up to sign: the sign is chosen so that the map agrees with the plain sum of the
    terms, $\langle M v_1, \sum_k T_k \rangle \ge 0$ (for non-negative terms, such
    as a ReLU's output, the map is then non-negative everywhere when not centred).
    """
    n, _, h, w = terms.shape
    M = terms.float().flatten(2).transpose(1, 2)  # (N, hw, C)
    if center:
        M = M - M.mean(dim=1, keepdim=True)
    U, S, _ = torch.linalg.svd(M, full_matrices=False)
    projection = U[:, :, 0] * S[:, :1]  # (N, hw)
    plain = terms.float().sum(dim=1).flatten(1)
    agree = (projection.double() * plain.double()).sum(dim=1, keepdim=True)
    sign = torch.where(agree < 0, -1.0, 1.0).to(projection.dtype)
    return (projection * sign).reshape(n, h, w)
