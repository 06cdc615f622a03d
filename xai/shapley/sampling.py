"""Shapley estimators for games too large to enumerate, with standard errors.

* Permutation sampling (Castro, Gómez & Tejada 2009) with antithetic pairs: each sample
  is the average of the marginal contributions along a random order and along its
  reverse, which are negatively correlated (Mitchell et al. 2022).
* KernelSHAP (Lundberg & Lee 2017) with paired sampling (Covert & Lee 2021): coalitions
  drawn from the Shapley kernel, each with its complement, and the efficiency-constrained
  least-squares solution; standard errors by bootstrapping the pairs.

Both are unbiased (permutation) or consistent (KernelSHAP) estimators of the exact
values of ``xai.exact_shapley``, which the tests use as ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from xai.core.errors import XAIValueError
from xai.core.validate import Boolean, Constraint, Integer, NoneValue, validate
from xai.explanation import ShapleyResult
from xai.shapley.exact import GameLike, as_game
from xai.shapley.game import Game

__all__ = ["kernel_shap", "permutation_shapley"]


# The constraints of each estimator's options, declared once.
_PERMUTATION: dict[str, Sequence[Constraint]] = {
    "n_permutations": [Integer(1)],
    "antithetic": [Boolean()],
    "seed": [Integer(0), NoneValue()],
    "n_features": [Integer(1), NoneValue()],
    "batch_permutations": [Integer(1)],
}
_KERNEL: dict[str, Sequence[Constraint]] = {
    "n_samples": [Integer(1)],
    "paired": [Boolean()],
    "seed": [Integer(0), NoneValue()],
    "n_bootstrap": [Integer(0)],  # 0: no standard errors
    "n_features": [Integer(1), NoneValue()],
}


def _ends(game: Game) -> tuple[np.ndarray, np.ndarray]:
    ends = game(np.array([np.zeros(game.n, bool), np.ones(game.n, bool)]))
    return ends[0].astype(np.float64), ends[1].astype(np.float64)


def permutation_shapley(
    game: GameLike,
    n_permutations: int = 256,
    *,
    antithetic: bool = True,
    seed: int | None = None,
    feature_names: Sequence[str] | None = None,
    n_features: int | None = None,
    batch_permutations: int = 64,
) -> ShapleyResult:
    r"""Shapley values estimated from random orders of the players.

    $\hat\phi_i = \frac1M\sum_{m} \big(v(P^m_i \cup \{i\}) - v(P^m_i)\big)$ with
    $P^m_i$ the players before i in the m-th random order. With ``antithetic`` each
    sample averages an order and its reverse, so ``n_permutations`` samples cost
    ``2 * n_permutations`` orders. Each order costs n - 1 evaluations (the empty and the
    full coalition are evaluated once for all).

    Returns:
        A ``ShapleyResult`` with ``stderr`` = sample standard deviation /
        sqrt(samples). Efficiency holds exactly for every sample.
    """
    options = validate(
        "permutation_shapley",
        _PERMUTATION,
        n_permutations=n_permutations,
        antithetic=antithetic,
        seed=seed,
        n_features=n_features,
        batch_permutations=batch_permutations,
    )
    samples, batch = options["n_permutations"], options["batch_permutations"]
    antithetic = options["antithetic"]
    g = as_game(game, feature_names, options["n_features"])
    rng = np.random.default_rng(options["seed"])
    n = g.n
    v_empty, v_full = _ends(g)
    per_sample: list[np.ndarray] = []
    evaluations = 2
    for start in range(0, samples, batch):
        count = min(batch, samples - start)
        orders = np.argsort(rng.random((count, n)), axis=1)
        if antithetic:
            orders = np.concatenate([orders, orders[:, ::-1]])
        contributions = _contributions(g, orders, v_empty, v_full)
        evaluations += len(orders) * (n - 1)
        if antithetic:
            contributions = (contributions[:count] + contributions[count:]) / 2
        per_sample.append(contributions)
    draws = np.concatenate(per_sample)  # (samples, n) or (samples, n, k)
    stderr = draws.std(axis=0, ddof=1) / np.sqrt(len(draws)) if len(draws) > 1 else None
    return ShapleyResult(
        values=draws.mean(axis=0),
        base_value=_scalar(v_empty),
        full_value=_scalar(v_full),
        feature_names=g.feature_names,
        method="permutation",
        stderr=stderr if stderr is not None else np.full(draws.shape[1:], np.inf),
        n_evaluations=evaluations,
        data=g.instance,
    )


def _contributions(
    game: Game, orders: np.ndarray, v_empty: np.ndarray, v_full: np.ndarray
) -> np.ndarray:
    """Marginal contributions (orders, n[, k]) of each player along each order."""
    count, n = orders.shape
    if n == 1:
        return np.broadcast_to(v_full - v_empty, (count, 1, *v_full.shape)).copy()
    # prefix masks: step t holds the first t players of the order, t = 1 .. n - 1
    ranks = np.empty_like(orders)
    ranks[np.arange(count)[:, None], orders] = np.arange(n)
    steps = np.arange(1, n)
    masks = ranks[:, None, :] < steps[None, :, None]  # (count, n - 1, n)
    inner = game(masks.reshape(-1, n)).astype(np.float64)
    inner = inner.reshape(count, n - 1, *inner.shape[1:])
    chain = np.concatenate(
        [
            np.broadcast_to(v_empty, (count, 1, *v_empty.shape)),
            inner,
            np.broadcast_to(v_full, (count, 1, *v_full.shape)),
        ],
        axis=1,
    )
    gains = np.diff(chain, axis=1)  # gains[:, t] = contribution of the player at rank t
    return np.take_along_axis(gains, ranks.reshape(count, n, *([1] * (gains.ndim - 2))), axis=1)


def kernel_shap(
    game: GameLike,
    n_samples: int = 2048,
    *,
    paired: bool = True,
    seed: int | None = None,
    n_bootstrap: int = 200,
    feature_names: Sequence[str] | None = None,
    n_features: int | None = None,
) -> ShapleyResult:
    r"""KernelSHAP: Shapley values as an efficiency-constrained least-squares fit.

    Coalitions z (0 < |z| < n) are drawn with probability proportional to the Shapley
    kernel, $p(|z| = s) \propto \frac{n-1}{s(n-s)}$, uniformly within a size; with
    ``paired`` each comes with its complement. The estimate solves

    $$
    \min_\phi \frac1m\sum_j \big(v(z_j) - v(\varnothing) - z_j^\top\phi\big)^2
    \quad\text{s.t.}\quad \mathbf 1^\top\phi = v(N) - v(\varnothing)
    $$

    in closed form, $\phi = A^{-1}\big(b - \mathbf 1\,\frac{\mathbf 1^\top A^{-1} b -
    v(N) + v(\varnothing)}{\mathbf 1^\top A^{-1}\mathbf 1}\big)$ with
    $A = \frac1m\sum z z^\top$, $b = \frac1m\sum z (v(z) - v(\varnothing))$.
    Efficiency holds exactly. ``stderr`` is the bootstrap standard deviation over
    ``n_bootstrap`` resamples of the (paired) draws.
    """
    options = validate(
        "kernel_shap",
        _KERNEL,
        n_samples=n_samples,
        paired=paired,
        seed=seed,
        n_bootstrap=n_bootstrap,
        n_features=n_features,
    )
    draws, paired = options["n_samples"], options["paired"]
    g = as_game(game, feature_names, options["n_features"])
    n = g.n
    rng = np.random.default_rng(options["seed"])
    v_empty, v_full = _ends(g)
    if n == 1:
        values = (v_full - v_empty)[None]
        return ShapleyResult(
            values,
            _scalar(v_empty),
            _scalar(v_full),
            g.feature_names,
            "kernelshap",
            np.zeros_like(values),
            n_evaluations=2,
            data=g.instance,
        )
    sizes = np.arange(1, n)
    p = (n - 1) / (sizes * (n - sizes))
    units = draws // 2 if paired else draws
    units = max(units, 1)
    size = rng.choice(sizes, size=units, p=p / p.sum())
    keys = rng.random((units, n))
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    z = ranks < size[:, None]  # a uniform subset of each drawn size
    z = np.stack([z, ~z], axis=1) if paired else z[:, None, :]  # (units, 1 or 2, n)
    y = g(z.reshape(-1, n)).astype(np.float64)
    y = y.reshape(units, z.shape[1], *y.shape[1:]) - v_empty
    values = _solve(z, y, v_full - v_empty)
    boot = []
    for _ in range(options["n_bootstrap"]):
        pick = rng.integers(0, units, size=units)
        boot.append(_solve(z[pick], y[pick], v_full - v_empty))
    stderr = np.std(boot, axis=0, ddof=1) if len(boot) > 1 else np.full(values.shape, np.inf)
    return ShapleyResult(
        values=values,
        base_value=_scalar(v_empty),
        full_value=_scalar(v_full),
        feature_names=g.feature_names,
        method="kernelshap",
        stderr=stderr,
        n_evaluations=2 + z.shape[0] * z.shape[1],
        data=g.instance,
    )


def _solve(z: np.ndarray, y: np.ndarray, total: np.ndarray) -> np.ndarray:
    n = z.shape[-1]
    zf = z.reshape(-1, n).astype(np.float64)
    yf = y.reshape(zf.shape[0], *y.shape[2:])
    A = zf.T @ zf / len(zf)
    b = zf.T @ yf / len(zf)
    ones = np.ones(n)
    try:
        A_inv_b = np.linalg.solve(A, b)
        A_inv_1 = np.linalg.solve(A, ones)
    except np.linalg.LinAlgError:
        raise XAIValueError(
            "too few KernelSHAP samples to identify every feature's value (singular "
            "system); raise n_samples"
        ) from None
    gap = (ones @ A_inv_b - total) / (ones @ A_inv_1)
    return A_inv_b - np.multiply.outer(A_inv_1, gap) if np.ndim(gap) else A_inv_b - A_inv_1 * gap


def _scalar(value: np.ndarray) -> Any:
    return float(value) if np.ndim(value) == 0 else value.copy()
