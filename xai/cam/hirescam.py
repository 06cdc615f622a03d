"""HiResCAM: element-wise gradient times activation.

Draelos & Carin (2020), "Use HiResCAM instead of Grad-CAM for faithful explanations of
convolutional neural networks", arXiv:2011.08891.
"""

from __future__ import annotations

import torch

from xai.cam.base import GradientCAM

__all__ = ["HiResCAM"]


class HiResCAM(GradientCAM):
    r"""HiResCAM: the gradient multiplies the activation position by position.

    $$
    L^c_{\mathrm{HiResCAM}} = \mathrm{ReLU}\Big(\sum_k
    \frac{\partial y^c}{\partial A^k} \odot A^k\Big)
    $$

    Unlike Grad-CAM it does not average the gradient over space first, so for a head
    that is a Linear layer on the flattened maps the map shows exactly which positions
    raised the score. Where the gradient is spatially constant (a global-average-pooling
    head, at the pooled layer) each $\partial y^c/\partial A^k$ equals Grad-CAM's
    $\alpha^c_k$, and HiResCAM equals Grad-CAM exactly.
    """

    def _terms(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        return G * A
