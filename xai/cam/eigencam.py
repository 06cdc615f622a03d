"""Eigen-CAM: the first principal component of the feature maps.

Muhammad & Yeasin (2020), "Eigen-CAM: Class Activation Map using Principal Components",
IJCNN.
"""

from __future__ import annotations

import torch
from torch import nn

from xai.cam.base import BaseCAM
from xai.core.capture import capture
from xai.core.layers import LayerRef
from xai.core.reshape import ReshapeLike
from xai.core.targets import ResolvedTarget, TargetLike, resolve_target

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
    $v_1$ only up to sign; the sign is chosen so that the map sums to a
    non-negative value (for non-negative maps, such as a ReLU's output, the map is then
    non-negative everywhere). As in the paper, no ReLU by default (``relu=False``), and
    the maps are not mean-centred. Only the thin SVD (``full_matrices=False``) is computed.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        *,
        relu: bool = False,
        reshape: ReshapeLike = "auto",
    ) -> None:
        super().__init__(model, layer, relu=relu, reshape=reshape)

    def _signed_map(
        self, x: torch.Tensor, layer: LayerRef, target: TargetLike
    ) -> tuple[torch.Tensor, ResolvedTarget, torch.Tensor]:
        n = x.shape[0]
        with torch.no_grad(), capture([layer], grad=False) as cap:
            output = self.model(x)
        resolved = resolve_target(target, output, n)
        scores = resolved.scores(output, torch.arange(n)).detach()
        A = cap.maps(self.model, x, self.reshape).float()
        _, _, h, w = A.shape
        M = A.flatten(2).transpose(1, 2)  # (N, hw, C)
        U, S, _ = torch.linalg.svd(M, full_matrices=False)
        projection = U[:, :, 0] * S[:, :1]  # (N, hw) == M @ v1
        sign = torch.where(projection.sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
        return (projection * sign).reshape(n, h, w), resolved, scores
