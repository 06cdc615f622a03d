"""Score-CAM: channel weights from the scores of masked inputs.

Wang, Wang, Du, Yang, Zhang, Ding, Mardziel, Hu (2020), "Score-CAM: Score-Weighted Visual
Explanations for Convolutional Neural Networks", CVPR Workshops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from xai.cam.base import BaseCAM
from xai.core.capture import capture
from xai.core.layers import LayerRef
from xai.core.maps import minmax, upsample
from xai.core.reshape import ReshapeLike
from xai.core.targets import ResolvedTarget, TargetLike, resolve_target
from xai.core.validate import Boolean, Constraint, Integer, NoneValue, Real

__all__ = ["ScoreCAM"]


class ScoreCAM(BaseCAM):
    r"""Score-CAM: each channel is weighted by how much its mask alone raises the score.

    Each map $A^k$ is upsampled to the input size and min-max normalised to
    $H^k \in [0, 1]$; the input masked by it, $X \circ H^k$, is scored:

    $$
    \alpha^c_k = f^c(X \circ H^k) - f^c(X_b),
    \qquad L^c_{\mathrm{Score\text{-}CAM}} = \mathrm{ReLU}\Big(\sum_k \alpha^c_k A^k\Big)
    $$

    the paper's "increase of confidence", with $f^c$ the softmax probability of
    class c and the baseline $X_b$ a constant image (zeros by default).

    Args:
        batch_size: masked images per forward pass (memory vs. speed; the result does not
            depend on it).
        softmax: score with class probabilities (the paper) or raw logits (``False``).
            A callable target is used as it is.
        baseline: the constant value of the baseline image $X_b$, or ``None`` to
            drop the $f^c(X_b)$ term, as the authors' released code does.
        channel_softmax: replace the weights by their softmax over the channels,
            $\alpha^c_k \leftarrow e^{\alpha^c_k} / \sum_j e^{\alpha^c_j}$, as the
            paper's Algorithm 1, torchcam and pytorch-grad-cam do (with ``softmax=False``,
            on logits). The weights then sum to one and no longer depend on the baseline.

    Cost: ``N * C`` extra forward passes (C = the layer's channels), chunked.
    """

    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {
        "batch_size": [Integer(1)],
        "softmax": [Boolean()],
        "baseline": [Real(), NoneValue()],
        "channel_softmax": [Boolean()],
    }

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        *,
        relu: bool = True,
        reshape: ReshapeLike = "auto",
        batch_size: int = 64,
        softmax: bool = True,
        baseline: float | None = 0.0,
        channel_softmax: bool = False,
    ) -> None:
        super().__init__(model, layer, relu=relu, reshape=reshape)
        self.batch_size: int
        self.softmax: bool
        self.baseline: float | None
        self.channel_softmax: bool
        self._set(
            batch_size=batch_size,
            softmax=softmax,
            baseline=baseline,
            channel_softmax=channel_softmax,
        )

    def _signed_map(
        self, x: torch.Tensor, layer: LayerRef, target: TargetLike
    ) -> tuple[torch.Tensor, ResolvedTarget, torch.Tensor]:
        n, _, height, width = x.shape
        samples = torch.arange(n)
        with torch.no_grad():
            with capture([layer], grad=False) as cap:
                output = self.model(x)
            resolved = resolve_target(target, output, n)
            scores = resolved.scores(output, samples)
            A = cap.maps(self.model, x, self.reshape)
            k = A.shape[1]
            flat = A.reshape(n * k, A.shape[2], A.shape[3])
            rows = samples.repeat_interleave(k)
            weights = torch.empty(n * k, dtype=torch.float32)
            for start in range(0, n * k, self.batch_size):
                stop = min(start + self.batch_size, n * k)
                masks = minmax(upsample(flat[start:stop].float(), (height, width)))
                masked = x[rows[start:stop]] * masks[:, None].to(x.dtype)
                out = self.model(masked)
                chunk = resolved.scores(out, rows[start:stop], softmax=self.softmax)
                weights[start:stop] = chunk.float().cpu()
            weights = weights.reshape(n, k)
            if self.baseline is not None:
                out = self.model(torch.full_like(x, self.baseline))
                base = resolved.scores(out, samples, softmax=self.softmax).float().cpu()
                weights -= base[:, None]
            if self.channel_softmax:
                weights = torch.softmax(weights.double(), dim=1).float()
        signed = torch.einsum("nk,nkhw->nhw", weights.to(A.device), A.float())
        return signed, resolved, scores
