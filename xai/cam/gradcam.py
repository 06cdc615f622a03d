"""Grad-CAM: gradient-weighted class activation mapping.

Selvaraju, Cogswell, Das, Vedantam, Parikh, Batra (2017), "Grad-CAM: Visual Explanations
from Deep Networks via Gradient-based Localization", ICCV.
"""

from __future__ import annotations

import torch

from xai.cam.base import GradientCAM

__all__ = ["GradCAM"]


class GradCAM(GradientCAM):
    r"""Grad-CAM at any convolutional layer.

    $$
    \alpha^c_k = \frac{1}{hw}\sum_{i,j}\frac{\partial y^c}{\partial A^k_{ij}},
    \qquad L^c_{\mathrm{Grad\text{-}CAM}} = \mathrm{ReLU}\Big(\sum_k \alpha^c_k A^k\Big)
    $$

    $y^c$ is the target's score before the softmax (a logit), $A^k$ the
    layer's k-th feature map. One forward pass and one backward pass that stops at the
    layer. On a network whose head is global average pooling + Linear, at the pooled
    layer, $\alpha^c_k = w^c_k / (hw)$, so Grad-CAM equals CAM divided by ``h*w``.
    """

    def _terms(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        return G.mean(dim=(2, 3), keepdim=True) * A

    def _combine(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        n, _, h, w = A.shape
        alpha = G.mean(dim=(2, 3))  # (N, C)
        # sum_k alpha_k A^k as one batched matrix product: no (N, C, h, w) temporary
        return torch.bmm(alpha[:, None, :], A.flatten(2)).reshape(n, h, w)
