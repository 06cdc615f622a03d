"""The pictures to look at after a dataset run: ``write_report(store, out)``.

It writes into the folder ``out``:

- ``class_means.png``: one row per class. The class's mean input image (when the images
  can be read), then, for each method, the mean of its maps over the class's samples:
  where a mean map is bright, the method pointed there for most samples of the class.
  Samples are grouped by their true label, or by the predicted class when the data had
  no labels (the title says which). One colour scale, 0 to 1, for every panel.
- ``confident.png``: one row per predicted class. The ``per_class`` samples the model
  was most sure of, then the ``per_class`` it was least sure of (confidence: the
  softmax probability of the top class), each with the first method's map over its
  image, titled with its id, the predicted class and probability, and the true label;
  mistakes are titled in red.
- ``summary.json``: per class, the number of samples, the accuracy (the fraction of
  the class's samples predicted as it) and the mean confidence of the predictions of
  it; the methods and layers; the figures' file names.

The store holds no images. They are read again from the data the run recorded (a named
data set, an IDX file or a folder of images), or taken from ``images=`` (data given as
a tensor or a torch dataset); without them the figures show the maps alone and say so.
Maps are read chunk by chunk (one chunk per batch of the run): memory stays bounded
however large the store. At most ``MAX_ROWS`` classes are drawn (the largest).
The computations over the store are in ``xai.viz.report_data``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xai._files import atomic_write_text, check_writable_dir
from xai.core.errors import XAIValueError
from xai.viz._mpl import pyplot
from xai.viz.grids import _MISTAKE_COLOR, _colorbar, _show, _wrap, save_figure
from xai.viz.overlay import colorize, overlay, to_rgb
from xai.viz.report_data import (
    _class_means,
    _confident,
    _facts,
    _images,
    _per_class,
    _Run,
    class_mean_maps,
    confident_rows,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from xai.data.sources import Source

__all__ = ["MAX_ROWS", "class_mean_maps", "confident_rows", "write_report"]

MAX_ROWS = 30
"""At most this many classes (rows) in a figure: the ones with the most samples."""

_MEAN_LABEL = "mean importance (0 = least, 1 = most)"
_ALPHA, _COLORMAP = 0.5, "jet"
_MEANS, _CONFIDENT = "class_means.png", "confident.png"


def _rgb(x: Any) -> np.ndarray:
    """A (C, H, W) input as RGB for display: rescaled to [0, 1] if it is not in it."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] not in (1, 3):
        x = x.mean(axis=0, keepdims=True)
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
        x = (x - low) / (high - low) if high > low else np.zeros_like(x)
    return to_rgb(np.moveaxis(x, 0, -1))


def _shown_classes(counts: np.ndarray) -> tuple[list[int], str | None]:
    """The classes drawn: those with samples, at most ``MAX_ROWS`` (the largest)."""
    present = [int(c) for c in np.flatnonzero(counts)]
    if not present:
        raise XAIValueError("store: no sample has a class (no labels, no predicted class)")
    if len(present) <= MAX_ROWS:
        return present, None
    largest = sorted(np.argsort(-counts, kind="stable")[:MAX_ROWS].tolist())
    return largest, f"the {MAX_ROWS} largest of {len(present)} classes shown"


def _figure(
    rows: int, columns: int, cell: tuple[float, float], extra: float, gap: int = 0,
    heads: tuple[tuple[int, int, str], ...] = (),
) -> tuple[Figure, np.ndarray, Any]:  # fmt: skip
    """A rows x columns grid of panels, a colour bar below; a narrow empty column before
    column ``gap`` (0: none) and above the panels a row of ``(first, stop, text)``
    headers, each over its columns."""
    width, height = cell
    fig = pyplot().figure(
        figsize=(max(width * (columns + 0.3 * bool(gap)) + 1.6, 6.0), height * rows + extra),
        layout="constrained",
    )
    ratios = [0.01] * bool(heads) + [1.0] * rows + [0.14 / height]
    widths = [1.0] * columns
    if gap:
        widths.insert(gap, 0.3)
    grid = fig.add_gridspec(len(ratios), len(widths), height_ratios=ratios, width_ratios=widths)
    top = int(bool(heads))

    def at(column: int) -> int:
        return column + int(bool(gap) and column >= gap)

    axes = np.array(
        [[fig.add_subplot(grid[top + r, at(c)]) for c in range(columns)] for r in range(rows)],
        dtype=object,
    )
    for first, stop, text in heads:
        ax = fig.add_subplot(grid[0, at(first) : at(stop - 1) + 1])
        ax.axis("off")
        ax.set_title(text, fontsize=12, fontweight="bold")
    margin = len(widths) // 4
    bar = fig.add_subplot(grid[top + rows, margin : len(widths) - margin])
    return fig, axes, bar


