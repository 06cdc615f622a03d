"""MNIST-family data sets: where they are, how to load them, and their class names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xai.core.errors import XAIFileNotFoundError, XAIValueError
from xai.core.validate import Constraint, Integer, Interval, validate
from xai.data.idx import read_idx, read_npz
from xai.data.splits import stratified_subsample, train_val_split

if TYPE_CHECKING:
    import torch

__all__ = ["CLASS_NAMES", "DEFAULT_ROOTS", "Dataset", "Splits", "find_root", "load", "splits"]

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "mnist": tuple(str(d) for d in range(10)),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}

#: Where each data set is looked for when no folder is given, after $XAI_DATA/<name>.
#: Debian's ``dataset-fashion-mnist`` package installs its IDX files in the first one.
DEFAULT_ROOTS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist",),
    "mnist": ("/usr/share/datasets/mnist",),
    "kmnist": ("/usr/share/datasets/kmnist",),
}

_IDX_PREFIX = {"train": "train", "test": "t10k"}


def _name(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    key = {"fashion": "fashion-mnist", "fashionmnist": "fashion-mnist"}.get(key, key)
    if key not in CLASS_NAMES:
        raise XAIValueError(f"unknown data set {name!r}; known: {', '.join(CLASS_NAMES)}")
    return key


def _files(name: str, root: Path, split: str) -> tuple[Path, Path] | None:
    if name == "kmnist":
        images = root / f"kmnist-{split}-imgs.npz"
        labels = root / f"kmnist-{split}-labels.npz"
        return (images, labels) if images.is_file() and labels.is_file() else None
    prefix = _IDX_PREFIX[split]
    for suffix in (".gz", ""):
        images = root / f"{prefix}-images-idx3-ubyte{suffix}"
        labels = root / f"{prefix}-labels-idx1-ubyte{suffix}"
        if images.is_file() and labels.is_file():
            return images, labels
    return None


def find_root(name: str) -> Path:
    """The folder holding data set ``name``: $XAI_DATA/<name>, then the default places."""
    key = _name(name)
    candidates = []
    if os.environ.get("XAI_DATA"):
        candidates.append(Path(os.environ["XAI_DATA"]) / key)
    candidates += [Path(p) for p in DEFAULT_ROOTS[key]]
    for root in candidates:
        if _files(key, root, "train") or _files(key, root, "test"):
            return root
    hint = " (Debian: apt-get install dataset-fashion-mnist)" if key == "fashion-mnist" else ""
    raise XAIFileNotFoundError(
        f"{key} not found in {', '.join(str(c) for c in candidates)}{hint}; pass the folder "
        f"that holds its files, or set XAI_DATA."
    )


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images (N, H, W) uint8 and labels (N,) int64 of one split, with class names."""

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> Dataset:
        return Dataset(
            self.name, self.split, self.images[indices], self.labels[indices], self.class_names
        )

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Images as float32 (N, 1, H, W) in [0, 1], labels as int64."""
        import torch

        x = torch.from_numpy(self.images.astype(np.float32) / 255.0)[:, None]
        return x, torch.from_numpy(self.labels.astype(np.int64))

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, split={self.split!r}, n={len(self)}, "
            f"image={tuple(self.images.shape[1:])})"
        )


def load(name: str, root: str | Path | None = None, split: str = "train") -> Dataset:
    """Load the train or test split of ``fashion-mnist``, ``mnist`` or ``kmnist``.

    Args:
        name: the data set.
        root: the folder with its files (IDX, raw or ``.gz``; KMNIST's ``.npz``); by
            default found with ``find_root``.
        split: ``"train"`` or ``"test"``.
    """
    key = _name(name)
    if split not in _IDX_PREFIX:
        raise XAIValueError(f"split must be 'train' or 'test'; got {split!r}")
    folder = Path(root) if root is not None else find_root(key)
    files = _files(key, folder, split)
    if files is None:
        expected = (
            f"kmnist-{split}-imgs.npz and kmnist-{split}-labels.npz"
            if key == "kmnist"
            else f"{_IDX_PREFIX[split]}-images-idx3-ubyte[.gz] and "
            f"{_IDX_PREFIX[split]}-labels-idx1-ubyte[.gz]"
        )
        raise XAIFileNotFoundError(f"{folder}: no {key} {split} files ({expected})")
    read = read_npz if key == "kmnist" else read_idx
    images, labels = read(files[0]), read(files[1])
    if images.ndim != 3 or labels.ndim != 1:
        raise XAIValueError(
            f"{files[0].name} must hold (N, H, W) images and {files[1].name} (N,) labels; "
            f"got {images.shape} and {labels.shape}"
        )
    if len(images) != len(labels):
        raise XAIValueError(
            f"size mismatch: {files[0].name} holds {len(images):,} images but "
            f"{files[1].name} {len(labels):,} labels"
        )
    classes = CLASS_NAMES[key]
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise XAIValueError(f"{files[1].name}: labels outside 0..{len(classes) - 1}")
    return Dataset(key, split, images.astype(np.uint8), labels.astype(np.int64), classes)


@dataclass(frozen=True)
class Splits:
    """Seeded train / validation / test data sets."""

    train: Dataset
    val: Dataset
    test: Dataset


# The constraints of ``splits``'s options, declared once.
_SPLITS: dict[str, Sequence[Constraint]] = {
    "fraction": [Interval(0.0, 1.0, low_open=True)],
    "val_fraction": [Interval(0.0, 1.0, low_open=True, high_open=True)],
    "seed": [Integer(0)],
}


def splits(
    name: str,
    root: str | Path | None = None,
    *,
    fraction: float = 1.0,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Splits:
    """Train/validation from the training split (stratified, seeded), and the test split.

    ``fraction`` keeps a stratified share of both the training and the test split
    (coursework often uses 0.1); validation is ``val_fraction`` of the kept training data.
    """
    options = validate("splits", _SPLITS, fraction=fraction, val_fraction=val_fraction, seed=seed)
    fraction, val_fraction, seed = options["fraction"], options["val_fraction"], options["seed"]
    train_all = load(name, root, "train")
    test = load(name, root, "test")
    if fraction < 1.0:
        train_all = train_all.subset(stratified_subsample(train_all.labels, fraction, seed))
        test = test.subset(stratified_subsample(test.labels, fraction, seed))
    train_idx, val_idx = train_val_split(train_all.labels, val_fraction, seed)
    train = train_all.subset(train_idx)
    val = Dataset(
        train_all.name,
        "val",
        train_all.images[val_idx],
        train_all.labels[val_idx],
        train_all.class_names,
    )
    return Splits(train, val, test)
