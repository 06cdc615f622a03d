"""Eigen-Grad-CAM: the first principal component of gradient times activation.

Muhammad & Yeasin (2020), "Eigen-CAM: Class Activation Map using Principal Components",
IJCNN, applied to the class-specific products of pytorch-grad-cam's ``EigenGradCAM``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from xai.cam.base import GradientCAM, LayerArg
from xai.core.maps import principal_projection
from xai.core.reshape import ReshapeLike
from xai.core.validate import Boolean, Constraint

__all__ = ["EigenGradCAM"]


class EigenGradCAM(GradientCAM):
    r"""Eigen-Grad-CAM: Eigen-CAM's projection of the terms $G^k \odot A^k$.

    With the terms $T_k = \frac{\partial y^c}{\partial A^k} \odot A^k$ as the columns
    of $M \in \mathbb{R}^{hw \times C}$ (one row per position) and the thin SVD
    $M = U \Sigma V^\top$,

    $$
    L^c_{\mathrm{Eigen\text{-}Grad\text{-}CAM}} = \mathrm{ReLU}(M v_1)
    $$

    reshaped to $h \times w$: the direction that explains most of the class-specific
    terms, where HiResCAM takes their plain sum $M \mathbf{1}$. Conventions: the
    terms are not mean-centred (``center=True`` subtracts each channel's mean over the
    positions first, as pytorch-grad-cam's ``get_2d_projection`` does); the SVD's sign is
    fixed so that the map agrees with HiResCAM's sum, $\langle M v_1, M \mathbf{1}
    \rangle \ge 0$ (pytorch-grad-cam keeps whatever sign LAPACK returns, so its map can
    come out inverted: the ReLU then keeps the wrong side). One forward and one backward
    pass, then one (hw x C) SVD per sample.
    """

    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {"center": [Boolean()]}

    def __init__(
        self,
        model: nn.Module,
        layer: LayerArg = None,
        *,
        relu: bool = True,
        reshape: ReshapeLike = "auto",
        center: bool = False,
        fuse: str = "mean",
        aug_smooth: bool = False,
    ) -> None:
        super().__init__(model, layer, relu=relu, reshape=reshape, fuse=fuse, aug_smooth=aug_smooth)
        self.center: bool
        self._set(center=center)

    def _terms(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        return G * A

    def _combine(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        return principal_projection(self._terms(A, G), center=self.center)
