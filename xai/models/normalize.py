"""Normalisation as a layer, so a model takes images scaled to [0, 1]."""

from collections.abc import Sequence

import torch
from torch import nn

from xai.core.errors import XAIValueError

__all__ = ["Normalize"]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean and std held as buffers.

    They travel with ``model.to(...)`` and live in the ``state_dict``, so a saved model
    carries its own preprocessing: users pass images scaled to [0, 1] and never have to
    remember the training set's statistics.

    Args:
        mean: one value per channel (or one for all channels).
        std: likewise; every value must be positive.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if mean_t.numel() != std_t.numel() and 1 not in (mean_t.numel(), std_t.numel()):
            raise XAIValueError(
                f"mean and std must have one value per channel (or one in all); got "
                f"{mean_t.numel()} and {std_t.numel()} values."
            )
        if bool((std_t <= 0).any()):
            raise XAIValueError(f"std must be positive; got {std_t.flatten().tolist()}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
