"""The explanation store: a zarr (v3) group on disk that a dataset run fills chunk by chunk.

Layout (N samples, chunks of ``batch_size`` along the first axis, one chunk per batch)::

    OUT.zarr/
      ids                 (N,)      int64 index, or str path for a folder of images
      labels              (N,)      int64, when the data has labels
      targets             (N,)      int64, the class explained (-1: no single class)
      scores              (N,)      float32, the explained score (a logit, usually)
      top5                (N, k)    int64, the model's k = min(5, classes) best classes
      top5_probabilities  (N, k)    float32, their softmax probabilities
      done                (chunks,) bool, one file per chunk: written last
      <method>/maps       (N, H, W) float32 (or float16) in [0, 1], at input size
      <method>/raw        (N, h, w) float32, unnormalised, at the layer's size

and the attributes under ``attrs["xai"]``: the methods, their layers and options, the
target, the model (class, SHA-256 of its weights, card), the input shape, the data and its
preprocessing, the class names, the versions, and whether the run is ``complete``.

A chunk is done when its ``done`` flag is set, and the flag is written after every array's
chunk (each chunk file itself is written to a temporary name and renamed, as zarr's local
store does): a run killed mid-chunk leaves that flag unset, and ``resume`` computes the
chunk again. Anything that reads zarr reads the store without xai:
``zarr.open_group("OUT.zarr")["gradcam/maps"][:10]``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xai.core.errors import XAIFileNotFoundError, XAIValueError

if TYPE_CHECKING:
    from xai.explanation import Explanation

__all__ = ["FORMAT", "ExplanationStore", "Layout", "open_store"]

#: The value of ``attrs["xai"]["format"]`` in stores this version writes.
FORMAT = "xai-explanations/1"

# What must match for ``resume=True`` to continue a store, with how to say it.
_RESUME_KEYS = {
    "methods": "methods",
    "layers": "layers",
    "options": "method options",
    "target": "target",
    "model_sha256": "model (SHA-256 of its weights)",
    "input_shape": "input shape (C, H, W)",
    "n": "number of samples",
    "batch_size": "batch size (one chunk per batch)",
    "map_dtype": "map dtype",
    "data": "data",
}


_DIMENSIONS = {
    "ids": ("sample",),
    "labels": ("sample",),
    "targets": ("sample",),
    "scores": ("sample",),
    "top5": ("sample", "rank"),
    "top5_probabilities": ("sample", "rank"),
    "done": ("chunk",),
    "maps": ("sample", "y", "x"),
    "raw": ("sample", "layer_y", "layer_x"),
}


@dataclass(frozen=True)
class Layout:
    """The shapes of a run's arrays, known once the first sample is explained."""

    n: int
    batch_size: int
    input_shape: tuple[int, int, int]
    raw_shapes: dict[str, tuple[int, int]]  # method -> (h, w)
    top_k: int  # 0: the model's output holds no class scores
    labels: bool
    ids_are_paths: bool
    map_dtype: str

    @property
    def chunks(self) -> int:
        return -(-self.n // self.batch_size)

    def rows(self, index: int) -> tuple[int, int]:
        """``(start, stop)``: the samples of chunk ``index``."""
        start = index * self.batch_size
        return start, min(start + self.batch_size, self.n)

    def samples(self, chunks: Sequence[int]) -> int:
        """How many samples the chunks hold."""
        return sum(stop - start for start, stop in map(self.rows, chunks))


def _zarr() -> Any:
    from xai.integrations._lazy import require

    return require("zarr", "zarr", "zarr>=3")


def check_destination(path: Path, *, resume: bool, overwrite: bool) -> str:
    """``"new"``, ``"resume"`` or ``"overwrite"``; refuses a path holding anything else."""
    if not path.exists():
        return "new"
    if not path.is_dir():
        raise XAIValueError(
            f"store: {path} is a file, not a zarr store; pass a new path (e.g. OUT.zarr)"
        )
    attrs = _read_attrs(path)
    if attrs is None:
        if not any(path.iterdir()):
            return "new"
        raise XAIValueError(
            f"store: {path} holds something else (no xai explanation store in it); it is "
            f"left as it is. Pass a new path, or delete it yourself."
        )
    if resume:
        return "resume"
    if overwrite:
        return "overwrite"
    state = "a complete" if attrs.get("complete") else "an incomplete"
    raise XAIValueError(
        f"store: {path} already holds {state} explanation store; pass resume=True "
        f"(--resume) to compute only its missing chunks, or overwrite=True (--overwrite) to "
        f"start again"
    )


def _read_attrs(path: Path) -> dict[str, Any] | None:
    meta = path / "zarr.json"
    if not meta.is_file() or meta.stat().st_size > 16 << 20:
        return None
    try:
        document = json.loads(meta.read_text())
    except (ValueError, UnicodeDecodeError):
        return None
    attrs = document.get("attributes", {}) if isinstance(document, dict) else {}
    xai_attrs = attrs.get("xai") if isinstance(attrs, dict) else None
    if not isinstance(xai_attrs, dict) or xai_attrs.get("format") != FORMAT:
        return None
    return xai_attrs


def differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """What differs between a store's run and the run asked for, in words."""
    out = []
    for key, words in _RESUME_KEYS.items():
        if _plain(stored.get(key)) != _plain(wanted.get(key)):
            out.append(f"{words}: the store has {stored.get(key)!r}, this run {wanted.get(key)!r}")
    return out


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def create(path: Path, layout: Layout, attrs: dict[str, Any], *, overwrite: bool) -> Any:
    """Create the store's group and empty arrays (nothing is written to the chunks)."""
    zarr = _zarr()
    if overwrite and path.exists():
        shutil.rmtree(path)
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    n, b = layout.n, layout.batch_size
    _, height, width = layout.input_shape

    def array(where: Any, name: str, shape: tuple[int, ...], dtype: Any, fill: Any) -> None:
        chunks = (b, *shape[1:]) if name != "done" else (1,)
        # Stored uncompressed: maps are noise to a compressor (zstd saves ~15 % of their
        # bytes), the other arrays hold a few hundred numbers per chunk, and compressing
        # doubles the writer's CPU time, taken from the model on a small machine. Named
        # dimensions let xarray open each group as a Dataset.
        where.create_array(
            name,
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            fill_value=fill,
            compressors=None,
            dimension_names=_DIMENSIONS[name],
        )

    array(
        group,
        "ids",
        (n,),
        str if layout.ids_are_paths else "int64",
        "" if layout.ids_are_paths else -1,
    )
    if layout.labels:
        array(group, "labels", (n,), "int64", -1)
    array(group, "targets", (n,), "int64", -1)
    array(group, "scores", (n,), "float32", np.nan)
    if layout.top_k:
        array(group, "top5", (n, layout.top_k), "int64", -1)
        array(group, "top5_probabilities", (n, layout.top_k), "float32", np.nan)
    array(group, "done", (layout.chunks,), "bool", False)
    for method, (h, w) in layout.raw_shapes.items():
        sub = group.create_group(method)
        array(sub, "maps", (n, height, width), layout.map_dtype, 0)
        array(sub, "raw", (n, h, w), "float32", 0)
    group.attrs["xai"] = _plain({**attrs, "format": FORMAT, "complete": False})
    return group


def open_group(path: Path, mode: str = "r+") -> Any:
    return _zarr().open_group(str(path), mode=mode, zarr_format=3)


def done_chunks(group: Any) -> np.ndarray:
    return np.asarray(group["done"][:], dtype=bool)


def finish(path: Path, updates: dict[str, Any]) -> None:
    group = open_group(path)
    attrs = dict(group.attrs["xai"])
    attrs.update(_plain(updates))
    group.attrs["xai"] = attrs


class ExplanationStore:
    """A typed, read-only view of an explanation store (``xai.open_store(path)``).

    Arrays are read lazily, chunk by chunk (``store.maps()[i]`` reads one chunk); the
    whole store is never loaded unless asked for.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise XAIFileNotFoundError(f"{self.path}: no such store")
        attrs = _read_attrs(self.path) if self.path.is_dir() else None
        if attrs is None:
            raise XAIValueError(
                f"{self.path} is not an xai explanation store (a zarr group whose "
                f"attributes hold xai's {FORMAT!r} record); make one with xai.explain_dataset "
                f"or `xai explain-dataset`"
            )
        self.attrs: dict[str, Any] = attrs
        self.group: Any = open_group(self.path, mode="r")

    # ---------------------------------------------------------------- what it holds
    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.attrs["methods"])

    @property
    def layers(self) -> dict[str, str | None]:
        return dict(self.attrs["layers"])

    @property
    def class_names(self) -> tuple[str, ...] | None:
        names = self.attrs.get("class_names")
        return None if names is None else tuple(names)

    @property
    def complete(self) -> bool:
        """Every chunk is done (and the run that made it finished)."""
        return bool(self.attrs.get("complete")) and not self.missing_chunks()

    def missing_chunks(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~done_chunks(self.group))]

    def __len__(self) -> int:
        return int(self.attrs["n"])

    # ---------------------------------------------------------------- the arrays
    def _array(self, name: str) -> Any:
        if name not in self.group:
            raise XAIValueError(f"{self.path} has no {name!r} array")
        return self.group[name]

    def _method(self, method: str | None) -> str:
        if method is None:
            if len(self.methods) > 1:
                raise XAIValueError(
                    f"this store holds {len(self.methods)} methods ({', '.join(self.methods)}); "
                    f"name one"
                )
            return self.methods[0]
        from xai.registry import resolve_name

        key = resolve_name(method)
        if key not in self.methods:
            raise XAIValueError(f"this store holds {', '.join(self.methods)}, not {method!r}")
        return key

    def maps(self, method: str | None = None) -> Any:
        """``(N, H, W)`` maps in [0, 1] of ``method`` (a lazy zarr array)."""
        return self._array(f"{self._method(method)}/maps")

    def raw(self, method: str | None = None) -> Any:
        """``(N, h, w)`` unnormalised maps of ``method`` (a lazy zarr array)."""
        return self._array(f"{self._method(method)}/raw")

    @property
    def ids(self) -> np.ndarray:
        return np.asarray(self._array("ids")[:])

    @property
    def labels(self) -> np.ndarray | None:
        return np.asarray(self.group["labels"][:]) if "labels" in self.group else None

    @property
    def targets(self) -> np.ndarray:
        return np.asarray(self._array("targets")[:])

    @property
    def scores(self) -> np.ndarray:
        return np.asarray(self._array("scores")[:])

    @property
    def top5(self) -> np.ndarray | None:
        return np.asarray(self.group["top5"][:]) if "top5" in self.group else None

    @property
    def top5_probabilities(self) -> np.ndarray | None:
        if "top5_probabilities" not in self.group:
            return None
        return np.asarray(self.group["top5_probabilities"][:])

    def explanation(self, rows: int | slice, method: str | None = None) -> Explanation:
        """Rows of the store as an ``Explanation`` (what ``xai.explain`` returned)."""
        import torch

        from xai.explanation import Explanation

        key = self._method(method)
        if isinstance(rows, int):
            if not -len(self) <= rows < len(self):
                raise IndexError(f"row {rows} is out of range for {len(self)} samples")
            rows = slice(rows % len(self), rows % len(self) + 1)
        return Explanation(
            maps=torch.from_numpy(np.asarray(self.maps(key)[rows], dtype=np.float32)),
            raw=torch.from_numpy(np.asarray(self.raw(key)[rows], dtype=np.float32)),
            targets=torch.from_numpy(np.asarray(self._array("targets")[rows])),
            scores=torch.from_numpy(np.asarray(self._array("scores")[rows])),
            method=key,
            layer=self.layers.get(key),
        )

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{len(self.missing_chunks())} chunks missing"
        return (
            f"ExplanationStore({str(self.path)!r}, n={len(self)}, "
            f"methods={list(self.methods)}, {state})"
        )


def open_store(path: str | os.PathLike[str]) -> ExplanationStore:
    """Open an explanation store written by ``xai.explain_dataset`` (read-only).

    Example:
        >>> import torch, xai, tempfile, pathlib
        >>> model = xai.models.GAPCNN(in_channels=1, num_classes=10)
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "run.zarr"
        >>> _ = xai.explain_dataset(model, torch.rand(6, 1, 28, 28), store=out,
        ...                         batch_size=4, progress=False)
        >>> s = xai.open_store(out)
        >>> s.methods, len(s), s.maps().shape, s.complete
        (('gradcam',), 6, (6, 28, 28), True)
    """
    return ExplanationStore(path)
