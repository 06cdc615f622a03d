"""The enforced contract every explainer follows.

``Explainer.__call__`` owns what all methods share: it validates the inputs, puts the
model in evaluation mode for the call only (restoring every submodule's flag in
``finally``), and turns a method's raw maps into an ``Explanation``.

``BaseCAM`` adds the layer: resolved by name or module at construction, or found
automatically (``find_default_layer``) on the first call. A CAM
method overrides one thing, ``BaseCAM._signed_map``, or for the gradient family only
``GradientCAM._combine``, a few lines each.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from xai.cam.hooks import capture
from xai.cam.layers import find_default_layer, resolve_layer
from xai.cam.maps import minmax, upsample
from xai.cam.state import evaluation_mode
from xai.cam.targets import Target, TargetLike, prepare_inputs, resolve_target
from xai.explanation import Explanation

__all__ = ["BaseCAM", "Explainer", "GradientCAM", "RawResult", "forward_backward"]


@dataclass(frozen=True)
class RawResult:
    """What a method computes before resizing and normalisation."""

    raw: torch.Tensor  # (N, h, w) float32
    target: Target
    scores: torch.Tensor  # (N,)
    layer: str | None
    attributions: torch.Tensor | None = None  # (N, C, H, W), guided methods only


class Explainer(ABC):
    """Base of every image explainer: ``explainer(inputs, target=None) -> Explanation``.

    The model is left exactly as it was: evaluation mode only during the call, hooks
    removed in ``finally``, gradients taken with ``torch.autograd.grad`` (never
    ``backward()``), so no parameter's ``.grad`` is written.
    """

    name: ClassVar[str]  # the registry name, reported as Explanation.method

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
        if isinstance(model, torch.jit.ScriptModule):
            # Scripted modules refuse hooks; traced ones accept them and never call them,
            # which would silently turn guided backpropagation into a plain gradient.
            raise TypeError(
                "this is a TorchScript module: its layers run as compiled code, so no "
                "layer can be hooked and no method here can see its feature maps or "
                "ReLUs. Explain the Python model instead (load its state_dict into the "
                "architecture, or build it with your factory function)."
            )
        self.model = model

    def __call__(self, inputs: torch.Tensor, target: TargetLike = None) -> Explanation:
        """Explain ``inputs`` (N, C, H, W) for ``target`` (see ``xai.cam.targets``)."""
        x = prepare_inputs(self.model, inputs)
        # Explaining works under torch.no_grad() and torch.inference_mode() alike: the
        # gradient methods re-enable autograd locally, on a normal copy of the inputs.
        with torch.inference_mode(False), evaluation_mode(self.model):
            if x.is_inference():
                x = x.clone()
            result = self._explain(x, target)
        raw = result.raw.detach().float().cpu()
        maps = minmax(upsample(raw, (x.shape[2], x.shape[3])))
        attributions = result.attributions
        if attributions is not None:
            attributions = attributions.detach().float().cpu()
        return Explanation(
            maps=maps,
            raw=raw,
            targets=result.target.classes.clone(),
            scores=result.scores.detach().float().cpu(),
            method=self.name,
            layer=result.layer,
            attributions=attributions,
        )

    @abstractmethod
    def _explain(self, x: torch.Tensor, target: TargetLike) -> RawResult:
        """Compute the raw maps; called with the model in eval mode."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__})"


class BaseCAM(Explainer):
    """A class activation map at one layer: ``raw = ReLU(signed map)`` (ReLU optional).

    Args:
        model: the network to explain; it is not modified.
        layer: a dotted name from ``model.named_modules()``, a submodule, or ``None`` for
            the last spatial feature maps (found on the first call, reported in
            ``Explanation.layer``).
        relu: apply the method's ReLU to the map (``True``, as in the papers) or keep
            the signed map (``False``).
    """

    def __init__(
        self, model: nn.Module, layer: str | nn.Module | None = None, *, relu: bool = True
    ) -> None:
        super().__init__(model)
        self._layer: tuple[str, nn.Module] | None = (
            None if layer is None else resolve_layer(model, layer)
        )
        self._default_layers: dict[tuple[int, ...], tuple[str, nn.Module]] = {}
        self.relu = bool(relu)

    def layer_for(self, x: torch.Tensor) -> tuple[str, nn.Module]:
        """The ``(name, module)`` explained for inputs shaped like ``x``."""
        if self._layer is not None:
            return self._layer
        key = tuple(x.shape[1:])
        if key not in self._default_layers:
            with evaluation_mode(self.model):
                self._default_layers[key] = find_default_layer(self.model, x)
        return self._default_layers[key]

    def _explain(self, x: torch.Tensor, target: TargetLike) -> RawResult:
        name, module = self.layer_for(x)
        signed, resolved, scores = self._signed_map(x, name, module, target)
        raw = signed.clamp_min(0.0) if self.relu else signed
        return RawResult(raw=raw, target=resolved, scores=scores, layer=name)

    @abstractmethod
    def _signed_map(
        self, x: torch.Tensor, name: str, layer: nn.Module, target: TargetLike
    ) -> tuple[torch.Tensor, Target, torch.Tensor]:
        """Return the ``(N, h, w)`` float32 map before the ReLU, the target and scores."""

    def __repr__(self) -> str:
        layer = "auto" if self._layer is None else self._layer[0]
        return f"{type(self).__name__}(model={type(self.model).__name__}, layer={layer!r})"


def forward_backward(
    model: nn.Module, x: torch.Tensor, name: str, layer: nn.Module, target: TargetLike
) -> tuple[torch.Tensor, torch.Tensor, Target, torch.Tensor]:
    """One forward pass and one backward pass that stops at ``layer``.

    Returns the activations ``A`` (N, C, h, w), the gradients ``dy^c/dA`` of each
    sample's target score (same shape), the resolved target and the scores (N,).
    The scores are summed before differentiating; in evaluation mode the samples of a
    batch are independent, so each sample's gradient is its own. The forward pass runs
    without recording a graph until the layer's hook turns recording on, so nothing before
    the layer is kept for a backward pass that never reaches it.
    """
    with torch.no_grad(), capture(layer, name, grad=True) as cap:
        output = model(x)
    resolved = resolve_target(target, output, x.shape[0])
    with torch.enable_grad():
        scores = resolved.scores(output, torch.arange(x.shape[0]))
    activation = cap.value
    if not scores.requires_grad:
        raise ValueError(
            f"the target score does not depend on layer {name!r} through autograd (the "
            f"model or the target callable detaches it); gradient methods need a "
            f"differentiable path from the layer to the score."
        )
    (grads,) = torch.autograd.grad(scores.sum(), activation, allow_unused=True)
    if grads is None:
        raise ValueError(
            f"the target score does not depend on layer {name!r}; pick a layer on the "
            f"path to the output."
        )
    return activation.detach(), grads.detach(), resolved, scores.detach()


class GradientCAM(BaseCAM):
    """A CAM built from the layer's activations ``A`` and gradients ``G = dy^c/dA``.

    Subclasses define ``_combine``, the map before the ReLU, from float32 ``A`` and
    ``G`` of shape (N, C, h, w).
    """

    def _signed_map(
        self, x: torch.Tensor, name: str, layer: nn.Module, target: TargetLike
    ) -> tuple[torch.Tensor, Target, torch.Tensor]:
        A, G, resolved, scores = forward_backward(self.model, x, name, layer, target)
        return self._combine(A.float(), G.float()), resolved, scores

    @abstractmethod
    def _combine(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        """The (N, h, w) map before the ReLU."""
