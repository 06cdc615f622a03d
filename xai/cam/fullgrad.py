"""FullGrad: the input-gradient term plus every bias layer's bias-gradient term.

Srinivas & Fleuret (2019), "Full-Gradient Representation for Neural Network
Visualization", NeurIPS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xai.cam.base import Explainer, RawResult
from xai.core.capture import capture
from xai.core.errors import XAIValueError
from xai.core.layers import LayerRef
from xai.core.maps import minmax, upsample
from xai.core.state import evaluation_mode
from xai.core.targets import ResolvedTarget, TargetLike, resolve_target

__all__ = ["FullGrad", "FullGradients", "full_gradients"]

_CONVS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _bias(module: nn.Module, dtype: torch.dtype) -> torch.Tensor | None:
    """The bias the module adds to its output in evaluation mode, or ``None``."""
    if isinstance(module, _NORMS):
        mean, var = module.running_mean, module.running_var
        beta = None if module.bias is None else module.bias.detach().to(dtype)
        if mean is None or var is None:
            # Batch statistics: the normalisation is a non-linearity with no fixed
            # offset; only the affine shift beta remains a bias.
            return beta
        scale = (var.detach().to(dtype) + module.eps).rsqrt()
        if module.weight is not None:
            scale = scale * module.weight.detach().to(dtype)
        shift = -mean.detach().to(dtype) * scale
        return shift if beta is None else shift + beta
    if isinstance(module, (*_CONVS, nn.Linear)):
        bias = module.bias
        return None if bias is None else bias.detach().to(dtype)
    return None


def _has_bias(module: nn.Module) -> bool:
    if isinstance(module, _NORMS):
        return module.bias is not None or module.running_mean is not None
    return isinstance(module, (*_CONVS, nn.Linear)) and module.bias is not None


def bias_layers(model: nn.Module) -> list[LayerRef]:
    """Every module of ``model`` that adds a bias: convolutions (transposed ones too) and
    linear layers with ``bias=True``, and batch norms (see ``FullGrad``).

    Raises:
        XAIValueError: when there is none.
    """
    found = [LayerRef(name, module) for name, module in model.named_modules() if _has_bias(module)]
    if not found:
        raise XAIValueError(
            "fullgrad needs a model with bias terms (a Conv, ConvTranspose or Linear layer "
            "with bias=True, or a BatchNorm); this model has none, so FullGrad would be "
            "only |x * gradient|. Use method='guided-backprop' or 'gradcam' instead."
        )
    return found


@dataclass(frozen=True)
class FullGradients:
    """The full-gradient decomposition of each sample's target score (see ``FullGrad``).

    Tensors are float32, or float64 for a float64 model.
    """

    input_gradient: torch.Tensor  # (N, C, H, W): d score / d x
    bias_terms: dict[str, torch.Tensor]  # layer name -> d score / d z_l * b_l (z_l's shape)
    spatial: tuple[str, ...]  # the conv and batch-norm layers whose term is (N, C, h, w)
    target: ResolvedTarget
    scores: torch.Tensor  # (N,)


def full_gradients(
    model: nn.Module, x: torch.Tensor, target: TargetLike | ResolvedTarget = None
) -> FullGradients:
    """One forward and one backward pass: ``d score / d x`` and every layer's bias term.

    For a piecewise-linear network in evaluation mode (ReLU, max-pooling, convolutions,
    batch norm with running statistics, linear layers), for each sample n
    ``scores[n] == (input_gradient * x)[n].sum() + sum(t[n].sum() for t in
    bias_terms.values())``. The model runs in evaluation mode for the call; ``x`` is
    (N, C, H, W) in the model's dtype and device. Bias modules that do not run are
    skipped; one that runs twice in a forward pass is refused.
    """
    refs = bias_layers(model)
    n = x.shape[0]
    work = torch.promote_types(x.dtype, torch.float32)
    with torch.inference_mode(False), evaluation_mode(model), torch.enable_grad():
        xi = x.detach().clone().requires_grad_(True)
        with capture(refs, grad=True) as cap:
            try:
                output = model(xi)
            except XAIValueError as error:
                reused = [ref.name for ref, calls in zip(refs, cap.calls, strict=True) if calls > 1]
                if not reused:
                    raise
                raise XAIValueError(
                    f"fullgrad: bias layer {reused[0]!r} ran more than once in one forward "
                    f"pass (a reused module), so its bias term is ambiguous. FullGrad uses "
                    f"every bias layer: give each call site its own module."
                ) from error
        resolved = resolve_target(target, output, n)
        scores = resolved.scores(output, torch.arange(n))
        if not scores.requires_grad:
            raise XAIValueError(
                "the target score does not depend on the input through autograd (the "
                "model or the target callable detaches it)."
            )
        ran = [(ref, t) for ref, t in zip(refs, cap.tensors, strict=True) if t is not None]
        grads = torch.autograd.grad(scores.sum(), [xi, *(t for _, t in ran)], allow_unused=True)
        terms: dict[str, torch.Tensor] = {}
        spatial = []
        for (ref, tensor), grad in zip(ran, grads[1:], strict=True):
            if grad is None:  # the score does not depend on this layer
                continue
            bias = _bias(ref.module, work)
            assert bias is not None
            if not isinstance(ref.module, nn.Linear):  # channels on dim 1
                bias = bias.reshape(-1, *([1] * (tensor.ndim - 2)))
            terms[ref.name] = grad.detach().to(work) * bias
            mapped = not isinstance(ref.module, nn.Linear) and tensor.ndim == x.ndim
            if mapped and tensor.shape[0] == n:
                spatial.append(ref.name)
    input_gradient = grads[0]
    if input_gradient is None:
        input_gradient = torch.zeros_like(xi)
    return FullGradients(
        input_gradient=input_gradient.detach().to(work),
        bias_terms=terms,
        spatial=tuple(spatial),
        target=resolved,
        scores=scores.detach(),
    )


class FullGrad(Explainer):
    r"""FullGrad: the input-gradient and every layer's bias-gradient, at input resolution.

    For a piecewise-linear network (ReLU, max-pooling, convolutions, linear layers,
    batch norm in evaluation mode) the score decomposes exactly into the full gradient:

    $$
    f(x) = \nabla_x f \cdot x + \sum_l \sum_c \big(\nabla_{z_l} f \odot b_l\big)_c
    $$

    with $z_l$ the output of layer $l$ and $b_l$ its bias broadcast over positions (for a
    batch norm in evaluation mode $b = \beta - \gamma\,\mu / \sqrt{\sigma^2 + \epsilon}$).
    The saliency map is

    $$
    S(x) = \sum_c \psi\big(\nabla_x f \odot x\big)_c
         + \sum_{l \in \mathrm{conv, BN}} \sum_c \psi\big(\nabla_{z_l} f \odot b_l\big)_c
    $$

    with $\psi$ = absolute value, min-max rescaling per sample jointly over the term's
    channels and positions, then bilinear resizing to the input. ``raw`` is $S$ at input
    resolution, ``maps`` its min-max normalisation, ``layer`` is ``None``.

    Bias layers: ``Conv1d/2d/3d`` and ``ConvTranspose1d/2d/3d`` with a bias, every
    ``BatchNorm1d/2d/3d`` (running statistics give the bias above; a batch norm with
    ``track_running_stats=False`` normalises with batch statistics, which no fixed bias
    describes, so only its affine $\beta$ counts and the identity is not exact), and
    ``Linear`` with a bias. Only conv and batch-norm layers whose output is (N, C, h, w)
    enter the map; the others (linear layers, 1-D or 3-D convolutions) belong to the
    identity only (``full_gradients``). Other normalisations and non-module offsets
    (``xai.models.Normalize``) are not bias layers.

    Cost: 1 forward + 1 backward pass (every bias layer's output is kept for it).

    Deviations from the authors' released code: bilinear resizing with
    ``align_corners=False`` (theirs: ``True``); min-max rescaling divides by the exact
    range, a constant term becoming zeros (theirs divides by the range plus ``1e-6``,
    which depends on the score's scale). pytorch-grad-cam instead min-max rescales every
    channel of every term on its own (range plus ``1e-7``), then resizes it with OpenCV,
    and keeps only ``Conv2d`` and ``BatchNorm2d`` layers.

    Args:
        model: the network to explain; it is not modified.
        layer: must be ``None``: FullGrad uses every bias layer.
    """

    def __init__(self, model: nn.Module, layer: None = None) -> None:
        super().__init__(model)
        if layer is not None:
            raise XAIValueError(
                "fullgrad uses every bias layer of the model (convolutions and batch "
                "norms, plus linear layers' biases) and takes no layer; pass layer=None."
            )
        bias_layers(model)

    def _explain(self, x: torch.Tensor, target: TargetLike) -> RawResult:
        full = full_gradients(self.model, x, target)
        size = (x.shape[2], x.shape[3])
        saliency = minmax((full.input_gradient * x.to(full.input_gradient.dtype)).abs())
        raw = saliency.float().sum(dim=1)
        for name in full.spatial:
            term = minmax(full.bias_terms[name].abs()).sum(dim=1)
            raw = raw + upsample(term, size)
        return RawResult(raw=raw, target=full.target, scores=full.scores, layer=None)
