"""What a model file declares, read before anything in it is loaded or run.

A plain pickle is told from a PyTorch file by its opcodes, never run (``sniff_pickle``).
For a PyTorch zip archive: the size and entry count of its central directory
(``check_directory``), the sizes its entries unpack to and their compression ratio
(``check_archive``: ``torch.save`` never compresses, so a high ratio is a zip bomb), and
the storages and tensors its ``data.pkl`` declares, read by an unpickler that builds
records instead of calling anything (``scan``), checked against the architecture's
parameters computed on the meta device (``check_against_architecture``). Used by
``xai.models.loading`` before ``torch.load``.
"""

from __future__ import annotations

import collections
import json
import math
import os
import pickle
import pickletools
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xai.core.errors import XAIError, XAIValueError
from xai.models.infer import config_from_weights
from xai.models.normalize import Normalize
from xai.models.registry import ARCHITECTURES, build

__all__ = [
    "Declared",
    "check_against_architecture",
    "check_archive",
    "check_directory",
    "check_inferable",
    "human",
    "is_declared",
    "over_limit",
    "scan",
    "sniff_pickle",
    "state_dict_in",
]

# torch.save stores its entries uncompressed (1:1); trained float weights do not compress
# even when re-zipped (about 1.1:1), while a run of zeros deflates about 1000:1. Over
# _RATIO_FLOOR unpacked, a ratio over _MAX_RATIO is a zip bomb (below it, a high ratio
# costs nothing: zero-initialised buffers compress well).
_MAX_RATIO = 100
_RATIO_FLOOR = 64 << 20
# zipfile reads the whole central directory into memory before any check can run: its
# declared size and entry count are read first (a torch file has a few entries per tensor).
_MAX_ENTRIES = 100_000
_MAX_DIRECTORY_BYTES = 64 << 20
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a pre-1.6 torch.save file
_PICKLE_SNIFF_BYTES = 1 << 20
# Reading a GAPCNN's configuration off its weights tries a network per block layout: time
# grows with the cube of the convolutions (1 s for 64, 47 s for 300). Real ones have tens.
_MAX_INFERRED_CONVS = 64

_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


def human(size: float) -> str:
    """``4294967296`` -> ``"4.0 GiB"``."""
    if size < 1024:
        return f"{int(size)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def over_limit(spec: str, what: str, size: int, limit: int) -> XAIValueError:
    return XAIValueError(
        f"--model {spec} {what} {human(size)}, more than the limit of {human(limit)} (a "
        f"guard against files that fill the memory); if you trust the file, raise the limit "
        f"with --max-model-size (max_bytes= in Python)"
    )


def sniff_pickle(path: Path, size: int) -> tuple[str, list[str]]:
    """What a file that is not a zip archive is, from its opcodes (read, never run):
    ``("legacy", [])`` for a pre-1.6 ``torch.save`` file, ``("pickle", names)`` for a plain
    pickle with the globals it names, ``("damaged", [])`` for one that starts as a
    pickle and breaks off (``torch.load`` says how), ``("other", [])`` for anything else."""
    with path.open("rb") as handle:
        head = handle.read(_PICKLE_SNIFF_BYTES)
    truncated = len(head) < size
    names: list[str] = []
    strings: list[str] = []
    values: list[Any] = []
    try:
        for opcode, arg, _ in pickletools.genops(head):
            if opcode.name in ("GLOBAL", "INST"):
                names.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str) and "UNICODE" in opcode.name:
                strings.append(arg)
            if opcode.name == "STOP":
                if values == [_LEGACY_MAGIC] and not names:
                    return "legacy", []
                return "pickle", list(dict.fromkeys(names))
            if opcode.name not in ("PROTO", "FRAME") and len(values) < 2:
                values.append(arg)  # the first two are enough to tell the legacy magic
    except Exception as error:  # ValueError: an unknown opcode, or data ending inside one
        if truncated and "unknown" not in str(error):
            return "pickle", list(dict.fromkeys(names))  # longer than the part read
    if head.startswith(b"\x80"):  # starts as a protocol 2+ pickle: a damaged one
        return "damaged", []
    return "other", []


