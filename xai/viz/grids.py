"""Grids of explanations: one image under several methods, and one example of every class.

The panels are ``xai.viz.overlay.overlay`` arrays drawn pixel for pixel, so they
match the PNGs the command line writes, and the colour bar is built from the same OpenCV
colour map. matplotlib is imported on first use, with the Agg backend unless a display
backend was chosen already.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xai._files import atomic_write
from xai.core.errors import XAITypeError, XAIValueError
from xai.core.validate import Constraint, Integer, validate
from xai.explanation import IMPORTANCE_LABEL
from xai.viz._mpl import pyplot
from xai.viz.overlay import _OVERLAY, _to_numpy, colorize, overlay, to_rgb

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

__all__ = ["class_grid", "map_figure", "method_grid", "save_figure"]

MAX_COLUMNS = 6
"""At most this many panels in a row of ``method_grid``."""

_MISTAKE_COLOR = "#c0001a"
_SCALE_LABEL = "importance, 0 = least, 1 = most"  # as xai.explanation.IMPORTANCE_LABEL


# The constraints of each function's numeric options, declared once.
_SAVE_FIGURE: dict[str, Sequence[Constraint]] = {"dpi": [Integer(1)]}
_METHOD_GRID: dict[str, Sequence[Constraint]] = dict(_OVERLAY)
_CLASS_GRID: dict[str, Sequence[Constraint]] = dict(_OVERLAY)


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` atomically, then close it.

    The format follows the suffix (``.png``, ``.pdf``, ``.svg``, ...; PNG without one).
    The parent folder is created if needed; an interrupted write leaves no partial file.

    Returns:
        The path written.
    """
    path = Path(path)
    image_format = path.suffix[1:].lower() or "png"
    try:
        dpi = validate("save_figure", _SAVE_FIGURE, dpi=dpi)["dpi"]
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(
            path,
            lambda temporary: fig.savefig(
                temporary, dpi=dpi, format=image_format, facecolor="white"
            ),
        )
    finally:
        pyplot().close(fig)


def _listed_colormap(colormap: str) -> ListedColormap:
    """The OpenCV colour map ``colormap`` as a matplotlib colour map, 256 exact colours."""
    from matplotlib.colors import ListedColormap

    colors = colorize(np.linspace(0.0, 1.0, 256)[None, :], colormap)[0] / 255.0
    return ListedColormap(colors, name=f"opencv-{colormap.strip().lower()}")


