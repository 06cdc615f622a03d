"""Hostile coalition tables and games: each ends in one refusal that names the file, the
line (or JSON entry) and the coalition, early, in bounded time and memory, with nothing
written.

* A coalition given twice, in any order or spelling the reader accepts, is refused with
  both places it was given (CSV lines; JSON entries as written; mapping keys): the last
  row no longer silently wins.
* Values that are not finite numbers within +-1e300 (``abc``, ``1e400``, NaN, infinity,
  ``1/0``, exponent bombs such as ``1e-999999999``) are refused naming the coalition.
* A broken JSON file is named with the line and column of the error.
* A game that returns NaN or infinity for some coalition is refused naming the first
  such coalition, by the exact engine and the estimators alike.
* Too many features are refused before any row is read or any coalition evaluated, with
  what enumerating them would cost; ``xai shapley --max-features N`` lifts the cap.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import xai
from tests._forkserver import run_xai
from xai.core.errors import XAIError, XAITypeError, XAIValueError
from xai.shapley import TableGame, coalition_index, kernel_shap, permutation_shapley

XAI = str(Path(sys.executable).parent / "xai")
CORPUS = Path(__file__).parent / "corpus" / "shapley"
NAMES = ["year", "area", "safety"]
# v = 2 year + 2 area + 3/2 safety: Shapley values 2, 2, 3/2
ADDITIVE = {(): "0", (0,): "2", (1,): "2", (2,): "1.5", (0, 1): "4", (0, 2): "3.5"}
ADDITIVE |= {(1, 2): "3.5", (0, 1, 2): "5.5"}


def run(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``xai ARGS`` in a process of its own, forked from one with torch and xai imported
    (tests/_forkserver.py)."""
    return run_xai(*args, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess[str], pattern: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("xai: error: "), lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    assert result.stdout == ""
    return lines[0]


def csv_table(path: Path, values: dict[tuple[int, ...], str], extra: str = "") -> Path:
    lines = [",".join([*NAMES, "value"])]
    for key, value in values.items():
        lines.append(",".join("1" if i in key else "0" for i in range(3)) + f",{value}")
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def json_table(path: Path, values: list[tuple[list, object]], **top: object) -> Path:
    rows = [{"coalition": coalition, "value": value} for coalition, value in values]
    path.write_text(json.dumps({"features": NAMES, "values": rows, **top}))
    return path


def json_rows(changes: dict[int, object]) -> list[tuple[list, object]]:
    """The additive table's JSON rows, with ``changes[i]`` as the value of row i."""
    rows: list[tuple[list, object]] = [
        ([NAMES[i] for i in key], float(Fraction(value))) for key, value in ADDITIVE.items()
    ]
    return [(c, changes.get(i, v)) for i, (c, v) in enumerate(rows)]


# ------------------------------------------------------------ duplicated coalitions


def test_a_repeated_csv_row_is_refused_naming_the_coalition_and_both_lines():
    """Today's reader kept the last row: -26/3, -26/3, 137/6 instead of 2, 2, 3/2."""
    path = CORPUS / "duplicate_row.csv"  # line 10 is " 1, 1 ,0": {year, area} of line 6
    for exact in (True, False):
        with pytest.raises(
            XAIValueError,
            match=r"duplicate_row\.csv:10: coalition \{year, area\} appears twice in the "
            r"table, on line 6 and on line 10",
        ):
            TableGame(path, exact=exact)
    result = run("shapley", path)
    one_line_error(result, r"duplicate_row\.csv:10: coalition \{year, area\} appears twice")


def test_a_repeated_json_entry_is_refused_naming_both_entries_as_written(tmp_path):
    with pytest.raises(
        XAIValueError,
        match=r"duplicate_entry\.json: values\[8\]: coalition \{year, area\} appears twice "
        r'in the table, as values\[4\] \["year", "area"\] and as values\[8\] \["area", "year"\]',
    ):
        TableGame(CORPUS / "duplicate_entry.json")
    # the same spelling twice (today the last silently won), and an index for a name
    rows = json_rows({})
    same = json_table(tmp_path / "same.json", [*rows, (["year", "area"], -60)])
    with pytest.raises(XAIValueError, match=r"values\[8\]: coalition \{year, area\} appears twice"):
        TableGame(same)
    index = json_table(tmp_path / "index.json", [*rows, ([2], -60)])
    with pytest.raises(
        XAIValueError, match=r'as values\[3\] \["safety"\] and as values\[8\] \[2\]'
    ):
        TableGame(index)
    one_line_error(run("shapley", same, "--float"), r"values\[8\]: .* appears twice")


def test_a_repeated_key_in_a_json_object_is_refused(tmp_path):
    """JSON objects with a key twice: the parser would keep the last one silently."""
    rows = [{"coalition": c, "value": v} for c, v in json_rows({})]
    text = json.dumps({"features": NAMES, "values": rows})
    twice = tmp_path / "twice.json"
    twice.write_text(text[:-1] + ', "values": []}')
    with pytest.raises(XAIValueError, match=r"the key 'values' appears twice in the top-level"):
        TableGame(twice)
    inner = tmp_path / "inner.json"
    inner.write_text(text.replace('"value": 2.0}', '"value": 2.0, "value": 9}', 1))
    with pytest.raises(XAIValueError, match=r"values\[1\]: the key 'value' appears twice"):
        TableGame(inner)


def test_a_repeated_mapping_key_names_both_keys():
    table = {**{tuple(k): Fraction(v) for k, v in ADDITIVE.items()}, frozenset({1, 0}): 1}
    with pytest.raises(
        XAIValueError,
        match=r"coalition \{x0, x1\} appears twice in the table, as the key \(0, 1\) and as "
        r"the key frozenset\(\{0, 1\}\)",
    ):
        TableGame(table)


# --------------------------------------------------------------------------- values


BAD_TEXT = {
    "abc": r"the value 'abc' is not a number; write an integer, a decimal",
    "1e400": r"the value is '1e400', beyond the largest magnitude .*1e300.*rescale",
    "-1e301": r"beyond the largest magnitude",
    "nan": r"the value is 'nan', not a finite number",
    "-inf": r"'-inf', not a finite number",
    "Infinity": r"not a finite number",
    "1/0": r"the value '1/0' is not a number",
    "1e999999999": r"beyond the largest magnitude",  # never expanded to 10**999999999
    "1e-999999999": r"has more than 1,000 decimal places",
    "9" * 5000: r"has 5,000 characters; a value is at most 1,000",
    "": r"the value '' is not a number",
}


@pytest.mark.parametrize("text", list(BAD_TEXT), ids=lambda t: t[:12] or "empty")
@pytest.mark.parametrize("exact", [True, False], ids=["exact", "float"])
def test_a_bad_csv_value_names_file_line_and_coalition(tmp_path, text, exact):
    path = csv_table(tmp_path / "t.csv", {**ADDITIVE, (0, 2): text})  # line 7
    start = time.perf_counter()
    with pytest.raises(XAIValueError, match=r"t\.csv:7: coalition \{year, safety\}: ") as error:
        TableGame(path, exact=exact)
    assert re.search(BAD_TEXT[text], str(error.value)), str(error.value)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("NaN", r"the value is nan, not a finite number"),  # JSON's non-standard literals
        ("-Infinity", r"the value is -inf, not a finite number"),
        ("1e400", r"the value is 1E\+400, beyond the largest magnitude"),
        ("1" + "0" * 2000, r"beyond the largest magnitude"),
        ('"abc"', r"the value 'abc' is not a number"),
        ("true", r"must be a number; got the bool True"),
        ("null", r"must be a number; got NoneType None"),
        ("[1]", r"must be a number; got list \[1\]"),
    ],
)
def test_a_bad_json_value_names_the_entry_and_coalition(tmp_path, value, pattern):
    path = json_table(tmp_path / "t.json", json_rows({5: "@"}))
    path.write_text(path.read_text().replace('"@"', value))
    with pytest.raises(XAIError, match=r"t\.json: values\[5\]: coalition \{year, safety\}: "):
        TableGame(path, exact=True)
    with pytest.raises(XAIError, match=pattern):
        TableGame(path, exact=False)


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), -np.inf, np.float32("nan"), Decimal("NaN"), 10**400]
)
@pytest.mark.parametrize("exact", [None, True, False])
def test_a_mapping_with_a_non_finite_value_is_refused_naming_the_coalition(bad, exact):
    """Today NaN went through in floating point and every Shapley value came out NaN."""
    table = {key: float(Fraction(value)) for key, value in ADDITIVE.items()} | {(1,): bad}
    with pytest.raises(XAIValueError, match=r"coalition \{x1\}: the value is .*(finite|1e300)"):
        TableGame(table, exact=exact)
    with pytest.raises(XAIValueError, match=r"coalition \{x1\}"):
        xai.exact_shapley(table)


