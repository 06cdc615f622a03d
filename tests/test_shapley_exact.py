"""The exact engine: the housing example, the definition, the axioms, and bad input."""

from __future__ import annotations

import itertools
import json
import math
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xai
from xai.shapley import FunctionGame, TableGame, housing

HOUSING = {(): 20, (0,): 23, (1,): 24, (2,): 25, (0, 1): 24, (0, 2): 26, (1, 2): 28, (0, 1, 2): 30}


# ------------------------------------------------------------------------- housing


def test_housing_in_floats_to_1e_12():
    r = xai.exact_shapley(HOUSING)
    np.testing.assert_allclose(r.values, [11 / 6, 10 / 3, 29 / 6], rtol=0, atol=1e-12)
    assert r.base_value == 20.0
    assert r.full_value == 30.0
    assert r.values.dtype == np.float64
    assert r.n_evaluations == 8
    assert abs(r.base_value + r.values.sum() - r.full_value) < 1e-12


def test_housing_exactly_in_fractions():
    for r in (
        xai.exact_shapley(HOUSING, exact=True),
        xai.exact_shapley({k: Fraction(v) for k, v in HOUSING.items()}),
        xai.exact_shapley(housing(exact=True)),
    ):
        assert r.values.tolist() == [Fraction(11, 6), Fraction(10, 3), Fraction(29, 6)]
        assert r.base_value == Fraction(20)
        assert r.full_value == Fraction(30)
        assert r.base_value + sum(r.values) == r.full_value  # efficiency, exactly
        assert r.exact


def test_the_shipped_housing_file():
    game = housing()
    assert game.feature_names == ("year_built", "floor_area", "neighbourhood_safety")
    assert "safety matters most" in game.description
    r = xai.exact_shapley(game)
    assert r.ranking()[0] == "neighbourhood_safety"
    assert r.feature_names == game.feature_names
    table = r.table()
    assert "neighbourhood_safety  4.8333" in table
    assert "v(all)" in table


def test_coalition_keys_by_name_frozenset_or_index():
    names = ["year", "area", "safety"]
    by_name = {tuple(names[i] for i in key): value for key, value in HOUSING.items()}
    by_frozenset = {frozenset(key): value for key, value in HOUSING.items()}
    for table, kwargs in [
        (by_name, {}),
        (by_frozenset, {"feature_names": names}),
        (HOUSING, {"feature_names": names}),
    ]:
        r = xai.exact_shapley(table, **kwargs)
        np.testing.assert_allclose(r.values, [11 / 6, 10 / 3, 29 / 6], atol=1e-12)
    assert xai.exact_shapley(by_name).feature_names == ("year", "area", "safety")
    assert xai.exact_shapley(HOUSING).feature_names == ("x0", "x1", "x2")


def test_table_files(tmp_path):
    csv_path = tmp_path / "game.csv"
    lines = ["a,b,c,value"]
    for key, value in HOUSING.items():
        lines.append(",".join("1" if i in key else "0" for i in range(3)) + f",{value}")
    csv_path.write_text("\n".join(lines) + "\n")
    json_path = tmp_path / "game.json"
    json_path.write_text(
        json.dumps(
            {
                "features": ["a", "b", "c"],
                "values": [
                    {"coalition": ["abc"[i] for i in key], "value": v} for key, v in HOUSING.items()
                ],
            }
        )
    )
    for path in (csv_path, json_path, str(csv_path)):
        r = xai.exact_shapley(path)
        assert r.feature_names == ("a", "b", "c")
        np.testing.assert_allclose(r.values, [11 / 6, 10 / 3, 29 / 6], atol=1e-12)
    assert xai.exact_shapley(csv_path, exact=True).values.tolist()[2] == Fraction(29, 6)


# ------------------------------------------------------------------ the definition


def permutation_definition(v: dict[frozenset, float], n: int) -> np.ndarray:
    """phi_i = average over all n! orders of i's marginal contribution (written here)."""
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        before: frozenset = frozenset()
        for player in order:
            after = before | {player}
            phi[player] += v[after] - v[before]
            before = after
    return phi / math.factorial(n)


def random_table(n: int, rng: np.random.Generator) -> dict[frozenset, float]:
    return {
        frozenset(c): float(rng.normal() * 10)
        for size in range(n + 1)
        for c in itertools.combinations(range(n), size)
    }


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7])
def test_engine_equals_the_permutation_definition(n):
    rng = np.random.default_rng(n)
    for _ in range(3):
        v = random_table(n, rng)
        r = xai.exact_shapley(v, feature_names=[f"p{i}" for i in range(n)])
        np.testing.assert_allclose(r.values, permutation_definition(v, n), rtol=1e-10, atol=1e-10)


