"""Score-CAM: channel weights from the scores of masked inputs.

Wang, Wang, Du, Yang, Zhang, Ding, Mardziel, Hu (2020), "Score-CAM: Score-Weighted Visual
Explanations for Convolutional Neural Networks", CVPR Workshops.

SS-CAM (``xai.cam.sscam``) and IS-CAM (``xai.cam.iscam``) are Score-CAM with other
inputs made from each mask; the three share one weighting step,
``xai.cam._masked_scores.mask_scores``, and differ only in ``_perturbation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from xai.cam._masked_scores import Perturbation, mask_scores
from xai.cam.base import BaseCAM, LayerArg
from xai.core.capture import capture
from xai.core.fold import folded
from xai.core.layers import LayerRef
from xai.core.reshape import ReshapeLike
from xai.core.targets import ResolvedTarget, TargetLike, resolve_target
from xai.core.validate import Boolean, Constraint, Integer, NoneValue, Real

__all__ = ["ScoreCAM"]


def _masked(x: torch.Tensor, masks: torch.Tensor, variant: torch.Tensor) -> torch.Tensor:
    """Score-CAM's one input per mask: $X \\circ H^k$."""
    return x * masks[:, None].to(x.dtype)


class ScoreCAM(BaseCAM):
    r"""Score-CAM: each channel is weighted by how much its mask alone raises the score.

    Each map $A^k$ is upsampled to the input size and min-max normalised to
    $H^k \in [0, 1]$ (in this order, the paper's; torchcam normalises first); the
    input masked by it, $X \circ H^k$, is scored:

    $$
    \alpha^c_k = f^c(X \circ H^k) - f^c(X_b),
    \qquad L^c_{\mathrm{Score\text{-}CAM}} = \mathrm{ReLU}\Big(\sum_k \alpha^c_k A^k\Big)
    $$

    the paper's "increase of confidence", with $f^c$ the softmax probability of
    class c and the baseline $X_b$ a constant image (zeros by default).

    Args:
        batch_size: masked images per forward pass (memory vs. speed; the result does not
            depend on it). ``None`` (default): chosen by timing the first chunks of the
            real work at 4, 8, 16, 32 and 64 images (at most 256 MB of masked images),
            keeping the fastest per image for the rest, and remembering it per model,
            input shape, dtype and device. On a CPU small chunks are usually fastest
            (a ResNet-50 costs less per image at 4 than at 64), on a GPU large ones.
        softmax: score with class probabilities (the paper) or raw logits (``False``).
            A callable target is used as it is.
        baseline: the constant value of the baseline image $X_b$, or ``None`` to
            drop the $f^c(X_b)$ term, as the authors' released code does.
        channel_softmax: replace the weights by their softmax over the channels,
            $\alpha^c_k \leftarrow e^{\alpha^c_k} / \sum_j e^{\alpha^c_j}$, as the
            paper's Algorithm 1, torchcam and pytorch-grad-cam do (with ``softmax=False``,
            on logits). The weights then sum to one and no longer depend on the baseline.
        fold_batchnorm: run the masked images through a copy of the model with each
            evaluation-mode batch norm folded into the convolution before it (the same
            function, about 13 % faster on a ResNet-50; see ``xai.core.fold``). The copy
            is used only when it is certainly the same function and the tracing is safe:
            the model traces with ``torch.fx``, has no hooks, no other Python thread is
            alive (tracing patches every module's call for the whole process), and the
            copy's output on the image equals the model's to float rounding. ``False``:
            always the model itself.

    Cost: ``N * C`` extra forward passes (C = the layer's channels), chunked, plus one
    for the baseline. Passes that cannot change the result are skipped: a channel whose
    map is constant has the zero mask, and all of a sample's such channels share one
    pass on the zero image (none with ``baseline=0.0``, whose pass is that image);
    channels of a sample with exactly equal maps share one pass.

    ``relu``, ``reshape``, ``fuse``, ``eigen_smooth`` and ``aug_smooth`` are those of
    every CAM (``xai.cam.base.BaseCAM``).
    """

    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {
        "batch_size": [Integer(1), NoneValue()],
        "softmax": [Boolean()],
        "baseline": [Real(), NoneValue()],
        "channel_softmax": [Boolean()],
        "fold_batchnorm": [Boolean()],
    }

    def __init__(
        self,
        model: nn.Module,
        layer: LayerArg = None,
        *,
        relu: bool = True,
        reshape: ReshapeLike = "auto",
        batch_size: int | None = None,
        softmax: bool = True,
        baseline: float | None = 0.0,
        channel_softmax: bool = False,
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
            fuse=fuse,
            eigen_smooth=eigen_smooth,
            aug_smooth=aug_smooth,
        )
        self.batch_size: int | None
        self.softmax: bool
        self.baseline: float | None
        self.channel_softmax: bool
        self.fold_batchnorm: bool
        self._set(
            batch_size=batch_size,
            softmax=softmax,
            baseline=baseline,
            channel_softmax=channel_softmax,
            fold_batchnorm=fold_batchnorm,
        )

    def _perturbation(self, x: torch.Tensor) -> Perturbation:
        """The inputs made from each mask for inputs ``x`` (Score-CAM: one, $X \\circ H^k$)."""
        return Perturbation(variants=1, make=_masked, zero_is_blank=True)

    def _signed_map(
        self, x: torch.Tensor, layer: LayerRef, target: TargetLike
    ) -> tuple[torch.Tensor, ResolvedTarget, torch.Tensor]:
        n = x.shape[0]
        samples = torch.arange(n)
        with torch.no_grad():
            with capture([layer], grad=False) as cap:
                output = self.model(x)
            resolved = resolve_target(target, output, n)
            scores = resolved.scores(output, samples)
            A = cap.maps(self.model, x, self.reshape)
            base = None
            if self.baseline is not None:
                out = self.model(torch.full_like(x, self.baseline))
                base = resolved.scores(out, samples, softmax=self.softmax).float().cpu()
            weights, _ = mask_scores(
                self.model,
                x,
                A,
                resolved,
                self._perturbation(x),
                softmax=self.softmax,
                batch_size=self.batch_size,
                blank=base if self.baseline == 0.0 else None,
                runner=folded(self.model, x, output) if self.fold_batchnorm else None,
            )
            if base is not None:
                weights -= base[:, None]
            if self.channel_softmax:
                weights = torch.softmax(weights.double(), dim=1).float()
        signed = self._weighted_sum(weights, A)
        return signed, resolved, scores
