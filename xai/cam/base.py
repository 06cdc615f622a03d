"""The enforced contract every explainer follows.

``Explainer.__call__`` owns what all methods share: it validates the inputs, puts the
model in evaluation mode for the call only (restoring every submodule's flag in
``finally``, counted across threads), refuses non-finite results, and turns a method's
raw maps into an ``Explanation``.

``BaseCAM`` adds the layer: resolved by name (with an optional selector) or module at
construction, or the default layer for the input shape (``xai.core.default_layer``,
cached per model), and the ``reshape`` from the layer's output to (N, C, h, w) maps. A
CAM method overrides one thing, ``BaseCAM._signed_map``, or for the gradient family
only ``GradientCAM._terms`` (the per-channel terms whose sum is the map), a few lines
each. What every CAM shares is here too: several layers fused into one map
(``layer=[...]``), the first principal component of the terms instead of their sum
(``eigen_smooth``) and test-time augmentation (``aug_smooth``), the last two as
pytorch-grad-cam offers them.

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
from xai.core.maps import minmax, principal_projection, upsample
from xai.core.reshape import ReshapeLike
from xai.core.state import evaluation_mode
from xai.core.targets import Class, ResolvedTarget, TargetLike
from xai.core.validate import Boolean, CallableOf, Constraint, Literal, NoneValue, collect, validate
from xai.explanation import Explanation

__all__ = ["AUGMENTATIONS", "BaseCAM", "Explainer", "GradientCAM", "RawResult"]


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


LayerArg = str | nn.Module | Sequence[str | nn.Module] | None

# aug_smooth's test-time augmentations, pytorch-grad-cam's set: (horizontal flip, factor
# multiplying the input tensor), six passes; each map is flipped back before averaging.
AUGMENTATIONS: tuple[tuple[bool, float], ...] = tuple(
    (flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1)
)


def _resolve_layers(model: nn.Module, layer: LayerArg) -> list[LayerRef] | None:
    if layer is None:
        return None
    if isinstance(layer, (str, nn.Module)):
        return [resolve_layer(model, layer)]
    if not isinstance(layer, Sequence) or isinstance(layer, (bytes, bytearray)):
        raise XAITypeError(
            f"layer must be a layer name, a module, a list of them (fused into one map) "
            f"or None; got {type(layer).__name__}."
        )
    if len(layer) == 0:
        raise XAIValueError(
            "layer=[] names no layer; pass one or more layers, or None for the default."
        )
    refs = [resolve_layer(model, item) for item in layer]
    names = [ref.name for ref in refs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise XAIValueError(
            f"layer lists {', '.join(map(repr, repeated))} more than once; each layer is "
            f"fused once, so pass each one once."
        )
    return refs


class BaseCAM(Explainer):
    r"""A class activation map at one layer: ``raw = ReLU(signed map)`` (ReLU optional).

    Args:
        model: the network to explain; it is not modified.
        layer: a dotted name from ``model.named_modules()`` (optionally selecting one
            tensor of a tuple or dict output: ``"fpn['p3']"``, ``"block[0]"``), a
            submodule, or ``None`` for the default layer (the last spatial feature
            maps of a CNN, the input of a transformer's last attention), reported in
            ``Explanation.layer``. A list of layers gives one map fused from all of
            them (see ``fuse``); ``Explanation.layer`` then names them, joined by
            ``", "``.
        relu: apply the method's ReLU to the map (``True``, as in the papers) or keep
            the signed map (``False``).
        reshape: ``"auto"`` (or ``None``): (N, C, h, w) maps as they are and (N, tokens,
            C) token layers folded into their patch grid; or a callable mapping the
            layer's tensor to (N, C, h, w), applied to activations and gradients alike
            (see ``xai.core.reshape``).
        fuse: how several layers' maps become one. Each layer's map (after the ReLU) is
            min-max normalised per sample, resized bilinearly to the largest layer's
            h x w (the finest grid), then averaged (``"mean"``, pytorch-grad-cam's layer
            aggregation) or combined by their element-wise maximum (``"max"``,
            torchcam's ``fuse_cams``). With one layer it does nothing.
        eigen_smooth: replace the sum over channels of the method's per-channel terms
            $T_k$ (for Grad-CAM $T_k = \alpha^c_k A^k$) by their first principal
            component, as pytorch-grad-cam's ``eigen_smooth``: with
            $M \in \mathbb{R}^{hw \times C}$ holding $T_k$ as columns and
            $M = U \Sigma V^\top$, the map is $M v_1$, not mean-centred, its sign
            chosen so that it agrees with the plain sum ($\langle M v_1, M
            \mathbf{1} \rangle \ge 0$). Deterministic (no sampling).
        aug_smooth: average the maps of six test-time augmentations of the input,
            pytorch-grad-cam's set: no flip or a horizontal flip, times the input tensor
            multiplied by 0.9, 1.0 or 1.1. Each map is min-max normalised per sample and
            flipped back into the original frame before the mean, so ``raw`` is that
            mean (in [0, 1]). The target is the one resolved on the original input
            (``None`` means its top-1 class); targets tied to the image frame (a
            segmentation mask, a box) are refused. Scores are the original input's.
            Deterministic; costs six times the method.
    """

    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {
        "relu": [Boolean()],
        "reshape": _RESHAPE,
        "fuse": [Literal("mean", "max")],
        "eigen_smooth": [Boolean()],
        "aug_smooth": [Boolean()],
    }

    def __init__(
        self,
        model: nn.Module,
        layer: LayerArg = None,
        *,
        relu: bool = True,
        reshape: ReshapeLike = "auto",
        fuse: str = "mean",
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
    ) -> None:
        super().__init__(model)
        self._layers: list[LayerRef] | None = _resolve_layers(model, layer)
        self.relu: bool
        self.reshape: ReshapeLike
        self.fuse: str
        self.eigen_smooth: bool
        self.aug_smooth: bool
        self._set(
            relu=relu,
            reshape=reshape,
            fuse=fuse,
            eigen_smooth=eigen_smooth,
            aug_smooth=aug_smooth,
        )

    def layer_for(self, x: torch.Tensor) -> LayerRef:
        """The (first) layer explained for inputs shaped like ``x``."""
        return self.layers_for(x)[0]

    def layers_for(self, x: torch.Tensor) -> list[LayerRef]:
        """The layers explained for inputs shaped like ``x`` (one unless fusing)."""
        if self._layers is not None:
            return list(self._layers)
        return [default_layer(self.model, x)]

    def _explain(self, x: torch.Tensor, target: TargetLike) -> RawResult:
        layers = self.layers_for(x)
        name = ", ".join(ref.name for ref in layers)
        raw, resolved, scores = self._fused_map(x, layers, target)
        if self.aug_smooth:
            raw = self._augmented_mean(x, layers, raw, resolved, target)
        return RawResult(raw=raw, target=resolved, scores=scores, layer=name)

    def _fused_map(
        self, x: torch.Tensor, layers: list[LayerRef], target: TargetLike | ResolvedTarget
    ) -> tuple[torch.Tensor, ResolvedTarget, torch.Tensor]:
        signed, resolved, scores = self._signed_maps(x, layers, target)
        maps = [m.clamp_min(0.0) if self.relu else m for m in signed]
        if len(maps) == 1:
            return maps[0], resolved, scores
        height = max(m.shape[1] for m in maps)
        width = max(m.shape[2] for m in maps)
        stacked = torch.stack([upsample(minmax(m.float()), (height, width)) for m in maps])
        fused = stacked.mean(dim=0) if self.fuse == "mean" else stacked.amax(dim=0)
        return fused, resolved, scores

    def _augmented_mean(
        self,
        x: torch.Tensor,
        layers: list[LayerRef],
        raw: torch.Tensor,
        resolved: ResolvedTarget,
        target: TargetLike,
    ) -> torch.Tensor:
        if not _frame_free(target, resolved):
            raise XAIValueError(
                f"{self.name}: aug_smooth flips the image, but this target is tied to the "
                f"image's frame (a mask, a box or your own callable); pass class indices "
                f"(or None) as target, or explain without aug_smooth."
            )
        total = torch.zeros_like(raw, dtype=torch.float32)
        for flip, factor in AUGMENTATIONS:
            if not flip and factor == 1.0:
                total += minmax(raw.float())
                continue
            xa = x.flip(-1) if flip else x
            xa = xa * factor if factor != 1.0 else xa
            augmented, _, _ = self._fused_map(xa, layers, resolved)
            augmented = minmax(augmented.float())
            total += augmented.flip(-1) if flip else augmented
        return total / len(AUGMENTATIONS)

    def _signed_maps(
        self, x: torch.Tensor, layers: list[LayerRef], target: TargetLike | ResolvedTarget
    ) -> tuple[list[torch.Tensor], ResolvedTarget, torch.Tensor]:
        """Each layer's (N, h, w) map before the ReLU, the target and the scores."""
        maps = []
        resolved: Any = target  # resolved on the first layer, then passed on as it is
        scores = None
        for layer in layers:
            signed, resolved, layer_scores = self._signed_map(x, layer, resolved)
            scores = layer_scores if scores is None else scores
            maps.append(signed)
        assert isinstance(resolved, ResolvedTarget)
        assert scores is not None
        return maps, resolved, scores

    @abstractmethod
    def _signed_map(
        self, x: torch.Tensor, layer: LayerRef, target: TargetLike
    ) -> tuple[torch.Tensor, ResolvedTarget, torch.Tensor]:
        """Return the ``(N, h, w)`` float32 map before the ReLU, the target and scores."""

    def _weighted_sum(self, weights: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        """``sum_k weights[n, k] * A[n, k]`` (N, h, w), or with ``eigen_smooth`` the
        first principal component of the terms ``weights[n, k] * A[n, k]``."""
        weights = weights.to(A.device).float()
        if self.eigen_smooth:
            return principal_projection(weights[:, :, None, None] * A.float())
        return torch.einsum("nk,nkhw->nhw", weights, A.float())

    def __repr__(self) -> str:
        names = None if self._layers is None else [ref.name for ref in self._layers]
        layer = "auto" if names is None else ", ".join(names)
        return f"{type(self).__name__}(model={type(self.model).__name__}, layer={layer!r})"


def _frame_free(target: TargetLike, resolved: ResolvedTarget) -> bool:
    """Whether the target means the same on a flipped image: class indices only."""
    if isinstance(target, Class) or target is None:
        return True
    if isinstance(target, (int, torch.Tensor)) and not isinstance(target, bool):
        return True
    if isinstance(target, Sequence) and not isinstance(target, str):
        return all(
            isinstance(t, Class) or (isinstance(t, int) and not isinstance(t, bool)) for t in target
        )
    return False


class GradientCAM(BaseCAM):
    """A CAM built from the layer's activations ``A`` and gradients ``G = dy^c/dA``.

    Subclasses define ``_terms``, the (N, C, h, w) per-channel terms whose sum over
    channels is the map before the ReLU, from float32 ``A`` and ``G`` of shape
    (N, C, h, w); and may override ``_combine`` (that sum) with a faster equivalent.
    Several layers take one forward and one backward pass together.
    """

    def _signed_map(
        self, x: torch.Tensor, layer: LayerRef, target: TargetLike
    ) -> tuple[torch.Tensor, ResolvedTarget, torch.Tensor]:
        maps, resolved, scores = self._signed_maps(x, [layer], target)
        return maps[0], resolved, scores

    def _signed_maps(
        self, x: torch.Tensor, layers: list[LayerRef], target: TargetLike | ResolvedTarget
    ) -> tuple[list[torch.Tensor], ResolvedTarget, torch.Tensor]:
        acts, grads, resolved, scores = forward_backward(
            self.model, x, layers, target, self.reshape
        )
        maps = []
        for A, G in zip(acts, grads, strict=True):
            A, G = A.float(), G.float()
            maps.append(
                principal_projection(self._terms(A, G))
                if self.eigen_smooth
                else self._combine(A, G)
            )
        return maps, resolved, scores

    @abstractmethod
    def _terms(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        """The (N, C, h, w) terms whose sum over channels is the map before the ReLU."""

    def _combine(self, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        """The (N, h, w) map before the ReLU: the terms summed over channels."""
        return self._terms(A, G).sum(dim=1)
