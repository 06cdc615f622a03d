"""The enforced contract every explainer follows.

``Explainer.__call__`` owns what all methods share: it validates the inputs, puts the
model in evaluation mode for the call only (restoring every submodule's flag in
``finally``, counted across threads), refuses non-finite results, and turns a method's
raw maps into an ``Explanation``.

``BaseCAM`` adds the layer: resolved by name (with an optional selector) or module at
construction, or the default layer for the input shape (``xai.core.default_layer``,
cached per model), and the ``reshape`` from the layer's output to (N, C, h, w) maps. A
CAM method overrides one thing, ``BaseCAM._signed_map``, or for the gradient family
only ``GradientCAM._combine``, a few lines each.

A method's registry name (``Explanation.method``) comes from ``xai.registry``; its
options' constraints are declared once, in its ``constraints`` table.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from xai import registry
from xai.core.capture import forward_backward
from xai.core.default_layer import default_layer
from xai.core.errors import XAITypeError, XAIValueError
from xai.core.inputs import channel_mismatch, prepare_inputs
from xai.core.layers import LayerRef, resolve_layer
from xai.core.maps import minmax, upsample
from xai.core.reshape import ReshapeLike
from xai.core.state import evaluation_mode
from xai.core.targets import ResolvedTarget, TargetLike
from xai.core.validate import Boolean, CallableOf, Constraint, Literal, NoneValue, collect, validate
from xai.explanation import Explanation

__all__ = ["BaseCAM", "Explainer", "GradientCAM", "RawResult"]


@dataclass(frozen=True)
class RawResult:
    """What a method computes before resizing and normalisation."""

    raw: torch.Tensor  # (N, h, w) float32
    target: ResolvedTarget
    scores: torch.Tensor  # (N,)
    layer: str | None
    attributions: torch.Tensor | None = None  # (N, C, H, W), guided methods only


class Explainer(ABC):
    """Base of every image explainer: ``explainer(inputs, target=None) -> Explanation``.

    The model is left exactly as it was: evaluation mode only during the call, hooks
    scoped to the call and removed in ``finally``, gradients taken with
    ``torch.autograd.grad`` (never ``backward()``), so no parameter's ``.grad`` is
    written. Calls from several threads on one model give the maps of serial calls.
    """

    name: ClassVar[str]  # the registry name, reported as Explanation.method
    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = registry.name_of(cls) or cls.__name__.lower()

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise XAITypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
        if isinstance(model, torch.jit.ScriptModule):
            # Scripted modules refuse hooks; traced ones accept them and never call them,
            # which would silently turn guided backpropagation into a plain gradient.
            raise XAITypeError(
                "this is a TorchScript module: its layers run as compiled code, so no "
                "layer can be hooked and no method here can see its feature maps or "
                "ReLUs. Explain the Python model instead (load its state_dict into the "
                "architecture, or build it with your factory function)."
            )
        self.model = model

    def _set(self, **values: Any) -> None:
        """Validate options against the class's ``constraints`` and store them."""
        for key, value in validate(type(self).__name__, collect(type(self)), **values).items():
            setattr(self, key, value)

    def __call__(self, inputs: torch.Tensor, target: TargetLike = None) -> Explanation:
        """Explain ``inputs`` (N, C, H, W) for ``target`` (see ``xai.core.targets``)."""
        x = prepare_inputs(self.model, inputs)
        # Explaining works under torch.no_grad() and torch.inference_mode() alike: the
        # gradient methods re-enable autograd locally, on a normal copy of the inputs.
        with torch.inference_mode(False), evaluation_mode(self.model):
            if x.is_inference():
                x = x.clone()
            try:
                result = self._explain(x, target)
            except RuntimeError as error:
                mismatch = channel_mismatch(error, x)
                if mismatch is not None:
                    raise mismatch from error
                raise
        raw = result.raw.detach().float().cpu()
        scores = result.scores.detach().float().cpu()
        _refuse_non_finite(raw, scores, self.name)
        maps = minmax(upsample(raw, (x.shape[2], x.shape[3])))
        attributions = result.attributions
        if attributions is not None:
            attributions = attributions.detach().float().cpu()
        logits = result.target.logits
        return Explanation(
            maps=maps,
            raw=raw,
            targets=result.target.classes,
            scores=scores,
            method=self.name,
            layer=result.layer,
            attributions=attributions,
            explained=result.target.explained,
            logits=None if logits is None else logits.float().cpu(),
        )

    @abstractmethod
    def _explain(self, x: torch.Tensor, target: TargetLike) -> RawResult:
        """Compute the raw maps; called with the model in eval mode."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__})"


def _refuse_non_finite(raw: torch.Tensor, scores: torch.Tensor, method: str) -> None:
    # A NaN or an infinity makes a sum non-finite (a finite overflow is cleared below).
    if math.isfinite(float(raw.sum()) + float(scores.sum())):
        return
    if bool(torch.isfinite(raw).all() & torch.isfinite(scores).all()):
        return
    finite = torch.isfinite(raw).flatten(1).all(dim=1) & torch.isfinite(scores)
    bad = (~finite).nonzero()[:, 0].tolist()
    raise XAIValueError(
        f"{method}: the model's scores or maps are not finite for sample(s) "
        f"{', '.join(map(str, bad[:5]))}{', ...' if len(bad) > 5 else ''} (score "
        f"{scores[bad[0]].item()}); the model overflows on these inputs (in float16, try "
        f"bfloat16 or float32), so no map can be computed."
    )


_RESHAPE: list[Constraint] = [
    NoneValue(),
    Literal("auto"),
    CallableOf("a callable mapping the layer's tensor to (N, C, h, w)"),
]


class BaseCAM(Explainer):
    """A class activation map at one layer: ``raw = ReLU(signed map)`` (ReLU optional).

    Args:
        model: the network to explain; it is not modified.
        layer: a dotted name from ``model.named_modules()`` (optionally selecting one
            tensor of a tuple or dict output: ``"fpn['p3']"``, ``"block[0]"``), a
            submodule, or ``None`` for the default layer (the last spatial feature
            maps of a CNN, the input of a transformer's last attention), reported in
            ``Explanation.layer``.
        relu: apply the method's ReLU to the map (``True``, as in the papers) or keep
            the signed map (``False``).
        reshape: ``"auto"`` (or ``None``): (N, C, h, w) maps as they are and (N, tokens,
            C) token layers folded into their patch grid; or a callable mapping the
            layer's tensor to (N, C, h, w), applied to activations and gradients alike
            (see ``xai.core.reshape``).
    """

    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {
        "relu": [Boolean()],
        "reshape": _RESHAPE,
    }

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        *,
        relu: bool = True,
        reshape: ReshapeLike = "auto",
    ) -> None:
        super().__init__(model)
        self._layer: LayerRef | None = None if layer is None else resolve_layer(model, layer)
        self.relu: bool
        self.reshape: ReshapeLike
        self._set(relu=relu, reshape=reshape)

    def layer_for(self, x: torch.Tensor) -> LayerRef:
        """The layer explained for inputs shaped like ``x``."""
        if self._layer is not None:
            return self._layer
        return default_layer(self.model, x)

    def _explain(self, x: torch.Tensor, target: TargetLike) -> RawResult:
        layer = self.layer_for(x)
        signed, resolved, scores = self._signed_map(x, layer, target)
        raw = signed.clamp_min(0.0) if self.relu else signed
        return RawResult(raw=raw, target=resolved, scores=scores, layer=layer.name)

    @abstractmethod
    def _signed_map(
        self, x: torch.Tensor, layer: LayerRef, target: TargetLike
    ) -> tuple[torch.Tensor, ResolvedTarget, torch.Tensor]:
        """Return the ``(N, h, w)`` float32 map before the ReLU, the target and scores."""

    def __repr__(self) -> str:
        layer = "auto" if self._layer is None else self._layer.name
        return f"{type(self).__name__}(model={type(self.model).__name__}, layer={layer!r})"


class GradientCAM(BaseCAM):
    """A CAM built from the layer's activations ``A`` and gradients ``G = dy^c/dA``.

    Subclasses define ``_combine``, the map before the ReLU, from float32 ``A`` and
    ``G`` of shape (N, C, h, w).
    """

    def _signed_map(
        self, x: torch.Tensor, layer: LayerRef, target: TargetLike
    ) -> tuple[torch.Tensor, ResolvedTarget, torch.Tensor]:
        maps, grads, resolved, scores = forward_backward(
            self.model, x, [layer], target, self.reshape
        )
        return self._combine(maps[0].float(), grads[0].float()), resolved, scores

    @abstractmethod
    def _combine(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        """The (N, h, w) map before the ReLU."""
