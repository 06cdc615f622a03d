"""A small CNN with a global-average-pooling head: the network CAM was defined for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from xai.core.errors import XAIValueError
from xai.core.validate import (
    Boolean,
    Constraint,
    Integer,
    Interval,
    NoneValue,
    check_each,
    collect,
    validate,
)
from xai.models.normalize import Normalize

__all__ = ["GAPCNN"]


class GAPCNN(nn.Module):
    """Convolution blocks, then global average pooling and one linear layer.

    ``normalize -> features -> pool (global average) -> dropout -> head (Linear)``.

    ``features`` is one flat ``nn.Sequential`` of blocks; each block is
    ``convs_per_block`` times ``Conv2d(kernel_size, padding="same") [-> BatchNorm2d] ->
    ReLU``, followed by ``MaxPool2d(2)`` in the first ``pool_blocks`` blocks (by default
    every block but the last). The last block is never pooled (7 x 7 for a 28 x 28 input
    with the defaults; 14 x 14 with ``pool_blocks=1``), so the class activation maps of its
    output are as fine as they can be; its final ReLU is the layer that ``layer=None``
    selects for every method, and the maps CAM weights by ``head.weight``.

    Args:
        in_channels: image channels (1 for MNIST-family data, 3 for RGB).
        num_classes: outputs of the head.
        channels: output channels of each block; their number is the number of blocks.
        convs_per_block: 3 x 3 convolutions per block.
        kernel_size: odd convolution kernel size.
        batch_norm: add ``BatchNorm2d`` after each convolution.
        dropout: dropout probability before the head (0 disables it).
        mean: per-channel means; with ``std``, a ``Normalize`` layer
            first, so the model takes images scaled to [0, 1].
        std: per-channel standard deviations (with ``mean``).
        pool_blocks: how many blocks, from the first, end with 2 x 2 max pooling (default:
            all but the last). Fewer pools give finer maps for more computation.

    ``model.config`` holds these arguments; ``xai.models.build("GAPCNN", model.config)``
    makes the same architecture again (to load a saved ``state_dict`` into).
    """

    #: Set on the embedded pretrained models (``xai.models.pretrained``); else ``None``.
    class_names: tuple[str, ...] | None
    input_size: tuple[int, ...] | None
    card: dict[str, Any] | None
    # Plain Python metadata: TorchScript compiles the network without it.
    __jit_ignored_attributes__ = ("class_names", "input_size", "card", "config")
    # ``channels`` is checked entry by entry; ``kernel_size`` must also be odd and
    # ``pool_blocks`` at most the blocks minus one. ``mean``/``std``: see ``Normalize``.
    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {
        "in_channels": [Integer(1)],
        "num_classes": [Integer(1)],
        "channels": [Integer(1)],
        "convs_per_block": [Integer(1)],
        "kernel_size": [Integer(1)],
        "batch_norm": [Boolean()],
        "dropout": [Interval(0.0, 1.0, high_open=True)],
        "pool_blocks": [Integer(0), NoneValue()],
    }

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32, 64),
        *,
        convs_per_block: int = 2,
        kernel_size: int = 3,
        batch_norm: bool = True,
        dropout: float = 0.0,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        pool_blocks: int | None = None,
    ) -> None:
        super().__init__()
        self.class_names = self.input_size = self.card = None
        where, constraints = type(self).__name__, collect(type(self))
        options = validate(
            where,
            constraints,
            in_channels=in_channels,
            num_classes=num_classes,
            convs_per_block=convs_per_block,
            kernel_size=kernel_size,
            batch_norm=batch_norm,
            dropout=dropout,
            pool_blocks=pool_blocks,
        )
        in_channels, num_classes = options["in_channels"], options["num_classes"]
        convs_per_block, kernel_size = options["convs_per_block"], options["kernel_size"]
        batch_norm, dropout = options["batch_norm"], options["dropout"]
        channels = check_each(channels, constraints["channels"], "channels", where)
        if not channels:
            raise XAIValueError(
                f"{where}: channels must be a non-empty sequence of positive ints; got {channels}"
            )
        pool_blocks = options["pool_blocks"]
        if pool_blocks is None:
            pool_blocks = len(channels) - 1
        if not 0 <= pool_blocks <= len(channels) - 1:
            raise XAIValueError(
                f"{where}: pool_blocks must be between 0 and {len(channels) - 1} (blocks "
                f"minus one); got {pool_blocks}"
            )
        if kernel_size % 2 == 0:
            raise XAIValueError(
                f"{where}: kernel_size must be a positive odd int; got {kernel_size}"
            )
        if (mean is None) != (std is None):
            raise XAIValueError("give both mean and std for in-model normalisation, or neither")

        self.config = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "channels": list(channels),
            "convs_per_block": convs_per_block,
            "kernel_size": kernel_size,
            "batch_norm": batch_norm,
            "dropout": dropout,
            "mean": mean,
            "std": std,
            "pool_blocks": pool_blocks,
        }
        self.normalize: nn.Module = (
            Normalize(mean, std) if mean is not None and std is not None else nn.Identity()
        )
        layers: list[nn.Module] = []
        previous = in_channels
        for index, width in enumerate(channels):
            for _ in range(convs_per_block):
                layers.append(
                    nn.Conv2d(previous, width, kernel_size, padding="same", bias=not batch_norm)
                )
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU())
                previous = width
            if index < pool_blocks:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        x = self.pool(x).flatten(1)
        return self.head(self.dropout(x))
