"""What a cooperative game is, to the exact engine and the estimators.

Players are numbered 0..n-1; a coalition is a boolean mask over them, and coalition
number ``s`` (0 <= s < 2**n) has player i present when bit i of s is set. A game maps a
batch of masks, shape (k, n), to its values, shape (k,) or (k, outputs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from xai.core.errors import XAITypeError, XAIValueError
from xai.core.validate import Constraint, Integer, NoneValue, collect, validate

__all__ = ["FunctionGame", "Game", "coalition_index", "coalition_masks"]


def coalition_masks(start: int, stop: int, n: int) -> np.ndarray:
    """Boolean masks (stop - start, n) of coalitions number start..stop-1."""
    numbers = np.arange(start, stop, dtype=np.int64)
    return ((numbers[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(bool)


def coalition_index(masks: np.ndarray) -> np.ndarray:
    """The coalition number of each boolean mask row (the inverse of coalition_masks)."""
    n = masks.shape[1]
    return masks.astype(np.int64) @ (np.int64(1) << np.arange(n, dtype=np.int64))


def _names(feature_names: Sequence[str] | None, n: int | None, what: str) -> tuple[str, ...]:
    if feature_names is not None:
        names = tuple(str(name) for name in feature_names)
        if n is not None and len(names) != n:
            raise XAIValueError(f"{what}: got {len(names)} feature names for {n} features")
        if len(set(names)) != len(names):
            raise XAIValueError(f"{what}: feature names must be unique; got {list(names)}")
        return names
    if n is None:
        raise XAIValueError(
            f"{what}: the number of players is unknown; pass feature_names=[...] or n_features=N."
        )
    return tuple(f"x{i}" for i in range(n))


class Game(ABC):
    """A cooperative game on ``n`` players with a value for every coalition.

    Subclasses implement ``value``; calling the game validates masks and output.
    """

    def __init__(self, feature_names: Sequence[str]) -> None:
        self.feature_names = tuple(feature_names)
        if not self.feature_names:
            raise XAIValueError("a game needs at least one player (feature)")

    @property
    def n(self) -> int:
        """The number of players."""
        return len(self.feature_names)

    @property
    def evaluations_per_coalition(self) -> int:
        """Model evaluations one coalition costs (background rows); 1 for tables."""
        return 1

    @property
    def preferred_chunk(self) -> int:
        """How many coalitions to ask for per call, to bound memory."""
        return 1 << 14

    @abstractmethod
    def value(self, masks: np.ndarray) -> np.ndarray:
        """Values of the coalitions given as a (k, n) boolean array."""

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 2 or masks.shape[1] != self.n:
            raise XAIValueError(
                f"coalitions must be a (k, {self.n}) boolean array; got shape {masks.shape}"
            )
        out = np.asarray(self.value(masks))
        if out.ndim not in (1, 2) or out.shape[0] != masks.shape[0]:
            raise XAIValueError(
                f"{type(self).__name__} must return ({masks.shape[0]},) or "
                f"({masks.shape[0]}, outputs) values for {masks.shape[0]} coalitions; got "
                f"shape {out.shape}"
            )
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, features={list(self.feature_names)})"


class FunctionGame(Game):
    """A game given by a value function on batches of coalitions.

    Args:
        fn: maps a (k, n) boolean mask array to (k,) or (k, outputs) values.
        feature_names: names of the n players; or give ``n_features``.
        n_features: the number of players, when there are no names.
    """

    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {
        "n_features": [Integer(1), NoneValue()],
    }

    def __init__(
        self,
        fn: Callable[[np.ndarray], Any],
        feature_names: Sequence[str] | None = None,
        n_features: int | None = None,
    ) -> None:
        if not callable(fn):
            raise XAITypeError(f"fn must be callable on (k, n) masks; got {type(fn).__name__}")
        where = type(self).__name__
        n_features = validate(where, collect(type(self)), n_features=n_features)["n_features"]
        super().__init__(_names(feature_names, n_features, where))
        self.fn = fn

    def value(self, masks: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(masks))
