"""Seeded, stratified subsampling and train/validation splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xai.core.validate import Constraint, Integer, Interval, validate

__all__ = ["stratified_subsample", "train_val_split"]

# The constraints of each function's options, declared once.
_STRATIFIED_SUBSAMPLE: dict[str, Sequence[Constraint]] = {
    "fraction": [Interval(0.0, 1.0, low_open=True)],
    "seed": [Integer(0)],
}
_TRAIN_VAL_SPLIT: dict[str, Sequence[Constraint]] = {
    "val_fraction": [Interval(0.0, 1.0, low_open=True, high_open=True)],
    "seed": [Integer(0)],
}


def stratified_subsample(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a random ``fraction`` of each class (at least one per class).

    Coursework often trains on a tenth of the data: ``fraction=0.1`` keeps 10 % of every
    class, so the class balance of the full set is kept exactly (up to rounding).
    """
    options = validate("stratified_subsample", _STRATIFIED_SUBSAMPLE, fraction=fraction, seed=seed)
    fraction = options["fraction"]
    labels = np.asarray(labels)
    rng = np.random.default_rng(options["seed"])
    picked = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        count = max(1, round(fraction * len(members)))
        picked.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(picked))


def train_val_split(
    labels: np.ndarray, val_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted (train, validation) indices, stratified by class and seeded."""
    options = validate("train_val_split", _TRAIN_VAL_SPLIT, val_fraction=val_fraction, seed=seed)
    val_fraction = options["val_fraction"]
    labels = np.asarray(labels)
    rng = np.random.default_rng(options["seed"])
    train, val = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        count = round(val_fraction * len(members))
        if len(members) > 1:
            count = min(max(count, 1), len(members) - 1)
        val.append(members[:count])
        train.append(members[count:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
