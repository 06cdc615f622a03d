"""A plain deep neural network: the baseline a CNN is compared against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from xai.core.errors import XAIValueError
from xai.core.validate import Constraint, Integer, Interval, check_each, collect, validate
from xai.models.normalize import Normalize

__all__ = ["MLP"]


class MLP(nn.Module):
    """Flatten, fully connected hidden layers with ReLU, then a linear head.

    ``normalize -> flatten -> [Linear -> ReLU (-> Dropout)] * len(hidden) -> head``.
    With no convolutions it has no feature maps, so CAM methods do not apply; it is the
    "DNN" side of CNN-vs-DNN comparisons (and a Shapley/gradient target).

    Args:
        in_features: inputs after flattening (784 for 1 x 28 x 28 images).
        num_classes: outputs of the head.
        hidden: widths of the hidden layers (may be empty: logistic regression).
        dropout: dropout probability after each hidden layer (0 disables it).
        mean: per-channel means; with ``std``, a ``Normalize`` layer
            first.
        std: per-channel standard deviations (with ``mean``).
    """

    #: Set on the embedded pretrained models (``xai.models.pretrained``); else ``None``.
    class_names: tuple[str, ...] | None
    input_size: tuple[int, ...] | None
    card: dict[str, Any] | None
    # Plain Python metadata: TorchScript compiles the network without it.
    __jit_ignored_attributes__ = ("class_names", "input_size", "card", "config")
    # ``hidden`` is checked entry by entry. ``mean``/``std``: see ``Normalize``.
    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {
        "in_features": [Integer(1)],
        "num_classes": [Integer(1)],
        "hidden": [Integer(1)],
        "dropout": [Interval(0.0, 1.0, high_open=True)],
    }

    def __init__(
        self,
        in_features: int = 784,
        num_classes: int = 10,
        hidden: Sequence[int] = (256, 128),
        *,
        dropout: float = 0.0,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.class_names = self.input_size = self.card = None
        where, constraints = type(self).__name__, collect(type(self))
        options = validate(
            where, constraints, in_features=in_features, num_classes=num_classes, dropout=dropout
        )
        in_features, num_classes = options["in_features"], options["num_classes"]
        dropout = options["dropout"]
        hidden = check_each(hidden, constraints["hidden"], "hidden", where)
        if (mean is None) != (std is None):
            raise XAIValueError("give both mean and std for in-model normalisation, or neither")
        self.config = {
            "in_features": in_features,
            "num_classes": num_classes,
            "hidden": list(hidden),
            "dropout": dropout,
            "mean": mean,
            "std": std,
        }
        self.normalize: nn.Module = (
            Normalize(mean, std) if mean is not None and std is not None else nn.Identity()
        )
        self.in_features = in_features
        self.flatten = nn.Flatten()
        layers: list[nn.Module] = []
        previous = in_features
        for width in hidden:
            layers += [nn.Linear(previous, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            previous = width
        self.hidden = nn.Sequential(*layers)
        self.head = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.normalize(x))
        if x.shape[1] != self.in_features:
            raise XAIValueError(
                f"MLP expects {self.in_features} input features after flattening; got "
                f"{x.shape[1]} (input shape {list(x.shape)}). Set in_features to C*H*W."
            )
        return self.head(self.hidden(x))
