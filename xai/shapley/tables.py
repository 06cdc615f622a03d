"""Games given as a table of coalition values: from a mapping, a JSON file or a CSV file.

Every bad table is refused naming the coalition and where it is written (the CSV line;
the JSON entry ``values[i]`` and the coalition as written; the mapping key): a
coalition given twice, in any order or spelling, a value that is not a finite number
within +-1e300, a missing coalition. A file that is not UTF-8 text, not CSV or not JSON
is refused naming the file (and the JSON error's line and column). A table with more
features than ``max_features`` is refused before its rows are read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from xai.core.errors import XAIError, XAITypeError, XAIValueError
from xai.core.validate import Boolean, Constraint, Integer, NoneValue, collect, validate
from xai.shapley.game import Game, TooManyFeaturesError, coalition_index
from xai.shapley.table_files import read_table
from xai.shapley.table_values import (
    DENOMINATOR_BITS,
    MOST_FEATURES,
    Entry,
    Key,
    coalition_members,
    show_value,
    to_fraction,
    to_number,
)

__all__ = ["TableGame", "housing", "to_fraction"]


class TableGame(Game):
    """A game whose value is looked up in a table of all 2^n coalitions.

    Args:
        table: a mapping from coalitions to values, or the path of a JSON or CSV file.
            Coalitions are tuples, frozensets, lists or sets of feature indices (0..n-1)
            or feature names; ``()`` is the empty coalition. Every one of the 2^n
            coalitions must be present, once.
        feature_names: the players, in order. Without it, integer keys give players
            0..n-1 (named x0, x1, ...), and name keys give the names in the order they
            first appear, smaller coalitions first.
        exact: keep values as exact ``Fraction`` s (``True``), as floats (``False``), or
            exact only if some value already is a Fraction (``None``, the default).
        max_features: refuse a table of more features (before reading its rows);
            ``None``: no cap.

    JSON files hold ``{"features": [...], "values": [{"coalition": [...], "value": v},
    ...]}``; CSV files have one 0/1 column per feature and a ``value`` column. Values
    are numbers (or, in files, text: ``2/3``, ``1.5e3``), finite and at most 1e300 in
    magnitude.
    """

    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {
        "exact": [Boolean(), NoneValue()],
        "max_features": [Integer(1), NoneValue()],
    }
    _values_checked = True

    def __init__(
        self,
        table: Mapping[Key, Any] | str | Path,
        feature_names: Sequence[str] | None = None,
        *,
        exact: bool | None = None,
        max_features: int | None = None,
    ) -> None:
        options = validate(
            type(self).__name__, collect(type(self)), exact=exact, max_features=max_features
        )
        exact, max_features = options["exact"], options["max_features"]
        self.description = ""
        if isinstance(table, str | Path):
            entries, names_in_file, self.description = read_table(Path(table), max_features)
            feature_names = feature_names or names_in_file
        elif isinstance(table, Mapping):
            entries = [
                Entry(coalition_members(key), value, "", f"as the key {show_value(key)}")
                for key, value in table.items()
            ]
        else:
            raise XAITypeError(
                f"table must be a mapping from coalitions to values or a file path; got "
                f"{type(table).__name__}"
            )
        names = _feature_names([entry.members for entry in entries], feature_names, max_features)
        super().__init__(names)
        n = self.n
        position = {name: i for i, name in enumerate(names)}
        if exact is None:
            exact = any(isinstance(entry.value, Fraction) for entry in entries)
        first: dict[int, Entry] = {}  # coalition number -> where it was given
        values: dict[int, Any] = {}
        denominator = 1
        for entry in entries:
            number = 0
            for member in entry.members:
                i = _position(member, position, n, entry.where)
                if number >> i & 1:
                    raise XAIValueError(
                        f"{entry.where}coalition {show_value(entry.members)} names feature "
                        f"{show_value(member)} twice"
                    )
                number |= 1 << i
            if number in first:
                raise XAIValueError(
                    f"{entry.where}coalition {self._describe(number)} appears twice in the "
                    f"table, {first[number].ref} and {entry.ref}; keep one of them"
                )
            first[number] = entry
            try:
                value = to_number(entry.value, bool(exact))
            except XAIError as error:
                raise type(error)(
                    f"{entry.where}coalition {self._describe(number)}: {error}"
                ) from None
            if exact:
                denominator = math.lcm(denominator, value.denominator)
                if denominator.bit_length() > DENOMINATOR_BITS:
                    raise XAIValueError(
                        f"{entry.where}coalition {self._describe(number)}: the value "
                        f"{show_value(value)} brings the values' common denominator to more than "
                        f"300 digits; "
                        f"exact fractions that long are slow and unreadable: round the "
                        f"values, or compute in floating point (exact=False; --float on the "
                        f"command line)"
                    )
            values[number] = value
        if len(values) < 1 << n:
            missing = next(s for s in range(len(values) + 1) if s not in values)
            absent = (1 << n) - len(values)
            raise XAIValueError(
                f"coalition {self._describe(missing)} is missing: a table game on {n} "
                f"features needs all 2^{n} = {1 << n:,} coalitions, and {absent:,} of "
                f"them are absent"
            )
        ordered = [values[s] for s in range(1 << n)]
        self.table = np.array(ordered, dtype=object if exact else np.float64)

    def value(self, masks: np.ndarray) -> np.ndarray:
        return self.table[coalition_index(masks)]


def _position(member: Any, position: dict[str, int], n: int, where: str) -> int:
    if isinstance(member, int | np.integer) and not isinstance(member, bool):
        if not 0 <= member < n:
            raise XAIValueError(
                f"{where}feature index {show_value(member)} is out of range for {n} features"
            )
        return int(member)
    try:
        return position[member]
    except (KeyError, TypeError):
        listed = list(position) if n <= 30 else f"{n} names"
        raise XAIValueError(
            f"{where}unknown feature {show_value(member)}; the features are {listed}"
        ) from None


def _feature_names(
    coalitions: list[tuple[Any, ...]],
    feature_names: Sequence[str] | None,
    max_features: int | None,
) -> tuple[str, ...]:
    if feature_names is not None:
        names = tuple(str(n) for n in feature_names)
        if max_features is not None and len(names) > max_features:
            raise TooManyFeaturesError(len(names), max_features)
        if len(set(names)) != len(names):
            raise XAIValueError(f"feature names must be unique; got {list(names)}")
        return names
    members = [m for c in sorted(coalitions, key=len) for m in c]
    if all(isinstance(m, int | np.integer) and not isinstance(m, bool) for m in members):
        low = min((int(m) for m in members), default=0)
        if low < 0:
            raise XAIValueError(
                f"feature index {show_value(low)} is negative; indices number the features 0..n-1"
            )
        top = max((int(m) for m in members), default=-1)
        if top >= MOST_FEATURES:  # before anything is sized by it
            raise XAIValueError(
                f"feature index {show_value(top)} means a table of more than {MOST_FEATURES} "
                f"features, and a complete table of 2^{MOST_FEATURES} or more coalitions "
                f"cannot be held; number the features 0..n-1"
            )
        if max_features is not None and top + 1 > max_features:
            raise TooManyFeaturesError(top + 1, max_features)
        return tuple(f"x{i}" for i in range(top + 1))
    if any(not isinstance(m, str) for m in members):
        raise XAIValueError(
            "coalitions mix feature indices and names; pass feature_names=[...] to say "
            "which index is which name"
        )
    names = tuple(dict.fromkeys(members))
    if max_features is not None and len(names) > max_features:
        raise TooManyFeaturesError(len(names), max_features)
    return names


# ----------------------------------------------------------------------------- files


def housing(*, exact: bool | None = None) -> TableGame:
    """The textbook housing example: three features, v({}) = 20 ... v(all) = 30.

    Its Shapley values are 11/6, 10/3 and 29/6 for year built, floor area and
    neighbourhood safety: safety matters most. Shipped as ``xai/shapley/data/housing.json``.
    """
    source = resources.files("xai.shapley") / "data" / "housing.json"
    with resources.as_file(source) as path:
        return TableGame(path, exact=exact)
