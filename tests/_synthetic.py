"""Small generated MNIST-like data: class c is its own bright 9x9 shape, placed anywhere
on a noisy background (position carries no information, as for real objects)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def _templates() -> np.ndarray:
    """Ten 9x9 shapes: bars, diagonals, crosses, outlines, blocks."""
    t = np.zeros((10, 9, 9), dtype=bool)
    eye = np.eye(9, dtype=bool)
    t[0, 4, :] = True  # horizontal bar
    t[1, :, 4] = True  # vertical bar
    t[2] = eye  # diagonal
    t[3] = eye[::-1]  # anti-diagonal
    t[4, 4, :] = t[4, :, 4] = True  # plus
    t[5] = eye | eye[::-1]  # x
    t[6, [0, -1], :] = t[6, :, [0, -1]] = True  # square outline
    t[7, 2:7, 2:7] = True  # filled block
    t[8, [1, 7], :] = True  # two horizontal bars
    t[9, :, [1, 7]] = True  # two vertical bars
    return t


def patterns(per_class: int, seed: int = 0, classes: int = 10, size: int = 28):
    templates = _templates()
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(per_class * classes, size, size), dtype=np.uint8)
    labels = np.repeat(np.arange(classes), per_class)
    for i, c in enumerate(labels):
        y, x = rng.integers(0, size - 9, size=2)
        images[i, y : y + 9, x : x + 9][templates[c]] = rng.integers(200, 256)
    order = rng.permutation(len(labels))
    return images[order], labels[order].astype(np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(folder: Path, per_class: int = 30, gz: bool = True, seed: int = 0) -> Path:
    """An MNIST-style folder: train and t10k images and labels, IDX, gzipped or raw."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count, s in (
        ("train", per_class, seed),
        ("t10k", max(5, per_class // 3), seed + 1),
    ):
        images, labels = patterns(count, s)
        for kind, array, dims in (("images", images, 3), ("labels", labels, 1)):
            name = f"{prefix}-{kind}-idx{dims}-ubyte" + (".gz" if gz else "")
            data = idx_bytes(array)
            (folder / name).write_bytes(gzip.compress(data) if gz else data)
    return folder
