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

import hashlib
import importlib
import importlib.util
import json
import os
import pickle
import re
import sys
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xai.core.errors import XAIError, XAIFileNotFoundError, XAIPermissionError, XAIValueError
from xai.core.validate import Integer, check
from xai.models.declared import (
    Declared,
    check_against_architecture,
    check_archive,
    check_directory,
    check_inferable,
    human,
    is_declared,
    over_limit,
    scan,
    sniff_pickle,
    state_dict_in,
)
from xai.models.infer import config_from_weights
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
_MAX_CARD_BYTES = 16 << 20  # a model card is a small JSON file

_FACTORY = re.compile(r"^(?P<module>[\w./\\-]+?):(?P<function>[A-Za-z_]\w*)$")


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
                    f"the model card {candidate} is {human(size)}; a card is a small JSON "
                    f"file (at most {human(_MAX_CARD_BYTES)}): architecture, configuration "
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
        raise over_limit(spec, "is", size, max_bytes)
    details: dict[str, Any] = {"file": str(path), "sha256": _sha256(path)}
    declared: Declared | None = None
    unpickled: list[Any] = []  # a trusted plain pickle's content, once loaded
    if zipfile.is_zipfile(path):
        check_directory(spec, path)
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as error:
            raise XAIValueError(
                f"--model {spec} is a damaged zip archive ({error}); a PyTorch file is one "
                f"that torch.save wrote whole"
            ) from None
        with archive:
            infos = archive.infolist()
            check_archive(spec, infos, max_bytes)
            names = [info.filename for info in infos]
            script = any(n.endswith("constants.pkl") or "/code/" in n for n in names)
            if not script and not any(n.endswith("data.pkl") for n in names):
                raise XAIValueError(
                    f"--model {spec} is a zip archive but not a PyTorch file (no data.pkl in it)"
                )
            if not script:
                declared = scan(spec, archive, infos)
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
        kind, globals_named = sniff_pickle(path, size)
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
    declared_state = state_dict_in(declared.content, is_declared) if declared else None
    if declared_state is not None:
        architecture = _architecture(path, arch, config)
        found, card, name, config = architecture
        if name is not None:
            check_against_architecture(spec, name, config, declared_state)
    content = unpickled[0] if unpickled else _torch_load(spec, path, trust_pickle)
    if isinstance(content, nn.Module):
        details["trusted_pickle"] = True
        return LoadedModel(
            content, spec, "pickle", _names_attr(content), _size_attr(content), details
        )
    state_dict = state_dict_in(content)
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
        check_inferable(spec, name, state)
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
