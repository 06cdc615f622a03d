"""Guided backpropagation and Guided Grad-CAM.

Springenberg, Dosovitskiy, Brox, Riedmiller (2015), "Striving for Simplicity: The All
Convolutional Net", ICLR workshop; Selvaraju et al. (2017), "Grad-CAM", ICCV (Guided
Grad-CAM).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from xai.cam.base import Explainer, RawResult
from xai.cam.gradcam import GradCAM
from xai.core.errors import XAIValueError
from xai.core.hooks import forward_hooks
from xai.core.maps import upsample
from xai.core.reshape import ReshapeLike
from xai.core.targets import ResolvedTarget, TargetLike, resolve_target

__all__ = ["GuidedBackprop", "GuidedGradCAM", "guided_gradients"]


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward passes only the positive part of the gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp_min(0.0)


def _guide(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
    # ReLU's own backward already zeroes the gradient where its input was <= 0; this
    # adds the guided rule's second mask, gradient > 0.
    return _PositiveGradient.apply(output)


def guided_gradients(
    model: nn.Module, x: torch.Tensor, target: TargetLike | ResolvedTarget
) -> tuple[torch.Tensor, ResolvedTarget, torch.Tensor]:
    """The guided input gradient (N, C, H, W), the resolved target and the scores (N,).

    Only ``torch.nn.ReLU`` modules are guided: a ``torch.nn.functional.relu`` called
    inside ``forward`` cannot be hooked and back-propagates as a plain ReLU.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        warnings.warn(
            "the model has no torch.nn.ReLU modules, so guided backpropagation equals the "
            "plain input gradient (functional relu calls cannot be guided)",
            stacklevel=3,
        )
    xi = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        with forward_hooks([(m, _guide) for m in relus]):
            output = model(xi)
        resolved = resolve_target(target, output, x.shape[0])
        scores = resolved.scores(output, torch.arange(x.shape[0]))
        if not scores.requires_grad:
            raise XAIValueError(
                "the target score does not depend on the input through autograd (the "
                "model or the target callable detaches it)."
            )
        (grads,) = torch.autograd.grad(scores.sum(), xi)
    return grads.detach(), resolved, scores.detach()


class GuidedBackprop(Explainer):
    r"""Guided backpropagation: the input gradient, guided through every ReLU.

    At each ReLU with input $z$, the backward pass sends
    $R^{(l)} = \mathbb{1}[z > 0] \cdot \mathbb{1}[R^{(l+1)} > 0] \cdot R^{(l+1)}$:
    only positive gradients, only where the unit was active. ``attributions`` holds the
    signed result (N, C, H, W); ``raw`` is its largest magnitude over channels,
    $\max_c |R_c|$, at input resolution, and ``maps`` its min-max normalisation.
    Not class-discriminative on its own (see Guided Grad-CAM). There is no layer;
    ``Explanation.layer`` is ``None``.
    """

    def __init__(
        self, model: nn.Module, layer: None = None, *, reshape: ReshapeLike = "auto"
    ) -> None:
        super().__init__(model)
        if layer is not None or (reshape is not None and reshape != "auto"):
            raise XAIValueError(
                "guided-backprop explains the input pixels and takes no layer and no "
                "reshape; pass layer=None (or use 'guided-gradcam', whose Grad-CAM part "
                "takes a layer and a reshape)."
            )

    def _explain(self, x: torch.Tensor, target: TargetLike) -> RawResult:
        grads, resolved, scores = guided_gradients(self.model, x, target)
        grads = grads.float()
        return RawResult(
            raw=grads.abs().amax(dim=1),
            target=resolved,
            scores=scores,
            layer=None,
            attributions=grads,
        )


class GuidedGradCAM(Explainer):
    r"""Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map.

    $$
    R_{\mathrm{Guided\ Grad\text{-}CAM}} = R_{\mathrm{guided}} \odot
    \mathrm{Up}(L^c_{\mathrm{Grad\text{-}CAM}})
    $$

    ``Up`` is bilinear (``align_corners=False``) resizing of Grad-CAM's raw map, broadcast
    over the input channels. ``attributions`` is that product (N, C, H, W); ``raw`` is
    $\max_c |\cdot|$ of it, and ``layer`` the Grad-CAM layer. The whole batch is
    explained at once, each sample for its own target.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        *,
        reshape: ReshapeLike = "auto",
    ) -> None:
        super().__init__(model)
        self._gradcam = GradCAM(model, layer, reshape=reshape)

    def _explain(self, x: torch.Tensor, target: TargetLike) -> RawResult:
        cam = self._gradcam._explain(x, target)
        grads, _, _ = guided_gradients(self.model, x, cam.target)
        heat = upsample(cam.raw.float(), (x.shape[2], x.shape[3]))
        product = grads.float() * heat[:, None].to(grads.device)
        return RawResult(
            raw=product.abs().amax(dim=1),
            target=cam.target,
            scores=cam.scores,
            layer=cam.layer,
            attributions=product,
        )