def check_directory(spec: str, path: Path) -> None:
    """The entry count and size of the zip's central directory, read from its end record
    (ZIP64 too) before ``zipfile`` reads the directory itself into memory."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(size - min(size, 22 + 0xFFFF))
        tail = handle.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            return  # zipfile will say what is wrong
        entries, directory = struct.unpack_from("<HL", tail, at + 10)
        locator = at - 20
        if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
            (offset,) = struct.unpack_from("<Q", tail, locator + 8)
            handle.seek(offset)
            record = handle.read(56)
            if len(record) == 56 and record[:4] == b"PK\x06\x06":
                entries, directory = struct.unpack_from("<QQ", record, 32)
    if entries > _MAX_ENTRIES or directory > _MAX_DIRECTORY_BYTES:
        raise XAIValueError(
            f"--model {spec} is a zip archive of {entries:,} entries ({human(directory)} of "
            f"directory); a PyTorch file has a few per tensor, so this is not one (at most "
            f"{_MAX_ENTRIES:,} entries are read)"
        )


def check_archive(spec: str, infos: list[zipfile.ZipInfo], max_bytes: int | None) -> None:
    """The sizes the archive declares, before anything is unpacked: no zip bomb, at most
    ``max_bytes`` in all, and no entry twice (the reader would take one, the check
    another)."""
    seen: set[str] = set()
    for info in infos:
        key = info.filename.lower()  # torch's reader compares names without case
        if key in seen:
            raise XAIValueError(
                f"--model {spec} holds the entry {info.filename} twice; torch.save writes "
                f"each once, so the file was altered"
            )
        seen.add(key)
    unpacked = sum(info.file_size for info in infos)
    packed = sum(info.compress_size for info in infos)
    if unpacked > _RATIO_FLOOR and unpacked > _MAX_RATIO * max(packed, 1):
        raise XAIValueError(
            f"--model {spec} looks like a zip bomb: {human(packed)} on disk unpack to "
            f"{human(unpacked)} ({unpacked / max(packed, 1):,.0f} to 1), and PyTorch never "
            f"compresses the files it saves. Refused before unpacking; save the weights "
            f"again with torch.save(model.state_dict(), PATH)"
        )
    if max_bytes is not None and unpacked > max_bytes:
        raise over_limit(spec, "unpacks to", unpacked, max_bytes)


class _UnmodelledError(Exception):
    """The scan met something it does not model; ``torch.load`` judges the file."""


class _StorageDecl:
    """A storage as ``data.pkl`` declares it: its record's key, dtype and size."""

    def __init__(self, key: str, dtype: torch.dtype, nbytes: int) -> None:
        self.key, self.dtype, self.nbytes = key, dtype, nbytes

    def __setstate__(self, state: Any) -> None:  # a pickle may not BUILD on it
        raise _UnmodelledError


class _TensorDecl:
    """A tensor as ``data.pkl`` declares it: a view of a storage."""

    def __init__(
        self,
        storage: _StorageDecl,
        offset: int,
        shape: tuple[int, ...],
        stride: tuple[int, ...],
        dtype: torch.dtype,
    ) -> None:
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride
        self.dtype = dtype
        self.numel = math.prod(shape)

    def __setstate__(self, state: Any) -> None:
        raise _UnmodelledError


@dataclass
class Declared:
    """What ``data.pkl`` declares: its content, with tensors as ``_TensorDecl``."""

    content: Any
    storages: dict[str, _StorageDecl]
    tensors: list[_TensorDecl]


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _ints(value: Any) -> tuple[int, ...]:
    """Sizes, strides or offsets: non-negative ints that fit torch's int64."""
    if not isinstance(value, tuple | list) or not all(
        type(v) is int and 0 <= v < 1 << 63 for v in value
    ):
        raise _UnmodelledError
    return tuple(value)


