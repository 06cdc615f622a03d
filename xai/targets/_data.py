"""Per-sample data of a target: one value for all samples, or one per sample."""

from __future__ import annotations

from typing import Any

import torch

from xai.core.errors import XAITypeError, XAIValueError

__all__ = ["as_tensor", "categories", "rows_of"]


def as_tensor(value: Any, what: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``value`` as a detached CPU tensor (a tensor, array or nested list)."""
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise XAITypeError(
            f"{what} must be a tensor or an array; got {type(value).__name__}"
        ) from error
    tensor = tensor.detach().cpu()
    return tensor if dtype is None else tensor.to(dtype)


def categories(value: Any, what: str = "category") -> torch.Tensor:
    """An int, or one int per sample, as a 0-D or 1-D int64 tensor."""
    tensor = as_tensor(value, what)
    if tensor.is_floating_point() or tensor.dtype == torch.bool or tensor.ndim > 1:
        raise XAITypeError(f"{what} must be an int or one int per sample; got {value!r}")
    return tensor.to(torch.int64)


def rows_of(value: torch.Tensor, shared_ndim: int, samples: torch.Tensor) -> torch.Tensor:
    """``value`` for each row: itself (shared, ``shared_ndim`` dims) or ``value[sample]``."""
    if value.ndim == shared_ndim:
        return value.expand(len(samples), *value.shape)
    return value[samples]


def check_count(value: torch.Tensor, shared_ndim: int, n: int, what: str) -> None:
    """A per-sample ``value`` must have exactly ``n`` entries."""
    if value.ndim == shared_ndim + 1 and value.shape[0] != n:
        raise XAIValueError(
            f"{what} has {value.shape[0]} entries but the inputs hold {n} samples; pass one "
            f"for all samples or exactly one per sample."
        )
