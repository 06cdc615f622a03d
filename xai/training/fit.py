"""Training with Adam and cross-entropy, early stopping on validation accuracy."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xai.core.errors import XAITypeError, XAIValueError
from xai.core.validate import Boolean, Constraint, Integer, Literal, Real, validate
from xai.training.progress import ProgressBar

__all__ = ["EpochRecord", "TrainResult", "fit"]


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: training loss/accuracy (over the epoch, in train mode) and validation
    loss/accuracy (after it, in eval mode)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """What ``fit`` did. The model holds the weights of ``best_epoch`` (counted from 0,
    an index into ``history``; ``summary()`` counts from 1)."""

    history: list[EpochRecord] = field(repr=False)
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    seconds: float
    stopped_early: bool

    def summary(self) -> str:
        stop = "stopped early" if self.stopped_early else "ran every epoch"
        return (
            f"best epoch {self.best_epoch + 1} of {self.epochs_run} ({stop}): validation "
            f"accuracy {self.best_val_accuracy:.4f}; {self.seconds:.0f} s"
        )


def _tensors(data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(data, "tensors"):
        return data.tensors()
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = data
        return torch.as_tensor(x).float(), torch.as_tensor(y).long()
    raise XAITypeError(
        f"{what} must be an xai.data.Dataset or an (images, labels) pair; got {type(data).__name__}"
    )


# The constraints of ``fit``'s options, declared once (``schedule`` is one of two names).
_FIT: dict[str, Sequence[Constraint]] = {
    "epochs": [Integer(1)],
    "batch_size": [Integer(1)],
    "lr": [Real(0.0, low_open=True)],
    "patience": [Integer(0)],  # 0: never stop early
    "weight_decay": [Real(0.0)],
    "flip": [Boolean()],
    "seed": [Integer(0)],
    "progress": [Boolean()],
    "optimizer": [Literal("adam", "sgd")],
}


def _evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: Any, batch_size: int
) -> tuple[float, float]:
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb, yb = (
                x[start : start + batch_size].to(device),
                y[start : start + batch_size].to(device),
            )
            out = model(xb)
            loss += float(F.cross_entropy(out, yb, reduction="sum"))
            correct += int((out.argmax(1) == yb).sum())
    return loss / max(1, len(x)), correct / max(1, len(x))


def fit(
    model: nn.Module,
    train: Any,
    val: Any,
    *,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    patience: int = 3,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    flip: bool = False,
    seed: int = 0,
    progress: bool = True,
    optimizer: str = "adam",
) -> TrainResult:
    """Train ``model`` with Adam (or SGD) on the cross-entropy, stopping early on validation
    accuracy.

    After every epoch the model is evaluated on ``val``; when validation accuracy has not
    improved for ``patience`` epochs, training stops, and in every case the weights of the
    best epoch (the first with the highest validation accuracy) are restored.

    Args:
        model: the network; trained in place, left in eval mode.
        train: a ``xai.data.Dataset`` or an ``(images, labels)`` tensor pair.
        val: the same, for validation (early stopping and the restored epoch).
        epochs: the most epochs to run.
        batch_size: images per optimiser step.
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.
        patience: epochs without improvement before stopping (0: never stop early).
        schedule: ``"constant"`` learning rate, or ``"onecycle"`` (warm-up to ``lr``, then
            cosine decay over ``epochs``).
        flip: augment with random horizontal flips (suits clothing, not digits).
        seed: seeds the shuffling and the augmentation.
        progress: show a progress bar per epoch on standard error.
        optimizer: ``"adam"`` (the default), or ``"sgd"``: SGD with momentum 0.9 (same
            ``lr`` and ``weight_decay``).
    """
    options = validate(
        "fit",
        _FIT,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        weight_decay=weight_decay,
        flip=flip,
        seed=seed,
        progress=progress,
        optimizer=optimizer,
    )
    epochs, batch_size, lr = options["epochs"], options["batch_size"], options["lr"]
    patience, weight_decay = options["patience"], options["weight_decay"]
    flip, seed, progress = options["flip"], options["seed"], options["progress"]
    if schedule not in ("constant", "onecycle"):
        raise XAIValueError(f"schedule must be 'constant' or 'onecycle'; got {schedule!r}")
    x, y = _tensors(train, "train")
    xv, yv = _tensors(val, "val")
    if len(x) == 0 or len(xv) == 0:
        raise XAIValueError("train and val must both hold at least one sample")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(seed)
    optimiser_class: Any = torch.optim.Adam
    extra: dict[str, Any] = {}
    if options["optimizer"] == "sgd":
        optimiser_class, extra = torch.optim.SGD, {"momentum": 0.9}
    optimiser = optimiser_class(model.parameters(), lr=lr, weight_decay=weight_decay, **extra)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    scheduler = (
        torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=lr, total_steps=epochs * steps_per_epoch
        )
        if schedule == "onecycle"
        else None
    )
    history: list[EpochRecord] = []
    best_state, best_accuracy, best_epoch, waited = None, -1.0, 0, 0
    start = time.perf_counter()
    for epoch in range(epochs):
        began = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=generator)
        bar = ProgressBar(
            steps_per_epoch, f"epoch {epoch + 1}/{epochs}", enabled=progress, unit="batch"
        )
        total_loss, correct = 0.0, 0
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            xb, yb = x[index], y[index]
            if flip:
                mirror = torch.rand(len(index), generator=generator) < 0.5
                xb = torch.where(mirror[:, None, None, None], xb.flip(-1), xb)
            xb, yb = xb.to(device), yb.to(device)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if scheduler is not None:
                scheduler.step()
            total_loss += float(loss.detach()) * len(index)
            correct += int((out.argmax(1) == yb).sum())
            bar.update(1, f"loss {float(loss.detach()):.3f}")
        val_loss, val_accuracy = _evaluate(model, xv, yv, device, 1000)
        record = EpochRecord(
            epoch,
            total_loss / len(x),
            correct / len(x),
            val_loss,
            val_accuracy,
            time.perf_counter() - began,
        )
        history.append(record)
        bar.close(
            f"loss {record.train_loss:.3f} acc {record.train_accuracy:.3f} | val loss "
            f"{val_loss:.3f} acc {val_accuracy:.3f}"
        )
        if val_accuracy > best_accuracy:
            best_accuracy, best_epoch, waited = val_accuracy, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if patience and waited >= patience:
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        history=history,
        best_epoch=best_epoch,
        best_val_accuracy=best_accuracy,
        epochs_run=len(history),
        seconds=time.perf_counter() - start,
        stopped_early=len(history) < epochs,
    )
