"""Training curves, confusion matrices, ROC and precision-recall curves, and searches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from xai.viz._mpl import pyplot

__all__ = ["plot_comparison", "plot_confusion", "plot_curves", "plot_history", "plot_search"]


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


def plot_curves(evaluation: Any, title: str = "", log_fpr: bool = False) -> Any:
    """One-vs-rest ROC curves (left, each class's AUC in the legend) and precision-recall
    curves (right, each class's average precision in the legend) of an
    ``xai.training.Evaluation``, one line per class, with the chance diagonal on the ROC.

    Args:
        evaluation: the result of ``xai.training.evaluate`` (it keeps the probabilities).
        title: an optional title over both panels.
        log_fpr: draw the ROC's false positive rate on a log scale, from one negative
            sample up: for a strong classifier, whose curves all hug the top-left corner
            on a linear scale, this shows where they part.
    """
    plt = pyplot()
    names = list(evaluation.class_names)
    colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(12, 5.2))
    for c, name in enumerate(names):
        colour = colours(c % colours.N)
        fpr, tpr, _ = evaluation.roc_curve(c)
        roc.plot(fpr, tpr, color=colour, lw=1.4, label=f"{name} (AUC {evaluation.roc_auc[c]:.3f})")
        precision, recall, _ = evaluation.pr_curve(c)
        pr.step(
            recall,
            precision,
            where="post",
            color=colour,
            lw=1.4,
            label=f"{name} (AP {evaluation.average_precision[c]:.3f})",
        )
    chance = np.geomspace(1e-6, 1, 200) if log_fpr else np.array([0.0, 1.0])
    roc.plot(chance, chance, color="grey", linestyle=":", lw=1, label="chance (AUC 0.5)")
    roc.set_xlabel("false positive rate (1 - specificity)" + (", log scale" if log_fpr else ""))
    roc.set_ylabel("true positive rate (recall)")
    roc.set_title(f"ROC, one class against the rest (macro AUC {evaluation.macro_roc_auc:.3f})")
    pr.set_xlabel("recall")
    pr.set_ylabel("precision")
    pr.set_title("precision-recall, one class against the rest")
    for ax in (roc, pr):
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.grid(alpha=0.3)
    if log_fpr:
        labels = evaluation.labels if evaluation.labels is not None else np.zeros(0, int)
        smallest = int(np.bincount(labels).min()) if len(labels) else 0
        negatives = max(1, len(labels) - smallest)  # the most negatives of any class
        roc.set_xscale("log")
        roc.set_xlim(0.5 / negatives, 1.0)
    roc.legend(fontsize=7, loc="lower right")
    pr.legend(fontsize=7, loc="lower left")
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def plot_search(result: Any, title: str = "") -> Any:
    """A hyper-parameter search: validation and test accuracy of every trial, best first
    (left), and test accuracy against the number of parameters (right, log scale).

    Args:
        result: an ``xai.training.SearchResult``.
        title: an optional title over both panels.
    """
    plt = pyplot()
    trials = list(result.trials)
    # A named trial shows its name; an unnamed one its configuration. The scatter marks
    # each trial by its rank, the number before its label on the left.
    labels = [
        f"{rank}. {t.label if 'name' in t.config else t.describe()}"
        for rank, t in enumerate(trials, 1)
    ]
    fig, (bars, scatter) = plt.subplots(
        1,
        2,
        figsize=(14, 1.6 + 0.55 * max(4, len(trials))),
        gridspec_kw={"width_ratios": [1.3, 1]},
    )
    rows = np.arange(len(trials))
    val = [t.val_accuracy for t in trials]
    test = [t.test_accuracy for t in trials]
    bars.barh(rows - 0.2, val, height=0.4, label="validation (selects)")
    bars.barh(rows + 0.2, test, height=0.4, label="test")
    for row, (v, t) in enumerate(zip(val, test, strict=True)):
        bars.text(v, row - 0.2, f" {v:.3f}", va="center", fontsize=7)
        bars.text(t, row + 0.2, f" {t:.3f}", va="center", fontsize=7)
    bars.set_yticks(rows, labels, fontsize=8)
    bars.invert_yaxis()
    low = min([*val, *test]) if trials else 0.0
    bars.set_xlim(max(0.0, low - 0.1), 1.04)
    bars.set_xlabel("accuracy")
    bars.set_title("trials, ranked by validation accuracy")
    bars.legend(fontsize=8, loc="lower right")
    bars.grid(axis="x", alpha=0.3)
    for model, marker in (("gapcnn", "o"), ("mlp", "s")):
        chosen = [t for t in trials if t.config["model"] == model]
        if chosen:
            scatter.scatter(
                [t.parameters for t in chosen],
                [t.test_accuracy for t in chosen],
                marker=marker,
                label=model.upper() if model == "mlp" else "GAPCNN",
            )
            for t in chosen:
                scatter.annotate(
                    str(trials.index(t) + 1),
                    (t.parameters, t.test_accuracy),
                    fontsize=9,
                    xytext=(4, 3),
                    textcoords="offset points",
                )
    scatter.set_xscale("log")
    scatter.set_xlabel("parameters (log scale)")
    scatter.set_ylabel("test accuracy")
    scatter.set_title("test accuracy against model size (points: rank)")
    scatter.grid(alpha=0.3)
    scatter.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig
