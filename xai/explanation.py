"""The result types: ``Explanation`` for image maps, ``ShapleyResult`` for
Shapley values.

Small immutable records that the API, the command line, the plots and the docs all
consume. An ``Explanation``'s tensors live on the CPU, detached, in float32 (``targets``
in int64), so a result can be plotted, saved or compared without touching the model
again. This module imports neither torch nor anything heavy: a Shapley computation on a
numpy function never loads torch. The result types know no integration: converting to
``shap.Explanation`` is ``xai.integrations.shap.to_explanation(result)``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from xai.core.errors import XAIValueError
from xai.core.validate import Constraint, Integer, validate

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

__all__ = ["Explanation", "ShapleyResult"]

# The constraints of ``ShapleyResult.table``'s options, declared once.
_TABLE: dict[str, Sequence[Constraint]] = {"digits": [Integer(0, 12)]}
# ``Explanation.plot`` / ``to_html``: how many samples are drawn at most.
_PANELS: dict[str, Sequence[Constraint]] = {"limit": [Integer(1)]}

IMPORTANCE_LABEL = "importance, 0 = least, 1 = most"
"""The label of the colour scale of ``Explanation.plot`` and ``Explanation.to_html``."""


def _png(rgb: np.ndarray) -> str:
    """An ``(H, W, 3)`` uint8 RGB array as a base64 PNG ``data:`` URI (lossless)."""
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB array
        raise XAIValueError(f"could not encode a {rgb.shape} image as PNG")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _figure_png(fig: Figure) -> str:
    """A matplotlib figure as a base64 PNG ``data:`` URI; the figure is closed."""
    import io

    from xai.viz._mpl import pyplot

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=90, facecolor="white")
    finally:
        pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _format(value: Any, digits: int) -> str:
    """``11/6 (1.8333)`` for a Fraction, ``1.8333`` for a number, ``[a, b]`` for a vector."""
    if isinstance(value, Fraction):
        return f"{value} ({float(value):.{digits}f})"
    array = np.asarray(value, dtype=float)
    if array.ndim == 0:
        return f"{float(array):.{digits}f}"
    return "[" + ", ".join(f"{v:.{digits}f}" for v in array.ravel()) + "]"


@dataclass(frozen=True, eq=False)
class Explanation:
    """Saliency maps for a batch of N images, and what they explain.

    Attributes:
        maps: ``(N, H, W)`` float32 in [0, 1] at the input's resolution: ``raw`` resized
            bilinearly (``align_corners=False``) and min-max normalised per sample. A
            constant map normalises to zeros, never NaN.
        raw: ``(N, h, w)`` float32, the unnormalised map at the explained layer's
            resolution, after the method's own ReLU (if it has one). For the guided
            methods, which work at the input, ``h, w == H, W``.
        targets: ``(N,)`` int64, the class explained for each sample; ``-1`` where the
            target names no single class (a callable, ``xai.targets.Similarity``).
        scores: ``(N,)`` float32, the explained score of each sample: the model's output
            for the target class (a logit for most classifiers), or the callable's value.
        method: the registry name of the method, e.g. ``"gradcam"``.
        layer: the dotted name (from ``model.named_modules()``) of the explained layer;
            ``None`` for guided backpropagation, which explains the input directly.
        attributions: ``(N, C, H, W)`` float32 signed input attributions for the guided
            methods (guided backpropagation, Guided Grad-CAM); ``None`` for CAMs.
        explained: what each sample explains, in a few words: ``"class 3"``,
            ``"segmentation: class 1 over mask sum 57"``, ``"callable score"``, ...
        logits: ``(N, K)`` float32, the model's class scores in the explained forward
            pass (its predictions, at no extra cost: ``logits.topk(5)``); ``None`` when
            the output holds no (N, K) tensor of class scores (a segmentation model).
    """

    maps: torch.Tensor
    raw: torch.Tensor
    targets: torch.Tensor
    scores: torch.Tensor
    method: str
    layer: str | None
    attributions: torch.Tensor | None = None
    explained: tuple[str, ...] = ()
    logits: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.maps.shape[0]
        if not self.explained:
            described = tuple(
                f"class {c}" if c >= 0 else "no single class" for c in self.targets.tolist()
            )
            object.__setattr__(self, "explained", described)
        if len(self.explained) != n:
            raise XAIValueError(
                f"Explanation.explained has {len(self.explained)} rows, maps has {n}"
            )
        if self.maps.ndim != 3 or self.raw.ndim != 3:
            raise XAIValueError(
                f"Explanation.maps and .raw must be (N, H, W) and (N, h, w); "
                f"got {tuple(self.maps.shape)} and {tuple(self.raw.shape)}"
            )
        for name in ("raw", "targets", "scores", "logits"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != n:
                raise XAIValueError(
                    f"Explanation.{name} has {getattr(self, name).shape[0]} rows, maps has {n}"
                )

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def __getitem__(self, index: int | slice) -> Explanation:
        """The explanation of one sample (kept as a batch of one) or of a slice."""
        if isinstance(index, int):
            if not -len(self) <= index < len(self):
                raise IndexError(f"index {index} is out of range for {len(self)} samples")
            index = slice(index, index + 1 if index != -1 else None)
        attributions = None if self.attributions is None else self.attributions[index]
        return Explanation(
            maps=self.maps[index],
            raw=self.raw[index],
            targets=self.targets[index],
            scores=self.scores[index],
            method=self.method,
            layer=self.layer,
            attributions=attributions,
            explained=self.explained[index],
            logits=None if self.logits is None else self.logits[index],
        )

    def __repr__(self) -> str:
        n, h, w = self.maps.shape
        rh, rw = self.raw.shape[1:]
        return (
            f"Explanation(method={self.method!r}, layer={self.layer!r}, n={n}, "
            f"maps={h}x{w}, raw={rh}x{rw}, targets={self.targets.tolist()})"
        )

    def label(self, index: int, class_names: Sequence[str] | None = None) -> str:
        """What sample ``index`` explains, in words: the class name when ``class_names``
        (e.g. ``model.class_names``) names its target, as ``"Trouser (class 1)"``; else
        ``explained[index]`` (``"class 1"``, ``"callable score"``, ...)."""
        target = int(self.targets[index])
        if class_names is not None and 0 <= target < len(class_names):
            return f"{class_names[target]} (class {target})"
        return self.explained[index]

    def _panels(
        self, images: Any, limit: int, alpha: float, colormap: str, caller: str
    ) -> list[np.ndarray]:
        """The first ``limit`` maps as RGB uint8: ``xai.viz.overlay.overlay`` over their
        images, or ``colorize`` alone (the heat map) when no images are given."""
        from xai.viz.overlay import colorize, overlay

        limit = validate(caller, _PANELS, limit=limit)["limit"]
        count = min(limit, len(self))
        if images is None:
            return [colorize(self.maps[i].numpy(), colormap) for i in range(count)]
        if len(images) != len(self):
            raise XAIValueError(
                f"{caller}: {len(images)} images for {len(self)} maps; pass the explained "
                f"batch, e.g. the x given to xai.explain"
            )
        return [overlay(images[i], self.maps[i].numpy(), alpha, colormap) for i in range(count)]

    def _heading(self) -> str:
        n, h, w = self.maps.shape
        where = f" at {self.layer}" if self.layer is not None else " (at the input)"
        return f"{self.method}{where}: {n} map{'s' if n != 1 else ''}, {h}×{w}"

    def plot(
        self,
        images: Any = None,
        *,
        class_names: Sequence[str] | None = None,
        alpha: float = 0.5,
        colormap: str = "jet",
        limit: int = 8,
    ) -> Figure:
        """The maps as a figure: one panel per sample (the first ``limit``), titled with
        the class and the score, and a colour bar ("importance, 0 = least, 1 = most").

        Args:
            images: the explained ``(N, C, H, W)`` batch (any layout
                ``xai.viz.overlay.to_rgb`` takes per image): each map is drawn over its
                image (``xai.viz.overlay.overlay``). ``None`` (the explanation keeps no
                images): the heat maps alone.
            class_names: one name per class (``model.class_names``) for the titles.
            alpha: heat-map weight over the images, in [0, 1].
            colormap: an OpenCV colour-map name (``xai.viz.overlay.colormaps``).
            limit: at most this many panels; the title says how many are left out.

        Returns:
            A matplotlib figure (``xai.viz.grids.save_figure`` writes and closes it).
        """
        import math

        from xai.viz.grids import _cell, _colorbar, _figure, _show, _wrap

        panels = self._panels(images, limit, alpha, colormap, "Explanation.plot")
        columns = min(len(panels), 4)
        rows = math.ceil(len(panels) / columns)
        cell_width, image_height = _cell(panels[0].shape, 2.0, 1.9)
        size = (max(cell_width * columns, 4.8), (image_height + 0.6) * rows + 1.4)
        fig, axes, colorbar_axes = _figure(rows, columns, len(panels), size, image_height)
        for i, (ax, pixels) in enumerate(zip(axes, panels, strict=True)):
            _show(ax, pixels)
            ax.set_title(
                f"{self.label(i, class_names)}\nscore {float(self.scores[i]):.4g}", fontsize=11
            )
        _colorbar(fig, colorbar_axes, colormap)
        colorbar_axes.set_xlabel(IMPORTANCE_LABEL, fontsize=10)
        title = self._heading()
        if len(self) > len(panels):
            title += f" (first {len(panels)}; {len(self) - len(panels)} more not shown)"
        fig.suptitle(_wrap([title], fig), fontsize=13)
        return fig

    def to_html(
        self,
        images: Any = None,
        *,
        class_names: Sequence[str] | None = None,
        alpha: float = 0.5,
        colormap: str = "jet",
        limit: int = 8,
    ) -> str:
        """Self-contained HTML (what Jupyter shows for an ``Explanation``): the method,
        layer and map size, then for each of the first ``limit`` samples its map as an
        inline PNG (over its image when ``images`` is given, as ``plot`` draws it), its
        class and score, and the colour scale. No external resource; all text escaped.
        The options are ``plot``'s."""
        panels = self._panels(images, limit, alpha, colormap, "Explanation.to_html")
        from xai.viz.overlay import colorize

        e = html.escape
        scale = max(1, 112 // max(panels[0].shape[:2]))  # small maps drawn larger
        cells = []
        for i, pixels in enumerate(panels):
            height, width = pixels.shape[:2]
            cells.append(
                '<figure style="margin:4px;text-align:center">'
                f'<img src="{_png(pixels)}" width="{width * scale}" height="{height * scale}" '
                f'style="image-rendering:pixelated" alt="{e(f"map {i}")}">'
                f'<figcaption style="font-size:12px">{e(self.label(i, class_names))}<br>'
                f"score {e(f'{float(self.scores[i]):.4g}')}</figcaption></figure>"
            )
        more = len(self) - len(panels)
        if more:
            cells.append(f'<div style="align-self:center;margin:8px">and {more} more</div>')
        bar = np.repeat(colorize(np.linspace(0.0, 1.0, 160)[None, :], colormap), 10, axis=0)
        what = (
            "each map over its image"
            if images is not None
            else "heat maps (to_html(images) or plot(images) draws them over the images)"
        )
        return (
            '<div class="xai-explanation">'
            f"<div><b>Explanation</b>: {e(self._heading())}; {e(what)}</div>"
            f'<div style="display:flex;flex-wrap:wrap">{"".join(cells)}</div>'
            f'<div style="font-size:12px"><img src="{_png(bar)}" width="160" height="10" '
            f'alt="colour scale"> {e(IMPORTANCE_LABEL)}</div></div>'
        )

    def _repr_html_(self) -> str:
        """Jupyter's rich display: ``to_html()``, the heat maps with class and score."""
        return self.to_html()


@dataclass(frozen=True, eq=False)
class ShapleyResult:
    """Shapley values of the n players (features) of one game.

    Attributes:
        values: ``(n,)`` float64, or ``(n, k)`` for a game with k outputs; an object array
            of ``fractions.Fraction`` when computed in exact rational arithmetic.
        base_value: v(empty set), the value with no feature present.
        full_value: v(all features). Efficiency: ``base_value + values.sum(0) ==
            full_value`` (exactly for the exact engine; in expectation for estimators).
        feature_names: one name per player.
        method: ``"exact"``, ``"permutation"``, ``"kernelshap"``, or the wrapped library's
            explainer (``"shap-exact"``, ``"captum-shapley-sampling"``, ...).
        stderr: standard errors of ``values`` for sampling estimators, else ``None``.
        interactions: ``(n, n)`` pairwise Shapley interaction index (Grabisch & Roubens
            1999), symmetric with a zero diagonal, when requested; else ``None``.
        n_evaluations: coalitions the game was evaluated on.
        data: the feature values explained: (n,) for one instance, (rows, n) over rows;
            ``None`` when the game does not know them.
        rows: whether the result covers many rows (``xai.shapley.explain_rows``): then
            ``values`` is (rows, n) [x k], ``stderr`` likewise, ``full_value`` (rows,)
            [x k] (each row's f(x)) and ``base_value`` is shared by every row.
    """

    values: np.ndarray
    base_value: Any
    full_value: Any
    feature_names: tuple[str, ...]
    method: str = "exact"
    stderr: np.ndarray | None = None
    interactions: np.ndarray | None = None
    n_evaluations: int = 0
    data: np.ndarray | None = None
    rows: bool = False

    def __post_init__(self) -> None:
        n = len(self.feature_names)
        if self.rows:
            if self.values.ndim not in (2, 3) or self.values.shape[1] != n:
                raise XAIValueError(
                    f"ShapleyResult.values over rows must be (rows, n) or (rows, n, k) with "
                    f"n = {n} feature names; got {self.values.shape}"
                )
        elif self.values.ndim not in (1, 2) or self.values.shape[0] != n:
            raise XAIValueError(
                f"ShapleyResult.values must be (n,) or (n, k) with n = "
                f"{n} feature names; got {self.values.shape}"
            )

    @property
    def exact(self) -> bool:
        """Whether the values are exact fractions."""
        return self.values.dtype == object and all(
            isinstance(v, Fraction) for v in self.values.ravel()
        )

    def ranking(self) -> list[str]:
        """Feature names by decreasing |value| (summed over outputs for vector games; over
        rows, by the mean |value|)."""
        magnitude = np.abs(self.values.astype(float))
        if self.rows:  # the mean |value| over rows
            magnitude = magnitude.mean(axis=0)
        if magnitude.ndim == 2:
            magnitude = magnitude.sum(axis=1)
        return [self.feature_names[i] for i in np.argsort(-magnitude, kind="stable")]

    def table(self, digits: int = 4) -> str:
        """A plain-text table: feature, value (and standard error), base and full value."""
        digits = validate("ShapleyResult.table", _TABLE, digits=digits)["digits"]
        if self.rows:
            return self._rows_table(digits)
        from xai._tables import text_table

        def fmt(value: Any) -> str:
            return _format(value, digits)

        header = ["feature", "value"]
        rows = [[name, fmt(self.values[i])] for i, name in enumerate(self.feature_names)]
        if self.stderr is not None:
            header.append("(standard error)")
            rows = [[*row, f"({fmt(se)})"] for row, se in zip(rows, self.stderr, strict=True)]
        pad = [""] * (len(header) - 2)
        rows.append(["v(empty)", fmt(self.base_value), *pad])
        rows.append(["v(all)", fmt(self.full_value), *pad])
        return text_table(header, rows)

    def _rows_table(self, digits: int) -> str:
        """Over rows: each feature's mean |value| and mean value (per output), most
        important first; then v(empty), shared by the rows."""
        from xai._tables import text_table

        values = np.asarray(self.values, dtype=float)
        index = {name: i for i, name in enumerate(self.feature_names)}

        def fmt(array: Any) -> str:
            array = np.asarray(array, dtype=float)
            if array.ndim == 0:
                return f"{float(array):.{digits}f}"
            return "[" + ", ".join(f"{v:.{digits}f}" for v in array) + "]"

        rows = []
        for name in self.ranking():
            column = values[:, index[name]]
            rows.append([name, fmt(np.abs(column).mean(axis=0)), fmt(column.mean(axis=0))])
        rows.append(["v(empty)", fmt(self.base_value), ""])
        table = text_table(["feature", "mean |value|", "mean value"], rows, right=[1])
        note = f"({len(values)} rows; v(empty) + the values of a row = that row's f(x))"
        return table + "\n" + note

    def plot(self, *, output: int = 0, title: str | None = None, digits: int = 3) -> Figure:
        """The values as a figure: for one instance the waterfall from ``base_value`` to
        ``full_value`` (``xai.viz.shapley.waterfall``: one bar per feature, labelled with
        its name and value); over rows the beeswarm (``xai.viz.beeswarm.beeswarm``).

        Args:
            output: the output (class) of a game with several outputs.
            title: the axes' title (default: the method).
            digits: decimals in the waterfall's labels.

        Returns:
            A matplotlib figure (``xai.viz.shapley.save_figure`` writes and closes it).
        """
        if self.rows:
            from xai.viz.beeswarm import beeswarm

            extra = self.values.ndim == 3
            return beeswarm(self, output=output if extra else None, title=title)
        from xai.viz.shapley import waterfall

        return waterfall(self, output=output, title=title, digits=digits)

    def to_html(self, digits: int = 4) -> str:
        """Self-contained HTML (what Jupyter shows for a ``ShapleyResult``): the table of
        ``table`` (feature, value, standard error when estimated, v(empty), v(all)) and
        ``plot()`` as an inline PNG. No external resource; all text escaped."""
        digits = validate("ShapleyResult.to_html", _TABLE, digits=digits)["digits"]
        e = html.escape
        cell = 'style="text-align:{};padding:1px 8px"'
        left, right = cell.format("left"), cell.format("right")

        def row(*texts: str, tag: str = "td") -> str:
            first, *rest = texts
            cells = [f"<{tag} {left}>{e(first)}</{tag}>"]
            cells += [f"<{tag} {right}>{e(text)}</{tag}>" for text in rest]
            return "<tr>" + "".join(cells) + "</tr>"

        if self.rows:
            values = np.asarray(self.values, dtype=float)
            index = {name: i for i, name in enumerate(self.feature_names)}
            body = [row("feature", "mean |value|", "mean value", tag="th")]
            for name in self.ranking():
                column = values[:, index[name]]
                body.append(
                    row(
                        name,
                        _format(np.abs(column).mean(axis=0), digits),
                        _format(column.mean(axis=0), digits),
                    )
                )
            body.append(row("v(empty)", _format(self.base_value, digits), ""))
            caption = f"{len(values)} rows; v(empty) + the values of a row = that row's f(x)"
        else:
            estimated = self.stderr is not None
            head = ["feature", "value"] + (["standard error"] if estimated else [])
            body = [row(*head, tag="th")]
            for i, name in enumerate(self.feature_names):
                texts = [name, _format(self.values[i], digits)]
                if self.stderr is not None:
                    texts.append(_format(self.stderr[i], digits))
                body.append(row(*texts))
            pad = [""] if estimated else []
            body.append(row("v(empty)", _format(self.base_value, digits), *pad))
            body.append(row("v(all)", _format(self.full_value, digits), *pad))
            caption = "v(empty) + the sum of the values = v(all)"
        outputs = self.values.shape[-1] if self.values.ndim == (3 if self.rows else 2) else 1
        picture = _figure_png(self.plot())
        note = " (output 0)" if outputs > 1 else ""
        return (
            '<div class="xai-shapley">'
            f"<div><b>ShapleyResult</b>: {e(self.method)}, {len(self.feature_names)} "
            f"features, {e(caption)}</div>"
            f'<table style="border-collapse:collapse;font-family:monospace">{"".join(body)}'
            f"</table>"
            f'<img src="{picture}" style="max-width:100%" alt="{e("plot" + note)}"></div>'
        )

    def _repr_html_(self) -> str:
        """Jupyter's rich display: ``to_html()``, the table and the waterfall."""
        return self.to_html()

    def to_shap(self) -> Any:
        """This result as a ``shap.Explanation`` (``xai.integrations.shap.to_explanation``):
        ``shap.plots.waterfall`` for one instance, ``beeswarm`` over rows. Needs shap."""
        from xai.integrations.shap import to_explanation

        return to_explanation(self)

    def __repr__(self) -> str:
        if self.rows:
            outputs = "" if self.values.ndim == 2 else f", outputs={self.values.shape[2]}"
            top = ", ".join(self.ranking()[:3])
            return (
                f"ShapleyResult(method={self.method!r}, rows={self.values.shape[0]}, "
                f"n={len(self.feature_names)}{outputs}, most important: {top})"
            )
        values = ", ".join(
            str(v) if isinstance(v, Fraction) else f"{float(v):.6g}"
            for v in self.values.reshape(self.values.shape[0], -1)[:, 0]
        )
        extra = "" if self.values.ndim == 1 else f", outputs={self.values.shape[1]}"
        return (
            f"ShapleyResult(method={self.method!r}, n={len(self.feature_names)}{extra}, "
            f"values=[{values}])"
        )
