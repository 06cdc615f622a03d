"""Games given as a table of coalition values: from a mapping, a JSON file or a CSV file."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from numbers import Number
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from xai.core.errors import XAIFileNotFoundError, XAITypeError, XAIValueError
from xai.core.validate import Boolean, Constraint, NoneValue, collect, validate
from xai.shapley.game import Game, coalition_index

__all__ = ["TableGame", "housing", "to_fraction"]

Key = Any  # a tuple / frozenset / list / set of indices or names, or one index or name


def to_fraction(value: Any) -> Fraction:
    """An exact Fraction for a number: floats by their shortest decimal (0.1 -> 1/10)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        raise XAITypeError(f"a coalition value must be a number; got the bool {value}")
    if isinstance(value, int | Decimal):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(repr(value))
    if isinstance(value, str):
        return Fraction(value.strip())
    raise XAITypeError(f"a coalition value must be a number; got {type(value).__name__} {value!r}")


def _members(key: Key) -> tuple[Any, ...]:
    if isinstance(key, str | int | np.integer):
        return (key,)
    if isinstance(key, Iterable):
        return tuple(key)
    raise XAITypeError(
        f"a coalition must be a tuple or frozenset of feature indices or names; got "
        f"{type(key).__name__} {key!r}"
    )


class TableGame(Game):
    """A game whose value is looked up in a table of all 2^n coalitions.

    Args:
        table: a mapping from coalitions to values, or the path of a JSON or CSV file.
            Coalitions are tuples, frozensets, lists or sets of feature indices (0..n-1)
            or feature names; ``()`` is the empty coalition. Every one of the 2^n
            coalitions must be present.
        feature_names: the players, in order. Without it, integer keys give players
            0..n-1 (named x0, x1, ...), and name keys give the names in the order they
            first appear, smaller coalitions first.
        exact: keep values as exact ``Fraction`` s (``True``), as floats (``False``), or
            exact only if some value already is a Fraction (``None``, the default).

    JSON files hold ``{"features": [...], "values": [{"coalition": [...], "value": v},
    ...]}``; CSV files have one 0/1 column per feature and a ``value`` column.
    """

    constraints: ClassVar[dict[str, Sequence[Constraint]]] = {"exact": [Boolean(), NoneValue()]}

    def __init__(
        self,
        table: Mapping[Key, Any] | str | Path,
        feature_names: Sequence[str] | None = None,
        *,
        exact: bool | None = None,
    ) -> None:
        exact = validate(type(self).__name__, collect(type(self)), exact=exact)["exact"]
        self.description = ""
        if isinstance(table, str | Path):
            table, names_in_file, self.description = _read(Path(table))
            feature_names = feature_names or names_in_file
        if not isinstance(table, Mapping):
            raise XAITypeError(
                f"table must be a mapping from coalitions to values or a file path; got "
                f"{type(table).__name__}"
            )
        coalitions = [(_members(key), value) for key, value in table.items()]
        names = _feature_names(coalitions, feature_names)
        super().__init__(names)
        n = len(names)
        position = {name: i for i, name in enumerate(names)}
        exact = any(isinstance(v, Fraction) for _, v in coalitions) if exact is None else exact
        values: list[Any] = [None] * (1 << n)
        for members, value in coalitions:
            number = 0
            for member in members:
                i = _position(member, position, n)
                if number >> i & 1:
                    raise XAIValueError(f"coalition {members!r} names feature {member!r} twice")
                number |= 1 << i
            if values[number] is not None:
                raise XAIValueError(
                    f"coalition {self._describe(number)} appears twice in the table"
                )
            values[number] = to_fraction(value) if exact else _to_float(value)
        missing = [s for s, value in enumerate(values) if value is None]
        if missing:
            raise XAIValueError(
                f"coalition {self._describe(missing[0])} is missing: a table game on {n} "
                f"features needs all 2^{n} = {1 << n} coalitions, and {len(missing)} of "
                f"them are absent"
            )
        self.table = np.array(values, dtype=object if exact else np.float64)

    def _describe(self, number: int) -> str:
        members = [self.feature_names[i] for i in range(self.n) if number >> i & 1]
        return "{" + ", ".join(members) + "}"

    def value(self, masks: np.ndarray) -> np.ndarray:
        return self.table[coalition_index(masks)]


