"""Option validation, declared once per class.

A class lists its options' constraints in one table (as scikit-learn's
``_parameter_constraints``); ``validate`` checks values against it and returns them
normalised (``numpy.int64(3)`` -> ``3``). A value of no accepted type is a
``XAITypeError``; a value of an accepted type outside its range is a ``XAIValueError``.
Both name the option, where it was given, what is accepted and what was received.

    >>> from xai.core.validate import Integer, validate
    >>> validate("ScoreCAM", {"batch_size": [Integer(1)]}, batch_size=64)
    {'batch_size': 64}
    >>> validate("ScoreCAM", {"batch_size": [Integer(1)]}, batch_size=0)
    Traceback (most recent call last):
    ...
    xai.core.errors.XAIValueError: ScoreCAM: batch_size must be a positive int; got 0.
"""

from __future__ import annotations

import math
import numbers
import operator
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from xai.core.errors import XAITypeError, XAIValueError

__all__ = [
    "Boolean",
    "CallableOf",
    "Constraint",
    "Integer",
    "Interval",
    "Literal",
    "NoneValue",
    "Real",
    "check",
    "check_each",
    "collect",
    "positive_int",
    "validate",
]


class Constraint(ABC):
    """One accepted kind of value for an option."""

    @abstractmethod
    def describe(self) -> str:
        """What is accepted, as a phrase: ``"an int >= 1"``."""

    @abstractmethod
    def matches_type(self, value: Any) -> bool:
        """Whether ``value`` is of the accepted type (range not yet checked)."""

    def convert(self, value: Any) -> Any:
        """The normalised value; raise ``XAIValueError`` (message without prefix) if out
        of range. Called only when ``matches_type(value)``."""
        return value


class NoneValue(Constraint):
    """``None`` is accepted (usually meaning "automatic")."""

    def describe(self) -> str:
        return "None"

    def matches_type(self, value: Any) -> bool:
        return value is None


class Boolean(Constraint):
    """``True`` or ``False`` (numpy booleans too; never ints or strings)."""

    def describe(self) -> str:
        return "a bool"

    def matches_type(self, value: Any) -> bool:
        return isinstance(value, bool) or type(value).__name__ == "bool_"

    def convert(self, value: Any) -> bool:
        return bool(value)


class Integer(Constraint):
    """An integer (not a bool) in ``[low, high]``; either bound may be ``None``."""

    def __init__(self, low: int | None = None, high: int | None = None) -> None:
        self.low, self.high = low, high

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"an int between {self.low} and {self.high}"
        if self.low in (0, 1) and self.high is None:
            return "a positive int" if self.low == 1 else "a non-negative int"
        if self.low is not None:
            return f"an int >= {self.low}"
        if self.high is not None:
            return f"an int <= {self.high}"
        return "an int"

    def matches_type(self, value: Any) -> bool:
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            return False
        try:
            operator.index(value)
        except TypeError:
            return False
        return True

    def convert(self, value: Any) -> int:
        number = operator.index(value)
        if (self.low is not None and number < self.low) or (
            self.high is not None and number > self.high
        ):
            raise XAIValueError(self.describe())
        return number


class Real(Constraint):
    """A finite real number (ints accepted) in a range; bounds open or closed."""

    def __init__(
        self,
        low: float | None = None,
        high: float | None = None,
        *,
        low_open: bool = False,
        high_open: bool = False,
    ) -> None:
        self.low, self.high = low, high
        self.low_open, self.high_open = low_open, high_open

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return "a finite number" + (" " + " and ".join(parts) if parts else "")

    def matches_type(self, value: Any) -> bool:
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            return False
        return isinstance(value, numbers.Real)

    def convert(self, value: Any) -> float:
        number = float(value)
        bad = not math.isfinite(number)
        if self.low is not None:
            bad |= number <= self.low if self.low_open else number < self.low
        if self.high is not None:
            bad |= number >= self.high if self.high_open else number > self.high
        if bad:
            raise XAIValueError(self.describe())
        return number


class Literal(Constraint):
    """One of a few strings (compared exactly)."""

    def __init__(self, *options: str) -> None:
        self.options = options

    def describe(self) -> str:
        return " or ".join(repr(o) for o in self.options)

    def matches_type(self, value: Any) -> bool:
        return isinstance(value, str)

    def convert(self, value: Any) -> str:
        if value not in self.options:
            raise XAIValueError(self.describe())
        return value


class CallableOf(Constraint):
    """A callable; ``what`` says what it maps, e.g. ``"a callable (tokens) -> maps"``."""

    def __init__(self, what: str = "a callable") -> None:
        self.what = what

    def describe(self) -> str:
        return self.what

    def matches_type(self, value: Any) -> bool:
        return callable(value)


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return text


def check(
    value: Any, constraints: Sequence[Constraint], name: str, where: str | None = None
) -> Any:
    """``value`` normalised by the first constraint whose type it has; else an error."""
    prefix = f"{where}: " if where else ""
    accepted = " or ".join(c.describe() for c in constraints)
    range_errors = []
    for constraint in constraints:
        if constraint.matches_type(value):
            try:
                return constraint.convert(value)
            except XAIValueError:
                range_errors.append(constraint)
    if range_errors:
        raise XAIValueError(f"{prefix}{name} must be {accepted}; got {_shown(value)}.")
    kind = "the bool" if isinstance(value, bool) else type(value).__name__
    raise XAITypeError(f"{prefix}{name} must be {accepted}; got {kind} {_shown(value)}.")


def validate(
    where: str, constraints: Mapping[str, Sequence[Constraint]], **values: Any
) -> dict[str, Any]:
    """Check every ``values[name]`` against ``constraints[name]``; return them normalised.

    A name without constraints is a bug in the caller (every option is declared).
    """
    out = {}
    for name, value in values.items():
        out[name] = check(value, constraints[name], name, where)
    return out


def positive_int(value: object, name: str, where: str | None = None) -> int:
    """``value`` as an int >= 1 (the most common constraint, as one call)."""
    return int(check(value, [Integer(1)], name, where))


class Interval(Real):
    """A finite number in ``[low, high]``; ``low_open`` / ``high_open`` exclude a bound."""

    def __init__(
        self, low: float, high: float, *, low_open: bool = False, high_open: bool = False
    ) -> None:
        super().__init__(low, high, low_open=low_open, high_open=high_open)

    def describe(self) -> str:
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


def check_each(
    values: Any,
    constraints: Sequence[Constraint],
    name: str,
    where: str,
    *,
    length: int | None = None,
) -> tuple[Any, ...]:
    """``values`` (a list, tuple or array, not a string) with every entry checked against
    ``constraints`` and normalised; an error names the entry (``channels[1]``)."""
    accepted = " or ".join(c.describe() for c in constraints)
    what = f"{length} entries" if length is not None else "entries"
    if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        raise XAITypeError(
            f"{where}: {name} must be a sequence of {what}, each {accepted}; got "
            f"{type(values).__name__} {values!r}."
        )
    if length is not None and len(values) != length:
        raise XAIValueError(
            f"{where}: {name} must have {length} entries, each {accepted}; got {values!r}."
        )
    return tuple(check(value, constraints, f"{name}[{i}]", where) for i, value in enumerate(values))


def collect(cls: type, attribute: str = "constraints") -> dict[str, Sequence[Constraint]]:
    """The constraint tables of ``cls`` and its bases merged (subclasses win)."""
    table: dict[str, Sequence[Constraint]] = {}
    for klass in reversed(cls.__mro__):
        table.update(klass.__dict__.get(attribute, {}))
    return table