def test_good_values_in_every_spelling_still_give_the_exact_values(tmp_path):
    spelled = {**ADDITIVE, (0,): " +2 ", (1,): "2.0", (2,): "3/2", (0, 1): "0.4e1"}
    path = csv_table(tmp_path / "t.csv", spelled, extra="\n\n")  # blank lines are skipped
    for exact in (True, False):  # fractions such as 3/2 read in floating point too
        r = xai.exact_shapley(TableGame(path, exact=exact))
        assert list(r.values) == [2, 2, Fraction(3, 2)]
    r = xai.exact_shapley({(): Decimal("0.1"), (0,): np.int64(1), (1,): 2.5, (0, 1): 10**300})
    assert r.full_value == 1e300


def test_exact_fractions_too_long_to_compute_with_are_refused(tmp_path):
    """Values over 1,024 distinct primes make the exact Shapley values thousands of digits
    long: today printing them failed (Python's 4,300-digit limit) with a traceback."""
    primes = [p for p in range(10_007, 30_000) if all(p % d for d in range(2, 174))][:1024]
    names = [f"f{i}" for i in range(10)]
    lines = [",".join([*names, "value"])]
    for s, p in enumerate(primes):
        lines.append(",".join(str(s >> i & 1) for i in range(10)) + f",1/{p}")
    path = tmp_path / "primes.csv"
    path.write_text("\n".join(lines) + "\n")
    message = one_line_error(run("shapley", path), r"common denominator to more than 300 digits")
    assert re.search(r"primes\.csv:\d+: coalition \{", message)
    assert "--float" in message
    result = run("shapley", path, "--float")
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------- broken files


