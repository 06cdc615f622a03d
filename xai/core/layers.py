"""Naming the explained layer: a dotted module name, optionally selecting one tensor of
a layer that returns several.

``"features.6"`` is the module ``model.features[6]``. A layer whose forward returns a
tuple, a list or a dict (an FPN, a Hugging Face block) is explained at one of its
tensors, picked by a selector written after the name: ``"fpn['p3']"`` (a key),
``"encoder.layer.3[0]"`` (an index). Without a selector a tuple or list gives its first
element, and a dict its only tensor; anything else is an error listing what the layer
returned.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xai.core.errors import XAITypeError, XAIValueError

__all__ = ["LayerRef", "describe_output", "nearest_layers", "parse_layer", "resolve_layer"]

_SELECTOR = re.compile(r"^(?P<path>[^\[\]]+)\[(?P<key>[^\[\]]+)\]$")


@dataclass(frozen=True, eq=False)
class LayerRef:
    """A layer of a model: the module, its dotted name, and which tensor of its output."""

    path: str
    module: nn.Module
    key: int | str | None = None

    @property
    def name(self) -> str:
        """The layer as the user writes it, e.g. ``"fpn['p3']"``."""
        if self.key is None:
            return self.path
        return f"{self.path}[{self.key!r}]"

    def select(self, output: Any) -> torch.Tensor:
        """The explained tensor of one output of the module."""
        if isinstance(output, torch.Tensor) and self.key is None:
            return output
        value = self._pick(output)
        if not isinstance(value, torch.Tensor):
            raise XAIValueError(
                f"layer {self.name!r} gave {type(value).__name__}, not a tensor; the layer "
                f"returned {describe_output(output)}. Pick a tensor, e.g. "
                f"{_example(self.path, output)}."
            )
        return value

    def replace(self, output: Any, value: torch.Tensor) -> Any:
        """``output`` with the explained tensor replaced by ``value`` (same structure)."""
        if isinstance(output, torch.Tensor) and self.key is None:
            return value
        key = self._key_of(output)
        if isinstance(output, tuple):
            items = list(output)
            items[key] = value  # type: ignore[index]
            rebuilt = type(output)(*items) if hasattr(output, "_fields") else tuple(items)
            return rebuilt
        if isinstance(output, list):
            items = list(output)
            items[key] = value  # type: ignore[index]
            return items
        if isinstance(output, dict):
            copy = output.copy()  # keeps OrderedDict and Hugging Face ModelOutput types
            copy[key] = value
            return copy
        return {**output, key: value}

    def _key_of(self, output: Any) -> int | str:
        if self.key is not None:
            return self.key
        if isinstance(output, (tuple, list)) and output:
            return 0
        if isinstance(output, Mapping):
            tensors = [k for k, v in output.items() if isinstance(v, torch.Tensor)]
            if len(tensors) == 1:
                return tensors[0]
        raise XAIValueError(
            f"layer {self.path!r} returned {describe_output(output)}, not one tensor; "
            f"name the tensor to explain, e.g. layer={_example(self.path, output)!r}."
        )

    def _pick(self, output: Any) -> Any:
        key = self._key_of(output)
        try:
            return output[key]
        except (KeyError, IndexError, TypeError):
            raise XAIValueError(
                f"layer {self.name!r}: the layer returned {describe_output(output)}, which "
                f"has no element {key!r}; e.g. layer={_example(self.path, output)!r}."
            ) from None


def describe_output(output: Any) -> str:
    """What a module returned, in a few words: shapes of tensors, keys of dicts."""

    def one(value: Any) -> str:
        if isinstance(value, torch.Tensor):
            return f"tensor {tuple(value.shape)}"
        return type(value).__name__

    if isinstance(output, torch.Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, Mapping):
        items = ", ".join(f"{k!r}: {one(v)}" for k, v in list(output.items())[:6])
        return f"a {type(output).__name__} {{{items}}}"
    if isinstance(output, (tuple, list)):
        items = ", ".join(f"[{i}] {one(v)}" for i, v in enumerate(list(output)[:6]))
        return f"a {type(output).__name__} of {len(output)} ({items})"
    return f"a {type(output).__name__}"


def _example(path: str, output: Any) -> str:
    if isinstance(output, Mapping):
        keys = [k for k, v in output.items() if isinstance(v, torch.Tensor)]
        if keys:
            return f"{path}[{keys[0]!r}]"
    if isinstance(output, (tuple, list)):
        index = next((i for i, v in enumerate(output) if isinstance(v, torch.Tensor)), 0)
        return f"{path}[{index}]"
    return path


def parse_layer(layer: str) -> tuple[str, int | str | None]:
    """``"fpn['p3']"`` -> ``("fpn", "p3")``; ``"block[0]"`` -> ``("block", 0)``."""
    match = _SELECTOR.match(layer.strip())
    if match is None:
        return layer.strip(), None
    path, key = match.group("path").strip(), match.group("key").strip()
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "'\"":
        return path, key[1:-1]
    if re.fullmatch(r"-?\d+", key):
        return path, int(key)
    return path, key


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> LayerRef:
    """The ``LayerRef`` for a layer given by name (with an optional selector) or module."""
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules(remove_duplicate=False):
            if module is layer and name:
                return LayerRef(name, module)
        if layer is model:
            raise XAIValueError(
                "layer must be a submodule of the model, not the model itself; pass a "
                "convolutional layer, or layer=None for the last feature maps."
            )
        raise XAIValueError(
            f"layer {type(layer).__name__} is not a submodule of this model; pass one of "
            f"model.named_modules(), by name or as the module object."
        )
    if not isinstance(layer, str):
        raise XAITypeError(
            f"layer must be None, a dotted module name or a torch.nn.Module; got "
            f"{type(layer).__name__}."
        )
    path, key = parse_layer(layer)
    modules = dict(model.named_modules(remove_duplicate=False))
    modules.pop("", None)
    if path in modules:
        return LayerRef(path, modules[path], key)
    raise XAIValueError(
        f"unknown layer {path!r}; the nearest valid names are: "
        f"{', '.join(nearest_layers(model, path))}. "
        f"List them all with [name for name, _ in model.named_modules()]."
    )


def nearest_layers(model: nn.Module, layer: str, n: int = 5) -> list[str]:
    """Up to ``n`` module names like ``layer``; else the last convolutions (or modules)."""
    names = [name for name, _ in model.named_modules(remove_duplicate=False) if name]
    close = difflib.get_close_matches(layer, names, n=n, cutoff=0.4)
    conv = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return close or conv[-n:] or names[-n:]
