"""The inputs of an explanation: checked once, moved to the model's device and dtype.

A non-finite pixel (NaN or infinity) is refused: a NaN spreads through every layer, so
its maps would be NaN, or worse, look clean for a class picked by an argmax over NaN.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

import torch
from torch import nn

from xai.core.errors import XAITypeError, XAIValueError

__all__ = ["channel_mismatch", "model_dtype_device", "prepare_inputs"]


def model_dtype_device(model: nn.Module) -> tuple[torch.dtype | None, torch.device | None]:
    """The dtype and device of the model's first floating parameter or buffer."""
    # Lazily: the first floating parameter or buffer decides, usually the first of all.
    first = None
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
        if first is None:
            first = tensor
    return None, None if first is None else first.device


def prepare_inputs(model: nn.Module, inputs: Any) -> torch.Tensor:
    """Check ``inputs`` is a finite (N, C, H, W) float tensor; move it to the model's
    device and dtype.

    The result is detached: nothing the explainer does reaches the caller's tensor.
    """
    if not isinstance(model, nn.Module):
        raise XAITypeError(
            f"model must be a torch.nn.Module; got {type(model).__name__}. "
            f"Pass the network itself, e.g. xai.models.GAPCNN(...)."
        )
    if not isinstance(inputs, torch.Tensor):
        raise XAITypeError(
            f"inputs must be a torch.Tensor of shape (N, C, H, W); got "
            f"{type(inputs).__name__}. Convert with torch.as_tensor(x, dtype=torch.float32)."
        )
    if inputs.ndim != 4:
        fix = (
            " Add the batch dimension with x.unsqueeze(0)."
            if inputs.ndim == 3
            else " Reshape to (N, C, H, W)."
        )
        raise XAIValueError(
            f"inputs must have shape (N, C, H, W); got {inputs.ndim} dimensions "
            f"{tuple(inputs.shape)}.{fix}"
        )
    if not inputs.is_floating_point():
        raise XAITypeError(
            f"inputs must be floating point (images scaled as the model expects); got "
            f"{inputs.dtype}. For uint8 images use x.float() / 255."
        )
    if min(inputs.shape) == 0:
        raise XAIValueError(f"inputs must not be empty; got shape {tuple(inputs.shape)}")
    x = inputs.detach()
    # A NaN or an infinity makes the sum non-finite (so does an overflow of huge finite
    # values, which the exact check below then clears): one cheap reduction in the usual
    # case instead of an elementwise test.
    if not math.isfinite(float(x.sum(dtype=torch.float32))) and not bool(torch.isfinite(x).all()):
        finite = torch.isfinite(x).flatten(1).all(dim=1)
        bad = (~finite).nonzero()[:, 0].tolist()
        first = bad[0]
        value = x[first][~torch.isfinite(x[first])][0].item()
        listed = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise XAIValueError(
            f"inputs must be finite; sample {first} holds {value} (non-finite samples: "
            f"{listed} of {len(x)}). A NaN or infinite pixel makes every map meaningless; "
            f"fix or drop those images (torch.nan_to_num, or x[torch.isfinite(x).flatten(1)"
            f".all(1)])."
        )
    dtype, device = model_dtype_device(model)
    if device is not None and x.device != device:
        x = x.to(device)
    if dtype is not None and x.dtype != dtype:
        x = x.to(dtype)
        if not bool(torch.isfinite(x).all()):
            raise XAIValueError(
                f"inputs overflow the model's dtype {dtype}: values up to "
                f"{inputs.abs().max().item():.3g} do not fit; scale the images as the "
                f"model expects."
            )
    return x


_CHANNELS = re.compile(r"expected input\[([\d, ]+)\] to have (\d+) channels, but got (\d+)")


def channel_mismatch(error: RuntimeError, x: torch.Tensor) -> XAIValueError | None:
    """A clear error for PyTorch's channel-mismatch message about the model's input,
    or ``None`` when ``error`` is something else."""
    match = _CHANNELS.search(str(error))
    if match is None:
        return None
    shape = [int(v) for v in match.group(1).split(",")]
    expected, got = int(match.group(2)), int(match.group(3))
    if got != x.shape[1] or shape[1:] != list(x.shape[1:]):
        return None  # about a layer inside the model, not about the inputs
    if expected == 1 and got == 3:
        fix = "convert the images to grayscale, e.g. x.mean(dim=1, keepdim=True)"
    elif expected == 3 and got == 1:
        fix = "repeat the grey channel, e.g. x.expand(-1, 3, -1, -1)"
    else:
        fix = f"pass images with {expected} channels"
    return XAIValueError(
        f"the model's first convolution expects {expected} input channels; the inputs "
        f"have {got} (shape {tuple(x.shape)}); {fix}."
    )
