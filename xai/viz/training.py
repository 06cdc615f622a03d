"""Training curves and confusion matrices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xai.viz._mpl import pyplot

__all__ = ["plot_comparison", "plot_confusion", "plot_history"]


def plot_history(result: Any, title: str = "", axes: Any = None) -> Any:
    """Loss and accuracy per epoch, train against validation; the best epoch is marked.

    Args:
        result: an ``xai.training.TrainResult``.
        axes: two matplotlib axes to draw on (default: a new figure).

    Returns:
        The figure.
    """
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    else:
        fig = axes[0].figure
    epochs = [r.epoch + 1 for r in result.history]
    panels = [("loss", "train_loss", "val_loss"), ("accuracy", "train_accuracy", "val_accuracy")]
    for ax, (label, train_key, val_key) in zip(axes, panels, strict=True):
        ax.plot(epochs, [getattr(r, train_key) for r in result.history], "o-", label="train")
        ax.plot(epochs, [getattr(r, val_key) for r in result.history], "s-", label="validation")
        ax.axvline(result.best_epoch + 1, color="grey", linestyle=":", label="best epoch")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.set_title(f"{title} {label}".strip())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_confusion(evaluation: Any, title: str = "", ax: Any = None, data: str = "accuracy") -> Any:
    """A labelled confusion-matrix heatmap: counts in the cells, rows are true classes.

    Args:
        evaluation: an ``xai.training.Evaluation``.
        title: the panel's title, before the accuracy.
        ax: a matplotlib axis to draw on (default: a new figure).
        data: how the accuracy is labelled, e.g. ``"test accuracy"``.
    """
    plt = pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 5.6))
    else:
        fig = ax.figure
    matrix = evaluation.confusion
    names = list(evaluation.class_names)
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title} ({data} {evaluation.accuracy:.3f})".strip())
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=8 if len(names) <= 10 else 6,
                color="white" if matrix[i, j] > threshold else "black",
            )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="images")
    fig.tight_layout()
    return fig


def plot_comparison(comparison: Any, title: str = "") -> Any:
    """For each model of an ``xai.training.Comparison``: its training curves and its
    confusion matrix on the test set, one row per model.

    The loss panels share one y-range, and so do the accuracy panels, so that the models
    compare at a glance.

    Args:
        comparison: the result of ``xai.training.compare``.
        title: an optional title over the whole figure.
    """
    plt = pyplot()
    results: Mapping[str, Any] = comparison.results
    fig, axes = plt.subplots(
        len(results),
        3,
        figsize=(16, 4.6 * len(results)),
        gridspec_kw={"width_ratios": [1, 1, 1.15]},
    )
    axes = np.atleast_2d(axes)
    for row, name in enumerate(results):
        plot_history(results[name], name, axes=axes[row, :2])
        plot_confusion(comparison.evaluations[name], name, ax=axes[row, 2], data="test accuracy")
    for column in (0, 1):
        low = min(ax.get_ylim()[0] for ax in axes[:, column])
        high = max(ax.get_ylim()[1] for ax in axes[:, column])
        for ax in axes[:, column]:
            ax.set_ylim(low, high)
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig
