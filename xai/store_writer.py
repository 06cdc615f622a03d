"""Writing a dataset run's chunks into its explanation store (``xai.store``).

Each chunk of each array is one file (zarr v3, local store, ``c/<chunk>/0/0`` keys). The
store's numeric arrays use the plain encoding of the zarr v3 specification, the ``bytes``
codec in little-endian order and no compressor, so a chunk's file is its values' bytes in
C order, padded with the fill value to the full chunk shape. ``StoreWriter`` writes those
files itself, which costs a small machine's writer thread a fraction of what zarr's
general-purpose write path does per chunk (measured: ~1 ms of CPU per chunk and array,
taken from the model); any array whose metadata is not this plain encoding (the string
ids of a folder's images) is written through zarr.

Every array's chunk files are written, whole, before the chunk's ``done`` flag, and the
flag's file is written to a temporary name and renamed into place, so it is either there
or not. A run killed mid-chunk may leave that chunk's data files half-written, but never
its flag: ``resume`` rewrites every chunk whose flag is unset, and a flag that is set
stands for whole files. (Renaming every data file into place as well cost 1.5x the file
system time per file here, for no reader that trusts the flags.)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ChunkFiles", "ChunkResult", "StoreWriter"]

# Temporary file names unique within a process (with its pid: across Ray workers too).
_COUNTER = itertools.count()

_NUMERIC = {
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
}


@dataclass
class ChunkResult:
    """One chunk's values, ready to be written."""

    index: int
    start: int
    stop: int
    ids: np.ndarray
    labels: np.ndarray | None
    targets: np.ndarray
    scores: np.ndarray
    top: np.ndarray | None
    probabilities: np.ndarray | None
    maps: dict[str, np.ndarray]
    raw: dict[str, np.ndarray]


class ChunkFiles:
    """Whole chunks of one zarr v3 array written as files (see the module's doc)."""

    def __init__(self, folder: Path, meta: dict[str, Any], *, atomic: bool = False) -> None:
        self.folder = folder
        self.atomic = atomic
        self.shape = tuple(meta["shape"])
        self.chunk = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
        self.dtype = np.dtype(meta["data_type"]).newbyteorder("<")
        self.fill = meta["fill_value"]
        self._folders: set[str] = set()

    @staticmethod
    def plain(meta: dict[str, Any]) -> bool:
        """Whether the array's chunks are raw little-endian bytes, chunked along axis 0,
        under the default ``c/i/0/...`` keys."""
        codecs = meta.get("codecs", [])
        key = meta.get("chunk_key_encoding", {})
        grid = meta.get("chunk_grid", {})
        return (
            meta.get("zarr_format") == 3
            and meta.get("data_type") in _NUMERIC
            and len(codecs) == 1
            and codecs[0].get("name") == "bytes"
            and codecs[0].get("configuration", {}).get("endian", "little") == "little"
            and key.get("name") == "default"
            and key.get("configuration", {}).get("separator", "/") == "/"
            and grid.get("name") == "regular"
            and list(grid["configuration"]["chunk_shape"][1:]) == list(meta["shape"][1:])
            and not meta.get("storage_transformers")
        )

    def write(self, index: int, values: np.ndarray) -> None:
        """Chunk ``index``: ``values`` (its rows), padded to the chunk's shape."""
        rows = self.chunk[0]
        data = np.asarray(values, dtype=self.dtype)
        if data.shape != (rows, *self.chunk[1:]):
            full = np.full(self.chunk, self.fill, dtype=self.dtype)
            full[: len(data)] = data
            data = full
        if len(self.chunk) > 1:
            folder = os.path.join(self.folder, "c", str(index), *["0"] * (len(self.chunk) - 2))
            name = "0"
        else:
            folder, name = os.path.join(self.folder, "c"), str(index)
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        path = os.path.join(folder, name)
        if not self.atomic:  # written in place: its done flag is set only once it is whole
            _write(path, data)
            return
        temporary = os.path.join(folder, f".{name}.{os.getpid()}.{next(_COUNTER)}.partial")
        try:
            _write(temporary, data)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


def _write(path: str, data: np.ndarray) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = np.ascontiguousarray(data).reshape(-1).view(np.uint8).data
        while view:  # a regular file takes it all at once; a short write goes on
            view = view[os.write(descriptor, view) :]
    finally:
        os.close(descriptor)


class StoreWriter:
    """Writes chunks into a store: each array's chunk files, then the ``done`` flags."""

    def __init__(self, group: Any, path: Path) -> None:
        names = ["ids", "labels", "targets", "scores", "top5", "top5_probabilities", "done"]
        names = [name for name in names if name in group]
        for method in group.attrs["xai"]["methods"]:
            names += [f"{method}/maps", f"{method}/raw"]
        self.files: dict[str, ChunkFiles] = {}
        self.arrays: dict[str, Any] = {}
        for name in names:
            folder = path / name
            meta = json.loads((folder / "zarr.json").read_text())
            if ChunkFiles.plain(meta):
                self.files[name] = ChunkFiles(folder, meta, atomic=name == "done")
            else:
                self.arrays[name] = group[name]

    def _put(self, name: str, index: int, start: int, values: np.ndarray) -> None:
        if name in self.files:
            self.files[name].write(index, values)
        else:
            self.arrays[name][start : start + len(values)] = values

    def write(self, results: Sequence[ChunkResult]) -> None:
        """Write chunks (any order), then mark them done."""
        for r in results:
            self._put("ids", r.index, r.start, r.ids)
            if r.labels is not None and ("labels" in self.files or "labels" in self.arrays):
                self._put("labels", r.index, r.start, r.labels)
            self._put("targets", r.index, r.start, r.targets)
            self._put("scores", r.index, r.start, r.scores)
            if r.top is not None and r.probabilities is not None:
                self._put("top5", r.index, r.start, r.top)
                self._put("top5_probabilities", r.index, r.start, r.probabilities)
            for method, maps in r.maps.items():
                self._put(f"{method}/maps", r.index, r.start, maps)
                self._put(f"{method}/raw", r.index, r.start, r.raw[method])
        for r in results:  # last: every array's chunk is whole
            self._put("done", r.index, r.index, np.ones(1, dtype=bool))
