r"""Shapley values of a tabular model for every row of a table (``explain_rows``).

Each row x is explained by the interventional game of ``ModelGame``,

$$
v_x(S) = \frac{1}{m} \sum_{b \in B} f(x_S, b_{N \setminus S}),
\qquad
\phi_i(x) = \sum_{S \subseteq N \setminus \{i\}} \frac{|S|!\,(n-|S|-1)!}{n!}
\big(v_x(S \cup \{i\}) - v_x(S)\big),
$$

the game shap's Exact and Permutation explainers play with an independent masker, and
the one its TreeExplainer plays with ``feature_perturbation="interventional"``. Exact
values enumerate all 2^n coalitions of every row (2^n · m model rows per row, m the
background's rows); the rows are evaluated together, in calls of at most ``batch_rows``
model rows that hold several rows' coalitions at once, so the background is broadcast
once per call and never copied per row. v(∅) = mean f(B) is the same for every row: it
is computed once and is the result's ``base_value``, so efficiency,
base_value + Σ_i φ_i(x) = f(x), holds row by row.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from xai.core.errors import XAIValueError
from xai.core.validate import Boolean, Constraint, Integer, Literal, NoneValue, validate
from xai.explanation import ShapleyResult
from xai.shapley.exact import shapley_from_table
from xai.shapley.game import TooManyFeaturesError, bad_value, coalition_masks
from xai.shapley.model_function import as_matrix, model_function

__all__ = ["explain_rows"]

_EXPLAIN_ROWS: dict[str, Sequence[Constraint]] = {
    "output": [Integer(0), NoneValue()],
    "exact": [Boolean()],
    "max_features": [Integer(1)],
    "n_permutations": [Integer(1)],
    "seed": [Integer(0)],
    "batch_rows": [Integer(1)],
    "engine": [Literal("local", "ray")],
    "workers": [Integer(1), NoneValue()],
}


def explain_rows(
    f: Any,
    X: Any,
    background: Any,
    feature_names: Sequence[str] | None = None,
    *,
    output: int | None = None,
    exact: bool = True,
    max_features: int = 16,
    n_permutations: int = 256,
    seed: int = 0,
    batch_rows: int = 1 << 17,
    engine: str = "local",
    workers: int | None = None,
) -> ShapleyResult:
    r"""Shapley values of ``f`` for every row of ``X`` against a background, as one result.

    $$
    \phi_i(x) = \sum_{S \subseteq N \setminus \{i\}} \frac{|S|!\,(n-|S|-1)!}{n!}
    \big(v_x(S \cup \{i\}) - v_x(S)\big),
    \quad v_x(S) = \operatorname{mean}_{b \in B} f(x_S, b_{N \setminus S})
    $$

    (Shapley 1953; the interventional game of Janzing et al. 2020 and of shap's
    explainers with an independent masker, Lundberg & Lee 2017.)

    Args:
        f: a fitted scikit-learn-style model (a classifier's ``predict_proba``, else its
            ``predict``: scikit-learn, XGBoost, LightGBM), a torch module, or any function
            mapping a (rows, n) float64 array to (rows,) or (rows, k) values.
        X: the rows to explain, (rows, n): an array or a pandas DataFrame (its column
            names become the feature names; a model fitted on a DataFrame is called with
            DataFrames of those columns).
        background: the rows that stand in for absent features, (m, n) or one row (n,);
            a DataFrame is matched to X's columns by name.
        feature_names: the n names (default: X's columns, else x0, x1, ...).
        output: the column of a 2-D output to explain (a classifier's class index);
            ``None`` (default) explains every column: values then have a last axis k.
        exact: ``True`` (default): every coalition, for n up to ``max_features``.
            ``False``: permutation sampling (antithetic, ``n_permutations`` per row,
            seeded per row from ``seed``) with standard errors in ``stderr``, for any n.
        max_features: the largest n explained exactly; more is refused before any
            evaluation (2^n · m model rows per row).
        n_permutations: permutations per row when ``exact=False``.
        seed: the sampling's seed.
        batch_rows: model rows per call to ``f`` (bounds memory: about
            ``batch_rows · n · 8`` bytes of inputs).
        engine: ``"local"`` (here) or ``"ray"``: the rows are split into blocks, one
            Ray task each (at least ``workers`` blocks, default the cluster's CPUs), with
            ``f`` and the background sent once; the values are the local engine's (to
            float rounding: a call to ``f`` groups other rows).
        workers: for ``engine="ray"``, the blocks to split the rows into at least.

    Returns:
        A ``ShapleyResult`` over rows: ``values`` (rows, n) [x k], ``base_value``
        (v(∅) = mean f(background), shared by all rows), ``full_value`` (rows,) [x k]
        = f(x), ``data`` = X as float64, ``feature_names``; ``stderr`` when sampled.
        ``base_value + values.sum(1) == full_value`` row by row (to float rounding).
        ``result.to_shap()`` is a ``shap.Explanation`` for ``shap.plots.beeswarm``.

    Example:
        >>> import numpy as np, xai
        >>> w = np.array([1.0, -2.0, 0.5])
        >>> X, B = np.eye(3), np.zeros((4, 3))
        >>> r = xai.shapley.explain_rows(lambda Z: Z @ w, X, B)
        >>> r.values  # linear model: phi_i = w_i (x_i - mean b_i)
        array([[ 1. ,  0. ,  0. ],
               [ 0. , -2. ,  0. ],
               [ 0. ,  0. ,  0.5]])
    """
    options = validate(
        "explain_rows",
        _EXPLAIN_ROWS,
        output=output,
        exact=exact,
        max_features=max_features,
        n_permutations=n_permutations,
        seed=seed,
        batch_rows=batch_rows,
        engine=engine,
        workers=workers,
    )
    rows, columns = as_matrix(X, "X")
    bg, _ = as_matrix(background, "background", columns)
    n = rows.shape[1]
    if bg.shape[1] != n:
        raise XAIValueError(
            f"background must have X's {n} columns; got shape {tuple(bg.shape)}. Use rows "
            f"of the same table (for example a sample of the training data)"
        )
    names = _feature_names(feature_names, columns, n)
    if options["exact"] and n > options["max_features"]:
        raise TooManyFeaturesError(
            n,
            options["max_features"],
            len(bg),
            alternative="pass exact=False (permutation sampling, with standard errors)",
        )
    fn, _how = model_function(f, options["output"], columns)
    base = _checked(fn(bg), "the background rows").mean(axis=0)
    job = _Job(fn, bg, base, options["batch_rows"], options["n_permutations"], options["seed"])
    if options["engine"] == "ray":
        from xai.shapley.rows_ray import explain_rows_on_ray

        phi, full, stderr, evaluations = explain_rows_on_ray(
            job, rows, options["exact"], options["workers"]
        )
    elif options["exact"]:
        phi, full, stderr, evaluations = job.exact(rows)
    else:
        phi, full, stderr, evaluations = job.sampled(rows, 0)
    return ShapleyResult(
        values=phi,
        base_value=float(base) if base.ndim == 0 else base.copy(),
        full_value=full,
        feature_names=names,
        method="exact" if options["exact"] else "permutation",
        stderr=stderr,
        n_evaluations=evaluations,
        data=rows,
        rows=True,
    )


def _feature_names(
    given: Sequence[str] | None, columns: tuple[str, ...] | None, n: int
) -> tuple[str, ...]:
    if given is None:
        return columns if columns is not None else tuple(f"x{i}" for i in range(n))
    names = tuple(str(name) for name in given)
    if len(names) != n or len(set(names)) != n:
        raise XAIValueError(
            f"feature_names must be {n} distinct names, one per column of X; got "
            f"{len(names)} ({len(set(names))} distinct)"
        )
    return names


def _checked(out: np.ndarray, where: Any) -> np.ndarray:
    """``out`` if every value is finite; else the first bad one's model row, described by
    ``where(index)`` (a string, or a function of the model row's index)."""
    flat = out.reshape(len(out), -1)
    fine = np.isfinite(flat) & (np.abs(np.nan_to_num(flat)) <= 1e300)
    if not fine.all():
        row = int(np.argmin(fine.all(axis=1)))
        reason = bad_value(flat[row][~fine[row]][0])
        what = where(row) if callable(where) else f"{where} (model row {row})"
        raise XAIValueError(
            f"f's output for {what} is {reason}; every output must be a finite number "
            f"(within +-1e300). Find why the model gives it there and make it finite"
        )
    return out


def _describe(start: int, first: int, count: int, masks: np.ndarray, m: int, index: int) -> str:
    """Model row ``index`` of a call: which row of X, coalition and background row."""
    row, rest = divmod(index, count * m)
    coalition, background_row = divmod(rest, m)
    members = np.flatnonzero(masks[coalition]).tolist()
    return (
        f"row {start + row} of X with features {members} taken from it (coalition "
        f"{first + coalition}) and the others from background row {background_row}"
    )


class _Job:
    """The work of ``explain_rows`` on a block of rows: picklable, for Ray tasks."""

    def __init__(
        self,
        fn: Any,
        background: np.ndarray,
        base: np.ndarray,
        batch_rows: int,
        n_permutations: int,
        seed: int,
    ) -> None:
        self.fn, self.background, self.base = fn, background, base
        self.batch_rows, self.n_permutations, self.seed = batch_rows, n_permutations, seed

    def exact(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, None, int]:
        """Values (rows, n[, k]), f(x) (rows[, k]), no standard errors and the coalitions
        evaluated, from every coalition of every row."""
        v = self.table(rows)
        v[:, 0] = self.base  # v(∅) is the background's mean for every row: computed once
        phi = shapley_from_table(np.moveaxis(v, 0, 1), rows.shape[1])
        phi = np.ascontiguousarray(np.moveaxis(phi, 0, 1))
        return phi, v[:, -1].copy(), None, len(rows) << rows.shape[1]

    def table(self, rows: np.ndarray) -> np.ndarray:
        """v_x(S) for every row x and coalition S: (rows, 2^n[, k])."""
        n, m = rows.shape[1], len(self.background)
        total = 1 << n
        per_row = total * m
        if per_row <= self.batch_rows:  # several rows' whole tables per call
            block, chunk = max(1, self.batch_rows // per_row), total
        else:  # one row per call, its coalitions in chunks
            block, chunk = 1, max(1, self.batch_rows // m)
        v: np.ndarray | None = None
        for start in range(0, len(rows), block):
            x = rows[start : start + block]
            for first in range(0, total, chunk):
                masks = coalition_masks(first, min(first + chunk, total), n)
                # (rows, coalitions, m, n): x where the coalition has the feature, else b.
                inputs = np.where(masks[None, :, None, :], x[:, None, None, :], self.background)
                out = _checked(
                    self.fn(inputs.reshape(-1, n)),
                    functools.partial(_describe, start, first, len(masks), masks, m),
                )
                out = out.reshape(len(x), len(masks), m, *out.shape[1:]).mean(axis=2)
                if v is None:
                    v = np.empty((len(rows), total, *out.shape[2:]), dtype=np.float64)
                if out.shape[2:] != v.shape[2:]:
                    raise XAIValueError(
                        f"f returned outputs of shape {out.shape[2:]} for some rows and "
                        f"{v.shape[2:]} for others"
                    )
                v[start : start + len(x), first : first + len(masks)] = out
        assert v is not None
        return v

    def sampled(
        self, rows: np.ndarray, first_row: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Permutation estimates, f(x), their standard errors and the coalitions
        evaluated, row by row; row r (of
        the whole table: ``first_row`` + index) is seeded from (seed, r), so the values do
        not depend on how rows are split into blocks."""
        from xai.shapley.model_game import ModelGame
        from xai.shapley.sampling import permutation_shapley

        values, errors, full, evaluations = [], [], [], 0
        for index, x in enumerate(rows):
            game = ModelGame(self.fn, x, self.background, batch_size=self.batch_rows)
            state = np.random.SeedSequence([self.seed, first_row + index]).generate_state(1)
            r = permutation_shapley(game, self.n_permutations, seed=int(state[0]))
            # The estimator's own ends; efficiency holds exactly against them.
            values.append(np.asarray(r.values, dtype=np.float64))
            errors.append(np.asarray(r.stderr, dtype=np.float64))
            full.append(np.asarray(r.full_value, dtype=np.float64))
            evaluations += r.n_evaluations
        return np.stack(values), np.stack(full), np.stack(errors), evaluations
