"""One example of every class with its maps, one class per column: the coursework's
per-class figure in landscape (``xai grid``), so that ten classes fit one legible figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xai.core.validate import validate
from xai.explanation import IMPORTANCE_LABEL
from xai.viz._mpl import pyplot
from xai.viz.grids import (
    _CLASS_GRID,
    _MISTAKE_COLOR,
    _cell,
    _colorbar,
    _explain_classes,
    _list,
    _listed_colormap,
    _show,
    _wrap,
)
from xai.viz.overlay import _to_numpy, to_rgb

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["class_columns"]


def _column_figure(
    rows: int, columns: int, size: tuple[float, float], image_height: float
) -> tuple[Figure, np.ndarray, Axes]:
    """A figure with a ``rows`` x ``columns`` grid of axes and, below, a horizontal
    colour-bar axes in a grid of its own, so that the bar's tick labels do not widen the
    columns above them (every column the same width)."""
    plt = pyplot()
    fig = plt.figure(figsize=size, layout="constrained")
    # The bar's row: 0.6 inch, of which its ticks and label take about 0.42.
    outer = fig.add_gridspec(2, 1, height_ratios=[rows * (image_height + 0.2), 0.6])
    panels = outer[0].subgridspec(rows, columns)
    grid = np.array(
        [[fig.add_subplot(panels[r, c]) for c in range(columns)] for r in range(rows)],
        dtype=object,
    )
    side = max(1.0, columns / 4)
    colorbar_axes = fig.add_subplot(outer[1].subgridspec(1, 3, width_ratios=[side, 4, side])[1])
    return fig, grid, colorbar_axes


def class_columns(
    model: Any,
    images: Any,
    labels: Any,
    class_names: Sequence[str] | None = None,
    *,
    methods: Sequence[str] = ("cam", "gradcam"),
    layer: str | None = None,
    alpha: float = 0.5,
    colormap: str = "jet",
    model_name: str | None = None,
    data_name: str | None = None,
) -> Figure:
    """One example of every class with its maps, one class per *column*: the coursework's
    figure in landscape, so that ten classes fit one legible figure.

    For each class, in class order, the first image of that class in ``images`` is
    explained with ``xai.explain`` for the class the model *predicts*. The first row shows
    the inputs, then one row per method with the map (in [0, 1]) drawn over the image in
    ``colormap`` at opacity ``alpha``: each map panel holds two images, the input and the
    map itself (``ax.get_images()[1].get_array()`` is ``Explanation.maps[i]``). Each
    column is titled with the true class, the predicted class and its softmax
    probability; misclassified columns are titled in red (bold). Each axes is labelled
    ``"input c"`` or ``"METHOD c"`` (``ax.get_label()``), ``c`` the true class index.
    Classes with no example are skipped and named in the figure's title. Below the panels,
    a solid colour bar labelled ``IMPORTANCE_LABEL``.

    Args:
        model: a classifier taking ``images`` and returning ``(N, classes)`` scores, left
            as it was (put it in eval mode).
        images: ``(N, C, H, W)`` tensor scaled as the model expects, e.g. [0, 1] for
            ``xai.models.pretrained`` models (also how the images are shown), on the
            model's device.
        labels: ``(N,)`` true class indices.
        class_names: one name per class; default ``model.class_names`` if present, else
            ``"class i"``.
        methods: registry names of the methods, one row each.
        layer: the explained layer (``None``: each method's default).
        alpha: opacity of the maps over the images, in [0, 1].
        colormap: an OpenCV colour-map name (``colormaps``).
        model_name: how the figure's title names the model (default: its class name).
        data_name: where the images come from, for the title ("the first image of each
            class in DATA_NAME").

    Returns:
        The figure: ``1 + len(methods)`` rows, one column per class present.
    """
    validate("class_columns", _CLASS_GRID, alpha=alpha)
    found = _explain_classes(model, images, labels, class_names, methods, layer, colormap)
    methods, batch, truth, names = found.methods, found.batch, found.truth, found.names
    missing, predicted, explanations = found.missing, found.predicted, found.explanations
    probabilities, heat = found.probabilities, _listed_colormap(colormap)

    rows, columns = 1 + len(methods), len(truth)
    cell_width, image_height = _cell(tuple(batch.shape[-2:]), 1.6, 1.75)
    title_height = 0.62  # three lines of 10-point text
    size = (
        max(cell_width * columns + 0.6, 6.0),
        (image_height + 0.15) * rows + title_height + 1.5,
    )
    fig, grid, colorbar_axes = _column_figure(rows, columns, size, image_height)
    wrong = 0
    for column in range(columns):
        true_class, guess = int(truth[column]), int(predicted[column])
        mistake = true_class != guess
        wrong += mistake
        rgb = to_rgb(batch[column])
        top = grid[0, column]
        _show(top, rgb)
        top.set_label(f"input {true_class}")
        top.set_title(
            f"true: {names[true_class]}\npred: {names[guess]}\n"
            f"p = {float(probabilities[column, guess]):.2f}",
            fontsize=10,
            color=_MISTAKE_COLOR if mistake else "black",
            fontweight="bold" if mistake else "normal",
        )
        for row, method in enumerate(methods, start=1):
            ax = grid[row, column]
            _show(ax, rgb)
            saliency = _to_numpy(explanations[method].maps[column]).astype(np.float32)
            ax.imshow(
                saliency,
                cmap=heat,
                vmin=0.0,
                vmax=1.0,
                alpha=alpha,
                interpolation="nearest",
                extent=(-0.5, rgb.shape[1] - 0.5, rgb.shape[0] - 0.5, -0.5),
            )
            ax.set_label(f"{method} {true_class}")
    for row, name in enumerate(["input", *methods]):
        grid[row, 0].set_ylabel(name, fontsize=11)
    _colorbar(fig, colorbar_axes, colormap, IMPORTANCE_LABEL)

    shown = model_name or type(model).__name__
    lines = [
        f"{shown}: {', '.join(methods)} maps of the predicted class",
        f"the first image of each class in {data_name}" if data_name else "one example per class",
    ]
    summary = f"{wrong} of {columns} misclassified" + (" (red titles)" if wrong else "")
    if missing:
        summary += f"; no example of {_list(missing)}"
    lines.append(summary)
    fig.suptitle(_wrap(lines, fig), fontsize=13)
    return fig