def _figure(
    rows: int, columns: int, panels: int, size: tuple[float, float], image_height: float
) -> tuple[Figure, list[Axes], Axes]:
    """A figure with ``panels`` axes in a ``rows`` x ``columns`` grid, filled row by row,
    and below them a horizontal colour-bar axes.

    The colour bar gets its own grid row (rather than ``fig.colorbar(ax=...)``, which
    together with a figure title makes the layout engine let titles overlap the row
    above).
    """
    plt = pyplot()
    fig = plt.figure(figsize=size, layout="constrained")
    grid = fig.add_gridspec(rows + 1, columns, height_ratios=[1.0] * rows + [0.16 / image_height])
    axes = [fig.add_subplot(grid[k // columns, k % columns]) for k in range(panels)]
    margin = columns // 4
    colorbar_axes = fig.add_subplot(grid[rows, margin : columns - margin])
    return fig, axes, colorbar_axes


def _colorbar(fig: Figure, colorbar_axes: Axes, colormap: str, label: str = _SCALE_LABEL) -> None:
    """The map scale, horizontal, in the panels' own colours (the OpenCV colour map), in
    solid colours (the overlays' alpha is not applied), labelled ``label``."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    mappable = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=_listed_colormap(colormap))
    bar = fig.colorbar(mappable, cax=colorbar_axes, orientation="horizontal")
    bar.set_label(label, fontsize=10)
    bar.set_ticks([0.0, 0.25, 0.5, 0.75, 1.0])
    bar.ax.tick_params(labelsize=9)


def _wrap(lines: Sequence[str], fig: Figure, fontsize: float = 13) -> str:
    """``lines`` wrapped to the figure's width (a title wider than the figure is clipped)."""
    characters = max(20, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, characters) for line in lines)


def _show(ax: Axes, pixels: np.ndarray) -> None:
    ax.imshow(pixels, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _cell(shape: tuple[int, ...], height: float, min_width: float) -> tuple[float, float]:
    """(cell width, image height) in inches for panels of images of ``shape``.

    Cells are wider than the image, so each panel's size is set by its height and the
    layout engine keeps every title clear of the row above.
    """
    aspect = shape[1] / shape[0]
    image_height = height / max(1.0, aspect)  # wide images get shorter
    return max(image_height * aspect, min_width) + 0.5, image_height


def _one_map(saliency: Any, name: str) -> np.ndarray:
    array = _to_numpy(saliency)
    if array.ndim == 3 and array.shape[0] == 1:  # one sample of Explanation.maps[i:i+1]
        array = array[0]
    if array.ndim != 2:
        raise XAIValueError(
            f"the map of {name!r} must be (H, W) (one sample); received shape {array.shape}"
        )
    return array


def method_grid(
    image: Any,
    maps: Mapping[str, Any],
    *,
    title: str | None = None,
    alpha: float = 0.5,
    colormap: str = "jet",
    subtitles: Mapping[str, str] | None = None,
    model_input: Any = None,
) -> Figure:
    """One image explained by several methods, side by side.

    The first panel is the input (titled ``"original"`` when ``model_input`` is given,
    which is then the second panel: what the model saw, e.g. gray and 28 x 28, titled
    ``"model input (1x28x28)"``), then one ``overlay`` panel per
    method, titled with its name (and its subtitle, e.g. the target class and score),
    in rows of at most six panels, with one colour bar for the map scale.

    Args:
        image: the explained image, in any layout ``to_rgb``
            accepts (e.g. a ``(C, H, W)`` tensor in [0, 1]).
        maps: method name to ``(H, W)`` map in [0, 1], e.g.
            ``{m: xai.explain(model, x, method=m).maps[0] for m in methods}``; maps of
            another size are resized to the image's.
        title: the figure's title.
        alpha: heat-map weight of the overlays, in [0, 1].
        colormap: an OpenCV colour-map name (``colormaps``).
        subtitles: method name to a second title line.
        model_input: the ``(C, H, W)`` tensor or array in [0, 1] the model was given, shown
            pixel for pixel (``to_rgb``) beside the original.

    Returns:
        The figure (close it, or write it with ``save_figure``).
    """
    validate("method_grid", _METHOD_GRID, alpha=alpha)
    if not isinstance(maps, Mapping) or not maps:
        raise XAIValueError("maps must be a non-empty mapping from method name to (H, W) map")
    subtitles = dict(subtitles or {})
    unknown = sorted(set(subtitles) - set(maps))
    if unknown:
        raise XAIValueError(
            f"subtitles for {', '.join(map(repr, unknown))}, which are not in maps "
            f"({', '.join(map(repr, maps))})"
        )
    rgb = to_rgb(image)
    panels: list[tuple[str, str | None, np.ndarray]] = [("input", None, rgb)]
    if model_input is not None:
        seen = _to_numpy(model_input)
        shape = "x".join(str(n) for n in seen.shape)
        panels = [("original", None, rgb), (f"model input ({shape})", None, to_rgb(model_input))]
    for name, saliency in maps.items():
        panels.append(
            (
                str(name),
                subtitles.get(name),
                overlay(rgb, _one_map(saliency, name), alpha, colormap),
            )
        )

    columns = min(MAX_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    title_lines = 2 if subtitles else 1
    cell_width, image_height = _cell(rgb.shape, 2.2, 2.0)
    size = (
        max(cell_width * columns, 5.4),
        (image_height + 0.05 + 0.25 * title_lines) * rows + 0.9 + (0.6 if title else 0.0),
    )
    fig, axes, colorbar_axes = _figure(rows, columns, len(panels), size, image_height)
    for ax, (name, subtitle, pixels) in zip(axes, panels, strict=True):
        _show(ax, pixels)
        ax.set_title(name if subtitle is None else f"{name}\n{subtitle}", fontsize=12)
    _colorbar(fig, colorbar_axes, colormap)
    if title:
        fig.suptitle(_wrap(title.splitlines(), fig, fontsize=14), fontsize=14)
    return fig


def _names(model: Any, class_names: Sequence[str] | None, outputs: int) -> list[str]:
    if class_names is None:
        class_names = getattr(model, "class_names", None)
    names = [str(n) for n in class_names] if class_names is not None else []
    return names + [f"class {i}" for i in range(len(names), outputs)]


def _list(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _per_class(
    model: Any, images: Any, labels: Any, class_names: Sequence[str] | None
) -> tuple[Any, np.ndarray, list[str], int, list[str]]:
    """The first image of every class present, in class order: ``(batch, true labels,
    class names, number of classes, names of the classes with no image)``, after checking
    that ``images`` is a batch with one integer label each, all within the classes."""
    import torch

    images = torch.as_tensor(images)
    if images.ndim != 4:
        raise XAIValueError(
            f"images must be a (N, C, H, W) batch; received shape {tuple(images.shape)}"
        )
    label_array = _to_numpy(labels).reshape(-1)
    if label_array.shape[0] != images.shape[0]:
        raise XAIValueError(
            f"{images.shape[0]} images but {label_array.shape[0]} labels; give one label per image"
        )
    if label_array.size and not np.issubdtype(label_array.dtype, np.integer):
        raise XAITypeError(f"labels must be class indices (ints); received {label_array.dtype}")
    label_array = label_array.astype(np.int64)

    known = class_names if class_names is not None else getattr(model, "class_names", None)
    if known is not None:
        classes = len(known)
    else:
        with torch.no_grad():
            classes = int(model(images[:1]).shape[1])
    names = _names(model, class_names, classes)
    outside = sorted({int(v) for v in label_array if not 0 <= v < classes})
    if outside:
        raise XAIValueError(f"labels {outside} are outside the {classes} classes 0..{classes - 1}")

    picked = [
        int(np.flatnonzero(label_array == c)[0]) for c in range(classes) if (label_array == c).any()
    ]
    if not picked:
        raise XAIValueError("no image to show: images and labels are empty")
    missing = [names[c] for c in range(classes) if not (label_array == c).any()]
    return images[picked], label_array[picked], names, classes, missing


@dataclass(frozen=True)
class _Explained:
    """The per-class figures' common step (``class_grid``, ``class_columns``)."""

    methods: list[str]
    batch: Any  # the first image of every class present, in class order
    truth: np.ndarray
    names: list[str]
    missing: list[str]
    probabilities: Any  # (rows, classes) softmax of the model's scores, on the CPU
    predicted: Any  # (rows,) the most probable class
    explanations: dict[str, Any]  # method -> Explanation of the predicted class


def _explain_classes(
    model: Any,
    images: Any,
    labels: Any,
    class_names: Sequence[str] | None,
    methods: Sequence[str] | str,
    layer: str | None,
    colormap: str,
) -> _Explained:
    """Check ``methods`` and ``colormap`` (before any work), pick the first image of each
    class, predict each one's class from the model's scores (a tensor, or one in
    ``.logits``) and explain it with every method."""
    import torch

    import xai
    from xai.core.targets import logits_of

    chosen = [methods] if isinstance(methods, str) else list(methods)
    if not chosen:
        raise XAIValueError("methods must name at least one method, e.g. ('cam', 'gradcam')")
    _listed_colormap(colormap)  # an unknown colour map is refused before any work
    batch, truth, names, classes, missing = _per_class(model, images, labels, class_names)
    with torch.no_grad():
        scores = logits_of(model(batch))
    if scores is None or scores.ndim != 2:
        raise XAIValueError(
            "the model must return (N, classes) scores (a tensor, or one in .logits); "
            "wrap it in a module that returns them"
        )
    probabilities = torch.softmax(scores.float(), dim=1).cpu()
    predicted = probabilities.argmax(dim=1)
    names = _names(model, class_names, max(classes, int(predicted.max()) + 1))
    explanations = {
        method: xai.explain(model, batch, method=method, layer=layer, target=predicted.tolist())
        for method in chosen
    }
    return _Explained(chosen, batch, truth, names, missing, probabilities, predicted, explanations)


def class_grid(
    model: Any,
    images: Any,
    labels: Any,
    class_names: Sequence[str] | None = None,
    *,
    methods: Sequence[str] = ("cam", "gradcam"),
    layer: str | None = None,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> Figure:
    """One example of every class with its maps: the figure of the coursework.

    For each class, in class order, the first image of that class in ``images`` is
    shown, then its map under each method, explaining the class the model *predicts*
    (computed with ``xai.explain`` on the picked images). Each row is titled with the
    true and the predicted class; misclassified rows are titled in red. Classes with no
    example are skipped, and named in the figure's title.

    Args:
        model: a classifier taking ``images``, left as it was (put it in eval mode).
        images: ``(N, C, H, W)`` tensor scaled as the model expects, e.g. [0, 1] for
            ``xai.models.pretrained`` models (also how the images are shown).
        labels: ``(N,)`` true class indices.
        class_names: one name per class; default ``model.class_names`` if present, else
            ``"class i"``.
        methods: registry names of the methods, one column each.
        layer: the explained layer (``None``: each method's default).
        alpha: heat-map weight of the overlays, in [0, 1].
        colormap: an OpenCV colour-map name (``colormaps``).

    Returns:
        The figure: one row per class present, ``1 + len(methods)`` columns.
    """
    validate("class_grid", _CLASS_GRID, alpha=alpha)
    found = _explain_classes(model, images, labels, class_names, methods, layer, colormap)
    methods, batch, truth, names = found.methods, found.batch, found.truth, found.names
    missing, predicted, explanations = found.missing, found.predicted, found.explanations
    rows = len(truth)

    columns = 1 + len(methods)
    cell_width, image_height = _cell(tuple(batch.shape[-2:]), 1.95, 1.8)
    size = (max(cell_width * columns, 5.0), (image_height + 0.45) * rows + 1.5)
    fig, axes, colorbar_axes = _figure(rows, columns, rows * columns, size, image_height)
    grid = np.array(axes, dtype=object).reshape(rows, columns)
    wrong = 0
    for row in range(rows):
        rgb = to_rgb(batch[row])
        true_name, predicted_name = names[int(truth[row])], names[int(predicted[row])]
        mistake = int(truth[row]) != int(predicted[row])
        wrong += mistake
        _show(grid[row, 0], rgb)
        grid[row, 0].set_title(
            f"true: {true_name}\npred: {predicted_name}",
            fontsize=11,
            color=_MISTAKE_COLOR if mistake else "black",
            fontweight="bold" if mistake else "normal",
        )
        for column, method in enumerate(methods, start=1):
            _show(grid[row, column], overlay(rgb, explanations[method].maps[row], alpha, colormap))
            grid[row, column].set_title(method, fontsize=11)
    _colorbar(fig, colorbar_axes, colormap)

    lines = [f"Maps of the predicted class, one example per class ({', '.join(methods)})"]
    summary = f"{wrong} of {rows} misclassified" + (" (red titles)" if wrong else "")
    if missing:
        summary += f"; no example of {_list(missing)}"
    lines.append(summary)
    fig.suptitle(_wrap(lines, fig), fontsize=13)
    return fig


def map_figure(
    pixels: Any,
    *,
    title: str,
    colormap: str = "jet",
    note: str | None = None,
    label: str = IMPORTANCE_LABEL,
) -> Figure:
    """One picture of a map (an ``overlay`` or a ``colorize`` array), titled, with its
    colour bar: what ``xai explain`` writes as ``METHOD_overlay.png`` and
    ``METHOD_heatmap.png`` (unless ``--bare``).

    Args:
        pixels: ``(H, W, 3)`` RGB drawn pixel for pixel (``to_rgb`` layouts accepted).
        title: the title, e.g. ``"Bag  99.8 %  — gradcam"``.
        colormap: the OpenCV colour map the pixels were coloured with (the colour bar's).
        note: a second title line, e.g. ``"near-empty: 3 % of the top-1 map"``.
        label: the colour bar's label.

    Returns:
        The figure: one image axes titled ``title`` (and ``note``), one colour bar.
    """
    rgb = to_rgb(pixels)
    height, width = rgb.shape[:2]
    # pixel for pixel at 100 dpi (as xai explain saves it) from 200 to 600 pixels high
    image_height = float(np.clip(height / 100.0, 2.0, 6.0))
    image_width = image_height * width / height
    if image_width > 8.0:  # a wide image: keep the figure at most 8 inches wide
        image_width, image_height = 8.0, 8.0 * height / width
    # A fixed layout, in inches (the layout engine would take most of the drawing time).
    fig_width = max(image_width + 0.4, 3.6)
    fig = pyplot().figure(figsize=(fig_width, image_height))
    text = _wrap([title, *([note] if note else [])], fig, fontsize=11)
    title_height = 0.1 + 0.22 * (text.count("\n") + 1)
    bar_height, below = 0.16, 0.55  # the colour bar, and its ticks and label under it
    fig_height = below + bar_height + 0.12 + image_height + title_height
    fig.set_size_inches(fig_width, fig_height)
    ax = fig.add_axes(
        (
            (fig_width - image_width) / 2 / fig_width,
            (below + bar_height + 0.12) / fig_height,
            image_width / fig_width,
            image_height / fig_height,
        )
    )
    colorbar_axes = fig.add_axes(
        (0.2 / fig_width, below / fig_height, 1 - 0.4 / fig_width, bar_height / fig_height)
    )
    _show(ax, rgb)
    ax.set_title(text, fontsize=11)
    _colorbar(fig, colorbar_axes, colormap, label)
    return fig


def __getattr__(name: str) -> Any:
    # ``class_columns`` lives in xai.viz.class_columns; the old path still finds it.
    if name == "class_columns":
        from xai.viz.class_columns import class_columns

        return class_columns
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
