"""Where the samples of a dataset run come from: one random-access view over a tensor, a
torch ``Dataset`` or ``DataLoader``, a folder of images, an MNIST-family IDX file, or a
named data set (``"fashion-mnist:test"``).

A ``Source`` has a length, the shape of one sample, a stable id per sample (its index, or
its path relative to the folder) and, when the data has them, labels. ``batch(start,
stop)`` reads samples ``start..stop-1`` only, so a run streams with bounded memory, a
resumed run reads only the missing chunks, and Ray workers each read their own chunks.
Sources pickle small: a named data set or a file travels as its name or path and is read
on the worker.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xai.core.errors import XAIFileNotFoundError, XAITypeError, XAIValueError

if TYPE_CHECKING:
    import torch

__all__ = ["Batch", "Source", "as_source"]

_SCALED = "uint8 pixels / 255 -> float32 in [0, 1], shape (N, 1, H, W)"


@dataclass(frozen=True)
class Batch:
    """Samples ``start..stop-1``: inputs (B, C, H, W) float32, labels or None, ids."""

    x: torch.Tensor
    labels: np.ndarray | None  # (B,) int64
    ids: np.ndarray  # (B,) int64 indices or str paths


class Source(ABC):
    """A random-access view of a dataset's samples (see the module's doc)."""

    kind: str = ""
    class_names: tuple[str, ...] | None = None

    @abstractmethod
    def __len__(self) -> int:
        """The number of samples."""

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input."""
        return tuple(self.batch(0, 1).x.shape[1:])  # type: ignore[return-value]

    @property
    def has_labels(self) -> bool:
        return False

    @property
    def ids_are_paths(self) -> bool:
        return False

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the data is and how it was scaled, for the store's attributes."""

    @abstractmethod
    def batch(self, start: int, stop: int) -> Batch:
        """Samples ``start..stop-1``."""


def _ids(start: int, stop: int) -> np.ndarray:
    return np.arange(start, stop, dtype=np.int64)


class ArraySource(Source):
    """Images (N, H, W) uint8 or inputs (N, C, H, W) float, already in memory."""

    kind = "tensor"

    def __init__(
        self,
        x: Any,
        labels: Any = None,
        *,
        description: dict[str, Any] | None = None,
        class_names: tuple[str, ...] | None = None,
    ) -> None:
        import torch

        if isinstance(x, np.ndarray):
            if x.dtype == np.uint8 and x.ndim == 3:
                self._images: np.ndarray | None = x
                self._x: torch.Tensor | None = None
            else:
                x = torch.from_numpy(np.ascontiguousarray(x))
        if not isinstance(x, np.ndarray):
            if not isinstance(x, torch.Tensor):
                raise XAITypeError(f"expected a tensor or array; got {type(x).__name__}")
            if x.ndim != 4 or not x.is_floating_point():
                raise XAIValueError(
                    f"data: a tensor must be (N, C, H, W) floating point inputs, scaled as "
                    f"the model expects; got {x.dtype} of shape {tuple(x.shape)}. Add the "
                    f"channel axis with x[:, None] and scale uint8 pixels with x / 255."
                )
            self._images, self._x = None, x.detach()
        n = len(self._images) if self._images is not None else len(self._x)  # type: ignore[arg-type]
        self._labels = None if labels is None else _labels(labels, n)
        self._description = description or {
            "kind": "tensor",
            "shape": list(self._x.shape) if self._x is not None else None,
            "preprocessing": "as given",
        }
        self.class_names = class_names

    def __len__(self) -> int:
        return len(self._images) if self._images is not None else len(self._x)  # type: ignore[arg-type]

    @property
    def has_labels(self) -> bool:
        return self._labels is not None

    def describe(self) -> dict[str, Any]:
        return dict(self._description)

    def batch(self, start: int, stop: int) -> Batch:
        import torch

        if self._images is not None:
            pixels = self._images[start:stop].astype(np.float32) / np.float32(255.0)
            x = torch.from_numpy(pixels)[:, None]
        else:
            assert self._x is not None
            x = self._x[start:stop]
        labels = None if self._labels is None else self._labels[start:stop]
        return Batch(x, labels, _ids(start, stop))


def _labels(labels: Any, n: int) -> np.ndarray:
    values = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
    if values.shape != (n,) or not np.issubdtype(values.dtype, np.integer):
        raise XAIValueError(
            f"labels must be {n} integers, one per sample; got {values.dtype} of shape "
            f"{values.shape}"
        )
    return values.astype(np.int64)


