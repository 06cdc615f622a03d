"""Loading a model from a spec string, as ``xai explain --model SPEC`` does.

A spec is one of
  * ``builtin:NAME``: an embedded pretrained model (``builtin:fashion-mnist``);
  * a file saved with ``torch.save(model.state_dict(), ...)``: the architecture comes from
    a model card beside it (``FILE.json`` or ``FILE.pt.json``, as ``xai train`` writes)
    or from ``arch=`` (a built-in architecture) with ``config=`` (its arguments);
  * a TorchScript file (``torch.jit.save``);
  * ``package.module:factory`` or ``path/to/file.py:factory``: a function of the user's
    own code, called with no arguments, returning the model.

Files are read with ``torch.load(weights_only=True)``, which unpickles tensors and plain
containers only. A file holding a pickled Python object (``torch.save(model, ...)``), or a
plain Python pickle, can run arbitrary code when loaded, so it is refused unless
``trust_pickle=True``.

Before any tensor is read, a file is checked against what it declares, so a hostile one
costs neither memory nor time: its size on disk, and for a PyTorch zip archive the sizes
its entries unpack to (at most ``max_bytes``, and no zip bomb: ``torch.save`` never
compresses), the storages and tensors its ``data.pkl`` declares (each tensor within its
storage, each storage the size of its record) and, when the architecture is known, the
tensors' shapes against the parameters of that architecture.
"""

from __future__ import annotations

import collections
import hashlib
import importlib
import importlib.util
import json
import math
import os
import pickle
import pickletools
import re
import struct
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xai.core.errors import XAIError, XAIFileNotFoundError, XAIPermissionError, XAIValueError
from xai.core.validate import Integer, check
from xai.models.infer import config_from_weights
from xai.models.normalize import Normalize
from xai.models.pretrained import available, model_card, pretrained
from xai.models.registry import ARCHITECTURES, build

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_SPEC", "LoadedModel", "load_model"]

DEFAULT_SPEC = "builtin:fashion-mnist"

#: The most a model file may hold or unpack to: 4 GiB. The largest image classifiers one
#: explains on one machine fit with room (ViT-H/14, 632 M parameters, is 2.5 GB in
#: float32; ConvNeXt-XL 1.4 GB), while no file can make xai claim more memory than a
#: laptop has (loading holds the file's tensors and the model's copy: twice the file).
#: ``load_model(max_bytes=...)`` and ``--max-model-size`` change it.
DEFAULT_MAX_BYTES = 4 << 30
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
_MAX_CARD_BYTES = 16 << 20  # a model card is a small JSON file
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a pre-1.6 torch.save file
_PICKLE_SNIFF_BYTES = 1 << 20
# Reading a GAPCNN's configuration off its weights tries a network per block layout: time
# grows with the cube of the convolutions (1 s for 64, 47 s for 300). Real ones have tens.
_MAX_INFERRED_CONVS = 64

