"""Reading a table game from a CSV or JSON file, checking as it goes.

CSV: one 0/1 column per feature and a last column ``value``, one row per coalition. JSON:
``{"features": [...], "values": [{"coalition": [...], "value": v}, ...]}``. A file that is
not UTF-8 text, not CSV or not JSON is refused naming it (and the JSON error's line and
column); a row or entry naming a coalition already given, or holding a bad value, names
the coalition and both places; more features than ``max_features`` are refused from the
header (or an early ``"features"`` list) before any row is read. Used by ``TableGame``.
"""

from __future__ import annotations

import csv
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from xai.core.errors import XAIFileNotFoundError, XAIValueError
from xai.shapley.game import TooManyFeaturesError
from xai.shapley.table_values import (
    LONGEST_TEXT,
    MOST_FEATURES,
    Entry,
    clip_text,
    show_value,
)

__all__ = ["read_table"]


def read_table(path: Path, max_features: int | None) -> tuple[list[Entry], list[str], str]:
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
            f"{path}{where}: the feature {show_value(repeated[0])} is named twice; feature "
            f"names must be unique"
        )


_CSV_FORMAT = "a header of feature names and a last column named 'value'"


def _read_csv(path: Path, max_features: int | None) -> tuple[list[Entry], list[str], str]:
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
            entries: list[Entry] = []
            end = reader.line_num
            for row in reader:
                line, end = end + 1, reader.line_num
                if not row:  # a blank line
                    continue
                bits = [cell.strip() for cell in row[:-1]]
                if len(row) != n + 1 or any(bit not in ("0", "1") for bit in bits):
                    raise XAIValueError(
                        f"{path}:{line}: expected {n} columns of 0/1 and a value; got "
                        f"{show_value(row)}"
                    )
                members = tuple(name for name, bit in zip(names, bits, strict=True) if bit == "1")
                entries.append(Entry(members, row[-1], f"{path}:{line}: ", f"on line {line}"))
                if n < MOST_FEATURES and len(entries) > 1 << n:
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
    return int(text) if len(text) <= LONGEST_TEXT else Decimal(text)


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


def _read_json(path: Path, max_features: int | None) -> tuple[list[Entry], list[str], str]:
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
            f"{path}: the key {show_value(data.repeated[0])} appears twice in the top-level "
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
                f"{clip_text(_json_text(row))}"
            )
        if row.repeated:
            raise XAIValueError(
                f"{where}the key {show_value(row.repeated[0])} appears twice; keep one"
            )
        coalition = row["coalition"]
        if not isinstance(coalition, list) or any(
            not isinstance(m, str | int) or isinstance(m, bool) for m in coalition
        ):
            raise XAIValueError(
                f"{where}the coalition {clip_text(_json_text(coalition))} is not a list of "
                f'feature names (or indices); write it as ["a", "b"], or [] for the '
                f"empty coalition"
            )
        written = clip_text(_json_text(coalition))
        entries.append(Entry(tuple(coalition), row["value"], where, f"as values[{i}] {written}"))
    return entries, names, str(data.get("description", ""))


def _json_text(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    for kind, name in kinds.items():
        if isinstance(value, kind):
            return f"{name} {clip_text(_json_text(value))}"
    return "null" if value is None else f"the number {clip_text(_json_text(value))}"