def test_interaction_index_equals_its_definition():
    n = 5
    rng = np.random.default_rng(7)
    v = random_table(n, rng)
    r = xai.exact_shapley(v, feature_names=list("abcde"), interactions=True)
    for i, j in itertools.combinations(range(n), 2):
        rest = [p for p in range(n) if p not in (i, j)]
        total = 0.0
        for size in range(n - 1):
            for S in itertools.combinations(rest, size):
                s = frozenset(S)
                weight = math.factorial(size) * math.factorial(n - size - 2) / math.factorial(n - 1)
                total += weight * (v[s | {i, j}] - v[s | {i}] - v[s | {j}] + v[s])
        assert r.interactions[i, j] == pytest.approx(total, abs=1e-10)
        assert r.interactions[j, i] == r.interactions[i, j]
    assert np.all(np.diag(r.interactions) == 0)
    # housing, by hand: I_01 = ((24 - 23 - 24 + 20) + (30 - 26 - 28 + 25)) / 2 = -1
    exact = xai.exact_shapley(HOUSING, exact=True, interactions=True)
    assert exact.interactions[0, 1] == Fraction(-1)
    assert exact.interactions[1, 2] == Fraction(1)


def test_additive_games_have_no_interactions():
    weights = np.array([1.0, -2.0, 0.5, 3.0])
    r = xai.exact_shapley(lambda masks: masks @ weights, n_features=4, interactions=True)
    np.testing.assert_allclose(r.values, weights, atol=1e-12)
    np.testing.assert_allclose(r.interactions, 0, atol=1e-12)


def test_games_with_several_outputs():
    rng = np.random.default_rng(3)
    tables = [random_table(4, rng) for _ in range(3)]
    keys = list(tables[0])

    def fn(masks):
        return np.array([[t[frozenset(np.flatnonzero(m))] for t in tables] for m in masks])

    r = xai.exact_shapley(fn, n_features=4)
    assert r.values.shape == (4, 3)
    for k, table in enumerate(tables):
        np.testing.assert_allclose(r.values[:, k], permutation_definition(table, 4), atol=1e-10)
    np.testing.assert_allclose(r.base_value + r.values.sum(0), r.full_value, atol=1e-12)
    assert len(keys) == 16


def test_each_coalition_is_evaluated_once_in_bounded_chunks():
    seen: list[np.ndarray] = []

    def fn(masks):
        seen.append(masks.copy())
        return masks.sum(1).astype(float) ** 2

    r = xai.exact_shapley(fn, n_features=10, chunk_size=100)
    assert max(len(m) for m in seen) <= 100
    everything = np.concatenate(seen)
    numbers = xai.shapley.coalition_index(everything)
    assert len(numbers) == 1024
    assert len(set(numbers.tolist())) == 1024
    # a symmetric game: every player gets the same share
    np.testing.assert_allclose(r.values, np.full(10, 100 / 10), atol=1e-10)
    chunked = xai.exact_shapley(fn, n_features=10, chunk_size=7).values
    np.testing.assert_allclose(chunked, r.values, atol=1e-12)


# ----------------------------------------------------------------------- the axioms

values = st.floats(-100, 100, allow_nan=False, allow_infinity=False)


@st.composite
def games(draw, min_n=1, max_n=6):
    n = draw(st.integers(min_n, max_n))
    table = np.array(draw(st.lists(values, min_size=1 << n, max_size=1 << n)))
    return n, table


def _solve(n, table):
    return xai.exact_shapley(lambda masks: table[xai.shapley.coalition_index(masks)], n_features=n)


