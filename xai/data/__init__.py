"""MNIST-family data: IDX and .npz readers, the data sets' class names and locations,
seeded stratified subsampling and splits, and items pasted into larger canvases for
localisation benchmarks. Imports numpy only (torch on ``tensors()``)."""

from xai.data.canvas import Canvas, load_canvas, paste
from xai.data.datasets import CLASS_NAMES, DEFAULT_ROOTS, Dataset, Splits, find_root, load, splits
from xai.data.idx import read_idx, read_npz
from xai.data.splits import stratified_subsample, train_val_split

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_ROOTS",
    "Canvas",
    "Dataset",
    "Splits",
    "find_root",
    "load",
    "load_canvas",
    "paste",
    "read_idx",
    "read_npz",
    "splits",
    "stratified_subsample",
    "train_val_split",
]
