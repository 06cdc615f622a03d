"""IS-CAM: Score-CAM with each mask's score integrated along a path of scaled masks.

Naidu, Ghosh, Maurya, Kundu (2020), "IS-CAM: Integrated Score-CAM for axiomatic-based
explanations", arXiv:2010.03023.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from xai.cam._masked_scores import Perturbation
from xai.cam.base import LayerArg
from xai.cam.scorecam import ScoreCAM
from xai.core.reshape import ReshapeLike
from xai.core.validate import Constraint, Integer

__all__ = ["ISCAM", "path_coefficients"]


def path_coefficients(num_samples: int) -> torch.Tensor:
    r"""The (V,) float64 scales $c_v = \sum_{j=1}^{v} j / V = v (v + 1) / (2V)$."""
    v = torch.arange(1, num_samples + 1, dtype=torch.float64)
    return v * (v + 1) / (2 * num_samples)


class ISCAM(ScoreCAM):
    r"""IS-CAM: Score-CAM whose mask scores are averaged along a path of scaled masks.

    With $H^k = \mathrm{minmax}(\mathrm{Up}(A^k))$ as in Score-CAM (upsampled, then
    normalised: the paper's order; torchcam normalises first), the v-th input of
    $V$ scales the masked image by the running sum $c_v$ of the steps $j / V$:

    $$
    c_v = \sum_{j=1}^{v} \frac{j}{V},
    \qquad \alpha^c_k = \frac{1}{V}\sum_{v=1}^{V} f^c\big(c_v\,(X \circ H^k)\big)
        - f^c(X_b),
    \qquad w^c_k = \frac{e^{\alpha^c_k}}{\sum_j e^{\alpha^c_j}},
    \qquad L^c_{\mathrm{IS\text{-}CAM}} = \mathrm{ReLU}\Big(\sum_k w^c_k A^k\Big)
    $$

    This is the path torchcam's ``ISCAM`` computes (its coefficient accumulates
    ``(i + 1) / num_samples`` before each step; its docstring's sum over
    $j = 0 .. i-1$ differs from its code, which is followed here). The last scale is
    $c_V = (V + 1) / 2$, so the path runs past the masked image itself; with $V = 1$
    the only scale is $c_1 = 1$ and IS-CAM is Score-CAM (same options).

    The defaults follow torchcam's: 10 samples, $f^c$ the logit, the softmax over the
    channels (so $f^c(X_b)$, which torchcam takes to be the input's own score, drops
    out and is not computed). Deterministic: no sampling.

    Args:
        num_samples: $V$, the points on the path (default 10, torchcam's).
        batch_size: scaled inputs per forward pass, or ``None`` (default) to choose by
            timing (see ``ScoreCAM``); the result does not depend on it.
        softmax: score with class probabilities (``True``) or logits (default
            ``False``, as torchcam).
        baseline: the constant of the baseline image $X_b$, or ``None`` (default: no
            baseline pass; with ``channel_softmax`` it cannot change the map).
        channel_softmax: the softmax over the channels (default ``True``, as torchcam);
            ``False`` uses $\alpha^c_k$ as they are.
        fold_batchnorm: run the perturbed inputs through a copy with batch norms folded
            into their convolutions (default ``True``; see ``ScoreCAM``).

    Cost: ``N * C * num_samples`` forward passes (C = the layer's channels), chunked;
    channels of a sample with equal maps share theirs, and all its channels with a
    constant map (the zero mask, every scale of which is the zero image) share one pass,
    or none with ``baseline=0.0``.

    ``relu``, ``reshape``, ``fuse``, ``eigen_smooth`` and ``aug_smooth`` are those of
    every CAM (``xai.cam.base.BaseCAM``).
    """

    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {
        "num_samples": [Integer(1)],
    }

    def __init__(
        self,
        model: nn.Module,
        layer: LayerArg = None,
        *,
        relu: bool = True,
        reshape: ReshapeLike = "auto",
        num_samples: int = 10,
        batch_size: int | None = None,
        softmax: bool = False,
        baseline: float | None = None,
        channel_softmax: bool = True,
        fold_batchnorm: bool = True,
        fuse: str = "mean",
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
    ) -> None:
        super().__init__(
            model,
            layer,
            relu=relu,
            reshape=reshape,
            batch_size=batch_size,
            softmax=softmax,
            baseline=baseline,
            channel_softmax=channel_softmax,
            fold_batchnorm=fold_batchnorm,
            fuse=fuse,
            eigen_smooth=eigen_smooth,
            aug_smooth=aug_smooth,
        )
        self.num_samples: int
        self._set(num_samples=num_samples)

    def _perturbation(self, x: torch.Tensor) -> Perturbation:
        scales = path_coefficients(self.num_samples).float().to(x.device)

        def scaled(rows: torch.Tensor, masks: torch.Tensor, variant: torch.Tensor) -> torch.Tensor:
            return rows * (masks * scales[variant][:, None, None])[:, None].to(rows.dtype)

        return Perturbation(variants=self.num_samples, make=scaled, zero_is_blank=True)
