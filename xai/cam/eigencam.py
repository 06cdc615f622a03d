"""Eigen-CAM: the first principal component of the feature maps.

Muhammad & Yeasin (2020), "Eigen-CAM: Class Activation Map using Principal Components",
IJCNN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from xai.cam.base import BaseCAM, LayerArg
from xai.core.capture import capture
from xai.core.layers import LayerRef
from xai.core.maps import principal_projection
from xai.core.reshape import ReshapeLike
from xai.core.targets import ResolvedTarget, TargetLike, resolve_target
from xai.core.validate import Boolean, Constraint

__all__ = ["EigenCAM"]


class EigenCAM(BaseCAM):
    r"""Eigen-CAM: the feature maps projected on their first right singular vector.

    With the layer's maps arranged as $M \in \mathbb{R}^{hw \times C}$ (one row per
    position) and its thin SVD $M = U \Sigma V^\top$,

    $$
    L_{\mathrm{Eigen\text{-}CAM}} = M v_1 = \sigma_1 u_1
    $$

    reshaped to $h \times w$. No gradients, no class: the map is the same for every
    target (``targets`` and ``scores`` still report the explained class). The SVD fixes
    $v_1$ only up to sign; the sign is chosen so that the map agrees with the sum of
    the feature maps, $\langle M v_1, \sum_k A^k \rangle \ge 0$ (for non-negative
    maps, such as a ReLU's output, the map is then non-negative everywhere). As in the
    paper, no ReLU by default (``relu=False``), and the maps are not mean-centred
    (``center=True`` subtracts each channel's mean over the positions first, as
    pytorch-grad-cam does). Only the thin SVD (``full_matrices=False``) is computed.
    ``eigen_smooth`` is not an option: the map already is the first component.
    """

    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {"center": [Boolean()]}

    def __init__(
        self,
        model: nn.Module,
        layer: LayerArg = None,
        *,
        relu: bool = False,
        reshape: ReshapeLike = "auto",
        center: bool = False,
        fuse: str = "mean",
        aug_smooth: bool = False,
    ) -> None:
        super().__init__(model, layer, relu=relu, reshape=reshape, fuse=fuse, aug_smooth=aug_smooth)
        self.center: bool
        self._set(center=center)

    def _signed_map(
        self, x: torch.Tensor, layer: LayerRef, target: TargetLike
    ) -> tuple[torch.Tensor, ResolvedTarget, torch.Tensor]:
        n = x.shape[0]
        with torch.no_grad(), capture([layer], grad=False) as cap:
            output = self.model(x)
        resolved = resolve_target(target, output, n)
        scores = resolved.scores(output, torch.arange(n)).detach()
        A = cap.maps(self.model, x, self.reshape).float()
        return principal_projection(A, center=self.center), resolved, scores
