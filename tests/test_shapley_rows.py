"""``xai.shapley.explain_rows``: Shapley values of a tabular model for many rows.

Proofs: per-row ``exact_shapley(ModelGame(...))`` to 1e-12; the linear closed form
phi_i = w_i (x_i - mean_b b_i); an independent subset-formula computation written here on
a scikit-learn gradient-boosting model; shap's interventional TreeExplainer on XGBoost and
LightGBM; the sampled engine within its standard errors; Ray's engine equal to the local
one.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

import xai
from xai.shapley import ModelGame, explain_rows
from xai.shapley.game import TooManyFeaturesError


def smooth(Z: np.ndarray) -> np.ndarray:
    """A non-linear model with interactions and two outputs."""
    a = np.tanh(Z @ np.array([0.7, -1.1, 0.4, 0.9, -0.3])) + Z[:, 0] * Z[:, 2]
    b = np.sin(Z[:, 1] - Z[:, 3]) + 0.5 * Z[:, 4] ** 2
    return np.stack([a, b], axis=1)


def smooth_one(Z: np.ndarray) -> np.ndarray:
    return smooth(Z)[:, 0]


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(3)
    return rng.normal(size=(7, 5)), rng.normal(size=(6, 5))


def test_every_row_equals_the_exact_shapley_of_its_model_game(table):
    X, B = table
    r = explain_rows(smooth, X, B)
    assert r.values.shape == (7, 5, 2) and r.full_value.shape == (7, 2)
    for row, x in enumerate(X):
        one = xai.exact_shapley(ModelGame(smooth, x, B))
        np.testing.assert_allclose(r.values[row], one.values, rtol=0, atol=1e-12)
        np.testing.assert_allclose(r.full_value[row], one.full_value, rtol=0, atol=1e-12)
        np.testing.assert_allclose(r.base_value, one.base_value, rtol=0, atol=1e-12)
    # efficiency, row by row, against the one shared base value
    np.testing.assert_allclose(r.base_value + r.values.sum(axis=1), r.full_value, atol=1e-12)
    np.testing.assert_allclose(r.full_value, smooth(X), atol=1e-12)
    np.testing.assert_array_equal(r.data, X)
    assert r.feature_names == ("x0", "x1", "x2", "x3", "x4") and r.method == "exact"
    assert r.n_evaluations == 7 * 2**5


def test_a_linear_model_gives_the_closed_form(table):
    X, B = table
    w = np.array([1.5, -2.0, 0.25, 3.0, -0.5])
    r = explain_rows(lambda Z: Z @ w + 4.0, X, B)
    np.testing.assert_allclose(r.values, w * (X - B.mean(axis=0)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.base_value, B.mean(axis=0) @ w + 4.0, atol=1e-12)


@pytest.mark.parametrize("batch_rows", [1, 7, 100, 6 * 32 * 3])
def test_how_rows_are_batched_does_not_change_the_values(table, batch_rows):
    X, B = table
    calls = []

    def counted(Z):
        calls.append(len(Z))
        return smooth_one(Z)

    whole = explain_rows(smooth_one, X, B)
    split = explain_rows(counted, X, B, batch_rows=batch_rows)
    np.testing.assert_allclose(split.values, whole.values, rtol=0, atol=1e-12)
    # every call stays within the budget, except where one coalition's m rows exceed it
    assert max(calls) <= max(batch_rows, len(B))
    if batch_rows == 6 * 32 * 3:  # three rows' whole tables per call
        assert calls[1:] == [batch_rows, batch_rows, 6 * 32]


def test_one_output_of_a_vector_model(table):
    X, B = table
    both = explain_rows(smooth, X, B)
    second = explain_rows(smooth, X, B, output=1)
    np.testing.assert_allclose(second.values, both.values[..., 1], atol=1e-12)
    with pytest.raises(xai.XAIValueError, match=r"output=2 .* 2 outputs"):
        explain_rows(smooth, X, B, output=2)


def subset_formula(predict, x, B):
    """phi_i from the definition: a sum over the subsets of the other features, each v(S)
    evaluated on its own (no shared tables, no bit tricks)."""
    n = len(x)

    def v(S):
        Z = B.copy()
        Z[:, list(S)] = x[list(S)]
        return predict(Z).mean()

    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for S in itertools.combinations(others, size):
                phi[i] += weight * (v(S + (i,)) - v(S))
    return phi


@pytest.fixture(scope="module")
def diabetes():
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.load_diabetes(return_X_y=True, as_frame=True)
    return X, y


def test_gradient_boosting_equals_the_subset_formula(diabetes):
    from sklearn.ensemble import GradientBoostingRegressor

    X, y = diabetes
    X6 = X.iloc[:, :6].to_numpy()  # 6 features: the formula's 2^6 * 6 subsets stay quick
    model = GradientBoostingRegressor(n_estimators=30, random_state=0).fit(X6, y)
    B, rows = X6[:20], X6[100:103]
    r = explain_rows(model, rows, B)
    for row, x in enumerate(rows):
        np.testing.assert_allclose(
            r.values[row], subset_formula(model.predict, x, B), rtol=0, atol=1e-10
        )


def test_a_dataframe_gives_names_and_its_model_gets_dataframes(diabetes):
    from sklearn.linear_model import LinearRegression

    X, y = diabetes
    model = LinearRegression().fit(X, y)  # fitted on a DataFrame: feature_names_in_
    background = X.iloc[:30][list(reversed(X.columns))]  # the same columns, another order
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "X does not have valid feature names" would fail
        r = explain_rows(model, X.iloc[:5], background)
    assert r.feature_names == tuple(X.columns)
    expected = model.coef_ * (X.iloc[:5].to_numpy() - X.iloc[:30].to_numpy().mean(axis=0))
    np.testing.assert_allclose(r.values, expected, rtol=0, atol=1e-10)
    with pytest.raises(xai.XAIValueError, match=r"lacks \['bmi'\]"):
        explain_rows(model, X.iloc[:5], X.iloc[:30].drop(columns="bmi"))


def test_a_classifier_is_explained_through_its_probabilities():
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.linear_model import LogisticRegression

    X, y = datasets.load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    r = explain_rows(model, X[::30], X[::10])
    assert r.values.shape == (5, 4, 3)
    np.testing.assert_allclose(r.full_value, model.predict_proba(X[::30]), atol=1e-12)
    np.testing.assert_allclose(r.base_value + r.values.sum(axis=1), r.full_value, atol=1e-12)
    virginica = explain_rows(model, X[::30], X[::10], output=2)
    np.testing.assert_allclose(virginica.values, r.values[..., 2], atol=1e-12)


def test_a_torch_module(table):
    torch = pytest.importorskip("torch")
    X, B = table
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    net = net.double().train()
    r = explain_rows(net, X, B)

    def numpy_net(Z):
        with torch.no_grad():
            return net(torch.as_tensor(Z)).numpy()[:, 0]

    np.testing.assert_allclose(r.values, explain_rows(numpy_net, X, B).values, atol=1e-12)
    assert net.training  # its mode restored


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_tree_models_agree_with_shaps_interventional_tree_explainer(diabetes, library):
    shap = pytest.importorskip("shap")
    module = pytest.importorskip(library)
    X, y = diabetes
    X, y = X.to_numpy(), y.to_numpy()
    if library == "xgboost":
        model = module.XGBRegressor(n_estimators=60, max_depth=3, random_state=0)
    else:
        model = module.LGBMRegressor(n_estimators=60, num_leaves=8, random_state=0, verbose=-1)
    model.fit(X, y)
    B, rows = X[:50], X[200:210]
    ours = explain_rows(model, rows, B)
    theirs = shap.TreeExplainer(model, data=B, feature_perturbation="interventional")
    values = theirs.shap_values(rows)
    largest = np.abs(ours.values).max()
    assert largest > 5
    assert np.abs(values - ours.values).max() < 1e-5 * largest
    np.testing.assert_allclose(ours.full_value, model.predict(rows), rtol=1e-6)


def test_sampled_values_within_their_standard_errors(table):
    X, B = table
    exact = explain_rows(smooth_one, X, B)
    sampled = explain_rows(smooth_one, X, B, exact=False, n_permutations=64, seed=5)
    assert sampled.method == "permutation" and sampled.stderr.shape == (7, 5)
    z = np.abs(sampled.values - exact.values) / np.maximum(sampled.stderr, 1e-12)
    assert np.mean(z < 3) > 0.95 and z.max() < 5
    np.testing.assert_allclose(
        sampled.values.sum(axis=1), sampled.full_value - sampled.base_value, atol=1e-9
    )
    again = explain_rows(smooth_one, X, B, exact=False, n_permutations=64, seed=5)
    np.testing.assert_array_equal(again.values, sampled.values)


def test_too_many_features_are_refused_before_any_evaluation():
    calls = []

    def f(Z):
        calls.append(1)
        return Z.sum(axis=1)

    with pytest.raises(TooManyFeaturesError, match="exact=False"):
        explain_rows(f, np.zeros((2, 17)), np.zeros((3, 17)))
    assert not calls


@pytest.mark.parametrize(
    ("X", "B", "match"),
    [
        (np.zeros((2, 3)), np.zeros((4, 2)), "background must have X's 3 columns"),
        (np.array([["a", "b"]]), np.zeros((1, 2)), "numeric"),
        (np.zeros((0, 3)), np.zeros((1, 3)), "at least one row"),
    ],
)
def test_bad_tables_say_what_was_expected(X, B, match):
    with pytest.raises(xai.XAIError, match=match):
        explain_rows(lambda Z: Z.sum(axis=1), X, B)


def test_a_nan_output_is_refused():
    def f(Z):
        out = Z.sum(axis=1)
        out[Z[:, 0] > 0.5] = np.nan
        return out

    with pytest.raises(xai.XAIValueError, match=r"row 0 of X with features \[0\] .* is nan"):
        explain_rows(f, np.ones((2, 3)), np.zeros((2, 3)))
    with pytest.raises(xai.XAIValueError, match=r"background rows .* is nan"):
        explain_rows(f, np.zeros((2, 3)), np.ones((2, 3)))


def test_to_shap_carries_rows_and_data(table):
    shap = pytest.importorskip("shap")
    X, B = table
    r = explain_rows(smooth_one, X, B, feature_names=list("abcde"))
    e = r.to_shap()
    assert isinstance(e, shap.Explanation)
    np.testing.assert_array_equal(e.values, r.values)
    np.testing.assert_array_equal(e.data, X)
    np.testing.assert_allclose(e.base_values, np.full(7, r.base_value))
    assert list(e.feature_names) == list("abcde")


def test_ray_engine_gives_the_local_values(table, ray_session):
    X, B = table
    local = explain_rows(smooth, X, B)
    remote = explain_rows(smooth, X, B, engine="ray", workers=3)
    # the same tables; the calls group other rows, so a matrix product may round apart
    np.testing.assert_allclose(remote.values, local.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(remote.full_value, local.full_value, rtol=0, atol=1e-12)
    sampled = explain_rows(smooth_one, X, B, exact=False, n_permutations=16)
    sampled_remote = explain_rows(smooth_one, X, B, exact=False, n_permutations=16, engine="ray")
    np.testing.assert_allclose(sampled_remote.values, sampled.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sampled_remote.stderr, sampled.stderr, rtol=0, atol=1e-12)


def test_the_tabular_example_runs_fast(tmp_path):
    pytest.importorskip("sklearn")
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "beeswarm.png"
    script = Path(__file__).parents[1] / "examples" / "tabular_shap.py"
    result = subprocess.run(
        [sys.executable, str(script), "--fast", "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["feature", "mean", "|value|", "mean", "value"]
    assert lines[1].split()[0] in {"s5", "bmi"}  # the two strongest features lead
    assert "20 rows in" in result.stdout and out.stat().st_size > 10_000


def test_the_beeswarm_puts_each_dot_at_its_value_on_its_features_line(table):
    from xai.viz._mpl import pyplot
    from xai.viz.beeswarm import beeswarm, swarm_offsets

    X, B = table
    r = explain_rows(smooth_one, X, B)
    fig = beeswarm(r, max_display=3)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]  # bottom to top
    ranked = r.ranking()
    assert labels == ["sum of 2 other features", *reversed(ranked[:3])]
    dots = ax.collections
    for line, name in enumerate([*ranked[:3], None]):  # drawn top to bottom
        offsets = dots[line].get_offsets()
        column = (
            r.values[:, list(r.feature_names).index(name)]
            if name
            else r.values[:, [r.feature_names.index(n) for n in ranked[3:]]].sum(axis=1)
        )
        np.testing.assert_allclose(offsets[:, 0], column)  # x: the row's value
        assert np.all(np.abs(offsets[:, 1] - (3 - line)) <= 0.4 + 1e-9)  # on its line
    # colour: the feature's value, scaled by its 5th and 95th percentiles
    feature = X[:, list(r.feature_names).index(ranked[0])]
    low, high = np.percentile(feature, [5, 95])
    np.testing.assert_allclose(dots[0].get_array(), np.clip((feature - low) / (high - low), 0, 1))
    assert fig.axes[1].get_ylabel() == "feature value"
    pyplot().close(fig)
    spread = swarm_offsets(np.zeros(9))  # nine equal values: a symmetric stack
    assert sorted(spread.tolist()) == pytest.approx([-0.4, -0.3, -0.2, -0.1, 0, 0.1, 0.2, 0.3, 0.4])
    with pytest.raises(xai.XAIValueError, match="output=0"):
        beeswarm(explain_rows(smooth, X, B))
