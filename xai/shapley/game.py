"""What a cooperative game is, to the exact engine and the estimators.

Players are numbered 0..n-1; a coalition is a boolean mask over them, and coalition
number ``s`` (0 <= s < 2**n) has player i present when bit i of s is set. A game maps a
batch of masks, shape (k, n), to its values, shape (k,) or (k, outputs).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from xai.core.errors import XAITypeError, XAIValueError
from xai.core.validate import Constraint, Integer, NoneValue, collect, validate

__all__ = [
    "LARGEST_VALUE",
    "FunctionGame",
    "Game",
    "TooManyFeaturesError",
    "coalition_index",
    "coalition_masks",
]

# The largest magnitude a coalition's value may have. Far below a float's range (1.8e308),
# so that differences and weighted sums of values (the Shapley values, the interaction
# index, the efficiency check) cannot overflow to infinity.
LARGEST_VALUE = 1e300
_LARGEST_FRACTION = Fraction(LARGEST_VALUE)


def _size(count: int) -> str:
    """A count with thousands separators, or as a power of ten when it is astronomical."""
    return f"{count:,}" if count < 10**18 else f"about 10^{len(str(count)) - 1}"


def _bytes(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if count < 1024 or unit == "EiB":
            break
        count //= 1024
    return f"{_size(count)} {unit}"


class TooManyFeaturesError(XAIValueError):
    """A game too large to enumerate: exact values need all 2^n coalitions, n > the cap.

    It keeps ``n``, ``max_features`` and ``per_coalition`` so that a caller with another
    spelling of the option (the command line's ``--max-features``) can say it its way
    (``spelled``).
    """

    def __init__(
        self,
        n: int,
        max_features: int,
        per_coalition: int = 1,
        option: str = "max_features={}",
        alternative: str = "estimate with xai.shapley.permutation_shapley or "
        "xai.shapley.kernel_shap",
    ) -> None:
        self.n, self.max_features, self.per_coalition = n, max_features, per_coalition
        self.option, self.alternative = option, alternative
        total = 1 << n if n <= 4096 else 0
        count = _size(total) if total else f"about 10^{n * 30103 // 100000:,}"
        if n > 10**100:
            count = "astronomically many"
        cost = ""
        if per_coalition > 1 and total:
            cost = (
                f" ({_size(total * per_coalition)} model evaluations, {per_coalition:,} per "
                f"coalition)"
            )
        memory = (
            f"{_bytes(8 * total)} as floats for each output, about {_bytes(100 * total)} as "
            f"exact fractions"
            if total
            else "more than any machine has"
        )
        super().__init__(
            f"exact Shapley values over n = {_shown(n)} features need all 2^{_shown(n)} = {count} "
            f"coalitions{cost}; the cap is {option.format(max_features)}. Enumerating them "
            f"costs 2^{_shown(n)} = {count} evaluations of the game and memory for "
            f"2^{_shown(n)} values ({memory}). "
            f"Pass {option.format(_shown(n))} to run it anyway, or {alternative}."
        )

    def spelled(self, option: str, alternative: str) -> TooManyFeaturesError:
        """The same refusal, naming the option as ``option`` (``"--max-features {}"``)."""
        return TooManyFeaturesError(
            self.n, self.max_features, self.per_coalition, option, alternative
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.n, self.max_features, self.per_coalition, self.option, self.alternative),
        )


def bad_value(value: Any) -> str | None:
    """Why ``value`` cannot be a coalition's value (not a number, not finite, beyond
    +-``LARGEST_VALUE``), or ``None`` if it can."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return None  # a bool output counts as 0 or 1 (numpy does the same)
    if isinstance(value, int):
        large = abs(value) > LARGEST_VALUE
    elif isinstance(value, Fraction):
        large = abs(value) > _LARGEST_FRACTION
    elif isinstance(value, float):
        if not math.isfinite(value):
            return f"{value!r}, not a finite number"
        large = abs(value) > LARGEST_VALUE
    elif isinstance(value, Decimal):
        if not value.is_finite():
            return f"{value}, not a finite number"
        large = value.adjusted() >= 300 and abs(value) > Decimal(LARGEST_VALUE)
    elif isinstance(value, numbers.Real):
        try:
            number = float(value)
        except (OverflowError, ValueError, TypeError):
            return f"{_shown(value)}, not a number xai can use"
        if not math.isfinite(number):
            return f"{_shown(value)}, not a finite number"
        large = abs(number) > LARGEST_VALUE
    else:
        return f"{_shown(value)} ({type(value).__name__}), not a number"
    if large:
        return f"{_shown(value)}, beyond the largest magnitude a value may have (1e300)"
    return None


def _shown(value: Any, limit: int = 60) -> str:
    """``value`` for a message, shortened; never fails on an integer too long to write."""
    try:
        text = str(value) if isinstance(value, Fraction) else repr(value)
    except ValueError:  # Python writes out integers of at most 4,300 digits
        text = "a number of more than 4,300 digits"
    return text if len(text) <= limit else text[: limit - 3] + "..."


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

    Subclasses implement ``value``; calling the game validates masks and output: every
    value must be a finite number (at most ``LARGEST_VALUE`` = 1e300 in magnitude), and a
    NaN or an infinity is refused naming its coalition.
    """

    # True where ``value`` only returns values checked when the game was built (tables).
    _values_checked: ClassVar[bool] = False

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

    @property
    def instance(self) -> np.ndarray | None:
        """The explained instance's feature values, (n,), when the game knows them (a
        ``ModelGame``); ``None`` for a game given as a table or a set function. The
        engines store it as ``ShapleyResult.data``."""
        return None

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
        if not self._values_checked:
            self._check_values(masks, out)
        return out

    def _check_values(self, masks: np.ndarray, out: np.ndarray) -> None:
        kind = out.dtype.kind
        if kind in "biu":
            return
        if kind not in "fO":
            raise XAITypeError(
                f"{type(self).__name__} must return real numbers for its coalitions; got "
                f"values of dtype {out.dtype}"
            )
        rows = out.reshape(len(out), -1)
        if kind == "f":
            fine = np.isfinite(rows)
            with np.errstate(invalid="ignore"):
                fine &= np.abs(rows) <= LARGEST_VALUE
            if fine.all():
                return
            row = int(np.argmin(fine.all(axis=1)))
            reason = bad_value(rows[row][~fine[row]][0])
        else:
            found = next(
                ((r, why) for r, row in enumerate(rows) for x in row if (why := bad_value(x))),
                None,
            )
            if found is None:
                return
            row, reason = found
        raise XAIValueError(
            f"{type(self).__name__}: the value of the coalition {self._describe(masks[row])} "
            f"is {reason}; every coalition needs a finite value (within +-1e300). Find why "
            f"the model or value function gives it (a NaN or infinite output, a division by "
            f"zero, the log of 0) and make it finite there"
        )

    def _describe(self, coalition: int | np.ndarray) -> str:
        """A coalition, given by its number or its boolean mask, as ``{a, b}``."""
        if isinstance(coalition, int | np.integer):
            number = int(coalition)
            members = [name for i, name in enumerate(self.feature_names) if number >> i & 1]
        else:
            members = [self.feature_names[i] for i in np.flatnonzero(coalition)]
        if len(members) > 12:
            members = [*members[:10], f"... ({len(members)} of the {self.n} players)"]
        return "{" + ", ".join(members) + "}"

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
