"""SS-CAM: Score-CAM with each mask's score averaged over Gaussian-noised masks.

Wang, Naidu, Michael, Kundu (2020), "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature
Localization", arXiv:2006.14255.
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
from xai.core.validate import Constraint, Integer, Real

__all__ = ["SSCAM", "noise_images"]


def noise_images(num_samples: int, std: float, size: tuple[int, int], seed: int) -> torch.Tensor:
    r"""The (V, H, W) float32 noise images $\delta_1 .. \delta_V$ of SS-CAM.

    ``std * torch.randn((V, H, W), generator=torch.Generator().manual_seed(seed))``,
    drawn on the CPU (so the same on every device) and shared by every sample and
    channel.
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((num_samples, *size), generator=generator) * std


class SSCAM(ScoreCAM):
    r"""SS-CAM: Score-CAM whose mask scores are averaged over noised copies of the mask.

    With $H^k = \mathrm{minmax}(\mathrm{Up}(A^k))$ as in Score-CAM (upsampled,
    then normalised: the paper's order; torchcam normalises first) and $V$ noise images
    $\delta_v \sim \mathcal{N}(0, \sigma^2 I)$ of the input's height and width
    (broadcast over its colour channels), the noise added to the mask:

    $$
    \alpha^c_k = \frac{1}{V}\sum_{v=1}^{V} f^c\big(X \circ (H^k + \delta_v)\big)
        - f^c(X_b),
    \qquad w^c_k = \frac{e^{\alpha^c_k}}{\sum_j e^{\alpha^c_j}},
    \qquad L^c_{\mathrm{SS\text{-}CAM}} = \mathrm{ReLU}\Big(\sum_k w^c_k A^k\Big)
    $$

    The defaults follow torchcam's ``SSCAM``: 35 samples, $\sigma = 2$, $f^c$ the
    logit, and the softmax over the channels (so $f^c(X_b)$, which torchcam takes to
    be the input's own score, drops out and is not computed).

    Noise, a deliberate difference from torchcam (which draws independent noise for
    every channel): the v-th noise image is drawn once and used for every channel and
    every sample (common random numbers), from a ``torch.Generator`` seeded with
    ``seed`` on the CPU (``noise_images``). The same seed gives the same map, and a
    sample's map does not depend on the batch it is in, on ``batch_size``, or on the
    passes skipped; channels with equal masks get equal inputs, so they share their
    passes as in Score-CAM.

    Args:
        num_samples: $V$, noised copies per mask (default 35, torchcam's).
        std: $\sigma$, the noise's standard deviation, in mask units (the mask lies in
            [0, 1]); default 2.0, torchcam's. ``std=0`` is Score-CAM.
        seed: seeds the noise (default 0); maps are reproducible.
        batch_size: noised inputs per forward pass, or ``None`` (default) to choose by
            timing (see ``ScoreCAM``); the result does not depend on it.
        softmax: score with class probabilities (``True``) or logits (default
            ``False``, as torchcam).
        baseline: the constant of the baseline image $X_b$, or ``None`` (default: no
            baseline pass; with ``channel_softmax`` it cannot change the map).
        channel_softmax: the softmax over the channels (default ``True``, as torchcam
            and the paper's Score-CAM algorithm); ``False`` uses $\alpha^c_k$ as they are.
        fold_batchnorm: run the perturbed inputs through a copy with batch norms folded
            into their convolutions (default ``True``; see ``ScoreCAM``).

    Cost: ``N * C * num_samples`` noised forward passes (C = the layer's channels),
    chunked; channels of a sample with equal maps share theirs, and all its channels
    with a constant map (the zero mask) share ``num_samples`` passes on $X \circ
    \delta_v$.

    ``relu``, ``reshape``, ``fuse``, ``eigen_smooth`` and ``aug_smooth`` are those of
    every CAM (``xai.cam.base.BaseCAM``).
    """

    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {
        "num_samples": [Integer(1)],
        "std": [Real(0.0)],
        "seed": [Integer(0, 2**63 - 1)],
    }

    def __init__(
        self,
        model: nn.Module,
        layer: LayerArg = None,
        *,
        relu: bool = True,
        reshape: ReshapeLike = "auto",
        num_samples: int = 35,
        std: float = 2.0,
        seed: int = 0,
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
        self.std: float
        self.seed: int
        self._set(num_samples=num_samples, std=std, seed=seed)

    def _perturbation(self, x: torch.Tensor) -> Perturbation:
        size = (int(x.shape[2]), int(x.shape[3]))
        noise = noise_images(self.num_samples, self.std, size, self.seed).to(x.device)

        def noised(rows: torch.Tensor, masks: torch.Tensor, variant: torch.Tensor) -> torch.Tensor:
            return rows * (masks + noise[variant])[:, None].to(rows.dtype)

        return Perturbation(variants=self.num_samples, make=noised, zero_is_blank=False)
