"""Cross-validation: k-fold, stratified k-fold and leave-one-out, each fold trained with
``fit`` (early stopping on a validation split carved from the fold's training part)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from xai.core.errors import XAITypeError, XAIValueError
from xai.core.validate import Boolean, Constraint, Integer, Interval, validate
from xai.training.evaluate import Evaluation, predict_proba
from xai.training.fit import _tensors, fit

__all__ = ["CVResult", "FoldResult", "cross_validate", "fold_indices"]

_CV: dict[str, Sequence[Constraint]] = {
    "stratified": [Boolean()],
    "seed": [Integer(0)],
    "val_fraction": [Interval(0.0, 1.0, low_open=True, high_open=True)],
}


def _folds(folds: int | str, n: int) -> int:
    """The number of folds: ``"loo"`` is ``n``; an int must be in [2, n]."""
    if isinstance(folds, str):
        if folds.strip().lower() in ("loo", "leave-one-out"):
            return n
        raise XAIValueError(f"folds must be an int >= 2 or 'loo' (leave-one-out); got {folds!r}")
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer):
        raise XAITypeError(
            f"folds must be an int >= 2 or 'loo' (leave-one-out); got {type(folds).__name__}"
        )
    if not 2 <= int(folds) <= n:
        raise XAIValueError(
            f"folds must be between 2 and the number of samples ({n}), or 'loo'; got {folds}"
        )
    return int(folds)


def fold_indices(
    labels: np.ndarray, folds: int | str = 5, *, stratified: bool = True, seed: int = 0
) -> list[np.ndarray]:
    """The sorted test indices of each fold; together they are every index exactly once.

    Plain k-fold cuts a seeded permutation of the indices into ``folds`` parts of sizes
    differing by at most one. Stratified k-fold permutes each class (seeded), lays the
    classes one after another and deals position j to fold ``j % folds``: each class's
    members then go to the folds in turn, so every fold holds ``floor`` or ``ceil`` of
    ``n_c / folds`` samples of each class c (class proportions kept within one sample),
    and the fold sizes differ by at most one. ``folds="loo"`` (or ``folds == n``) is
    leave-one-out: n folds of one sample each.
    """
    labels = np.asarray(labels)
    n = len(labels)
    k = _folds(folds, n)
    options = validate("fold_indices", _CV, stratified=stratified, seed=seed)
    rng = np.random.default_rng(options["seed"])
    if k == n:  # leave-one-out: no randomness to add
        return [np.array([i]) for i in range(n)]
    if options["stratified"]:
        order = np.concatenate(
            [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
        )
        assigned = np.arange(n) % k
        return [np.sort(order[assigned == f]) for f in range(k)]
    return [np.sort(part) for part in np.array_split(rng.permutation(n), k)]


@dataclass(frozen=True)
class FoldResult:
    """One fold: its sizes, the training run and the scores on its held-out part.

    ``best_epoch`` counts from 1. ``macro_auc`` is ``nan`` where the held-out part has a
    single class (always with leave-one-out: use ``CVResult.pooled`` there)."""

    fold: int
    train: int
    val: int
    test: int
    best_epoch: int
    epochs_run: int
    accuracy: float
    macro_auc: float
    seconds: float


@dataclass(frozen=True, eq=False)
class CVResult:
    """Per-fold results, their mean and standard deviation, and the pooled out-of-fold
    evaluation (every sample predicted by the model that did not train on it)."""

    folds: list[FoldResult]
    test_indices: list[np.ndarray] = field(repr=False)
    pooled: Evaluation = field(repr=False)
    stratified: bool
    seed: int

    def values(self, metric: str) -> np.ndarray:
        """The per-fold values of ``metric`` (a ``FoldResult`` field)."""
        return np.array([getattr(f, metric) for f in self.folds], dtype=np.float64)

    def mean(self, metric: str) -> float:
        """The mean of ``metric`` over the folds (folds where it is ``nan`` left out)."""
        values = self.values(metric)
        values = values[~np.isnan(values)]
        return float(values.mean()) if len(values) else float("nan")

    def std(self, metric: str) -> float:
        """The standard deviation of ``metric`` over the folds: the population one
        (``ddof=0``, as ``numpy.std`` and scikit-learn's ``cross_val_score(...).std()``)."""
        values = self.values(metric)
        values = values[~np.isnan(values)]
        return float(values.std()) if len(values) else float("nan")

    def table(self) -> str:
        """A markdown table, one row per fold, then mean ± std, then the pooled scores."""
        lines = [
            "| fold | train | val | test | best epoch | accuracy | macro AUC | s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for f in self.folds:
            lines.append(
                f"| {f.fold + 1} | {f.train} | {f.val} | {f.test} | {f.best_epoch} "
                f"| {f.accuracy:.4f} | {f.macro_auc:.4f} | {f.seconds:.1f} |"
            )
        lines.append(
            f"| mean ± std | | | | {self.mean('best_epoch'):.1f} ± {self.std('best_epoch'):.1f} "
            f"| {self.mean('accuracy'):.4f} ± {self.std('accuracy'):.4f} "
            f"| {self.mean('macro_auc'):.4f} ± {self.std('macro_auc'):.4f} "
            f"| {self.values('seconds').sum():.1f} |"
        )
        kind = "stratified, " if self.stratified else ""
        if len(self.folds) == self.pooled.confusion.sum():
            kind = "leave-one-out, "
        lines.append(
            f"\n{len(self.folds)} folds ({kind}seed {self.seed}); out-of-fold, pooled: "
            f"accuracy {self.pooled.accuracy:.4f}, macro AUC {self.pooled.macro_roc_auc:.4f}"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the folds, mean and std of each score, the pooled scores."""
        scores = ("accuracy", "macro_auc", "best_epoch")
        return {
            "folds": [vars(f) for f in self.folds],
            "mean": {m: self.mean(m) for m in scores},
            "std": {m: self.std(m) for m in scores},
            "pooled": {
                "accuracy": self.pooled.accuracy,
                "macro_auc": self.pooled.macro_roc_auc,
                "roc_auc": dict(
                    zip(self.pooled.class_names, self.pooled.roc_auc.tolist(), strict=True)
                ),
            },
            "stratified": self.stratified,
            "seed": self.seed,
            "test_indices": [ix.tolist() for ix in self.test_indices],
        }


def cross_validate(
    make_model: Callable[[], nn.Module],
    data: Any,
    folds: int | str = 5,
    stratified: bool = True,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    **training: Any,
) -> CVResult:
    """k-fold, stratified k-fold or leave-one-out cross-validation of a model.

    For each fold (``fold_indices``): a fresh model from ``make_model()`` (with
    ``torch.manual_seed(seed)`` before, so every fold starts from the same seeded
    initialisation), a validation split of ``val_fraction`` carved from the fold's
    training part (stratified, seeded with ``seed + fold``) for early stopping, ``fit``,
    then the scores on the held-out part. The same seed gives the same folds, splits,
    initialisations and shuffles, so the same results (on the CPU).

    Args:
        make_model: returns a new untrained model, e.g. ``lambda: xai.models.GAPCNN()``.
        data: a ``xai.data.Dataset`` or an ``(images, labels)`` pair.
        folds: the number of folds (>= 2), or ``"loo"`` for leave-one-out (small data).
        stratified: keep each class's share in every fold.
        seed: seeds the folds, the validation splits, the models and ``fit``.
        val_fraction: the share of each fold's training part held out for early stopping.
        class_names: the class names (default: the data set's, else ``"0"``, ``"1"``...).
        device: where to train (default: where ``make_model``'s model is).
        **training: options of ``xai.training.fit`` (epochs, patience, lr, batch_size,
            optimizer, progress...), the same for every fold.

    Returns:
        A ``CVResult``: ``.folds`` (accuracy, macro AUC, best epoch per fold),
        ``.mean(m)`` / ``.std(m)``, ``.pooled`` (out-of-fold ``Evaluation``), ``.table()``.
    """
    from xai.data.splits import train_val_split

    options = validate(
        "cross_validate", _CV, stratified=stratified, seed=seed, val_fraction=val_fraction
    )
    seed, stratified = options["seed"], options["stratified"]
    x, y = _tensors(data, "data")
    labels = y.numpy()
    names = tuple(class_names or getattr(data, "class_names", None) or ())
    if not names:
        names = tuple(str(c) for c in range(int(labels.max()) + 1))
    test_indices = fold_indices(labels, folds, stratified=stratified, seed=seed)
    training.setdefault("progress", False)
    probabilities = np.zeros((len(labels), len(names)))
    results = []
    for f, test_index in enumerate(test_indices):
        began = time.perf_counter()
        rest = np.setdiff1d(np.arange(len(labels)), test_index)
        fit_part, val_part = train_val_split(labels[rest], options["val_fraction"], seed + f)
        train_index, val_index = rest[fit_part], rest[val_part]
        torch.manual_seed(seed)
        model = make_model()
        if device is not None:
            model = model.to(device)
        run = fit(
            model,
            (x[train_index], y[train_index]),
            (x[val_index], y[val_index]),
            seed=seed,
            **training,
        )
        held_out = predict_proba(model, x[test_index])
        if held_out.shape[1] != len(names):
            raise XAIValueError(
                f"the model has {held_out.shape[1]} outputs but the data {len(names)} classes"
            )
        probabilities[test_index] = held_out
        fold_eval = Evaluation.from_probabilities(held_out, labels[test_index], names)
        results.append(
            FoldResult(
                fold=f,
                train=len(train_index),
                val=len(val_index),
                test=len(test_index),
                best_epoch=run.best_epoch + 1,
                epochs_run=run.epochs_run,
                accuracy=fold_eval.accuracy,
                macro_auc=_macro_auc(fold_eval),
                seconds=time.perf_counter() - began,
            )
        )
    pooled = Evaluation.from_probabilities(probabilities, labels, names)
    return CVResult(results, test_indices, pooled, stratified, seed)


def _macro_auc(evaluation: Evaluation) -> float:
    """Macro AUC over the classes present in the held-out part (nan with one class)."""
    assert evaluation.labels is not None
    if len(np.unique(evaluation.labels)) < 2:
        return math.nan
    return evaluation.macro_roc_auc
