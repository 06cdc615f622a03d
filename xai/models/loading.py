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
containers only. A file holding a pickled Python object (``torch.save(model, ...)``) can
run arbitrary code when loaded, so it is refused unless ``trust_pickle=True``.
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
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xai.core.errors import XAIError, XAIFileNotFoundError, XAIPermissionError, XAIValueError
from xai.core.validate import Integer, check
from xai.models.infer import config_from_weights
from xai.models.pretrained import available, model_card, pretrained
from xai.models.registry import ARCHITECTURES, build

__all__ = ["DEFAULT_SPEC", "LoadedModel", "load_model"]

DEFAULT_SPEC = "builtin:fashion-mnist"

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
) -> LoadedModel:
    """Load the model named by ``spec`` (see the module docstring); ``None`` is
    ``builtin:fashion-mnist``.

    Raises:
        FileNotFoundError: no such file, module or built-in model.
        ValueError: the file is not a model, or the weights do not fit ``arch``.
        PermissionError: a pickled object without ``trust_pickle``.
    """
    spec = DEFAULT_SPEC if spec is None else str(spec).strip()
    if spec.startswith("builtin:"):
        loaded = _builtin(spec)
    elif Path(spec).is_file() and not spec.endswith(".py"):
        loaded = _from_file(spec, Path(spec), arch, config, trust_pickle)
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
            try:
                card = json.loads(candidate.read_text())
            except (ValueError, UnicodeDecodeError) as error:
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
) -> LoadedModel:
    details: dict[str, Any] = {"file": str(path), "sha256": _sha256(path)}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            try:
                script = torch.jit.load(str(path), map_location="cpu")
            except (RuntimeError, ValueError) as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise XAIValueError(
                    f"--model {spec}: a broken TorchScript file ({first})"
                ) from None
            return LoadedModel(
                script,
                spec,
                "torchscript",
                _names_attr(script),
                _size_attr(script),
                details,
            )
        if not any(n.endswith("data.pkl") for n in names):
            raise XAIValueError(
                f"--model {spec} is a zip archive but not a PyTorch file (no data.pkl in it)"
            )
    else:
        with path.open("rb") as handle:
            head = handle.read(2)
        if not head.startswith(b"\x80"):
            raise XAIValueError(
                f"--model {spec} is not a PyTorch model file (neither torch.save output nor "
                f"TorchScript); save one with torch.save(model.state_dict(), PATH)"
            )
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
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
        content = _load_trusted(spec, path)
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError) as error:
        raise XAIValueError(
            f"--model {spec} is not a readable PyTorch file ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else 'no detail'})"
        ) from None
    if isinstance(content, nn.Module):
        details["trusted_pickle"] = True
        return LoadedModel(
            content, spec, "pickle", _names_attr(content), _size_attr(content), details
        )
    state = _state_dict(content)
    if state is None:
        raise XAIValueError(
            f"--model {spec} holds a {type(content).__name__}, not a model's state_dict "
            f"(a mapping of parameter names to tensors)"
        )
    return _from_state_dict(spec, path, state, arch, config, details)


def _load_trusted(spec: str, path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # anything the pickled code raises
        raise XAIValueError(
            f"--model {spec}: unpickling failed ({type(error).__name__}: {error}); the "
            f"classes it needs must be importable"
        ) from None


def _state_dict(content: Any) -> dict[str, torch.Tensor] | None:
    if not isinstance(content, Mapping):
        return None
    if content and all(isinstance(v, torch.Tensor) for v in content.values()):
        return dict(content)
    for key in _CHECKPOINT_KEYS:  # a training checkpoint around the weights
        inner = content.get(key)
        if (
            isinstance(inner, Mapping)
            and inner
            and all(isinstance(v, torch.Tensor) for v in inner.values())
        ):
            return dict(inner)
    return None


def _from_state_dict(
    spec: str,
    path: Path,
    state: dict[str, torch.Tensor],
    arch: str | None,
    config: Mapping[str, Any] | None,
    details: dict[str, Any],
) -> LoadedModel:
    found = _card_beside(path)
    card: dict[str, Any] = found[1] if found else {}
    architecture = card.get("architecture", {})
    name = arch or architecture.get("name")
    if name is None:
        raise XAIValueError(
            f"--model {spec} is a state_dict: it holds weights but not the network. Name "
            f"the architecture with --arch ({', '.join(ARCHITECTURES)}), or use "
            f"package.module:factory for your own"
        )
    if config is None:
        same = str(architecture.get("name", "")).lower() == name.strip().lower()
        config = architecture.get("config") if same else None
    if config is None:
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
        details["card"] = str(found[0])
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
