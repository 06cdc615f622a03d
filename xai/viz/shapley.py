"""Shapley values as pictures: a waterfall from v(∅) to v(all), and a bar chart.

    >>> import xai
    >>> from xai.viz.shapley import waterfall
    >>> fig = waterfall(xai.exact_shapley(xai.shapley.housing(), exact=True))
    >>> [t.get_text() for t in fig.axes[0].texts][:1]
    ['+29/6 (4.833)']
    >>> import matplotlib.pyplot as plt; plt.close(fig)

Exact results (``fractions.Fraction`` values) are labelled with the fraction and its
decimal; bars are drawn in floating point. matplotlib is imported on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from xai.core.errors import XAITypeError, XAIValueError
from xai.core.validate import Constraint, Integer, validate
from xai.explanation import ShapleyResult
from xai.viz._mpl import pyplot
from xai.viz.grids import save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["bar", "save_figure", "waterfall"]

POSITIVE = "#d6604d"
"""Bars of positive contributions: red."""
NEGATIVE = "#4393c3"
"""Bars of negative contributions: blue."""


_LABEL_BOX = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"}


def _column(result: ShapleyResult, output: int) -> tuple[list[Any], Any, Any, np.ndarray | None]:
    """The values, base value, full value and standard errors of one output."""
    if not isinstance(result, ShapleyResult):
        raise XAITypeError(f"expected an xai.ShapleyResult; got {type(result).__name__}")
    values = result.values
    base, full, stderr = result.base_value, result.full_value, result.stderr
    if values.ndim == 2:
        outputs = values.shape[1]
        if not -outputs <= output < outputs:
            raise XAIValueError(f"output {output} is out of range: the game has {outputs} outputs")
        values = values[:, output]
        base = np.asarray(base, dtype=object).reshape(-1)[output]
        full = np.asarray(full, dtype=object).reshape(-1)[output]
        if stderr is not None:
            stderr = np.asarray(stderr)[:, output]
    elif output not in (0, -1):
        raise XAIValueError(f"output {output} is out of range: the game has one output")
    if stderr is not None:
        stderr = np.asarray(stderr, dtype=np.float64).reshape(-1)
    return list(values), base, full, stderr


def _number(value: Any, digits: int, sign: bool = False) -> str:
    """``+11/6 (1.833)`` for a Fraction, ``+1.833`` for a float; ``−`` for negatives."""
    if isinstance(value, Fraction):
        magnitude = abs(value)
        text = str(magnitude)
        if magnitude.denominator != 1:
            text += f" ({float(magnitude):.{digits}f})"
    else:
        value = float(value)
        magnitude = abs(value)
        text = f"{magnitude:.{digits}f}" if sign else f"{magnitude:.{digits}g}"
    if value < 0:
        return "−" + text
    return ("+" if sign else "") + text


def _order(values: list[Any]) -> list[int]:
    """Feature indices by decreasing |value|, ties in feature order."""
    magnitude = np.abs(np.array([float(v) for v in values]))
    return [int(i) for i in np.argsort(-magnitude, kind="stable")]


# The constraints of ``waterfall``'s and ``bar``'s numeric options, declared once
# (``output`` is then checked against the game's outputs; negative counts from the end).
_PLOT: dict[str, Sequence[Constraint]] = {"output": [Integer()], "digits": [Integer(0, 12)]}


def _style(ax: Axes, names: list[str], title: str) -> None:
    ax.set_yticks(range(len(names)), names, fontsize=11)
    ax.set_ylim(len(names) - 0.4, -0.6)  # largest at the top
    ax.tick_params(axis="x", labelsize=10)
    ax.set_ylabel("feature", fontsize=11)
    ax.set_title(title, fontsize=13)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _default_title(result: ShapleyResult, output: int, kind: str) -> str:
    title = f"{kind} ({result.method})"
    if result.values.ndim == 2:
        title += f", output {output}"
    return title


def waterfall(
    result: ShapleyResult, *, output: int = 0, title: str | None = None, digits: int = 3
) -> Figure:
    """A horizontal waterfall from v(∅) = ``base_value`` to v(all) = ``full_value``.

    One bar per feature, ordered by |value| (largest at the top); each bar starts where
    the previous one ended, so the last one ends at ``base_value + sum(values)``, which
    is v(all) by efficiency. Positive contributions are red and go right, negative ones
    blue and go left; each bar is labelled with its value (``+11/6 (1.833)`` for exact
    results). Dashed lines mark v(∅) and v(all).

    Args:
        result: a ``ShapleyResult``.
        output: the column of a vector game's ``(n, k)`` values.
        title: the axes' title (default: the method).
        digits: decimals in the labels.

    Returns:
        The figure (close it, or write it with ``save_figure``).
    """
    options = validate("waterfall", _PLOT, output=output, digits=digits)
    output, digits = options["output"], options["digits"]
    values, base, full, _ = _column(result, output)
    order = _order(values)
    names = [result.feature_names[i] for i in order]
    n = len(order)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 1.6 + 0.62 * n), layout="constrained")

    start = float(base)
    ends = [start]
    for row, i in enumerate(order):
        value = float(values[i])
        end = start + value
        ax.barh(
            row,
            abs(value),
            left=min(start, end),
            height=0.62,
            color=POSITIVE if value >= 0 else NEGATIVE,
            edgecolor="black",
            linewidth=0.6,
        )
        if row + 1 < n:  # connector to the next bar's start
            ax.plot([end, end], [row + 0.31, row + 0.69], color="grey", linewidth=0.8)
        ends.append(end)
        start = end
    low, high = min(*ends, float(full)), max(*ends, float(full))
    span = (high - low) or max(abs(high), 1.0)
    for row, i in enumerate(order):
        value = values[i]
        before, after = ends[row], ends[row + 1]
        right = float(value) >= 0
        ax.text(
            max(before, after) + 0.015 * span if right else min(before, after) - 0.015 * span,
            row,
            _number(value, digits, sign=True),
            ha="left" if right else "right",
            va="center",
            fontsize=10,
            bbox=_LABEL_BOX,
            zorder=3,
        )

    for x, label, y, va in (
        (float(base), f"v(∅) = {_number(base, digits)}", n - 0.45, "top"),
        (float(full), f"v(all) = {_number(full, digits)}", -0.55, "bottom"),
    ):
        ax.axvline(x, color="black", linestyle="--", linewidth=1.0, zorder=0.5)
        ax.annotate(
            label,
            (x, y),
            xytext=(4, 0),
            textcoords="offset points",
            ha="left",
            va=va,
            fontsize=10,
            bbox=_LABEL_BOX,
        )
    ax.set_xlim(low - 0.3 * span, high + 0.3 * span)
    _style(ax, names, title or _default_title(result, output, "Shapley values"))
    ax.set_ylim(n - 0.1, -0.9)  # room for the v(∅) and v(all) labels
    ax.set_xlabel("value of the coalition: v(∅), then adding each feature's Shapley value")
    return fig


def bar(
    result: ShapleyResult, *, output: int = 0, title: str | None = None, digits: int = 3
) -> Figure:
    """Horizontal bars of the Shapley values, largest |value| at the top.

    Positive values are red, negative blue, each labelled with its value; a result
    with ``stderr`` (a sampling estimator) gets ±1 standard-error bars.

    Args:
        result: a ``ShapleyResult``.
        output: the column of a vector game's ``(n, k)`` values.
        title: the axes' title (default: the method).
        digits: decimals in the labels.

    Returns:
        The figure (close it, or write it with ``save_figure``).
    """
    options = validate("bar", _PLOT, output=output, digits=digits)
    output, digits = options["output"], options["digits"]
    values, _, _, stderr = _column(result, output)
    order = _order(values)
    names = [result.feature_names[i] for i in order]
    floats = np.array([float(values[i]) for i in order])
    errors = None if stderr is None else stderr[order]
    n = len(order)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 1.4 + 0.55 * n), layout="constrained")
    ax.barh(
        np.arange(n),
        floats,
        height=0.62,
        color=[POSITIVE if v >= 0 else NEGATIVE for v in floats],
        edgecolor="black",
        linewidth=0.6,
        xerr=errors,
        capsize=4 if errors is not None else 0,
        error_kw={"elinewidth": 1.2, "ecolor": "black"},
    )
    ax.axvline(0.0, color="black", linewidth=0.8)
    spread = np.zeros(n) if errors is None else errors
    low = min(0.0, float((floats - spread).min(initial=0.0)))
    high = max(0.0, float((floats + spread).max(initial=0.0)))
    span = (high - low) or 1.0
    for row, i in enumerate(order):
        value = float(values[i])
        right = value >= 0
        tip = value + spread[row] if right else value - spread[row]
        text = _number(values[i], digits, sign=True)
        if errors is not None:
            text += f" ± {errors[row]:.{digits}f}"
        ax.text(
            tip + (0.02 if right else -0.02) * span,
            row,
            text,
            ha="left" if right else "right",
            va="center",
            fontsize=10,
        )
    # Room for the labels on the sides that have bars.
    ax.set_xlim(
        low - (0.4 if (floats < 0).any() else 0.05) * span,
        high + (0.4 if (floats >= 0).any() else 0.05) * span,
    )
    _style(ax, names, title or _default_title(result, output, "Shapley values"))
    label = "Shapley value (contribution to v(all) − v(∅))"
    if errors is not None:
        label += "; error bars: ±1 standard error"
    ax.set_xlabel(label)
    return fig
