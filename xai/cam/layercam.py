"""LayerCAM: element-wise positive gradient times activation.

Jiang, Zhang, Hou, Cheng, Wei (2021), "LayerCAM: Exploring Hierarchical Class Activation
Maps for Localization", IEEE Transactions on Image Processing 30.
"""

from __future__ import annotations

import torch

from xai.cam.base import GradientCAM

__all__ = ["LayerCAM"]


class LayerCAM(GradientCAM):
    r"""LayerCAM: each position's weight is the positive part of its own gradient.

    $$
    w^{kc}_{ij} = \mathrm{ReLU}\Big(\frac{\partial y^c}{\partial A^k_{ij}}\Big),
    \qquad L^c_{\mathrm{LayerCAM}} = \mathrm{ReLU}\Big(\sum_k w^{kc} \odot A^k\Big)
    $$

    Being element-wise, it gives fine maps at shallow layers too (the paper's point).
    """

    def _terms(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        return G.clamp_min(0.0) * A
