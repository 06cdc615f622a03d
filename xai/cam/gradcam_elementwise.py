"""Grad-CAM element-wise: the positive part of gradient times activation, position by position.

The method of pytorch-grad-cam's ``GradCAMElementWise`` (Gildenblat and contributors,
https://github.com/jacobgil/pytorch-grad-cam), a HiResCAM whose terms are rectified one
by one before the sum over channels.
"""

from __future__ import annotations

import torch

from xai.cam.base import GradientCAM

__all__ = ["GradCAMElementWise"]


class GradCAMElementWise(GradientCAM):
    r"""Grad-CAM element-wise: each channel's product with its gradient, rectified, summed.

    $$
    L^c = \mathrm{ReLU}\Big(\sum_k \mathrm{ReLU}\Big(
    \frac{\partial y^c}{\partial A^k} \odot A^k\Big)\Big)
    $$

    HiResCAM sums the signed products $G^k \odot A^k$, so a position where one
    channel pushes the score up and another pulls it down shows the balance; here every
    channel's positive contribution counts and negative ones are dropped before the sum
    (the outer ReLU then changes nothing). One forward and one backward pass.
    """

    def _terms(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        return (G * A).clamp_min(0.0)