_FACTORY = re.compile(r"^(?P<module>[\w./\\-]+?):(?P<function>[A-Za-z_]\w*)$")
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model and what is known about it.

    Attributes:
        model: the module, in eval mode.
        spec: the spec it was loaded from.
        kind: ``"builtin"``, ``"state_dict"``, ``"torchscript"``, ``"pickle"`` or
            ``"factory"``.
        class_names: one name per class, when known (model attribute or model card).
        input_size: ``(C, H, W)`` the model takes, when known.
        details: extra facts for a manifest (file hash, architecture, card path).
    """

    model: nn.Module
    spec: str
    kind: str
    class_names: tuple[str, ...] | None = None
    input_size: tuple[int, int, int] | None = None
    details: dict[str, Any] = field(default_factory=dict)


def load_model(
    spec: str | None = None,
    *,
    arch: str | None = None,
    config: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> LoadedModel:
    """Load the model named by ``spec`` (see the module docstring); ``None`` is
    ``builtin:fashion-mnist``.

    Args:
        max_bytes: the most a model file may hold, on disk or unpacked (default 4 GiB,
            ``DEFAULT_MAX_BYTES``); ``None`` for no limit.

    Raises:
        FileNotFoundError: no such file, module or built-in model.
        ValueError: the file is not a model, is larger than ``max_bytes`` or a zip bomb,
            declares tensors its data does not hold, or the weights do not fit ``arch``.
        PermissionError: a pickled object or a plain pickle without ``trust_pickle``.
    """
    spec = DEFAULT_SPEC if spec is None else str(spec).strip()
    if spec.startswith("builtin:"):
        loaded = _builtin(spec)
    elif Path(spec).is_file() and not spec.endswith(".py"):
        loaded = _from_file(spec, Path(spec), arch, config, trust_pickle, max_bytes)
    elif _FACTORY.match(spec):
        loaded = _from_factory(spec)
    elif spec.endswith(".py") and Path(spec).is_file():
        raise XAIValueError(f"--model {spec}: name the function that builds the model, {spec}:NAME")
    elif Path(spec).is_dir():
        raise XAIValueError(f"--model {spec} is a folder; name a model file")
    else:
        raise XAIFileNotFoundError(
            f"--model {spec}: no such file, and not builtin:NAME (available: "
            f"{', '.join('builtin:' + n for n in available())}) or package.module:factory"
        )
    loaded.model.eval()
    return loaded


def _builtin(spec: str) -> LoadedModel:
    name = spec.partition(":")[2]
    if name not in available():
        raise XAIFileNotFoundError(
            f"--model {spec}: no such built-in model; available: "
            f"{', '.join('builtin:' + n for n in available())}"
        )
    model = pretrained(name)
    card = model_card(name)
    return LoadedModel(
        model,
        spec,
        "builtin",
        tuple(card["class_names"]),
        _size(card["input_size"]),
        {"weights_sha256": card.get("weights_sha256")},
    )


def _size(value: Any) -> tuple[int, int, int] | None:
    """A model card's or a model's ``input_size``, checked: three positive ints."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise XAIValueError(f"an input size must be (C, H, W); got {value!r}")
    c, h, w = (check(v, [Integer(1)], f"input_size[{i}]") for i, v in enumerate(value))
    return (c, h, w)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _card_beside(path: Path) -> tuple[Path, dict[str, Any]] | None:
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if candidate.is_file() and candidate != path:
            size = candidate.stat().st_size
            if size > _MAX_CARD_BYTES:
                raise XAIValueError(
                    f"the model card {candidate} is {_human(size)}; a card is a small JSON "
                    f"file (at most {_human(_MAX_CARD_BYTES)}): architecture, configuration "
                    f"and class names"
                )
            try:
                card = json.loads(candidate.read_text())
            except (ValueError, UnicodeDecodeError, RecursionError) as error:
                raise XAIValueError(
                    f"the model card {candidate} is not valid JSON: {error}"
                ) from None
            if isinstance(card, dict) and "architecture" in card:
                return candidate, card
    return None


def _human(size: float) -> str:
    """``4294967296`` -> ``"4.0 GiB"``."""
    if size < 1024:
        return f"{int(size)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def _over_limit(spec: str, what: str, size: int, limit: int) -> XAIValueError:
    return XAIValueError(
        f"--model {spec} {what} {_human(size)}, more than the limit of {_human(limit)} (a "
        f"guard against files that fill the memory); if you trust the file, raise the limit "
        f"with --max-model-size (max_bytes= in Python)"
    )


def _from_file(
    spec: str,
    path: Path,
    arch: str | None,
    config: Mapping[str, Any] | None,
    trust_pickle: bool,
    max_bytes: int | None,
) -> LoadedModel:
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise _over_limit(spec, "is", size, max_bytes)
    details: dict[str, Any] = {"file": str(path), "sha256": _sha256(path)}
    declared: _Declared | None = None
    unpickled: list[Any] = []  # a trusted plain pickle's content, once loaded
    if zipfile.is_zipfile(path):
        _check_directory(spec, path)
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as error:
            raise XAIValueError(
                f"--model {spec} is a damaged zip archive ({error}); a PyTorch file is one "
                f"that torch.save wrote whole"
            ) from None
        with archive:
            infos = archive.infolist()
            _check_archive(spec, infos, max_bytes)
            names = [info.filename for info in infos]
            script = any(n.endswith("constants.pkl") or "/code/" in n for n in names)
            if not script and not any(n.endswith("data.pkl") for n in names):
                raise XAIValueError(
                    f"--model {spec} is a zip archive but not a PyTorch file (no data.pkl in it)"
                )
            if not script:
                declared = _scan(spec, archive, infos)
        if script:
            try:
                module = torch.jit.load(str(path), map_location="cpu")
            except (RuntimeError, ValueError) as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise XAIValueError(
                    f"--model {spec}: a broken TorchScript file ({first})"
                ) from None
            return LoadedModel(
                module,
                spec,
                "torchscript",
                _names_attr(module),
                _size_attr(module),
                details,
            )
    else:
        kind, globals_named = _sniff_pickle(path, size)
        if kind == "pickle":
            if not trust_pickle:
                named = ", ".join(globals_named[:3]) + ", ..." * (len(globals_named) > 3)
                raise XAIPermissionError(
                    f"--model {spec} is a plain Python pickle, not a PyTorch file, and "
                    f"unpickling can run any code in it"
                    f"{f' (this one names {named})' if named else ''}, so it is refused "
                    f"without --trust-pickle. Save the weights with torch.save(model."
                    f"state_dict(), PATH), or pass --trust-pickle if you trust where the "
                    f"file came from"
                )
            unpickled.append(_load_plain_pickle(spec, path))
        elif kind == "other":
            raise XAIValueError(
                f"--model {spec} is not a PyTorch model file (neither torch.save output nor "
                f"TorchScript); save one with torch.save(model.state_dict(), PATH)"
            )
    architecture = None
    declared_state = _state_dict(declared.content, _is_declared) if declared else None
    if declared_state is not None:
        architecture = _architecture(path, arch, config)
        found, card, name, config = architecture
        if name is not None:
            _check_against_architecture(spec, name, config, declared_state)
    content = unpickled[0] if unpickled else _torch_load(spec, path, trust_pickle)
    if isinstance(content, nn.Module):
        details["trusted_pickle"] = True
        return LoadedModel(
            content, spec, "pickle", _names_attr(content), _size_attr(content), details
        )
    state_dict = _state_dict(content)
    if state_dict is None:
        raise XAIValueError(
            f"--model {spec} holds a {type(content).__name__}, not a model's state_dict "
            f"(a mapping of parameter names to tensors)"
        )
    found, card, name, config = architecture or _architecture(path, arch, config)
    return _from_state_dict(spec, state_dict, found, card, name, config, details)