class _Scanner(pickle.Unpickler):
    """Reads ``data.pkl`` as ``torch.load`` would, but builds only declarations: a storage
    is its key and size, a tensor its storage, offset, shape and stride. Nothing is read
    from the storages' records, and nothing but these few plain functions can be called."""

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self.storages: dict[str, _StorageDecl] = {}
        self.tensors: list[_TensorDecl] = []
        self.globals: dict[tuple[str, str], Any] = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch", "Size"): tuple,
            ("torch._utils", "_rebuild_tensor_v2"): self._tensor_v2,
            ("torch._utils", "_rebuild_tensor_v3"): self._tensor_v3,
            ("torch._utils", "_rebuild_parameter"): self._parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): self._parameter,
        }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.globals:
            return self.globals[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise _UnmodelledError

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise _UnmodelledError
        _, kind, key, _, numel = pid
        if not isinstance(kind, _StorageType) or not isinstance(key, str):
            raise _UnmodelledError
        nbytes = _ints((numel,))[0] * kind.dtype.itemsize
        known = self.storages.get(key)
        if known is not None and known.nbytes != nbytes:
            raise _UnmodelledError
        return self.storages.setdefault(key, _StorageDecl(key, kind.dtype, nbytes))

    def _tensor(
        self, storage: Any, offset: Any, shape: Any, stride: Any, dtype: torch.dtype
    ) -> _TensorDecl:
        if not isinstance(storage, _StorageDecl) or len(_ints(shape)) != len(_ints(stride)):
            raise _UnmodelledError
        tensor = _TensorDecl(storage, _ints((offset,))[0], _ints(shape), _ints(stride), dtype)
        self.tensors.append(tensor)
        return tensor

    def _tensor_v2(self, storage: Any, offset: Any, shape: Any, stride: Any, *_: Any) -> Any:
        if not isinstance(storage, _StorageDecl):
            raise _UnmodelledError
        return self._tensor(storage, offset, shape, stride, storage.dtype)

    def _tensor_v3(
        self, storage: Any, offset: Any, shape: Any, stride: Any, _g: Any, _h: Any, dtype: Any,
        *_: Any,
    ) -> Any:  # fmt: skip
        if not isinstance(dtype, torch.dtype):
            raise _UnmodelledError
        return self._tensor(storage, offset, shape, stride, dtype)

    @staticmethod
    def _parameter(data: Any, *_: Any) -> Any:
        if not isinstance(data, _TensorDecl):
            raise _UnmodelledError
        return data


def scan(spec: str, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> Declared | None:
    """The declarations of ``data.pkl``, checked against the records they point at; ``None``
    when it holds something the scan does not model (``torch.load`` then judges it, within
    the limits already checked)."""
    prefix = infos[0].filename.partition("/")[0] if infos else ""
    try:
        with archive.open(f"{prefix}/data.pkl") as handle:
            scanner = _Scanner(handle)
            content = scanner.load()
    except Exception:  # something not modelled, or a damaged pickle: torch.load judges it
        return None
    records = {info.filename: info.file_size for info in infos}
    for key, storage in scanner.storages.items():
        held = records.get(f"{prefix}/data/{key}")
        if held is None or held != storage.nbytes:
            holds = "no record" if held is None else f"{held} bytes"
            raise XAIValueError(
                f"--model {spec} is damaged or altered: its storage {key} declares "
                f"{storage.nbytes} bytes, and the archive holds {holds} for it"
            )
    names = {id(t): k for k, t in (state_dict_in(content, is_declared) or {}).items()}
    for tensor in scanner.tensors:
        elements = tensor.storage.nbytes // tensor.dtype.itemsize
        extent = tensor.offset + sum(
            (d - 1) * s for d, s in zip(tensor.shape, tensor.stride, strict=True)
        )
        if tensor.numel > elements or (tensor.numel and extent >= elements):
            name = names.get(id(tensor), f"in storage {tensor.storage.key}")
            raise XAIValueError(
                f"--model {spec} is damaged or altered: the tensor {name} declares shape "
                f"{tensor.shape} ({tensor.numel} elements) over a storage of only "
                f"{elements} element{'s' if elements != 1 else ''}"
            )
    return Declared(content, scanner.storages, scanner.tensors)


def is_declared(value: Any) -> bool:
    return isinstance(value, _TensorDecl)


def check_against_architecture(
    spec: str,
    name: str,
    config: Mapping[str, Any] | None,
    state: Mapping[str, _TensorDecl],
) -> None:
    """The declared tensors against the parameters of the architecture, computed on the
    meta device (no memory): a file whose tensors would not fit is refused unread, and a
    configuration describing a huge network is never built."""
    if name.strip().lower() not in ARCHITECTURES:
        return  # build() says so
    inferred = config is None
    if config is None:  # read off the declared shapes, as config_from_weights does later
        placeholders = {
            key: torch.empty(tensor.shape, dtype=tensor.dtype, device="meta")
            for key, tensor in state.items()
            if not key.startswith("normalize.")  # its values, not shapes, are the config
        }
        check_inferable(spec, name, placeholders)
        with torch.device("meta"):
            config = config_from_weights(name, placeholders)
    expected = _expected_shapes(name, config)
    unexpected: list[str] = []
    problem = None
    for key, tensor in state.items():
        if inferred and key.startswith("normalize."):
            continue
        if key not in expected:
            unexpected.append(key)
        elif tensor.shape != expected[key] and not (expected[key] == () and tensor.shape == (1,)):
            problem = (
                f"size mismatch for {key}: the file declares {tensor.shape}, the "
                f"architecture has {expected[key]}"
            )
            break
    if problem is None and unexpected:
        listed = ", ".join(unexpected[:5]) + (", ..." if len(unexpected) > 5 else "")
        problem = f"unexpected key(s) {listed}: the architecture has no such parameter"
    if problem is not None:
        raise XAIValueError(
            f"--model {spec}: the weights do not fit {name} with configuration "
            f"{json.dumps(dict(config), default=str)} ({problem}); pass --config with the "
            f"arguments it was built with"
        )


def check_inferable(spec: str, name: str, state: Mapping[str, torch.Tensor]) -> None:
    """Few enough convolutions to read the configuration off the weights in bounded time."""
    convs = sum(1 for k, v in state.items() if k.startswith("features.") and v.ndim == 4)
    if convs > _MAX_INFERRED_CONVS:
        raise XAIValueError(
            f"--model {spec} declares {convs} convolution weights; xai reads the "
            f"configuration of {name} off at most {_MAX_INFERRED_CONVS}. Pass --config "
            f"with the arguments it was built with"
        )


def _expected_shapes(name: str, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes of ``build(name, config)``, built on the meta device. The
    in-model normalisation checks its values (which the meta device cannot), so it is
    built apart, for real: it is one value per channel."""
    if not isinstance(config, Mapping):
        build(name, config)  # raises: the configuration must be a mapping
    rest = dict(config)
    mean, std = rest.get("mean"), rest.get("std")
    if mean is not None and std is not None:
        del rest["mean"], rest["std"]
    with torch.device("meta"):
        model = build(name, rest)
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    identity = isinstance(getattr(model, "normalize", None), nn.Identity)
    if mean is not None and std is not None and identity:
        try:
            norm = Normalize(mean, std)
        except XAIError:
            raise
        except (TypeError, ValueError, RuntimeError) as error:  # as build() words it
            raise XAIValueError(f"bad configuration for {name}: {error}") from None
        shapes |= {f"normalize.{k}": tuple(v.shape) for k, v in norm.state_dict().items()}
    return shapes


def state_dict_in(
    content: Any, is_tensor: Callable[[Any], bool] = lambda v: isinstance(v, torch.Tensor)
) -> dict[str, Any] | None:
    """The state_dict in ``content``: the mapping itself, or the one a training checkpoint
    holds under a usual key; ``None`` if neither."""
    if not isinstance(content, Mapping):
        return None
    if content and all(is_tensor(v) for v in content.values()):
        return dict(content)
    for key in _CHECKPOINT_KEYS:  # a training checkpoint around the weights
        inner = content.get(key)
        if isinstance(inner, Mapping) and inner and all(is_tensor(v) for v in inner.values()):
            return dict(inner)
    return None
