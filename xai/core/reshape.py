"""From what a layer outputs to ``(N, C, h, w)`` maps: ``reshape=``.

Every method works on maps ``A`` of shape (N, C, h, w). A convolutional layer gives them
directly. A transformer layer gives tokens ``(N, T, C)``: ``k`` prefix tokens (a class
token, registers) followed by the ``h * w`` patch tokens in row-major order, which
``"auto"`` turns into maps by dropping the prefix and folding the patches into their
grid, exactly as pytorch-grad-cam's ``reshape_transform`` examples do::

    A = tokens[:, k:, :].reshape(N, h, w, C).permute(0, 3, 1, 2)

The grid is the one of the model's patch-embedding convolution (the last 2-D
convolution before the layer whose grid leaves 0..16 tokens over), so non-square
grids are right. Without such a convolution the grid is the largest square ``T - k``
with ``k`` in 0..5; if two ``k`` fit, or the square does not match the input's aspect
ratio, the grid is ambiguous and the error shows the ``reshape=`` to pass.

A callable ``reshape`` maps the layer's tensor to (N, C, h, w). It is applied to the
activations and to their gradients alike (the field's convention), so it must only
rearrange elements: select, reshape, permute, transpose. Channels-last layers
(Swin's stages, ``(N, h, w, C)``) need one: ``lambda t: t.permute(0, 3, 1, 2)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import torch
from torch import nn

from xai.core.errors import XAITypeError, XAIValueError
from xai.core.layers import LayerRef
from xai.core.trace import profile

__all__ = ["Reshape", "ReshapeLike", "check_reshape", "resolve_reshape"]

ReshapeLike: TypeAlias = str | Callable[[torch.Tensor], torch.Tensor] | None

#: 1-D layers whose (N, C, L) output would be mistaken for tokens (N, T, C).
_CHANNELS_FIRST_1D = (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d)

MAX_PREFIX_WITH_GRID = 16  # prefix tokens allowed when the patch grid is known
MAX_PREFIX_GUESSED = 5  # ... when it is guessed as a square (a class token + 4 registers)


def check_reshape(reshape: Any) -> ReshapeLike:
    """Validate a ``reshape=`` option: ``None``, ``"auto"`` or a callable."""
    if reshape is None or reshape == "auto" or (callable(reshape) and not isinstance(reshape, str)):
        return reshape
    raise XAITypeError(
        f"reshape must be None or 'auto' (tokens and NCHW maps handled automatically) or a "
        f"callable mapping the layer's tensor to (N, C, h, w); got {reshape!r}."
    )


@dataclass(frozen=True)
class Reshape:
    """A resolved reshape for one layer and input shape."""

    fn: Callable[[torch.Tensor], torch.Tensor] | None  # None: already (N, C, h, w)
    layer: str
    description: str

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.fn is None:
            return tensor
        out = self.fn(tensor)
        if not isinstance(out, torch.Tensor) or out.ndim != 4 or out.shape[0] != tensor.shape[0]:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise XAIValueError(
                f"reshape for layer {self.layer!r} must return (N, C, h, w) with N = "
                f"{tensor.shape[0]}; it returned {got} from {tuple(tensor.shape)}."
            )
        return out

    def positions(self, sample_shape: tuple[int, ...]) -> torch.Tensor:
        """``(C, h*w)`` int64: where each map element sits in one sample's flattened
        layer output. Lets Ablation-CAM zero a channel in the layer's own layout."""
        count = math.prod(sample_shape)
        index = torch.arange(count, dtype=torch.float64).reshape(1, *sample_shape)
        mapped = self(index)[0]
        flat = mapped.reshape(mapped.shape[0], -1)
        whole = flat.round()
        if not torch.equal(whole, flat) or whole.min() < 0 or whole.max() >= count:
            raise XAIValueError(
                f"reshape for layer {self.layer!r} does not only rearrange the layer's "
                f"elements (it computes new values); Ablation-CAM needs a rearrangement."
            )
        positions = whole.long()
        if positions.unique().numel() != positions.numel():
            raise XAIValueError(
                f"reshape for layer {self.layer!r} uses some elements twice; Ablation-CAM "
                f"needs each map element to be one element of the layer's output."
            )
        return positions


def _token_fix(k: int, h: int, w: int) -> str:
    return f"reshape=lambda t: t[:, {k}:].reshape(t.shape[0], {h}, {w}, -1).permute(0, 3, 1, 2)"


