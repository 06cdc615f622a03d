"""Readers for the IDX format (MNIST, Fashion-MNIST) and KMNIST's .npz files.

IDX (LeCun et al.): a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim``
big-endian uint32 sizes, then the data in C order. Type 0x08 is unsigned bytes, which is
what the MNIST family uses; the other types of the format are read too. Files may be
gzipped (detected from their content, not their name).
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from xai.core.errors import XAIError, XAIFileNotFoundError, XAIValueError

__all__ = ["read_idx", "read_npz"]

_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _bytes(path: Path) -> bytes:
    if not path.is_file():
        raise XAIFileNotFoundError(f"no such file: {path}")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise XAIValueError(f"{path}: a corrupt or truncated gzip file ({error})") from None
    return data


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into an array of its shape and type.

    Raises:
        ValueError: a wrong magic number, a truncated file, or bytes left over.
    """
    path = Path(path)
    data = _bytes(path)
    if len(data) < 4:
        raise XAIValueError(f"{path}: truncated IDX file ({len(data)} bytes, no header)")
    if data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise XAIValueError(
            f"{path}: not an IDX file: magic number {data[:4].hex(' ')}, expected "
            f"00 00 08 0N for unsigned bytes (MNIST, Fashion-MNIST)"
        )
    dtype, ndim = _TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise XAIValueError(f"{path}: truncated IDX header ({len(data)} of {header} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found < expected:
        raise XAIValueError(
            f"{path}: truncated IDX file: its header says {shape} ({expected:,} bytes of "
            f"data), the file holds {found:,}"
        )
    if found > expected:
        raise XAIValueError(
            f"{path}: size mismatch: its header says {shape} ({expected:,} bytes of data), "
            f"the file holds {found:,}"
        )
    return (
        np.frombuffer(data, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def read_npz(path: str | Path) -> np.ndarray:
    """Read KMNIST's ``.npz`` files: one array, stored as ``arr_0``."""
    path = Path(path)
    if not path.is_file():
        raise XAIFileNotFoundError(f"no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if len(archive.files) != 1:
                raise XAIValueError(f"{path}: expected one array (arr_0), found {archive.files}")
            return archive[archive.files[0]]
    except XAIError:  # ours, from the check above
        raise
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise XAIValueError(f"{path}: not a readable .npz file ({error})") from None
    except ValueError as error:  # numpy's word for a damaged or pickled array
        if "pickled" in str(error):
            raise XAIValueError(
                f"{path}: not a readable .npz file (not a zip archive; pickled data is never "
                f"loaded)"
            ) from None
        raise XAIValueError(f"{path}: not a readable .npz file ({error})") from None