def _torch_load(spec: str, path: Path, trust_pickle: bool) -> Any:
    try:
        with warnings.catch_warnings():
            # torch warns (two lines on stderr) of a pickle protocol above 2; the file is
            # read, or refused, all the same.
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "unsupported global" not in str(error).lower():  # damaged, not a foreign object
            raise XAIValueError(
                f"--model {spec} is not a readable PyTorch file (the pickle inside is damaged)"
            ) from None
        if not trust_pickle:
            raise XAIPermissionError(
                f"--model {spec} holds a pickled Python object (a whole model saved with "
                f"torch.save(model, ...)); unpickling it can run any code in the file. "
                f"Save model.state_dict() instead, or pass --trust-pickle if you trust "
                f"where the file came from"
            ) from None
        return _load_trusted(spec, path)
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError) as error:
        raise XAIValueError(
            f"--model {spec} is not a readable PyTorch file ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else 'no detail'})"
        ) from None


def _load_trusted(spec: str, path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # anything the pickled code raises
        raise XAIValueError(
            f"--model {spec}: unpickling failed ({type(error).__name__}: {error}); the "
            f"classes it needs must be importable"
        ) from None


def _load_plain_pickle(spec: str, path: Path) -> Any:
    """A plain pickle, unpickled as the user asked with ``--trust-pickle``: it runs the
    code it names."""
    try:
        with path.open("rb") as handle:
            return pickle.load(handle)
    except Exception as error:  # anything the pickled code raises
        raise XAIValueError(
            f"--model {spec}: unpickling failed ({type(error).__name__}: {error}); the "
            f"classes it needs must be importable"
        ) from None


def _sniff_pickle(path: Path, size: int) -> tuple[str, list[str]]:
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


# -- what a PyTorch archive declares, read before anything is unpacked ------------------


def _check_directory(spec: str, path: Path) -> None:
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
            f"--model {spec} is a zip archive of {entries:,} entries ({_human(directory)} of "
            f"directory); a PyTorch file has a few per tensor, so this is not one (at most "
            f"{_MAX_ENTRIES:,} entries are read)"
        )


def _check_archive(spec: str, infos: list[zipfile.ZipInfo], max_bytes: int | None) -> None:
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
            f"--model {spec} looks like a zip bomb: {_human(packed)} on disk unpack to "
            f"{_human(unpacked)} ({unpacked / max(packed, 1):,.0f} to 1), and PyTorch never "
            f"compresses the files it saves. Refused before unpacking; save the weights "
            f"again with torch.save(model.state_dict(), PATH)"
        )
    if max_bytes is not None and unpacked > max_bytes:
        raise _over_limit(spec, "unpacks to", unpacked, max_bytes)


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
class _Declared:
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


