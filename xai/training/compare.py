"""CNN versus DNN: two models, the same data and the same training budget."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from xai.training.evaluate import Evaluation, evaluate
from xai.training.fit import TrainResult, fit

__all__ = ["Comparison", "ComparisonRow", "compare", "default_models"]


@dataclass(frozen=True)
class ComparisonRow:
    model: str
    parameters: int
    best_epoch: int
    epochs_run: int
    seconds: float
    test_accuracy: float


@dataclass(frozen=True, eq=False)
class Comparison:
    """The table, and for each model its training history and test evaluation."""

    rows: list[ComparisonRow]
    results: dict[str, TrainResult] = field(repr=False)
    evaluations: dict[str, Evaluation] = field(repr=False)
    models: dict[str, nn.Module] = field(repr=False)

    def table(self) -> str:
        """A markdown table: model, parameters, best epoch, epochs run, time, accuracy."""
        lines = [
            "| model | parameters | best epoch | epochs run | training s | test accuracy |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.model} | {r.parameters:,} | {r.best_epoch + 1} | {r.epochs_run} "
                f"| {r.seconds:.1f} | {r.test_accuracy:.4f} |"
            )
        return "\n".join(lines)


def default_models(train: Any, seed: int = 0) -> dict[str, nn.Module]:
    """A GAPCNN and an MLP for the data's image size and classes, normalised in-model with
    the training images' mean and standard deviation, both initialised from ``seed``."""
    from xai.models import GAPCNN, MLP

    images = train.images.astype(np.float32) / 255.0
    mean, std = float(images.mean()), float(images.std())
    classes = len(train.class_names)
    height, width = images.shape[1:]
    torch.manual_seed(seed)
    cnn = GAPCNN(in_channels=1, num_classes=classes, mean=mean, std=std)
    torch.manual_seed(seed)
    dnn = MLP(in_features=height * width, num_classes=classes, mean=mean, std=std)
    return {"GAPCNN": cnn, "MLP": dnn}


def compare(
    splits: Any,
    models: Mapping[str, nn.Module] | None = None,
    **training: Any,
) -> Comparison:
    """Train each model on ``splits.train`` (early stopping on ``splits.val``) with the
    same options, and evaluate it on ``splits.test``.

    Args:
        splits: an ``xai.data.Splits`` (train, val and test data sets).
        models: name -> untrained model; by default ``default_models``.
        **training: options of ``xai.training.fit`` (epochs, patience, lr, ...),
            the same for every model.
    """
    chosen = (
        dict(models)
        if models is not None
        else default_models(splits.train, training.get("seed", 0))
    )
    rows, results, evaluations = [], {}, {}
    for name, model in chosen.items():
        result = fit(model, splits.train, splits.val, **training)
        evaluation = evaluate(model, splits.test)
        results[name], evaluations[name] = result, evaluation
        rows.append(
            ComparisonRow(
                model=name,
                parameters=sum(p.numel() for p in model.parameters()),
                best_epoch=result.best_epoch,
                epochs_run=result.epochs_run,
                seconds=result.seconds,
                test_accuracy=evaluation.accuracy,
            )
        )
    return Comparison(rows, results, evaluations, chosen)