def _row_label(ax: Any, text: str) -> None:
    ax.set_ylabel(text, rotation=0, ha="right", va="center", fontsize=11, labelpad=8)


def _layers(run: _Run, methods: list[str]) -> str:
    return ", ".join(f"{m} ({run.store.layers.get(m) or 'default layer'})" for m in methods)


def _class_means_figure(
    run: _Run, means: dict[str, np.ndarray], counts: np.ndarray,
    image_means: np.ndarray | None, note: str | None,
) -> Figure:  # fmt: skip
    """``class_means.png``: a row per class (label, n), its mean image, its mean maps."""
    shown, cut = _shown_classes(counts)
    methods = list(means)
    height, width = next(iter(means.values())).shape[1:]
    cell = (max(1.35 * width / height, 1.1) + 0.25, 1.35 + 0.12)
    columns = len(methods) + (image_means is not None)
    fig, axes, bar = _figure(len(shown), columns, cell, 1.7)
    for r, c in enumerate(shown):
        panels = [("mean image", _rgb(image_means[c]))] if image_means is not None else []
        panels += [(m, colorize(np.clip(means[m][c], 0.0, 1.0), _COLORMAP)) for m in methods]
        for ax, (title, pixels) in zip(axes[r], panels, strict=True):
            _show(ax, pixels)
            if r == 0:
                ax.set_title(title, fontsize=12)
        _row_label(axes[r, 0], f"{run.name(c)}\nn={int(counts[c])}")
    _colorbar(fig, bar, _COLORMAP)
    bar.set_xlabel(_MEAN_LABEL, fontsize=10)
    lines = [
        f"Mean map per class, {len(run.store)} samples grouped by {run.grouped_by}",
        _layers(run, methods),
        *(text for text in (cut, note) if text),
    ]
    fig.suptitle(_wrap(lines, fig, 12), fontsize=12)
    return fig


def _short(identifier: Any) -> str:
    text = str(identifier)
    if isinstance(identifier, int | np.integer):
        return f"#{text}"
    return text if len(text) <= 22 else f"{text[:11]}...{text[-8:]}"


def _confident_figure(
    run: _Run, method: str, picks: list[tuple[np.ndarray, np.ndarray]],
    source: Source | None, note: str | None,
) -> Figure:  # fmt: skip
    """``confident.png``: a row per predicted class, its most then least confident
    samples with ``method``'s map over the image; mistakes titled in red."""
    predictions = np.bincount(run.predicted[run.predicted >= 0], minlength=run.classes)
    shown, cut = _shown_classes(predictions)
    per_class = max(max(len(most), len(least)) for most, least in picks)
    wanted = sorted({int(r) for c in shown for part in picks[c] for r in part})
    array = run.store.maps(method)
    maps = dict(zip(wanted, np.asarray(array.oindex[np.array(wanted)]), strict=True))
    ids, labels = run.store.ids, run.labels
    height, width = array.shape[1:]
    cell = (max(1.3 * width / height, 1.6) + 0.15, 1.3 + (0.5 if labels is not None else 0.36))
    heads = (
        (0, per_class, f"most confident ({per_class})"),
        (per_class, 2 * per_class, f"least confident ({per_class})"),
    )
    fig, axes, bar = _figure(len(shown), 2 * per_class, cell, 2.0, per_class, heads)
    wrong = 0
    for r, c in enumerate(shown):
        most, least = picks[c]
        cells = [*most, *[None] * (per_class - len(most)), *least]
        cells += [None] * (2 * per_class - len(cells))
        for ax, row in zip(axes[r], cells, strict=True):
            if row is None:
                ax.axis("off")
                continue
            saliency = np.clip(np.asarray(maps[row], dtype=np.float64), 0.0, 1.0)
            if source is not None:
                image = _rgb(source.batch(row, row + 1).x[0].detach().cpu())
                _show(ax, overlay(image, saliency, _ALPHA, _COLORMAP))
            else:
                _show(ax, colorize(saliency, _COLORMAP))
            lines = [_short(ids[row]), f"{run.name(c)} {run.word}={run.confidence[row]:.2f}"]
            mistake = labels is not None and int(labels[row]) != c
            if labels is not None:
                lines.append(f"true: {run.name(int(labels[row]))}")
            wrong += mistake
            color, weight = (_MISTAKE_COLOR, "bold") if mistake else ("black", "normal")
            ax.set_title("\n".join(lines), fontsize=9, color=color, fontweight=weight)
        _row_label(axes[r, 0], f"{run.name(c)}\n{int(predictions[c])} predicted")
    _colorbar(fig, bar, _COLORMAP)
    lines = [
        f"Most and least confident samples per predicted class, {_layers(run, [method])}",
        "confidence: softmax probability of the predicted class"
        if run.word == "p"
        else "confidence: the explained score (the store holds no class probabilities)",
    ]
    if labels is not None:
        lines.append(f"red titles: wrong predictions ({wrong} of the samples shown)")
    lines += [text for text in (cut, note) if text]
    fig.suptitle(_wrap(lines, fig, 12), fontsize=12)
    return fig