@settings(max_examples=60, deadline=None)
@given(games())
def test_efficiency(game):
    n, table = game
    r = _solve(n, table)
    assert r.base_value + r.values.sum() == pytest.approx(r.full_value, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(games(min_n=2), st.data())
def test_symmetry(game, data):
    """Players i and j that add the same to every coalition get the same value."""
    n, table = game
    i, j = data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
    table = table.copy()
    for s in range(1 << n):  # make v symmetric in i and j: v(S) = v(swap(S))
        si, sj = s >> i & 1, s >> j & 1
        swapped = (s & ~(1 << i) & ~(1 << j)) | (sj << i) | (si << j)
        table[swapped] = table[s] if swapped > s else table[swapped]
    r = _solve(n, table)
    assert r.values[i] == pytest.approx(r.values[j], abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(games(min_n=2), st.data())
def test_null_player(game, data):
    """A player who never changes the value gets zero."""
    n, table = game
    i = data.draw(st.integers(0, n - 1))
    table = table.copy()
    for s in range(1 << n):
        if s >> i & 1:
            table[s] = table[s & ~(1 << i)]
    r = _solve(n, table)
    assert r.values[i] == pytest.approx(0.0, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(games(), st.data(), values)
def test_linearity(game, data, scale):
    n, first = game
    second = np.array(data.draw(st.lists(values, min_size=1 << n, max_size=1 << n)))
    combined = _solve(n, first + scale * second).values
    separate = _solve(n, first).values + scale * _solve(n, second).values
    np.testing.assert_allclose(combined, separate, atol=1e-7)


# ------------------------------------------------------------------------- bad input


def test_a_missing_coalition_is_named():
    table = {k: v for k, v in HOUSING.items() if k != (0, 2)}
    with pytest.raises(
        ValueError,
        match=r"coalition \{x0, x2\} is missing: a table game on 3 "
        r"features needs all 2\^3 = 8 coalitions",
    ):
        xai.exact_shapley(table)
    named = {tuple("abc"[i] for i in k): v for k, v in HOUSING.items() if k != (1,)}
    with pytest.raises(ValueError, match=r"coalition \{b\} is missing"):
        xai.exact_shapley(named, feature_names=["a", "b", "c"])


@pytest.mark.parametrize(
    ("table", "kwargs", "message"),
    [
        ({**HOUSING, frozenset({1, 0}): 1}, {}, r"coalition \{x0, x1\} appears twice"),
        ({**HOUSING, (0, 0): 1}, {}, "names feature 0 twice"),
        ({**HOUSING, (5,): 1}, {"feature_names": list("abc")}, "index 5 is out of range"),
        ({("a",): 1, ("zzz", "a"): 2}, {"feature_names": ["a"]}, "unknown feature 'zzz'"),
        ({(): 1, ("a",): 2, (0, "a"): 3}, {}, "mix feature indices and names"),
    ],
)
def test_bad_tables(table, kwargs, message):
    with pytest.raises(ValueError, match=message):
        TableGame(table, **kwargs)


def test_a_non_numeric_value_is_refused():
    with pytest.raises(TypeError, match="must be a number; got the bool"):
        TableGame({(): True, (0,): 1.0})


def test_too_many_features_is_refused_with_the_cost():
    game = xai.shapley.ModelGame(lambda rows: rows.sum(1), np.ones(21), np.zeros((100, 21)))
    with pytest.raises(
        ValueError,
        match=r"n = 21 features need all 2\^21 = 2,097,152 "
        r"coalitions \(209,715,200 model evaluations, 100 per "
        r"coalition\); the cap is max_features=20",
    ):
        xai.exact_shapley(game)
    r = xai.exact_shapley(lambda m: m.sum(1).astype(float), n_features=3, max_features=3)
    assert r.values.tolist() == [1.0, 1.0, 1.0]


def test_a_value_function_needs_its_players_counted():
    with pytest.raises(ValueError, match=r"pass feature_names=\[\.\.\.\] or n_features=N"):
        xai.exact_shapley(lambda masks: masks.sum(1))
    with pytest.raises(ValueError, match=r"must return \(4,\) or \(4, outputs\) values"):
        xai.exact_shapley(lambda masks: np.zeros(3), n_features=2)
    with pytest.raises(TypeError, match="game must be a mapping"):
        xai.exact_shapley(42)
    with pytest.raises(FileNotFoundError, match="no coalition table"):
        xai.exact_shapley("/nonexistent/table.csv")


def test_function_game_names_and_result_repr():
    game = FunctionGame(lambda m: m.sum(1) * 1.0, feature_names=["p", "q"])
    r = xai.exact_shapley(game)
    assert repr(r) == "ShapleyResult(method='exact', n=2, values=[1, 1])"
    with pytest.raises(ValueError, match="disagree"):
        xai.exact_shapley(game, feature_names=["a", "b"])


def test_the_exact_engine_imports_no_torch():
    import subprocess

    code = (
        "import sys, numpy as np, xai\n"
        "g = xai.shapley.ModelGame(lambda r: np.tanh(r).sum(1), np.ones(6), np.zeros((3, 6)))\n"
        "xai.exact_shapley(g); xai.shapley.kernel_shap(g, 64, seed=0)\n"
        "xai.shapley.permutation_shapley(g, 8, seed=0)\n"
        "print(sorted(m for m in ('torch', 'shap', 'captum', 'matplotlib', 'cv2') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_exact_mode_reads_floats_as_the_decimals_written():
    """0.1 is 1/10 in exact mode (its shortest decimal), not 3602879701896397/2^55."""
    r = xai.exact_shapley({(): 0.0, (0,): 0.1, (1,): 0.2, (0, 1): 0.3}, exact=True)
    assert r.values.tolist() == [Fraction(1, 10), Fraction(2, 10)]
    assert xai.shapley.tables.to_fraction("2/3") == Fraction(2, 3)
    assert xai.shapley.tables.to_fraction(np.float64(0.25)) == Fraction(1, 4)