def test_a_broken_json_file_is_named_with_line_and_column():
    with pytest.raises(
        XAIValueError,
        match=r"broken\.json: not valid JSON: Expecting ',' delimiter at line 5, column 5",
    ):
        TableGame(CORPUS / "broken.json")
    one_line_error(run("shapley", CORPUS / "broken.json"), r"broken\.json: not valid JSON")


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("list.json", b"[1, 2]", r"list\.json: expected a JSON object .*; got a list \[1, 2\]"),
        ("deep.json", b"[" * 100_000, r"deep\.json: (JSON nested too deeply|not valid JSON)"),
        ("latin1.json", '{"features": ["é"]}'.encode("latin-1"), r"latin1\.json: not UTF-8"),
        ("latin1.csv", "é,value\n0,1\n1,2\n".encode("latin-1"), r"latin1\.csv: not UTF-8"),
        ("empty.json", b"", r"empty\.json: not valid JSON: Expecting value at line 1, col"),
        ("novalues.json", b'{"features": ["a"]}', r"needs 'values' .*; it is missing"),
        ("names.json", b'{"features": "ab", "values": []}', r"needs 'features' .*a string"),
        (
            "string.json",
            b'{"features": ["a", "b"], "values": [{"coalition": "ab", "value": 1}]}',
            r'values\[0\]: the coalition "ab" is not a list of feature names',
        ),
        (
            "nested.json",
            b'{"features": ["a"], "values": [{"coalition": [["a"]], "value": 1}]}',
            r'values\[0\]: the coalition \[\["a"\]\] is not a list',
        ),
        ("twice.csv", b"a,a,value\n", r"twice\.csv:1: the feature 'a' is named twice"),
        ("noname.csv", b"a,,value\n", r"noname\.csv:1: column 2 of the header has no name"),
        ("field.csv", b'a,value\n0,"' + b"1" * 200_000 + b'"\n', r"field\.csv:2: not a readable"),
    ],
)
def test_broken_files_are_named(tmp_path, name, content, pattern):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(XAIValueError, match=pattern):
        TableGame(path)


