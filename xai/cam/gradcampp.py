"""Grad-CAM++: pixel-weighted gradients from higher-order derivatives.

Chattopadhay, Sarkar, Howlader, Balasubramanian (2018), "Grad-CAM++: Generalized
Gradient-based Visual Explanations for Deep Convolutional Networks", WACV.
"""

from __future__ import annotations

import torch

from xai.cam.base import GradientCAM

__all__ = ["GradCAMPlusPlus"]


class GradCAMPlusPlus(GradientCAM):
    r"""Grad-CAM++ with the paper's closed-form pixel weights.

    With $g = \partial S^c / \partial A^k_{ij}$ the gradient of the class score
    and the paper's exponential output $Y^c = \exp(S^c)$ (whose higher derivatives
    in a piecewise-linear network are $\exp(S^c) g^2$ and $\exp(S^c) g^3$):

    $$
    \alpha^{kc}_{ij} = \frac{g_{ij}^2}{2 g_{ij}^2 + \sum_{a,b} A^k_{ab}\, g_{ij}^3},
    \qquad w^c_k = \sum_{i,j} \alpha^{kc}_{ij}\,\mathrm{ReLU}(g_{ij}),
    \qquad L^c = \mathrm{ReLU}\Big(\sum_k w^c_k A^k\Big)
    $$

    Where the denominator is zero (zero gradient), $\alpha = 0$. The paper's
    weights carry a factor $\exp(S^c)$, the same for every channel and position of
    a sample; it is left out (as most implementations do), so ``raw`` is the paper's map
    divided by $\exp(S^c)$ and ``maps`` are identical.
    """

    def _terms(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        g2 = G.pow(2)
        g3 = G.pow(3)
        denominator = 2.0 * g2 + A.sum(dim=(2, 3), keepdim=True) * g3
        nonzero = denominator != 0
        alpha = torch.where(nonzero, g2 / torch.where(nonzero, denominator, 1.0), 0.0)
        weights = (alpha * G.clamp_min(0.0)).sum(dim=(2, 3), keepdim=True)
        return weights * A
