"""Shapley values of a tabular model over many rows: ``xai.shapley.explain_rows`` against
shap's Exact, Permutation and (interventional) Tree explainers, on the same rows.

scikit-learn's bundled diabetes data (442 rows, 10 features); a GradientBoostingRegressor
(100 trees of depth 3, seeded); 100 background rows (the first 100); the rows explained
follow them. Exact values of this game cost 2^10 x 100 = 102,400 model rows per row
explained, for any implementation: the `floor` row evaluates the model on exactly those
rows and nothing else. shap's TreeExplainer is the polynomial-time algorithm for trees
(Lundberg et al. 2020): enumeration cannot beat it on trees, and it is listed as the
reference for what a tree-specific algorithm costs (its values differ where a sample
falls between a float64 threshold and its float32 rounding: docs/tabular.md).

    python benchmarks/bench_tabular.py            # 40 rows, 3 rounds
    python benchmarks/bench_tabular.py --quick    # 4 rows, 1 round
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _timing import race

BACKGROUND, TREES, SEED = 100, 100, 0


def problem(rows: int) -> tuple[Any, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor

    X, y = load_diabetes(return_X_y=True)
    model = GradientBoostingRegressor(n_estimators=TREES, max_depth=3, random_state=SEED)
    model.fit(X, y)
    return model, X[:BACKGROUND], X[BACKGROUND : BACKGROUND + rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 rows, one round")
    parser.add_argument("--rows", type=int, default=None, help="rows explained (default 40)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3)")
    args = parser.parse_args()
    rows_n = args.rows or (4 if args.quick else 40)
    rounds = args.rounds or (1 if args.quick else 3)

    import shap

    import xai
    from xai.shapley import explain_rows

    model, background, rows = problem(rows_n)
    n = rows.shape[1]
    masks = ((np.arange(1 << n)[:, None] >> np.arange(n)) & 1).astype(bool)

    def floor() -> Any:  # the model on every coalition's rows, nothing else
        for x in rows:
            model.predict(np.where(masks[:, None, :], x, background).reshape(-1, n))

    masker = shap.maskers.Independent(background, max_samples=BACKGROUND)
    exact = shap.explainers.Exact(model.predict, masker)
    permutation = shap.explainers.Permutation(model.predict, masker, seed=SEED)
    tree = shap.TreeExplainer(model, data=background, feature_perturbation="interventional")
    exact(rows[:1], silent=True)  # numba compiles on the first call (~10 s): not timed
    permutation(rows[:1], silent=True)

    results: dict[str, Any] = {}

    def keep(name: str, fn: Any) -> Any:
        def run() -> None:
            results[name] = fn()

        return run

    fns = {
        "floor": keep("floor", floor),
        "xai": keep("xai", lambda: explain_rows(model, rows, background).values),
        "shap Exact": keep(
            "shap Exact",
            lambda: exact(rows, max_evals=2 * (1 << n), silent=True).values,
        ),
        "shap Permutation": keep("shap Permutation", lambda: permutation(rows, silent=True).values),
        "shap Tree (interventional)": keep("shap Tree", lambda: tree.shap_values(rows)),
    }
    began = time.perf_counter()
    seconds = race(fns, rounds=rounds, budget=600)
    truth = results["xai"]
    largest = float(np.abs(truth).max())
    notes = {
        "floor": "the model on the 2^n x m rows alone",
        "xai": "exact",
        "shap Exact": "exact",
        "shap Permutation": "sampled (shap's default max_evals=500), not exact",
        "shap Tree (interventional)": "polynomial in the trees; float32 thresholds",
    }
    print(
        f"xai {xai.__version__}, shap {shap.__version__}; diabetes: {rows_n} rows explained, "
        f"{n} features, {BACKGROUND} background rows, GradientBoostingRegressor "
        f"({TREES} trees); median of {rounds} round(s); max |phi| = {largest:.2f}\n"
    )
    print("| implementation | seconds | rows/s | × xai time | max abs diff from xai | note |")
    print("|---|---:|---:|---:|---:|---|")
    for name, time_s in seconds.items():
        key = "shap Tree" if name.startswith("shap Tree") else name
        diff = "-" if name == "floor" else f"{float(np.abs(results[key] - truth).max()):.1e}"
        print(
            f"| {name} | {time_s:.2f} | {rows_n / time_s:.1f} | {time_s / seconds['xai']:.2f} "
            f"| {diff} | {notes[name]} |"
        )
    print(f"\n{time.perf_counter() - began:.0f} s in all")


if __name__ == "__main__":
    main()
