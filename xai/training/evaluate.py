"""Classification metrics: accuracy, confusion matrix, per-class precision, recall, F1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from xai.core.state import evaluation_mode
from xai.core.validate import Constraint, Integer, validate

__all__ = ["Evaluation", "evaluate", "predict"]

# The constraints of ``predict``'s and ``evaluate``'s options, declared once.
_BATCHED: dict[str, Sequence[Constraint]] = {"batch_size": [Integer(1)]}


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Top-1 predictions (N,) in eval mode, without gradients; the model's modes restored."""
    batch_size = validate("predict", _BATCHED, batch_size=batch_size)["batch_size"]
    param = next(model.parameters(), None)
    device = param.device if param is not None else x.device
    out = []
    with torch.no_grad(), evaluation_mode(model):
        for start in range(0, len(x), batch_size):
            out.append(model(x[start : start + batch_size].to(device)).argmax(1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """How a classifier does on labelled data.

    ``confusion[i, j]`` counts samples of true class i predicted as j. Precision of a
    class never predicted is 0 (and so is its F1), as scikit-learn's ``zero_division=0``.
    ``recall`` is the per-class accuracy.
    """

    accuracy: float
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    class_names: tuple[str, ...]

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

    def table(self) -> str:
        width = max(len("macro"), *(len(n) for n in self.class_names))
        lines = [f"{'class':<{width}}  precision  recall  f1      support"]
        support = self.confusion.sum(axis=1)
        for i, name in enumerate(self.class_names):
            lines.append(
                f"{name:<{width}}  {self.precision[i]:9.3f}  {self.recall[i]:6.3f}  "
                f"{self.f1[i]:6.3f}  {support[i]:7d}"
            )
        lines.append(
            f"{'macro':<{width}}  {self.macro_precision:9.3f}  {self.macro_recall:6.3f}"
            f"  {self.macro_f1:6.3f}  {support.sum():7d}"
        )
        lines.append(f"accuracy {self.accuracy:.4f}")
        return "\n".join(lines)


def evaluate(
    model: nn.Module,
    data: Any,
    class_names: Sequence[str] | None = None,
    batch_size: int = 1000,
) -> Evaluation:
    """Evaluate ``model`` on a ``xai.data.Dataset`` or an ``(x, y)`` pair of tensors."""
    batch_size = validate("evaluate", _BATCHED, batch_size=batch_size)["batch_size"]
    if hasattr(data, "tensors"):
        class_names = class_names or data.class_names
        x, y = data.tensors()
    else:
        x, y = data
    y = torch.as_tensor(y).long().cpu()
    predicted = predict(model, x, batch_size)
    k = len(class_names) if class_names else int(max(y.max(), predicted.max()) + 1)
    names = tuple(class_names) if class_names else tuple(str(i) for i in range(k))
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y.numpy(), predicted.numpy()), 1)
    true_pos = np.diag(confusion).astype(np.float64)
    predicted_count = confusion.sum(axis=0)
    actual_count = confusion.sum(axis=1)
    precision = np.divide(true_pos, predicted_count, out=np.zeros(k), where=predicted_count > 0)
    recall = np.divide(true_pos, actual_count, out=np.zeros(k), where=actual_count > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(k), where=total > 0)
    accuracy = float(true_pos.sum() / max(1, confusion.sum()))
    return Evaluation(accuracy, confusion, precision, recall, f1, names)
