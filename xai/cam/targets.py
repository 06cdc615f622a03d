"""What is explained: validating the inputs and turning ``target=`` into scores.

``target`` may be
  * ``None``: each sample's top-1 class;
  * an ``int``: that class for every sample;
  * a sequence (or 1-D tensor / array) of N ints: one class per sample;
  * a callable mapping the model's output to ``(B,)`` scores, one per row, for models
    that return tuples or dicts, or for any custom score. Methods that run the model on
    extra masked copies (Score-CAM, Ablation-CAM) call it on those batches too, so it must
    work row by row.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import torch
from torch import nn

__all__ = ["Target", "TargetLike", "prepare_inputs", "resolve_target"]

TargetLike: TypeAlias = int | Sequence[int] | torch.Tensor | Callable[[Any], torch.Tensor] | None


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype | None, torch.device | None]:
    # Lazily: the first floating parameter or buffer decides, usually the first of all.
    first = None
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
        if first is None:
            first = tensor
    return None, None if first is None else first.device


def prepare_inputs(model: nn.Module, inputs: Any) -> torch.Tensor:
    """Check ``inputs`` is an (N, C, H, W) float tensor; move it to the model's device/dtype.

    The result is detached: nothing the explainer does reaches the caller's tensor.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module; got {type(model).__name__}. "
            f"Pass the network itself, e.g. xai.models.GAPCNN(...)."
        )
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(
            f"inputs must be a torch.Tensor of shape (N, C, H, W); got "
            f"{type(inputs).__name__}. Convert with torch.as_tensor(x, dtype=torch.float32)."
        )
    if inputs.ndim != 4:
        fix = (
            " Add the batch dimension with x.unsqueeze(0)."
            if inputs.ndim == 3
            else " Reshape to (N, C, H, W)."
        )
        raise ValueError(
            f"inputs must have shape (N, C, H, W); got {inputs.ndim} dimensions "
            f"{tuple(inputs.shape)}.{fix}"
        )
    if not inputs.is_floating_point():
        raise TypeError(
            f"inputs must be floating point (images scaled as the model expects); got "
            f"{inputs.dtype}. For uint8 images use x.float() / 255."
        )
    if min(inputs.shape) == 0:
        raise ValueError(f"inputs must not be empty; got shape {tuple(inputs.shape)}")
    dtype, device = _model_dtype_device(model)
    x = inputs.detach()
    if device is not None and x.device != device:
        x = x.to(device)
    if dtype is not None and x.dtype != dtype:
        x = x.to(dtype)
    return x


@dataclass(frozen=True)
class Target:
    """A resolved target: one class per sample, or a row-wise score function."""

    classes: torch.Tensor  # (N,) int64 on the CPU; -1 where ``fn`` defines the score
    fn: Callable[[Any], torch.Tensor] | None = None

    def scores(self, output: Any, rows: torch.Tensor, *, softmax: bool = False) -> torch.Tensor:
        """The explained score of each row of ``output``.

        Args:
            output: the model's output for a batch of B rows.
            rows: ``(B,)`` the sample (0..N-1) each row belongs to; it picks the class.
            softmax: score with the class probability instead of the logit (ignored for a
                callable target, whose value is used as it is).
        """
        if self.fn is not None:
            values = self.fn(output)
            if not isinstance(values, torch.Tensor) or values.shape != (len(rows),):
                got = (
                    tuple(values.shape)
                    if isinstance(values, torch.Tensor)
                    else type(values).__name__
                )
                raise ValueError(
                    f"the target callable must return a tensor of shape ({len(rows)},), "
                    f"one score per row of the model's output; it returned {got}."
                )
            return values
        logits = _logits(output)
        if softmax:
            logits = torch.softmax(logits.float(), dim=1)
        index = self.classes.to(logits.device)[rows.to(logits.device)]
        return logits.gather(1, index[:, None])[:, 0]


def _logits(output: Any) -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        got = (
            f"a tensor of shape {tuple(output.shape)}"
            if isinstance(output, torch.Tensor)
            else f"a {type(output).__name__}"
        )
        raise ValueError(
            f"target=None/int/list needs a model that returns (N, num_classes) scores; "
            f"this model returned {got}. Pass target=callable(output) -> (N,) scores, "
            f"e.g. target=lambda out: out['logits'][:, 3]."
        )
    return output


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int class index; got the bool {value}")
    try:
        return operator.index(value)
    except TypeError:
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
            return int(value.item())
        raise TypeError(
            f"{what} must be an int class index; got {type(value).__name__} {value!r}"
        ) from None


def resolve_target(target: TargetLike, output: Any, n: int) -> Target:
    """Validate ``target`` against the model's ``output`` for a batch of ``n`` samples."""
    if callable(target) and not isinstance(target, torch.Tensor):
        return Target(classes=torch.full((n,), -1, dtype=torch.int64), fn=target)
    logits = _logits(output)
    num_classes = logits.shape[1]
    if target is None:
        classes = logits.detach().float().argmax(dim=1).cpu()
        return Target(classes=classes.to(torch.int64))
    if getattr(target, "ndim", None) == 0:  # a 0-d tensor or a numpy scalar
        target = _as_int(target.item() if hasattr(target, "item") else target, "target")
    if isinstance(target, (str, bytes)):
        raise TypeError(
            f"target must be None, an int, {n} ints or a callable; got the string "
            f"{target!r}. Class names are resolved by the command line; here pass the index."
        )
    if isinstance(target, (Sequence, torch.Tensor)) or hasattr(target, "__array__"):
        items = cast(Iterable[Any], target.tolist() if hasattr(target, "tolist") else target)
        values = [_as_int(v, "each target") for v in items]
        if len(values) != n:
            raise ValueError(
                f"target has {len(values)} entries but the inputs hold {n} samples; pass "
                f"one int for all samples or exactly one per sample."
            )
    else:
        values = [_as_int(target, "target")] * n
    bad = [v for v in values if not 0 <= v < num_classes]
    if bad:
        raise ValueError(
            f"target {bad[0]} is out of range for a model with {num_classes} classes; "
            f"valid targets are 0..{num_classes - 1}."
        )
    return Target(classes=torch.tensor(values, dtype=torch.int64))
