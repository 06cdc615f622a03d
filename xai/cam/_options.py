"""Validation of the small numeric options that several methods take."""

from __future__ import annotations

import operator

__all__ = ["positive_int"]


def positive_int(value: object, name: str, method: str) -> int:
    """``value`` as an int >= 1, or a ValueError naming the option and the method."""
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{method}: {name} must be a positive int; got {type(value).__name__} {value!r}"
        ) from None
    if isinstance(value, bool) or number < 1:
        raise ValueError(f"{method}: {name} must be a positive int; got {value!r}")
    return number