def _fold(k: int, h: int, w: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def fold(tokens: torch.Tensor) -> torch.Tensor:
        n, _, c = tokens.shape
        return tokens[:, k:, :].reshape(n, h, w, c).permute(0, 3, 1, 2)

    return fold


def _aspect_close(a: float, b: float, factor: float = 2.0) -> bool:
    return max(a, b) / min(a, b) <= factor


def _tokens(model: nn.Module, x: torch.Tensor, layer: LayerRef, shape: tuple[int, ...]) -> Reshape:
    _, t, c = shape
    height, width = x.shape[2], x.shape[3]
    for gh, gw in profile(model, x).grids_before(layer.path):
        k = t - gh * gw
        if gh * gw >= 2 and 0 <= k <= MAX_PREFIX_WITH_GRID:
            return Reshape(
                _fold(k, gh, gw),
                layer.name,
                f"tokens: {k} prefix + {gh}x{gw} patches (grid of the patch convolution)",
            )
    squares = [
        (k, math.isqrt(t - k))
        for k in range(min(MAX_PREFIX_GUESSED, t - 4) + 1)
        if math.isqrt(t - k) ** 2 == t - k
    ]
    square_fits = _aspect_close(height / width, 1.0, 1.25)
    if len(squares) == 1 and square_fits:
        k, side = squares[0]
        return Reshape(
            _fold(k, side, side),
            layer.name,
            f"tokens: {k} prefix + {side}x{side} patches (the only square grid)",
        )
    if len(squares) > 1:
        options = "; ".join(f"{s}x{s} after {k} prefix token(s)" for k, s in squares)
        raise XAIValueError(
            f"layer {layer.name!r} outputs {t} tokens of {c} channels and no patch "
            f"convolution gives their grid; it could be {options}. Pass the one the model "
            f"uses, e.g. {_token_fix(squares[0][0], squares[0][1], squares[0][1])}."
        )
    raise XAIValueError(
        f"layer {layer.name!r} outputs tokens (N, {t}, {c}) and the patch grid cannot be "
        f"found (no patch convolution before it, and no square grid after 0..."
        f"{MAX_PREFIX_GUESSED} prefix tokens fits a {height}x{width} input). Pass reshape="
        f"a callable mapping the tokens to (N, C, h, w), e.g. {_token_fix(1, 14, 14)}."
    )


def resolve_reshape(
    reshape: ReshapeLike, model: nn.Module, x: torch.Tensor, layer: LayerRef, tensor: torch.Tensor
) -> Reshape:
    """The ``Reshape`` for ``layer``'s captured ``tensor`` on inputs ``x``."""
    if reshape is not None and reshape != "auto":
        return Reshape(reshape, layer.name, "callable")  # type: ignore[arg-type]
    shape = tuple(tensor.shape)
    height, width = x.shape[2], x.shape[3]
    if len(shape) == 4:
        _, c, h, w = shape
        looks_last = not _aspect_close(h / w, height / width) and _aspect_close(
            c / h, height / width
        )
        if looks_last and w > c:
            raise XAIValueError(
                f"layer {layer.name!r} outputs {shape}, which looks channels-last "
                f"(N, h, w, C) for a {height}x{width} input; pass "
                f"reshape=lambda t: t.permute(0, 3, 1, 2) (or reshape=... your own)."
            )
        return Reshape(None, layer.name, "NCHW")
    if len(shape) == 3:
        if isinstance(layer.module, _CHANNELS_FIRST_1D):
            raise XAIValueError(
                f"layer {layer.name!r} ({type(layer.module).__name__}) outputs (N, C, L) "
                f"{shape}, channels first, not tokens (N, T, C); pass reshape= a callable "
                f"mapping it to (N, C, h, w), e.g. reshape=lambda t: t[:, :, None, :]."
            )
        return _tokens(model, x, layer, shape)
    what = (
        "a vector per sample (N, C), with no spatial or token dimension"
        if len(shape) == 2
        else f"a {len(shape)}-D tensor"
    )
    raise XAIValueError(
        f"layer {layer.name!r} outputs {what} {shape}; a map needs (N, C, h, w) feature "
        f"maps or (N, tokens, C). Pick an earlier layer (see model.named_modules()) or pass "
        f"reshape= a callable mapping its output to (N, C, h, w)."
    )
