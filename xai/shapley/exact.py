"""Exact Shapley values by enumerating every coalition once.

Shapley (1953), "A value for n-person games". For a game v on players N, |N| = n,

    phi_i = sum over S subset of N \\ {i} of  |S|! (n - |S| - 1)! / n!  (v(S + i) - v(S)),

which equals the average of i's marginal contribution over all n! orders. All 2^n
coalitions are evaluated exactly once, in bounded chunks; the n values then take
O(n 2^n) vectorised arithmetic (for each i, the 2^(n-1) pairs S, S + i), never a loop
over orders. The pairwise Shapley interaction index (Grabisch & Roubens 1999),

    I_ij = sum over S subset of N \\ {i, j} of |S|! (n - |S| - 2)! / (n - 1)!
           (v(S + i + j) - v(S + i) - v(S + j) + v(S)),

is available on request, in O(n^2 2^n).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from xai.core.errors import XAITypeError, XAIValueError
from xai.core.validate import Boolean, Constraint, Integer, Literal, NoneValue, validate
from xai.explanation import ShapleyResult
from xai.shapley.game import FunctionGame, Game, TooManyFeaturesError, coalition_masks
from xai.shapley.tables import TableGame, to_fraction

__all__ = ["as_game", "exact_shapley", "interaction_index", "shapley_from_table"]

GameLike = Game | Mapping[Any, Any] | str | Path | Callable[[np.ndarray], Any]

# The constraints of ``exact_shapley``'s options, declared once.
_EXACT_SHAPLEY: dict[str, Sequence[Constraint]] = {
    "n_features": [Integer(1), NoneValue()],
    "exact": [Boolean(), NoneValue()],
    "interactions": [Boolean()],
    "max_features": [Integer(1)],
    "chunk_size": [Integer(1), NoneValue()],  # None: the game's preferred chunk
    "engine": [Literal("local", "ray")],
}


def as_game(
    game: GameLike,
    feature_names: Sequence[str] | None = None,
    n_features: int | None = None,
    *,
    max_features: int | None = None,
) -> Game:
    """Wrap a mapping, a table file or a value function as a ``Game``.

    ``max_features`` refuses a table of more features before its values are read.
    """
    if isinstance(game, Game):
        if feature_names is not None and tuple(feature_names) != game.feature_names:
            raise XAIValueError(
                f"feature_names {list(feature_names)} disagree with the game's "
                f"{list(game.feature_names)}; name the players when building the game"
            )
        return game
    if isinstance(game, Mapping | str | Path):
        return TableGame(game, feature_names, max_features=max_features)
    if callable(game):
        return FunctionGame(game, feature_names, n_features)
    raise XAITypeError(
        f"game must be a mapping of coalition values, a table file, a value function on "
        f"(k, n) boolean masks, or an xai.shapley game; got {type(game).__name__}"
    )


def _is_function(game: GameLike) -> bool:
    return callable(game) and not isinstance(game, Game)


def _sizes(n: int) -> np.ndarray:
    numbers = np.arange(1 << n, dtype=np.uint64)
    return np.bitwise_count(numbers).astype(np.int64)


def _without(n: int, bits: Sequence[int]) -> np.ndarray:
    """Numbers of all coalitions that leave out the players in ``bits`` (ascending)."""
    numbers = np.arange(1 << (n - len(bits)), dtype=np.int64)
    for bit in sorted(bits):  # insert a zero bit at each position, lowest first
        low = numbers & ((1 << bit) - 1)
        numbers = ((numbers >> bit) << (bit + 1)) | low
    return numbers


def _weights(n: int, drop: int, exact: bool) -> np.ndarray:
    """w[s] = s! (n - s - drop)! / (n - drop + 1)! for s = 0 .. n - drop."""
    top = math.factorial(n - drop + 1)
    fractions = [
        Fraction(math.factorial(s) * math.factorial(n - s - drop), top) for s in range(n - drop + 1)
    ]
    return np.array(
        fractions if exact else [float(f) for f in fractions], dtype=object if exact else np.float64
    )


def _weighted_sum(w: np.ndarray, d: np.ndarray) -> Any:
    if d.dtype == object:
        return (w.reshape((-1,) + (1,) * (d.ndim - 1)) * d).sum(axis=0)
    return np.tensordot(w, d, axes=(0, 0))


def shapley_from_table(v: np.ndarray, n: int) -> np.ndarray:
    """Shapley values from the values ``v`` of all 2^n coalitions (numbered by bits)."""
    exact = v.dtype == object
    sizes = _sizes(n)
    weights = _weights(n, 1, exact)
    phi = np.empty((n, *v.shape[1:]), dtype=v.dtype)
    for i in range(n):
        S = _without(n, [i])
        phi[i] = _weighted_sum(weights[sizes[S]], v[S | (1 << i)] - v[S])
    return phi


def interaction_index(v: np.ndarray, n: int) -> np.ndarray:
    """The pairwise Shapley interaction index, (n, n) (+ outputs), zero diagonal."""
    exact = v.dtype == object
    sizes = _sizes(n)
    out = np.zeros((n, n, *v.shape[1:]), dtype=v.dtype)
    if exact:
        out[...] = Fraction(0)
    if n < 2:
        return out
    weights = _weights(n, 2, exact)
    for i in range(n):
        for j in range(i + 1, n):
            S = _without(n, [i, j])
            bi, bj = 1 << i, 1 << j
            d = v[S | bi | bj] - v[S | bi] - v[S | bj] + v[S]
            out[i, j] = out[j, i] = _weighted_sum(weights[sizes[S]], d)
    return out


def _table_for(first: np.ndarray, total: int) -> np.ndarray:
    """An empty table for the values of all ``total`` coalitions, shaped and typed after
    ``first``, the values of the first chunk: object for exact games, else float64."""
    dtype = object if first.dtype == object else np.float64
    return np.empty((total, *first.shape[1:]), dtype=dtype)


def _store(v: np.ndarray, start: int, out: np.ndarray) -> None:
    """Put the values of coalitions start, start + 1, ... in the table."""
    if out.shape[1:] != v.shape[1:]:
        raise XAIValueError(
            f"the game returned values of shape {out.shape[1:]} for some coalitions and "
            f"{v.shape[1:]} for others"
        )
    v[start : start + len(out)] = out


def _evaluate_all(game: Game, chunk: int) -> np.ndarray:
    n = game.n
    total = 1 << n
    v: np.ndarray | None = None
    for start in range(0, total, chunk):
        out = game(coalition_masks(start, min(start + chunk, total), n))
        if v is None:
            v = _table_for(out, total)
        _store(v, start, out)
    assert v is not None
    return v


def exact_shapley(
    game: GameLike,
    feature_names: Sequence[str] | None = None,
    *,
    n_features: int | None = None,
    exact: bool | None = None,
    interactions: bool = False,
    max_features: int = 20,
    chunk_size: int | None = None,
    engine: str = "local",
) -> ShapleyResult:
    r"""Exact Shapley values of a game, every coalition evaluated once.

    $$
    \phi_i = \sum_{S \subseteq N \setminus \{i\}}
    \frac{|S|!\,(n-|S|-1)!}{n!}\big(v(S \cup \{i\}) - v(S)\big)
    $$

    Args:
        game: a mapping from coalitions (tuples or frozensets of feature indices or
            names; ``()`` is the empty one) to values, a JSON/CSV table file, a value
            function on (k, n) boolean masks, or a game from ``xai.shapley``
            (``TableGame``, ``ModelGame``, ``ImagePatchGame``).
        feature_names: the players' names (for mappings and functions).
        n_features: the number of players of a value function without names.
        exact: compute in exact rational arithmetic (``Fraction``). ``None`` (default):
            exact when the game's values are Fractions.
        interactions: also compute the pairwise Shapley interaction index.
        max_features: refuse games with more players, before any evaluation: exact
            values cost 2^n evaluations and memory for 2^n values.
        chunk_size: coalitions per call to the game (default: the game's preference).
            With ``engine="ray"``, also the coalitions per Ray task.
        engine: where the coalitions are evaluated. ``"local"`` (default): here, in
            this process. ``"ray"``: by Ray tasks, on the cluster ``ray.init`` connected
            to (or, if Ray is not initialised yet, ``ray.init()``'s: ``RAY_ADDRESS``,
            else a new local cluster with this machine's CPUs). The game goes to the
            object store once and must pickle; each task evaluates a range of
            coalition numbers in the local engine's calls to the game (by default at
            least four tasks per CPU, each a whole number of the game's preferred
            chunks), and the values are combined here exactly as the local engine
            combines them, so the results are the local engine's. An error of the
            game on a worker (a NaN value) is raised as the game raised it. Needs
            ``pip install 'xai-toolkit[ray]'``.

    Returns:
        A ``ShapleyResult``; ``base_value + values.sum(0) == full_value``.

    A game value that is not a finite number (NaN, infinity, beyond 1e300 in magnitude)
    is refused naming its coalition (``xai.shapley.Game`` checks what it returns).

    Example:
        >>> import xai
        >>> r = xai.exact_shapley({(): 20, (0,): 23, (1,): 24, (2,): 25,
        ...                        (0, 1): 24, (0, 2): 26, (1, 2): 28, (0, 1, 2): 30})
        >>> [round(float(v), 4) for v in r.values], r.base_value, r.full_value
        ([1.8333, 3.3333, 4.8333], 20.0, 30.0)
    """
    options = validate(
        "exact_shapley",
        _EXACT_SHAPLEY,
        n_features=n_features,
        exact=exact,
        interactions=interactions,
        max_features=max_features,
        chunk_size=chunk_size,
        engine=engine,
    )
    exact, interactions = options["exact"], options["interactions"]
    max_features, chunk_size = options["max_features"], options["chunk_size"]
    n_features = options["n_features"]
    if n_features is not None and n_features > max_features and _is_function(game):
        raise TooManyFeaturesError(n_features, max_features)  # before naming its players
    g = as_game(game, feature_names, n_features, max_features=max_features)
    n = g.n
    if n > max_features:  # before any evaluation
        raise TooManyFeaturesError(n, max_features, g.evaluations_per_coalition)
    chunk = g.preferred_chunk if chunk_size is None else chunk_size
    if options["engine"] == "ray":
        from xai.shapley.ray_engine import evaluate_on_ray  # imports ray itself, lazily

        v = evaluate_on_ray(g, chunk, task_size=chunk_size)
    else:
        v = _evaluate_all(g, chunk)
    if exact is None:
        exact = v.dtype == object
    if exact and v.dtype != object:
        v = np.vectorize(to_fraction, otypes=[object])(v)
    elif not exact and v.dtype == object:
        v = v.astype(np.float64)
    phi = shapley_from_table(v, n)
    return ShapleyResult(
        values=phi,
        base_value=_scalar(v[0]),
        full_value=_scalar(v[-1]),
        feature_names=g.feature_names,
        method="exact",
        interactions=interaction_index(v, n) if interactions else None,
        n_evaluations=1 << n,
        data=g.instance,
    )


def _scalar(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    return value if isinstance(value, Fraction) else float(value)
