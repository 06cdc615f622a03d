"""Games given as a table of coalition values: from a mapping, a JSON file or a CSV file.

Every bad table is refused naming the coalition and where it is written (the CSV line;
the JSON entry ``values[i]`` and the coalition as written; the mapping key): a
coalition given twice, in any order or spelling, a value that is not a finite number
within +-1e300, a missing coalition. A file that is not UTF-8 text, not CSV or not JSON
is refused naming the file (and the JSON error's line and column). A table with more
features than ``max_features`` is refused before its rows are read.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from importlib import resources
from numbers import Real
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from xai.core.errors import XAIError, XAIFileNotFoundError, XAITypeError, XAIValueError
from xai.core.validate import Boolean, Constraint, Integer, NoneValue, collect, validate
from xai.shapley.game import LARGEST_VALUE, Game, TooManyFeaturesError, bad_value, coalition_index

__all__ = ["TableGame", "housing", "to_fraction"]

Key = Any  # a tuple / frozenset / list / set of indices or names, or one index or name

# A value written as text has at most this many characters (1e-300 written out in full
# fits): longer ones are refused before they are parsed.
_LONGEST_TEXT = 1000
# In exact arithmetic, the values' common denominator has at most this many bits (about
# 300 digits): the Shapley values' denominators then stay short enough to compute with
# and to print.
_DENOMINATOR_BITS = 1024
_FIX_NUMBER = "write an integer, a decimal such as -0.25 or 1.5e3, or a fraction such as 2/3"


def to_fraction(value: Any) -> Fraction:
    """An exact Fraction for a number: floats by their shortest decimal (0.1 -> 1/10).

    Strings may be integers, decimals (``1.5e3``) or fractions (``2/3``). NaN, infinity,
    magnitudes beyond 1e300 and strings that are not numbers are refused.
    """
    return _number(value, exact=True)


def _number(value: Any, exact: bool) -> Any:
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
                f"a coalition value must be a number; got {type(value).__name__} {_shown(value)}"
            )
        if isinstance(value, Decimal) and value.is_finite():
            _check_decimal(value, _clip(str(value)))
        why = bad_value(value)
        if why is not None:
            raise XAIValueError(f"the value is {why}; {_fix(why)}")
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
        raise XAIValueError(f"the value is {why}; {_fix(why)}")
    return number


def _fix(why: str) -> str:
    if "finite" in why:
        return "every coalition needs a finite value: write the coalition's value instead"
    return "rescale the table (thousands or millions instead of units)"


def _parse(text: str, exact: bool) -> Any:
    """A value written as text: an integer, a decimal (with an exponent) or ``p/q``."""
    text = text.strip()
    shown = _shown(text)
    if len(text) > _LONGEST_TEXT:
        raise XAIValueError(
            f"the value {shown} has {len(text):,} characters; a value is at most "
            f"{_LONGEST_TEXT:,}: round it"
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
            raise XAIValueError(f"the value {shown} is not a number; {_FIX_NUMBER}") from None
    else:
        try:
            decimal = Decimal(text)
        except InvalidOperation:
            raise XAIValueError(f"the value {shown} is not a number; {_FIX_NUMBER}") from None
        if not decimal.is_finite():
            raise XAIValueError(f"the value is {shown}, not a finite number; {_fix('finite')}")
        _check_decimal(decimal, shown)
        fraction = Fraction(decimal)
    why = bad_value(fraction)
    if why is not None:
        raise XAIValueError(f"the value is {shown}, {why.partition(', ')[2]}; {_fix(why)}")
    return fraction if exact else float(fraction)


def _check_decimal(decimal: Decimal, shown: str) -> None:
    """Refuse exponents that would make an exact Fraction huge (``1e-999999999``)."""
    if decimal.adjusted() > 300:
        raise XAIValueError(
            f"the value is {shown}, beyond the largest magnitude a value may have (1e300); "
            f"{_fix('')}"
        )
    if decimal.as_tuple().exponent < -_LONGEST_TEXT:  # type: ignore[operator]
        raise XAIValueError(
            f"the value {shown} has more than {_LONGEST_TEXT:,} decimal places: round it"
        )


def _shown(value: Any) -> str:
    """``repr(value)``, shortened; never fails on an integer too long to write out."""
    try:
        return _clip(str(value) if isinstance(value, Fraction) else repr(value))
    except ValueError:  # Python writes out integers of at most 4,300 digits
        return "a number of more than 4,300 digits"


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _members(key: Key) -> tuple[Any, ...]:
    if isinstance(key, str | int | np.integer):
        return (key,)
    if isinstance(key, Iterable):
        return tuple(key)
    raise XAITypeError(
        f"a coalition must be a tuple or frozenset of feature indices or names; got "
        f"{type(key).__name__} {_shown(key)}"
    )


class _Entry(NamedTuple):
    """One coalition as given, with where it was given (for error messages)."""

    members: tuple[Any, ...]
    value: Any
    where: str  # the prefix of an error about it: "game.csv:7: ", "game.json: values[3]: "
    ref: str  # how a duplicate names it: "on line 7", 'as values[3] ["a", "b"]'


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
            entries, names_in_file, self.description = _read(Path(table), max_features)
            feature_names = feature_names or names_in_file
        elif isinstance(table, Mapping):
            entries = [
                _Entry(_members(key), value, "", f"as the key {_shown(key)}")
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
        first: dict[int, _Entry] = {}  # coalition number -> where it was given
        values: dict[int, Any] = {}
        denominator = 1
        for entry in entries:
            number = 0
            for member in entry.members:
                i = _position(member, position, n, entry.where)
                if number >> i & 1:
                    raise XAIValueError(
                        f"{entry.where}coalition {_shown(entry.members)} names feature "
                        f"{_shown(member)} twice"
                    )
                number |= 1 << i
            if number in first:
                raise XAIValueError(
                    f"{entry.where}coalition {self._describe(number)} appears twice in the "
                    f"table, {first[number].ref} and {entry.ref}; keep one of them"
                )
            first[number] = entry
            try:
                value = _number(entry.value, bool(exact))
            except XAIError as error:
                raise type(error)(
                    f"{entry.where}coalition {self._describe(number)}: {error}"
                ) from None
            if exact:
                denominator = math.lcm(denominator, value.denominator)
                if denominator.bit_length() > _DENOMINATOR_BITS:
                    raise XAIValueError(
                        f"{entry.where}coalition {self._describe(number)}: the value "
                        f"{_shown(value)} brings the values' common denominator to more than "
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
                f"{where}feature index {_shown(member)} is out of range for {n} features"
            )
        return int(member)
    try:
        return position[member]
    except (KeyError, TypeError):
        listed = list(position) if n <= 30 else f"{n} names"
        raise XAIValueError(
            f"{where}unknown feature {_shown(member)}; the features are {listed}"
        ) from None


# More features than this cannot have a complete table (2^63 coalitions).
_MOST_FEATURES = 62


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
                f"feature index {_shown(low)} is negative; indices number the features 0..n-1"
            )
        top = max((int(m) for m in members), default=-1)
        if top >= _MOST_FEATURES:  # before anything is sized by it
            raise XAIValueError(
                f"feature index {_shown(top)} means a table of more than {_MOST_FEATURES} "
                f"features, and a complete table of 2^{_MOST_FEATURES} or more coalitions "
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


def _read(path: Path, max_features: int | None) -> tuple[list[_Entry], list[str], str]:
    if not path.is_file():
        raise XAIFileNotFoundError(f"no coalition table at {path}")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise XAIValueError(f"{path}: coalition tables are read from .json or .csv files")
    try:
        if suffix == ".json":
            return _read_json(path, max_features)
        return _read_csv(path, max_features)
    except UnicodeDecodeError as error:
        raise XAIValueError(
            f"{path}: not UTF-8 text (byte {error.start} is {error.object[error.start]:#04x}); "
            f"save the table as UTF-8"
        ) from None


def _check_names(path: Path, where: str, names: list[str], max_features: int | None) -> None:
    if max_features is not None and len(names) > max_features:
        raise TooManyFeaturesError(len(names), max_features)
    repeated = [name for i, name in enumerate(names) if name in names[:i]]
    if repeated:
        raise XAIValueError(
            f"{path}{where}: the feature {_shown(repeated[0])} is named twice; feature "
            f"names must be unique"
        )


_CSV_FORMAT = "a header of feature names and a last column named 'value'"


def _read_csv(path: Path, max_features: int | None) -> tuple[list[_Entry], list[str], str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if not header or header[-1].strip() != "value":
                raise XAIValueError(f"{path}: a coalition table in CSV needs {_CSV_FORMAT}")
            names = [name.strip() for name in header[:-1]]
            if not names:
                raise XAIValueError(
                    f"{path}:1: the header names no feature; a coalition table in CSV needs "
                    f"{_CSV_FORMAT}"
                )
            if "" in names:
                raise XAIValueError(
                    f"{path}:1: column {names.index('') + 1} of the header has no name; "
                    f"name every feature column"
                )
            _check_names(path, ":1", names, max_features)
            n = len(names)
            entries: list[_Entry] = []
            end = reader.line_num
            for row in reader:
                line, end = end + 1, reader.line_num
                if not row:  # a blank line
                    continue
                bits = [cell.strip() for cell in row[:-1]]
                if len(row) != n + 1 or any(bit not in ("0", "1") for bit in bits):
                    raise XAIValueError(
                        f"{path}:{line}: expected {n} columns of 0/1 and a value; got {_shown(row)}"
                    )
                members = tuple(name for name, bit in zip(names, bits, strict=True) if bit == "1")
                entries.append(_Entry(members, row[-1], f"{path}:{line}: ", f"on line {line}"))
                if n < _MOST_FEATURES and len(entries) > 1 << n:
                    break  # a coalition repeats among these rows: the table reports it
        except csv.Error as error:
            raise XAIValueError(
                f"{path}:{reader.line_num}: not a readable CSV row ({error})"
            ) from None
    return entries, names, ""


_JSON_FORMAT = '{"features": [names], "values": [{"coalition": [names], "value": v}, ...]}'


class _Object(dict[str, Any]):
    """A JSON object that remembers the keys it was given twice."""

    repeated: list[str]

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, Any]]) -> _Object:
        made = cls(pairs)
        made.repeated = [key for i, (key, _) in enumerate(pairs) if key in dict(pairs[:i])]
        return made


def _json_int(text: str) -> int | Decimal:
    return int(text) if len(text) <= _LONGEST_TEXT else Decimal(text)


def _early_features(path: Path) -> list[Any] | None:
    """The "features" list of a JSON table, read from the file's first MiB only when it
    comes before "values" (as written by xai); ``None`` where it does not."""
    with path.open("rb") as handle:
        text = handle.read(1 << 20).decode("utf-8", errors="replace")
    decoder = json.JSONDecoder()
    space = re.compile(r"[ \t\n\r]*")
    try:
        i = space.match(text, 0).end()  # type: ignore[union-attr]
        if text[i] != "{":
            return None
        i += 1
        while True:
            i = space.match(text, i).end()  # type: ignore[union-attr]
            key, i = decoder.raw_decode(text, i)
            i = space.match(text, i).end()  # type: ignore[union-attr]
            if not isinstance(key, str) or text[i] != ":" or key == "values":
                return None
            i = space.match(text, i + 1).end()  # type: ignore[union-attr]
            value, i = decoder.raw_decode(text, i)
            if key == "features":
                return value if isinstance(value, list) else None
            i = space.match(text, i).end()  # type: ignore[union-attr]
            if text[i] != ",":
                return None
            i += 1
    except (ValueError, IndexError, RecursionError):
        return None


def _read_json(path: Path, max_features: int | None) -> tuple[list[_Entry], list[str], str]:
    if max_features is not None:
        early = _early_features(path)
        if early is not None and len(early) > max_features:
            raise TooManyFeaturesError(len(early), max_features)
    try:
        data = json.loads(
            path.read_text(encoding="utf-8-sig"),
            object_pairs_hook=_Object.from_pairs,
            parse_float=Decimal,
            parse_int=_json_int,
        )
    except json.JSONDecodeError as error:
        raise XAIValueError(
            f"{path}: not valid JSON: {error.msg} at line {error.lineno}, column "
            f"{error.colno}; a coalition table in JSON is {_JSON_FORMAT}"
        ) from None
    except RecursionError:
        raise XAIValueError(
            f"{path}: JSON nested too deeply to read; a coalition table in JSON is {_JSON_FORMAT}"
        ) from None
    if not isinstance(data, _Object):
        raise XAIValueError(
            f"{path}: expected a JSON object {_JSON_FORMAT}; got {_json_kind(data)}"
        )
    if data.repeated:
        raise XAIValueError(
            f"{path}: the key {_shown(data.repeated[0])} appears twice in the top-level "
            f"object; keep one"
        )
    for key, kind in (("features", "a list of feature names"), ("values", "a list of entries")):
        if not isinstance(data.get(key), list):
            got = f"got {_json_kind(data[key])}" if key in data else "it is missing"
            raise XAIValueError(
                f"{path}: a coalition table in JSON needs {key!r} ({kind}); {got}. The "
                f"format is {_JSON_FORMAT}"
            )
    names = []
    for i, name in enumerate(data["features"]):
        if not isinstance(name, str | int) or isinstance(name, bool):
            raise XAIValueError(
                f"{path}: features[{i}] is {_json_kind(name)}; feature names are strings"
            )
        names.append(str(name))
    _check_names(path, "", names, max_features)
    entries = []
    for i, row in enumerate(data["values"]):
        where = f"{path}: values[{i}]: "
        if not isinstance(row, _Object) or "coalition" not in row or "value" not in row:
            raise XAIValueError(
                f'{where}expected {{"coalition": [names], "value": v}}; got '
                f"{_clip(_json_text(row))}"
            )
        if row.repeated:
            raise XAIValueError(f"{where}the key {_shown(row.repeated[0])} appears twice; keep one")
        coalition = row["coalition"]
        if not isinstance(coalition, list) or any(
            not isinstance(m, str | int) or isinstance(m, bool) for m in coalition
        ):
            raise XAIValueError(
                f"{where}the coalition {_clip(_json_text(coalition))} is not a list of "
                f'feature names (or indices); write it as ["a", "b"], or [] for the '
                f"empty coalition"
            )
        written = _clip(_json_text(coalition))
        entries.append(_Entry(tuple(coalition), row["value"], where, f"as values[{i}] {written}"))
    return entries, names, str(data.get("description", ""))


def _json_text(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    for kind, name in kinds.items():
        if isinstance(value, kind):
            return f"{name} {_clip(_json_text(value))}"
    return "null" if value is None else f"the number {_clip(_json_text(value))}"


def housing(*, exact: bool | None = None) -> TableGame:
    """The textbook housing example: three features, v({}) = 20 ... v(all) = 30.

    Its Shapley values are 11/6, 10/3 and 29/6 for year built, floor area and
    neighbourhood safety: safety matters most. Shipped as ``xai/shapley/data/housing.json``.
    """
    source = resources.files("xai.shapley") / "data" / "housing.json"
    with resources.as_file(source) as path:
        return TableGame(path, exact=exact)
