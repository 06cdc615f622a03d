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

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from xai.core.errors import XAIValueError
from xai.core.validate import Constraint, Integer, validate

if TYPE_CHECKING:
    import torch

__all__ = ["Explanation", "ShapleyResult"]

# The constraints of ``ShapleyResult.table``'s options, declared once.
_TABLE: dict[str, Sequence[Constraint]] = {"digits": [Integer(0, 12)]}


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
        names = list(self.feature_names)
        width = max(len("feature"), *(len(n) for n in names))

        def fmt(value: Any) -> str:
            if isinstance(value, Fraction):
                return f"{value} ({float(value):.{digits}f})"
            array = np.asarray(value, dtype=float)
            if array.ndim == 0:
                return f"{float(array):.{digits}f}"
            return "[" + ", ".join(f"{v:.{digits}f}" for v in array) + "]"

        header = f"{'feature':<{width}}  value"
        if self.stderr is not None:
            header += "  (standard error)"
        lines = [header]
        for i, name in enumerate(names):
            line = f"{name:<{width}}  {fmt(self.values[i])}"
            if self.stderr is not None:
                line += f"  ({fmt(self.stderr[i])})"
            lines.append(line)
        lines.append(f"{'v(empty)':<{width}}  {fmt(self.base_value)}")
        lines.append(f"{'v(all)':<{width}}  {fmt(self.full_value)}")
        return "\n".join(lines)

    def _rows_table(self, digits: int) -> str:
        """Over rows: each feature's mean |value| and mean value (per output), most
        important first; then v(empty), shared by the rows."""
        values = np.asarray(self.values, dtype=float)
        names = self.ranking()
        index = {name: i for i, name in enumerate(self.feature_names)}
        width = max(len("feature"), len("v(empty)"), *(len(n) for n in names))

        def fmt(array: Any) -> str:
            array = np.asarray(array, dtype=float)
            if array.ndim == 0:
                return f"{float(array):.{digits}f}"
            return "[" + ", ".join(f"{v:.{digits}f}" for v in array) + "]"

        lines = [f"{'feature':<{width}}  {'mean |value|':>12}  mean value"]
        for name in names:
            column = values[:, index[name]]
            mean_abs, mean = np.abs(column).mean(axis=0), column.mean(axis=0)
            lines.append(f"{name:<{width}}  {fmt(mean_abs):>12}  {fmt(mean)}")
        lines.append(f"{'v(empty)':<{width}}  {fmt(self.base_value):>12}")
        lines.append(f"({len(values)} rows; v(empty) + the values of a row = that row's f(x))")
        return "\n".join(lines)

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