def _summary(
    run: _Run, methods: list[str], counts: np.ndarray, figures: list[str], note: str | None
) -> dict[str, Any]:
    classes = []
    for c in range(run.classes):
        mine, entry = run.predicted == c, {"class": c, "name": run.name(c)}
        entry.update(count=int(counts[c]), predicted=int(mine.sum()))
        if run.labels is not None:
            truth = run.labels == c
            entry["accuracy"] = float((run.predicted[truth] == c).mean()) if truth.any() else None
        entry["mean_confidence"] = float(run.confidence[mine].mean()) if mine.any() else None
        classes.append(entry)
    accuracy = None if run.labels is None else float((run.labels == run.predicted).mean())
    return {
        "store": str(run.store.path),
        "samples": len(run.store),
        "methods": methods,
        "layers": {m: run.store.layers.get(m) for m in methods},
        "counts_by": run.grouped_by,
        "confidence": "top-class softmax probability" if run.word == "p" else "explained score",
        "accuracy": accuracy,
        "mean_confidence": float(run.confidence.mean()),
        "classes": classes,
        "figures": figures,
        "images": note or "shown",
    }


def write_report(
    store: Any,
    out: str | os.PathLike[str],
    *,
    method: str | None = None,
    images: Any = None,
    per_class: int = 3,
) -> list[Path]:
    """Write a dataset run's figures and summary into the folder ``out`` (see the
    module's doc): ``class_means.png``, ``confident.png`` and ``summary.json``.

    Args:
        store: an ``ExplanationStore`` or its path; it must be complete.
        out: the folder (created if needed); files in it are replaced whole.
        method: the one method to draw (default: every method in the class means, the
            first one in the confident samples).
        images: the run's inputs, when the store's data cannot be read again (a tensor
            or a torch dataset): an ``(N, C, H, W)`` tensor or the same data object.
        per_class: how many most and how many least confident samples per class.

    Returns:
        The paths written.

    Raises:
        XAIValueError: an incomplete store (the message names its missing chunks and how
            to resume the run), an unknown method, images that are not the run's.
    """
    per_class = _per_class(per_class, "write_report")
    run = _facts(store)
    methods = list(run.store.methods) if method is None else [run.store._method(method)]
    folder = check_writable_dir(out, "out")
    source, note = _images(run.store, images)
    means, counts, image_means = _class_means(run, methods, source)
    picks = _confident(run, per_class)
    folder.mkdir(parents=True, exist_ok=True)
    means_figure = _class_means_figure(run, means, counts, image_means, note)
    written = [save_figure(means_figure, folder / _MEANS, dpi=100)]
    confident = _confident_figure(run, methods[0], picks, source, note)
    written.append(save_figure(confident, folder / _CONFIDENT, dpi=100))
    summary = _summary(run, methods, counts, [_MEANS, _CONFIDENT], note)
    written.append(atomic_write_text(folder / "summary.json", json.dumps(summary, indent=2) + "\n"))
    return written
