"""The values and coalitions of a table game, parsed and checked.

A value is an int, a float, a ``Decimal``, a ``Fraction`` or text (an integer, a decimal,
a fraction such as ``2/3``): it must be a finite number within +-1e300, and text at most
``LONGEST_TEXT`` characters. Exact tables keep ``Fraction``s, whose common denominator
stays under ``DENOMINATOR_BITS`` bits. A coalition is any collection of feature indices
or names (``coalition_members``). Used by ``xai.shapley.tables`` and ``xai.shapley.table_files``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from numbers import Real
from typing import Any, NamedTuple

import numpy as np

from xai.core.errors import XAITypeError, XAIValueError
from xai.shapley.game import LARGEST_VALUE, bad_value

__all__ = [
    "DENOMINATOR_BITS",
    "FIX_NUMBER",
    "LONGEST_TEXT",
    "MOST_FEATURES",
    "Entry",
    "Key",
    "clip_text",
    "coalition_members",
    "fix_hint",
    "show_value",
    "to_fraction",
    "to_number",
]

# More features than this cannot have a complete table (2^63 coalitions).
MOST_FEATURES = 62

Key = Any  # a tuple / frozenset / list / set of indices or names, or one index or name

# A value written as text has at most this many characters (1e-300 written out in full
# fits): longer ones are refused before they are parsed.
LONGEST_TEXT = 1000
# In exact arithmetic, the values' common denominator has at most this many bits (about
# 300 digits): the Shapley values' denominators then stay short enough to compute with
# and to print.
DENOMINATOR_BITS = 1024
FIX_NUMBER = "write an integer, a decimal such as -0.25 or 1.5e3, or a fraction such as 2/3"


def to_fraction(value: Any) -> Fraction:
    """An exact Fraction for a number: floats by their shortest decimal (0.1 -> 1/10).

    Strings may be integers, decimals (``1.5e3``) or fractions (``2/3``). NaN, infinity,
    magnitudes beyond 1e300 and strings that are not numbers are refused.
    """
    return to_number(value, exact=True)


def to_number(value: Any, exact: bool) -> Any:
    """``value`` as a Fraction (``exact``) or a float; an ``XAIError`` saying why not."""
    if isinstance(value, Fraction) and exact:
        number: Any = value
    else:
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool):
            raise XAITypeError(f"a coalition value must be a number; got the bool {value}")
        if isinstance(value, str):
            return _parse(value, exact)
        if not isinstance(value, Real | Decimal):
            raise XAITypeError(
                f"a coalition value must be a number; got {type(value).__name__} "
                f"{show_value(value)}"
            )
        if isinstance(value, Decimal) and value.is_finite():
            _check_decimal(value, clip_text(str(value)))
        why = bad_value(value)
        if why is not None:
            raise XAIValueError(f"the value is {why}; {fix_hint(why)}")
        if not exact:
            return float(value)
        if isinstance(value, float):
            number = Fraction(repr(value))
        elif isinstance(value, int | Fraction | Decimal):
            number = Fraction(value)
        else:
            number = Fraction(repr(float(value)))
    why = bad_value(number)
    if why is not None:
        raise XAIValueError(f"the value is {why}; {fix_hint(why)}")
    return number


def fix_hint(why: str) -> str:
    if "finite" in why:
        return "every coalition needs a finite value: write the coalition's value instead"
    return "rescale the table (thousands or millions instead of units)"


def _parse(text: str, exact: bool) -> Any:
    """A value written as text: an integer, a decimal (with an exponent) or ``p/q``."""
    text = text.strip()
    shown = show_value(text)
    if len(text) > LONGEST_TEXT:
        raise XAIValueError(
            f"the value {shown} has {len(text):,} characters; a value is at most "
            f"{LONGEST_TEXT:,}: round it"
        )
    if not exact:  # the common case first: a plain decimal
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if 1e-300 <= abs(number) <= LARGEST_VALUE:  # else the checks below say why
                return number
    if "/" in text:
        top, _, bottom = text.partition("/")
        try:
            fraction = Fraction(int(top), int(bottom))
        except (ValueError, ZeroDivisionError):
            raise XAIValueError(f"the value {shown} is not a number; {FIX_NUMBER}") from None
    else:
        try:
            decimal = Decimal(text)
        except InvalidOperation:
            raise XAIValueError(f"the value {shown} is not a number; {FIX_NUMBER}") from None
        if not decimal.is_finite():
            raise XAIValueError(f"the value is {shown}, not a finite number; {fix_hint('finite')}")
        _check_decimal(decimal, shown)
        fraction = Fraction(decimal)
    why = bad_value(fraction)
    if why is not None:
        raise XAIValueError(f"the value is {shown}, {why.partition(', ')[2]}; {fix_hint(why)}")
    return fraction if exact else float(fraction)


def _check_decimal(decimal: Decimal, shown: str) -> None:
    """Refuse exponents that would make an exact Fraction huge (``1e-999999999``)."""
    if decimal.adjusted() > 300:
        raise XAIValueError(
            f"the value is {shown}, beyond the largest magnitude a value may have (1e300); "
            f"{fix_hint('')}"
        )
    if decimal.as_tuple().exponent < -LONGEST_TEXT:  # type: ignore[operator]
        raise XAIValueError(
            f"the value {shown} has more than {LONGEST_TEXT:,} decimal places: round it"
        )


def show_value(value: Any) -> str:
    """``repr(value)``, shortened; never fails on an integer too long to write out."""
    try:
        return clip_text(str(value) if isinstance(value, Fraction) else repr(value))
    except ValueError:  # Python writes out integers of at most 4,300 digits
        return "a number of more than 4,300 digits"


def clip_text(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def coalition_members(key: Key) -> tuple[Any, ...]:
    if isinstance(key, str | int | np.integer):
        return (key,)
    if isinstance(key, Iterable):
        return tuple(key)
    raise XAITypeError(
        f"a coalition must be a tuple or frozenset of feature indices or names; got "
        f"{type(key).__name__} {show_value(key)}"
    )


class Entry(NamedTuple):
    """One coalition as given, with where it was given (for error messages)."""

    members: tuple[Any, ...]
    value: Any
    where: str  # the prefix of an error about it: "game.csv:7: ", "game.json: values[3]: "
    ref: str  # how a duplicate names it: "on line 7", 'as values[3] ["a", "b"]'
