"""Classification metrics: accuracy, confusion matrix, per-class precision, recall, F1,
one-vs-rest ROC AUC, and the ROC and precision-recall curves of each class."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn

from xai.core.errors import XAIValueError
from xai.core.state import evaluation_mode
from xai.core.validate import Constraint, Integer, validate

__all__ = ["Evaluation", "binary_curve", "evaluate", "predict", "predict_proba", "rank_auc"]

# The constraints of ``predict``'s and ``evaluate``'s options, declared once.
_BATCHED: dict[str, Sequence[Constraint]] = {"batch_size": [Integer(1)]}


def _logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The model's outputs (N, k) on the CPU, in eval mode, without gradients."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else x.device
    out = []
    with torch.no_grad(), evaluation_mode(model):
        for start in range(0, len(x), batch_size):
            out.append(model(x[start : start + batch_size].to(device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Top-1 predictions (N,) in eval mode, without gradients; the model's modes restored."""
    batch_size = validate("predict", _BATCHED, batch_size=batch_size)["batch_size"]
    logits = _logits(model, x, batch_size)
    return logits.argmax(1) if len(logits) else torch.empty(0, dtype=torch.int64)


def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Class probabilities (N, k) float64: the softmax of the logits, computed in float64
    (so that distinct logits rarely become tied probabilities)."""
    batch_size = validate("predict_proba", _BATCHED, batch_size=batch_size)["batch_size"]
    logits = _logits(model, x, batch_size)
    return torch.softmax(logits.double(), dim=1).numpy() if len(logits) else np.zeros((0, 0))


def rank_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the boolean labels ``positive``.

    It is the Mann-Whitney statistic: the probability that a random positive scores
    higher than a random negative, ties counted one half,

    .. math:: \\mathrm{AUC} = \\frac{1}{n_+ n_-} \\sum_{i \\in +} \\sum_{j \\in -}
              \\left([s_i > s_j] + \\tfrac12 [s_i = s_j]\\right)
              = \\frac{R_+ - n_+ (n_+ + 1) / 2}{n_+ n_-},

    with :math:`R_+` the sum of the positives' ranks (tied scores share their mean rank),
    computed in O(n log n). This equals the trapezoidal area under ``binary_curve``'s
    ROC points (Hanley & McNeil, Radiology 1982). ``nan`` when there are no positives or
    no negatives (the AUC is undefined; scikit-learn raises instead).
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # Average ranks (1-based) of tied runs.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    mean_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    rank_sum = ranks[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_curve(
    scores: np.ndarray, positive: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive counts at each distinct threshold, highest first.

    Returns ``(fp, tp, thresholds)``: with the rule "positive when score >= threshold",
    ``fp[i]`` and ``tp[i]`` count the negatives and positives at or above
    ``thresholds[i]``; ``thresholds`` are the distinct scores in decreasing order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_positive = scores[order], positive[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores) != 0), len(scores) - 1]
    tp = np.cumsum(sorted_positive)[last_of_run]
    fp = (last_of_run + 1) - tp
    return fp.astype(np.float64), tp.astype(np.float64), sorted_scores[last_of_run]


@dataclass(frozen=True, eq=False)
class Evaluation:
    """How a classifier does on labelled data.

    ``confusion[i, j]`` counts samples of true class i predicted as j. Precision of a
    class never predicted is 0 (and so is its F1), as scikit-learn's ``zero_division=0``.
    ``recall`` is the per-class accuracy.

    ``probabilities`` (N, k) are the softmax of the model's outputs and ``labels`` (N,)
    the true classes; from them, each class's one-vs-rest ROC and precision-recall curves
    (``roc_curve``, ``pr_curve``), ``roc_auc`` (k,) and ``average_precision`` (k,). Both
    are ``None`` for an ``Evaluation`` built from a confusion matrix alone (the curves and
    AUCs then raise ``XAIValueError``).
    """

    accuracy: float
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    class_names: tuple[str, ...]
    probabilities: np.ndarray | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)

    @property
    def macro_precision(self) -> float:
        return float(self.precision.mean())

    @property
    def macro_recall(self) -> float:
        return float(self.recall.mean())

    @property
    def macro_f1(self) -> float:
        return float(self.f1.mean())

    def per_class_accuracy(self) -> dict[str, float]:
        return {name: float(r) for name, r in zip(self.class_names, self.recall, strict=True)}

    @classmethod
    def from_probabilities(
        cls, probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
    ) -> Evaluation:
        """The evaluation of predictions given as probabilities (N, k) (the prediction is
        their argmax) against ``labels`` (N,): e.g. out-of-fold predictions pooled over
        the folds of a cross-validation."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        k = len(class_names)
        if probabilities.ndim != 2 or probabilities.shape != (len(labels), k):
            raise XAIValueError(
                f"probabilities must be (N, k) = ({len(labels)}, {k}) for {len(labels)} "
                f"labels and {k} classes; got {probabilities.shape}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= k):
            raise XAIValueError(f"labels must be class indices in [0, {k - 1}]")
        return _evaluation(probabilities.argmax(1), labels, tuple(class_names), probabilities)

    def _scores(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        if self.probabilities is None or self.labels is None:
            raise XAIValueError(
                "this Evaluation holds no class probabilities; make it with "
                "xai.training.evaluate(model, data) for ROC and precision-recall curves"
            )
        k = len(self.class_names)
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or not 0 <= c < k:
            raise XAIValueError(f"class index must be an int in [0, {k - 1}]; got {c!r}")
        return self.probabilities[:, int(c)], self.labels == int(c)

    @cached_property
    def roc_auc(self) -> np.ndarray:
        """(k,) one-vs-rest ROC AUC of each class: the Mann-Whitney statistic of its
        probability, class c against all others, ties counted one half (``rank_auc``);
        ``nan`` for a class absent from the labels (or the only one present)."""
        return np.array([rank_auc(*self._scores(c)) for c in range(len(self.class_names))])

    @property
    def macro_roc_auc(self) -> float:
        """The unweighted mean of ``roc_auc`` over the classes where it is defined (as
        scikit-learn's ``roc_auc_score(..., multi_class="ovr", average="macro")`` when
        every class is present); ``nan`` if it is defined for none."""
        defined = self.roc_auc[~np.isnan(self.roc_auc)]
        return float(defined.mean()) if len(defined) else float("nan")

    def roc_curve(self, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The one-vs-rest ROC curve of class ``c``: ``(fpr, tpr, thresholds)``.

        Class c is predicted when its probability is >= the threshold. ``thresholds`` are
        the distinct probabilities in decreasing order, preceded by ``inf`` (nothing
        predicted: the point (0, 0)); every threshold is kept (scikit-learn's
        ``roc_curve(..., drop_intermediate=False)``). The trapezoidal area under
        ``(fpr, tpr)`` equals ``roc_auc[c]``. With no positives (negatives) ``tpr``
        (``fpr``) is ``nan``.
        """
        scores, positive = self._scores(c)
        fp, tp, thresholds = binary_curve(scores, positive)
        fp, tp = np.r_[0.0, fp], np.r_[0.0, tp]
        with np.errstate(invalid="ignore", divide="ignore"):
            fpr = fp / fp[-1] if fp[-1] > 0 else np.full_like(fp, np.nan)
            tpr = tp / tp[-1] if tp[-1] > 0 else np.full_like(tp, np.nan)
        return fpr, tpr, np.r_[np.inf, thresholds]

    def pr_curve(self, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The precision-recall curve of class ``c``: ``(precision, recall, thresholds)``.

        As scikit-learn's ``precision_recall_curve``: ``thresholds`` are the distinct
        probabilities in increasing order; ``precision[i]`` and ``recall[i]`` are those of
        predicting c when its probability is >= ``thresholds[i]``; a last point
        (precision 1, recall 0) has no threshold, so ``precision`` and ``recall`` are one
        longer. Recall is ``nan`` when class c has no samples.
        """
        scores, positive = self._scores(c)
        fp, tp, thresholds = binary_curve(scores, positive)
        precision = tp / (tp + fp)  # tp + fp >= 1 at every threshold
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = tp / tp[-1] if tp[-1] > 0 else np.full_like(tp, np.nan)
        return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]

    @cached_property
    def average_precision(self) -> np.ndarray:
        """(k,) average precision of each class, scikit-learn's step-wise sum
        :math:`\\mathrm{AP} = \\sum_n (R_n - R_{n-1}) P_n` over the precision-recall
        points (no interpolation); ``nan`` for a class absent from the labels."""
        values = []
        for c in range(len(self.class_names)):
            precision, recall, _ = self.pr_curve(c)
            values.append(float(-np.sum(np.diff(recall) * precision[:-1])))
        return np.array(values)

    def table(self) -> str:
        """Per-class precision, recall, F1, ROC AUC (when the probabilities are kept) and
        support; their macro averages; the accuracy."""
        from xai._tables import text_table

        auc = self.probabilities is not None and self.labels is not None
        header = ["class", "precision", "recall", "f1", *(["auc"] if auc else []), "support"]
        support = self.confusion.sum(axis=1)
        rows = []
        for i, name in enumerate(self.class_names):
            cells = [self.precision[i], self.recall[i], self.f1[i]]
            cells += [self.roc_auc[i]] if auc else []
            rows.append([name, *(f"{v:.3f}" for v in cells), str(support[i])])
        cells = [self.macro_precision, self.macro_recall, self.macro_f1]
        cells += [self.macro_roc_auc] if auc else []
        rows.append(["macro", *(f"{v:.3f}" for v in cells), str(support.sum())])
        table = text_table(header, rows, right=range(1, len(header)))
        return table + f"\naccuracy {self.accuracy:.4f}"


def evaluate(
    model: nn.Module,
    data: Any,
    class_names: Sequence[str] | None = None,
    batch_size: int = 1000,
) -> Evaluation:
    """Evaluate ``model`` on a ``xai.data.Dataset`` or an ``(x, y)`` pair of tensors.

    The prediction is the top-1 output; the probabilities kept for the ROC and
    precision-recall curves are the softmax of the outputs.
    """
    batch_size = validate("evaluate", _BATCHED, batch_size=batch_size)["batch_size"]
    if hasattr(data, "tensors"):
        class_names = class_names or data.class_names
        x, y = data.tensors()
    else:
        x, y = data
    y = torch.as_tensor(y).long().cpu()
    logits = _logits(model, x, batch_size)
    predicted = logits.argmax(1) if len(logits) else torch.empty(0, dtype=torch.int64)
    k = len(class_names) if class_names else int(max(y.max(), predicted.max()) + 1)
    names = tuple(class_names) if class_names else tuple(str(i) for i in range(k))
    probabilities: np.ndarray | None = None
    if logits.ndim == 2 and logits.shape[1] == k:  # one output per class: keep the curves
        probabilities = torch.softmax(logits.double(), dim=1).numpy()
    return _evaluation(predicted.numpy(), y.numpy(), names, probabilities)


def _evaluation(
    predicted: np.ndarray,
    labels: np.ndarray,
    names: tuple[str, ...],
    probabilities: np.ndarray | None,
) -> Evaluation:
    k = len(names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    true_pos = np.diag(confusion).astype(np.float64)
    predicted_count = confusion.sum(axis=0)
    actual_count = confusion.sum(axis=1)
    precision = np.divide(true_pos, predicted_count, out=np.zeros(k), where=predicted_count > 0)
    recall = np.divide(true_pos, actual_count, out=np.zeros(k), where=actual_count > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(k), where=total > 0)
    accuracy = float(true_pos.sum() / max(1, confusion.sum()))
    return Evaluation(
        accuracy,
        confusion,
        precision,
        recall,
        f1,
        names,
        probabilities,
        np.asarray(labels, dtype=np.int64).copy(),
    )
