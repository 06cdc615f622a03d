"""Validation of the small numeric options that methods and metrics take."""

from __future__ import annotations

import operator

__all__ = ["positive_int"]


def positive_int(value: object, name: str, where: str | None = None) -> int:
    """``value`` as an int >= 1, or an error naming the option (and the method or metric
    ``where`` it was given): TypeError for a non-integer or a bool, ValueError below 1."""
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool):
        raise TypeError(f"{prefix}{name} must be a positive int; got the bool {value}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{prefix}{name} must be a positive int; got {type(value).__name__} {value!r}"
        ) from None
    if number < 1:
        raise ValueError(f"{prefix}{name} must be a positive int; got {value!r}")
    return number
