"""A beeswarm summary of Shapley values over many rows (``explain_rows``' result).

One line per feature, most important (largest mean |phi|) on top; one dot per row at its
Shapley value, stacked vertically where values crowd, coloured by the feature's value in
that row (low blue, high red: each feature scaled by its 5th and 95th percentiles). The
same reading as shap's ``shap.plots.beeswarm``, drawn here from the result alone.

matplotlib is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from xai.core.errors import XAIValueError
from xai.viz._mpl import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["beeswarm", "swarm_offsets"]


def swarm_offsets(values: np.ndarray, bins: int = 60, width: float = 0.4) -> np.ndarray:
    """Vertical offsets in [-width, width] that spread dots sharing a value bin: the k-th
    dot of a bin goes to alternate sides, (k + 1) // 2 steps from the line, the step set
    by the most crowded bin (so the widest stack just fills the band)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.zeros(0)
    low, high = float(values.min()), float(values.max())
    span = high - low or 1.0
    which = np.minimum(((values - low) / span * bins).astype(int), bins - 1)
    rank = np.zeros(len(values), dtype=int)
    for b in np.unique(which):
        members = np.flatnonzero(which == b)
        members = members[np.argsort(values[members], kind="stable")]
        rank[members] = np.arange(len(members))
    crowd = int(np.bincount(which).max())
    step = width / max(1, crowd // 2)
    side = np.where(rank % 2 == 1, 1.0, -1.0)
    return side * ((rank + 1) // 2) * step


def beeswarm(
    result: Any,
    *,
    output: int | None = None,
    max_display: int = 12,
    title: str | None = None,
) -> Figure:
    """The beeswarm of a ``ShapleyResult`` over rows (``values`` (rows, n) [x k]).

    Args:
        result: from ``xai.shapley.explain_rows`` (its ``data`` colours the dots).
        output: which output of a multi-output result (a class); required then.
        max_display: features shown; the rest are summed into one line, as shap does.
        title: the figure's title (default: the method and the number of rows).
    """
    values = np.asarray(result.values, dtype=np.float64)
    if values.ndim == 3:
        if output is None or not 0 <= output < values.shape[2]:
            raise XAIValueError(
                f"the result has {values.shape[2]} outputs; pass output=0..."
                f"{values.shape[2] - 1} to choose the one to draw; got output={output}"
            )
        values = values[:, :, output]
    if values.ndim != 2:
        raise XAIValueError(
            f"beeswarm needs values over rows, (rows, n), as explain_rows returns; got shape "
            f"{values.shape}. For one instance, use xai.viz.shapley.waterfall"
        )
    data = None if result.data is None else np.asarray(result.data, dtype=np.float64)
    names = list(result.feature_names)
    order = list(np.argsort(-np.abs(values).mean(axis=0), kind="stable"))
    shown = order[:max_display]
    rest = order[max_display:]
    lines: list[tuple[str, np.ndarray, np.ndarray | None]] = [
        (names[i], values[:, i], None if data is None else data[:, i]) for i in shown
    ]
    if rest:
        lines.append((f"sum of {len(rest)} other features", values[:, rest].sum(axis=1), None))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 1.2 + 0.45 * len(lines)), layout="constrained")
    cmap = plt.get_cmap("coolwarm")
    for row, (_, phi, feature) in enumerate(lines):
        y = len(lines) - 1 - row + swarm_offsets(phi)
        if feature is None:
            ax.scatter(phi, y, s=14, color="#999999", linewidths=0)
            continue
        low, high = np.nanpercentile(feature, [5, 95])
        scaled = np.clip((feature - low) / ((high - low) or 1.0), 0, 1)
        ax.scatter(phi, y, s=14, c=scaled, cmap=cmap, vmin=0, vmax=1, linewidths=0)
    ax.axvline(0, color="#555555", linewidth=0.8)
    ax.set_yticks(range(len(lines)), [line[0] for line in reversed(lines)], fontsize=10)
    ax.set_ylim(-0.7, len(lines) - 0.3)
    ax.set_xlabel("Shapley value (contribution to the model's output)", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    rows = values.shape[0]
    ax.set_title(title or f"{result.method} Shapley values of {rows} rows", fontsize=12)
    if data is not None:
        scale = plt.cm.ScalarMappable(cmap=cmap)
        bar = fig.colorbar(scale, ax=ax, ticks=[0, 1], aspect=30, pad=0.01)
        bar.ax.set_yticklabels(["low", "high"])
        bar.set_label("feature value", fontsize=10)
    return fig