class NamedSource(Source):
    """A split of an MNIST-family data set by name, read where the batch is made."""

    kind = "named"

    def __init__(self, name: str, split: str, root: str | None = None) -> None:
        from xai.data.datasets import CLASS_NAMES, _name

        self.name, self.split, self.root = _name(name), split, root
        if split not in ("train", "test"):
            raise XAIValueError(
                f"data: {name}:{split} names no split; use {self.name}:train or {self.name}:test"
            )
        self.class_names = CLASS_NAMES[self.name]
        self._data: Any = None
        len(self)  # load now: a missing data set fails before anything is written

    def _loaded(self) -> Any:
        if self._data is None:
            from xai.data.datasets import load

            self._data = load(self.name, self.root, self.split)
        return self._data

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}  # a worker reads the files itself

    def __len__(self) -> int:
        return len(self._loaded())

    @property
    def has_labels(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        return {"kind": "named", "name": f"{self.name}:{self.split}", "preprocessing": _SCALED}

    def batch(self, start: int, stop: int) -> Batch:
        import torch

        data = self._loaded()
        pixels = data.images[start:stop].astype(np.float32) / np.float32(255.0)
        return Batch(torch.from_numpy(pixels)[:, None], data.labels[start:stop], _ids(start, stop))


class IDXSource(Source):
    """An MNIST-family IDX image file (raw or .gz), with its labels file when beside it."""

    kind = "idx"

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.labels_path = _labels_file(self.path)
        self._arrays: tuple[np.ndarray, np.ndarray | None] | None = None
        len(self)

    def _loaded(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self._arrays is None:
            from xai.data.idx import read_idx

            images = read_idx(self.path)
            if images.ndim != 3 or images.dtype != np.uint8:
                raise XAIValueError(
                    f"{self.path}: an IDX image file holds (N, H, W) uint8 pixels; this one "
                    f"holds {images.dtype} of shape {images.shape}"
                )
            labels = None
            if self.labels_path is not None:
                labels = read_idx(self.labels_path).astype(np.int64)
                if labels.shape != (len(images),):
                    labels = None  # not this file's labels: explain without them
            self._arrays = (images, labels)
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def __len__(self) -> int:
        return len(self._loaded()[0])

    @property
    def has_labels(self) -> bool:
        return self._loaded()[1] is not None

    def describe(self) -> dict[str, Any]:
        labels = None if not self.has_labels else str(self.labels_path)
        return {"kind": "idx", "path": str(self.path), "labels": labels, "preprocessing": _SCALED}

    def batch(self, start: int, stop: int) -> Batch:
        import torch

        images, labels = self._loaded()
        pixels = images[start:stop].astype(np.float32) / np.float32(255.0)
        return Batch(
            torch.from_numpy(pixels)[:, None],
            None if labels is None else labels[start:stop],
            _ids(start, stop),
        )


def _labels_file(images: Path) -> Path | None:
    name = images.name
    if "images-idx3" not in name:
        return None
    candidate = images.with_name(name.replace("images-idx3", "labels-idx1"))
    return candidate if candidate.is_file() else None


class FolderSource(Source):
    """The PNG/JPEG files of a folder (sorted by name), each converted to the model's
    input: ``xai.images.read_image`` then ``to_input`` (stretched to (H, W), gray or RGB).
    Ids are the file names."""

    kind = "folder"

    def __init__(
        self,
        folder: Path,
        input_shape: tuple[int, int, int] | None,
        *,
        invert: bool = False,
        max_pixels: int | None = None,
    ) -> None:
        from xai.images import find_images

        self.folder = folder.resolve()
        self.paths = [p.name for p in find_images([self.folder])]
        if input_shape is None:
            raise XAIValueError(
                f"data: to explain the images in {folder}, the model's input size must be "
                f"known; pass input_size=(C, H, W) (the command line: --input-size C,H,W)"
            )
        self.input_shape = input_shape
        self.invert = invert
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return self.input_shape

    @property
    def ids_are_paths(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        c, h, w = self.input_shape
        return {
            "kind": "folder",
            "path": str(self.folder),
            "preprocessing": (
                f"read_image, then to_input: {'gray (BT.601 luma)' if c == 1 else 'RGB'}, "
                f"stretched to {h}x{w}, pixels / 255{', inverted' if self.invert else ''}"
            ),
        }

    def batch(self, start: int, stop: int) -> Batch:
        import torch

        from xai.images import MAX_PIXELS, read_image, to_input

        c, h, w = self.input_shape
        limit = self.max_pixels or MAX_PIXELS
        tensors = []
        for name in self.paths[start:stop]:
            image = read_image(self.folder / name, max_pixels=limit)
            tensors.append(to_input(image, c, (h, w), invert=self.invert))
        return Batch(torch.stack(tensors), None, np.array(self.paths[start:stop], dtype=object))


class DatasetSource(Source):
    """A map-style ``torch.utils.data.Dataset`` (items ``x`` or ``(x, label, ...)``), or
    the dataset of a ``DataLoader`` that reads it in order (its ``collate_fn`` is used)."""

    kind = "dataset"

    def __init__(self, dataset: Any, collate: Any = None) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise XAITypeError(
                f"data: a {type(dataset).__name__} has no length or no random access "
                f"(an IterableDataset); a dataset run needs both to resume by chunk and to "
                f"spread chunks over workers. Pass a map-style Dataset or a tensor."
            )
        import torch

        self.dataset, self.collate = dataset, collate
        first = self._item(0) if len(dataset) else None
        self._has_labels = first is not None and first[1] is not None
        self._shape = None if first is None else tuple(torch.as_tensor(first[0]).shape)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def has_labels(self) -> bool:
        return self._has_labels

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "dataset",
            "class": f"{type(self.dataset).__module__}.{type(self.dataset).__qualname__}",
            "preprocessing": "the dataset's own",
        }

    def _item(self, index: int) -> tuple[Any, Any]:
        item = self.dataset[index]
        if isinstance(item, tuple | list):
            if not item:
                raise XAIValueError(f"data: item {index} is empty")
            return item[0], item[1] if len(item) > 1 else None
        if isinstance(item, dict):
            x = item.get("x", item.get("image", item.get("pixel_values")))
            return x, item.get("label", item.get("labels"))
        return item, None

    def batch(self, start: int, stop: int) -> Batch:
        import torch

        xs, labels = [], []
        expected = self._shape
        for index in range(start, stop):
            x, label = self._item(index)
            if self.collate is None:
                x = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
                shape = tuple(x.shape)
                if x.ndim != 3 or shape != expected or not x.is_floating_point():
                    raise XAIValueError(
                        f"data: item {index} is {x.dtype} of shape {shape}; expected a "
                        f"floating-point (C, H, W) input of shape {expected} like the items "
                        f"before it. Fix the dataset's transform; the chunks before item "
                        f"{index} are kept (resume=True continues from there)."
                    )
            xs.append(x)
            labels.append(label)
        x = self.collate(xs) if self.collate is not None else torch.stack(xs)
        have = [label is not None for label in labels]
        if all(have) and self._has_labels:
            values = np.array([int(label) for label in labels], dtype=np.int64)
        else:
            values = None
        return Batch(x, values, _ids(start, stop))


def as_source(
    data: Any,
    *,
    input_shape: tuple[int, int, int] | None = None,
    labels: Any = None,
    invert: bool = False,
) -> Source:
    """The ``Source`` for ``data`` (see the module's doc); ``input_shape`` (C, H, W) is
    what a folder's images are converted to; ``labels`` go with a tensor."""
    import torch
    from torch.utils.data import DataLoader, Dataset, SequentialSampler

    if isinstance(data, Source):
        return data
    if isinstance(data, torch.Tensor | np.ndarray):
        return ArraySource(data, labels)
    if isinstance(data, DataLoader):
        if not isinstance(data.sampler, SequentialSampler):
            raise XAIValueError(
                f"data: this DataLoader reads its dataset in a {type(data.sampler).__name__} "
                f"order; a dataset run gives each sample a stable id (its index) so that it "
                f"can resume. Pass DataLoader(..., shuffle=False), or the dataset itself."
            )
        return DatasetSource(data.dataset, collate=_collate(data))
    if isinstance(data, Dataset):
        return DatasetSource(data)
    if isinstance(data, str | os.PathLike):
        return _from_text(data, input_shape, invert)
    raise XAITypeError(
        f"data must be an (N, C, H, W) tensor, a torch Dataset or DataLoader, a folder of "
        f"images, an IDX file or a data set name such as 'fashion-mnist:test'; got "
        f"{type(data).__name__}"
    )


def _collate(loader: Any) -> Any:
    from torch.utils.data import default_collate

    fn = loader.collate_fn
    return None if fn is default_collate else fn


def _from_text(
    data: str | os.PathLike[str], input_shape: tuple[int, int, int] | None, invert: bool
) -> Source:
    text = os.fspath(data)
    path = Path(text)
    if path.is_dir():
        return FolderSource(path, input_shape, invert=invert)
    if path.is_file():
        return IDXSource(path)
    name, _, split = text.partition(":")
    from xai.data.datasets import CLASS_NAMES

    key = name.strip().lower().replace("_", "-")
    if key in CLASS_NAMES or key in ("fashion", "fashionmnist"):
        return NamedSource(name, split or "test")
    raise XAIFileNotFoundError(
        f"data: {text} is no file or folder, and not a data set name (known: "
        f"{', '.join(f'{n}:test' for n in CLASS_NAMES)})"
    )