def test_hostile_files_on_the_command_line_are_one_line_with_nothing_written(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    nan = csv_table(tmp_path / "nan.csv", {**ADDITIVE, (1,): "nan"})
    plot = tmp_path / "plot.png"
    for path, pattern in [
        (deep, r"deep\.json"),
        (nan, r"nan\.csv:4: coalition \{area\}: the value is 'nan'"),
        (CORPUS / "duplicate_row.csv", r"appears twice"),
    ]:
        for extra in ([], ["--float"]):
            one_line_error(run("shapley", path, "--plot", plot, *extra), pattern)
            assert not plot.exists()


# ------------------------------------------------------------- non-finite games


def nan_where_x2_alone(masks: np.ndarray) -> np.ndarray:
    out = masks.sum(axis=1).astype(float)
    out[masks[:, 2] & ~masks[:, 0] & ~masks[:, 1]] = np.nan  # coalition {x2} only
    return out


def test_exact_shapley_refuses_a_nan_game_value_naming_the_coalition():
    """Today every Shapley value came out NaN, with no word of where."""
    with pytest.raises(
        XAIValueError, match=r"FunctionGame: the value of the coalition \{x2\} is nan, not a"
    ):
        xai.exact_shapley(nan_where_x2_alone, n_features=3)


def test_the_estimators_refuse_a_nan_game_value_too():
    with pytest.raises(XAIValueError, match=r"the value of the coalition \{x2\} is nan"):
        permutation_shapley(nan_where_x2_alone, 64, seed=0, n_features=3)
    with pytest.raises(XAIValueError, match=r"the value of the coalition \{x2\} is nan"):
        kernel_shap(nan_where_x2_alone, 256, seed=0, n_features=3)


def test_a_model_game_with_an_infinite_output_is_refused():
    def inverse(rows: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return 1.0 / rows.sum(axis=1)

    game = xai.shapley.ModelGame(inverse, np.ones(4), np.zeros(4), feature_names=list("abcd"))
    with pytest.raises(XAIValueError, match=r"ModelGame: the value of the coalition \{\} is inf"):
        xai.exact_shapley(game)


def test_bad_game_values_of_other_kinds():
    def huge(masks):
        return np.where(coalition_index(masks) == 3, 1e305, 1.0)

    with pytest.raises(XAIValueError, match=r"coalition \{x0, x1\} is 1e\+305, beyond"):
        xai.exact_shapley(huge, n_features=2)

    def fractions(masks):
        return np.array([Fraction(int(m.sum()), 3) if m[0] else None for m in masks])

    with pytest.raises(XAIValueError, match=r"coalition \{\} is None \(NoneType\), not a number"):
        xai.exact_shapley(fractions, n_features=2)
    with pytest.raises(XAITypeError, match=r"must return real numbers .* dtype complex128"):
        xai.exact_shapley(lambda m: m.sum(1) * 1j, n_features=2)
    exact = xai.exact_shapley(
        lambda m: np.array([Fraction(int(r.sum()), 3) for r in m]), n_features=2
    )
    assert list(exact.values) == [Fraction(1, 3), Fraction(1, 3)]


# ---------------------------------------------------------------- too many features


def wide_csv(path: Path, n: int, rows: str = "this row is never read\n") -> Path:
    path.write_text(",".join([*(f"f{i}" for i in range(n)), "value"]) + "\n" + rows)
    return path


def test_too_many_features_are_refused_before_any_row_is_read(tmp_path):
    """Today the rows were read first: 21 features took 20-40 s and 1-2.6 GB to be told
    to pass max_features=21, which the command line did not take."""
    csv_path = wide_csv(tmp_path / "wide.csv", 21)
    json_path = tmp_path / "wide.json"
    names = json.dumps([f"f{i}" for i in range(21)])
    json_path.write_text('{"features": ' + names + ', "values": [ this is not read')
    for path in (csv_path, json_path):
        start = time.perf_counter()
        with pytest.raises(
            XAIValueError,
            match=r"n = 21 features need all 2\^21 = 2,097,152 coalitions; the cap is "
            r"max_features=20\. Enumerating them costs 2\^21 = 2,097,152 evaluations of the "
            r"game and memory for 2\^21 values \(16 MiB as floats for each output, about "
            r"200 MiB as exact fractions\)\. Pass max_features=21 to run it anyway",
        ):
            xai.exact_shapley(path)
        assert time.perf_counter() - start < 1.0
    message = one_line_error(run("shapley", csv_path), r"the cap is --max-features 20\.")
    assert "Pass --max-features 21 to run it anyway" in message
    one_line_error(run("shapley", json_path, "--max-features", "5"), r"--max-features 21 to")


def test_max_features_on_the_command_line(tmp_path):
    path = csv_table(tmp_path / "t.csv", ADDITIVE)
    one_line_error(run("shapley", path, "--max-features", "2"), r"Pass --max-features 3 ")
    result = run("shapley", path, "--max-features", "3")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^safety\s+3/2 ", result.stdout, re.M)
    for bad in ("0", "-3", "abc", "1e9", "9" * 5000):
        one_line_error(
            run("shapley", path, "--max-features", bad),
            r"--max-features must be a positive whole number of features",
        )


def test_a_feature_index_far_out_of_range_costs_nothing():
    """Today {(40,): 1} asked for a list of 2^41 entries (MemoryError) and (10**9,) for a
    billion feature names."""
    start = time.perf_counter()
    with pytest.raises(XAIValueError, match=r"coalition \{\} is missing: a table game on 41 f"):
        TableGame({(40,): 1})
    with pytest.raises(XAIValueError, match=r"n = 41 features need all 2\^41 = 2,199,0"):
        xai.exact_shapley({(40,): 1})
    for key in (70, 10**9, 10**5000):
        for build in (TableGame, xai.exact_shapley):
            with pytest.raises(
                XAIValueError,
                match=r"feature index (70|1000000000|a number of more than 4,300 digits) means "
                r"a table of more than 62 features",
            ):
                build({(key,): 1})
    with pytest.raises(XAIValueError, match=r"n = 1000000000 features need all 2\^1000000000"):
        xai.exact_shapley(lambda masks: masks.sum(1), n_features=10**9)
    assert time.perf_counter() - start < 1.0


def test_a_game_of_many_players_is_refused_without_a_call():
    calls = []
    with pytest.raises(XAIValueError, match=r"n = 64 features need all 2\^64 = about 10\^19"):
        xai.exact_shapley(lambda m: calls.append(m) or m.sum(1), n_features=64)
    assert calls == []