def _scan(spec: str, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> _Declared | None:
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
    names = {id(t): k for k, t in (_state_dict(content, _is_declared) or {}).items()}
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
    return _Declared(content, scanner.storages, scanner.tensors)


def _is_declared(value: Any) -> bool:
    return isinstance(value, _TensorDecl)


def _check_against_architecture(
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
        _check_inferable(spec, name, placeholders)
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


def _check_inferable(spec: str, name: str, state: Mapping[str, torch.Tensor]) -> None:
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


def _state_dict(
    content: Any, is_tensor: Callable[[Any], bool] = lambda v: isinstance(v, torch.Tensor)
) -> dict[str, Any] | None:
    if not isinstance(content, Mapping):
        return None
    if content and all(is_tensor(v) for v in content.values()):
        return dict(content)
    for key in _CHECKPOINT_KEYS:  # a training checkpoint around the weights
        inner = content.get(key)
        if isinstance(inner, Mapping) and inner and all(is_tensor(v) for v in inner.values()):
            return dict(inner)
    return None


def _architecture(
    path: Path, arch: str | None, config: Mapping[str, Any] | None
) -> tuple[Path | None, dict[str, Any], str | None, Mapping[str, Any] | None]:
    """The model card beside ``path`` (if any), the architecture's name and the
    configuration given or on the card (``None``: to be read off the weights)."""
    found = _card_beside(path)
    card: dict[str, Any] = found[1] if found else {}
    architecture = card.get("architecture", {})
    if not isinstance(architecture, dict):
        architecture = {}
    name = arch or architecture.get("name")
    if name is not None and not isinstance(name, str):
        raise XAIValueError(
            f"the model card {found[0] if found else ''} names the architecture {name!r}; "
            f"expected one of {', '.join(ARCHITECTURES)}"
        )
    if config is None and name is not None:
        same = str(architecture.get("name", "")).lower() == name.strip().lower()
        config = architecture.get("config") if same else None
    return (found[0] if found else None), card, name, config


def _from_state_dict(
    spec: str,
    state: dict[str, torch.Tensor],
    found: Path | None,
    card: dict[str, Any],
    name: str | None,
    config: Mapping[str, Any] | None,
    details: dict[str, Any],
) -> LoadedModel:
    if name is None:
        raise XAIValueError(
            f"--model {spec} is a state_dict: it holds weights but not the network. Name "
            f"the architecture with --arch ({', '.join(ARCHITECTURES)}), or use "
            f"package.module:factory for your own"
        )
    if config is None:
        _check_inferable(spec, name, state)
        config = config_from_weights(name, state)
    model = build(name, config)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        problems = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        first = problems[0] if problems else str(error)
        raise XAIValueError(
            f"--model {spec}: the weights do not fit {name} with configuration "
            f"{json.dumps(dict(config))} ({first}); pass --config with the arguments it "
            f"was built with"
        ) from None
    details.update({"architecture": name.strip().lower(), "config": dict(config)})
    if found:
        details["card"] = str(found)
    names = card.get("class_names")
    return LoadedModel(
        model,
        spec,
        "state_dict",
        tuple(str(n) for n in names) if names else None,
        _size(card.get("input_size")),
        details,
    )


def _from_factory(spec: str) -> LoadedModel:
    match = _FACTORY.match(spec)
    assert match is not None
    module_name, function_name = match["module"], match["function"]
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise XAIFileNotFoundError(f"--model {spec}: no such file {module_name}")
            loader = importlib.util.spec_from_file_location(f"_xai_user_{file.stem}", file)
            if loader is None or loader.loader is None:
                raise XAIValueError(f"--model {spec}: cannot import {module_name}")
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except XAIError:  # ours, from the checks above: already says what is wrong
        raise
    except ModuleNotFoundError as error:
        raise XAIFileNotFoundError(
            f"--model {spec}: cannot import {module_name} ({error}); run from the folder "
            f"that holds it or install it"
        ) from None
    except Exception as error:  # the user's module failed while importing
        raise XAIValueError(
            f"--model {spec}: importing {module_name} failed ({type(error).__name__}: {error})"
        ) from None
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise XAIValueError(f"--model {spec}: {module_name} has no function {function_name}")
    try:
        model = factory()
    except Exception as error:
        raise XAIValueError(
            f"--model {spec}: {function_name}() failed ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(model, nn.Module):
        raise XAIValueError(
            f"--model {spec}: {function_name}() returned a {type(model).__name__}; it must "
            f"return a torch.nn.Module"
        )
    return LoadedModel(model, spec, "factory", _names_attr(model), _size_attr(model))


def _names_attr(model: nn.Module) -> tuple[str, ...] | None:
    names = getattr(model, "class_names", None)
    return tuple(str(n) for n in names) if isinstance(names, list | tuple) and names else None


def _size_attr(model: nn.Module) -> tuple[int, int, int] | None:
    size = getattr(model, "input_size", None)
    if isinstance(size, list | tuple) and len(size) == 3:
        return _size(size)
    return None