def _to_float(value: Any) -> float:
    if isinstance(value, bool | np.bool_):
        raise XAITypeError(f"a coalition value must be a number; got the bool {value}")
    if not isinstance(value, Number | str | np.generic):
        raise XAITypeError(f"a coalition value must be a number; got {type(value).__name__}")
    return float(value)  # type: ignore[arg-type]


def _position(member: Any, position: dict[str, int], n: int) -> int:
    if isinstance(member, int | np.integer) and not isinstance(member, bool):
        if not 0 <= member < n:
            raise XAIValueError(f"feature index {member} is out of range for {n} features")
        return int(member)
    if member in position:
        return position[member]
    raise XAIValueError(f"unknown feature {member!r}; the features are {list(position)}")


def _feature_names(
    coalitions: list[tuple[tuple[Any, ...], Any]], feature_names: Sequence[str] | None
) -> tuple[str, ...]:
    if feature_names is not None:
        names = tuple(str(n) for n in feature_names)
        if len(set(names)) != len(names):
            raise XAIValueError(f"feature names must be unique; got {list(names)}")
        return names
    members = [m for c, _ in sorted(coalitions, key=lambda c: len(c[0])) for m in c]
    if all(isinstance(m, int | np.integer) and not isinstance(m, bool) for m in members):
        n = max((int(m) for m in members), default=-1) + 1
        return tuple(f"x{i}" for i in range(n))
    if any(not isinstance(m, str) for m in members):
        raise XAIValueError(
            "coalitions mix feature indices and names; pass feature_names=[...] to say "
            "which index is which name"
        )
    return tuple(dict.fromkeys(members))


def _read(path: Path) -> tuple[dict[tuple[Any, ...], Any], list[str], str]:
    if not path.is_file():
        raise XAIFileNotFoundError(f"no coalition table at {path}")
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text())
        try:
            names = [str(n) for n in data["features"]]
            table = {tuple(row["coalition"]): row["value"] for row in data["values"]}
        except (KeyError, TypeError) as error:
            raise XAIValueError(
                f"{path}: a coalition table in JSON needs 'features' (a list of names) and "
                f"'values' (a list of {{'coalition': [...], 'value': v}}); missing {error}"
            ) from None
        return table, names, str(data.get("description", ""))
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows or rows[0][-1].strip() != "value":
            raise XAIValueError(
                f"{path}: a coalition table in CSV needs a header of feature names and a "
                f"last column named 'value'"
            )
        names = [n.strip() for n in rows[0][:-1]]
        table = {}
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != len(names) + 1 or any(c.strip() not in ("0", "1") for c in row[:-1]):
                raise XAIValueError(
                    f"{path}:{line}: expected {len(names)} columns of 0/1 and a value; got {row}"
                )
            members = tuple(n for n, c in zip(names, row, strict=False) if c.strip() == "1")
            table[members] = row[-1].strip()
        return table, names, ""
    raise XAIValueError(f"{path}: coalition tables are read from .json or .csv files")


def housing(*, exact: bool | None = None) -> TableGame:
    """The textbook housing example: three features, v({}) = 20 ... v(all) = 30.

    Its Shapley values are 11/6, 10/3 and 29/6 for year built, floor area and
    neighbourhood safety: safety matters most. Shipped as ``xai/shapley/data/housing.json``.
    """
    source = resources.files("xai.shapley") / "data" / "housing.json"
    with resources.as_file(source) as path:
        return TableGame(path, exact=exact)
