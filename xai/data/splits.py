"""Seeded, stratified subsampling and train/validation splits."""

from __future__ import annotations

import numpy as np

from xai.core.errors import XAIValueError

__all__ = ["stratified_subsample", "train_val_split"]


def _check_fraction(fraction: float, name: str, allow_one: bool) -> float:
    fraction = float(fraction)
    upper_ok = fraction <= 1.0 if allow_one else fraction < 1.0
    if not (fraction > 0.0 and upper_ok):
        bound = "(0, 1]" if allow_one else "(0, 1)"
        raise XAIValueError(f"{name} must be in {bound}; got {fraction}")
    return fraction


def stratified_subsample(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a random ``fraction`` of each class (at least one per class).

    Coursework often trains on a tenth of the data: ``fraction=0.1`` keeps 10 % of every
    class, so the class balance of the full set is kept exactly (up to rounding).
    """
    fraction = _check_fraction(fraction, "fraction", allow_one=True)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
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
    val_fraction = _check_fraction(val_fraction, "val_fraction", allow_one=False)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        count = round(val_fraction * len(members))
        if len(members) > 1:
            count = min(max(count, 1), len(members) - 1)
        val.append(members[:count])
        train.append(members[count:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
