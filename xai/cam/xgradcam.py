"""XGrad-CAM: axiom-based Grad-CAM.

Fu, Hu, Dong, Guo, Gao, Li, Yu (2020), "Axiom-based Grad-CAM: Towards Accurate
Visualization and Explanation of CNNs", BMVC.
"""

from __future__ import annotations

import torch

from xai.cam.base import GradientCAM

__all__ = ["XGradCAM"]


class XGradCAM(GradientCAM):
    r"""XGrad-CAM: gradients averaged with the normalised activations as weights.

    $$
    \alpha^c_k = \sum_{i,j}\frac{A^k_{ij}}{\sum_{a,b}A^k_{ab}}
    \frac{\partial y^c}{\partial A^k_{ij}},
    \qquad L^c = \mathrm{ReLU}\Big(\sum_k \alpha^c_k A^k\Big)
    $$

    The weights are chosen to satisfy the paper's sensitivity and conservation axioms.
    A channel whose activations sum to zero (e.g. all zero after a ReLU) contributes
    nothing; the paper leaves that 0/0 undefined.
    """

    def _terms(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        total = A.sum(dim=(2, 3), keepdim=True)
        numerator = (A * G).sum(dim=(2, 3), keepdim=True)
        zero = total == 0
        alpha = torch.where(zero, 0.0, numerator / torch.where(zero, 1.0, total))
        return alpha * A
