"""Exact Shapley values of a gradient-boosting model on scikit-learn's diabetes data, for
every row of the test part, drawn as a beeswarm (docs/tabular.md's figure).

    python examples/tabular_shap.py            # writes docs/images/tabular_beeswarm.png
    python examples/tabular_shap.py --fast     # 20 rows, about 2 s

About 15 s on two cores: 142 rows x 2^10 coalitions x 100 background rows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.ensemble import GradientBoostingRegressor

import xai
from xai.viz.beeswarm import beeswarm
from xai.viz.grids import save_figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/tabular_beeswarm.png"))
    parser.add_argument("--fast", action="store_true", help="20 test rows (for the tests)")
    args = parser.parse_args()
    X, y = load_diabetes(return_X_y=True, as_frame=True)  # 442 rows, 10 features
    train, test = X.iloc[:300], X.iloc[300 : 320 if args.fast else None]
    model = GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=0)
    model.fit(train, y.iloc[:300])
    began = time.perf_counter()
    r = xai.shapley.explain_rows(model, test, train.iloc[:100])
    seconds = time.perf_counter() - began
    assert np.allclose(r.base_value + r.values.sum(axis=1), model.predict(test))
    print(r.table(digits=2))
    print(f"{len(test)} rows in {seconds:.1f} s ({len(test) / seconds:.1f} rows/s)")
    fig = beeswarm(
        r,
        title=f"Exact Shapley values of a gradient-boosting model, {len(test)} diabetes "
        f"test rows\n(disease progression; base value {r.base_value:.1f})",
    )
    print(f"wrote {save_figure(fig, args.out)}")


if __name__ == "__main__":
    main()
