"""Which layer to explain: by name, by module, or found automatically.

``layer=None`` picks *the last spatial feature maps*: the last ``(N, C, h, w)`` output
with ``h * w > 1`` produced by any submodule in a forward pass, from the first
convolution on (so an input-normalisation layer never counts). For a network with a
global-pooling head this is exactly the input of the pooling, i.e. the maps CAM uses.
When several modules return that very tensor with those very values (a conv block's
last in-place ReLU, the block, the ``Sequential`` around them), the innermost one that
runs once is reported: the leaf module if it runs once, else the innermost container. A
module whose output was changed in place afterwards (a conv before an in-place ReLU, or
before a residual ``out += x``) does not qualify. A torchvision ResNet gives
``layer4.1``: its ReLU module is reused inside the block.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xai.cam.hooks import forward_hooks

__all__ = ["Call", "find_default_layer", "nearest_layers", "resolve_layer", "trace"]


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Return ``(dotted name, module)`` for a layer given by name or as a module."""
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules(remove_duplicate=False):
            if module is layer and name:
                return name, module
        if layer is model:
            raise ValueError(
                "layer must be a submodule of the model, not the model itself; pass a "
                "convolutional layer, or layer=None for the last feature maps."
            )
        raise ValueError(
            f"layer {type(layer).__name__} is not a submodule of this model; pass one of "
            f"model.named_modules(), by name or as the module object."
        )
    if not isinstance(layer, str):
        raise TypeError(
            f"layer must be None, a dotted module name or a torch.nn.Module; got "
            f"{type(layer).__name__}."
        )
    modules = dict(model.named_modules(remove_duplicate=False))
    modules.pop("", None)
    if layer in modules:
        return layer, modules[layer]
    raise ValueError(
        f"unknown layer {layer!r}; the nearest valid names are: "
        f"{', '.join(nearest_layers(model, layer))}. "
        f"List them all with [name for name, _ in model.named_modules()]."
    )


def nearest_layers(model: nn.Module, layer: str, n: int = 5) -> list[str]:
    """Up to ``n`` module names like ``layer``; else the last convolutions (or modules)."""
    names = [name for name, _ in model.named_modules(remove_duplicate=False) if name]
    close = difflib.get_close_matches(layer, names, n=n, cutoff=0.4)
    conv = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return close or conv[-n:] or names[-n:]


@dataclass
class Call:
    """One module's completed forward call during a trace."""

    name: str
    module: nn.Module
    output: Any
    snapshot: torch.Tensor | None  # a copy of a tensor output, as it was at completion


def trace(model: nn.Module, x: torch.Tensor) -> tuple[list[Call], Any]:
    """Run ``model(x)`` without gradients and record every submodule call in order.

    Returns the calls (in order of completion) and the model's output. Tensor outputs
    are also copied at completion: a later in-place operation (``out += x``,
    ``ReLU(inplace=True)``) changes the tensor a module returned, not its copy.
    """
    calls: list[Call] = []

    def recorder(name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            snapshot = output.detach().clone() if isinstance(output, torch.Tensor) else None
            calls.append(Call(name, module, output, snapshot))

        return hook

    pairs = [
        (module, recorder(name))
        for name, module in model.named_modules(remove_duplicate=False)
        if name
    ]
    with torch.no_grad(), forward_hooks(pairs):
        output = model(x)
    return calls, output


def _is_spatial(value: Any) -> bool:
    if not isinstance(value, torch.Tensor) or value.ndim != 4:
        return False
    return value.shape[2] * value.shape[3] > 1


def find_default_layer(model: nn.Module, x: torch.Tensor) -> tuple[str, nn.Module]:
    """The module whose output is the model's last spatial feature maps (see module doc)."""
    calls, _ = trace(model, x[:1])
    convs = [i for i, c in enumerate(calls) if isinstance(c.module, nn.modules.conv._ConvNd)]
    spatial = [c for c in calls[convs[0] if convs else len(calls) :] if _is_spatial(c.output)]
    if not spatial:
        raise ValueError(
            f"no submodule of this model returns (N, C, h, w) feature maps with h*w > 1 "
            f"after a convolution, for an input of shape {tuple(x.shape[1:])}; CAM methods "
            f"need a convolutional layer. Pass layer=... explicitly."
        )
    last = spatial[-1]
    counts = Counter(c.name for c in calls)
    candidates = [
        c
        for c in calls
        if c.output is last.output
        and counts[c.name] == 1
        and c.snapshot is not None
        and last.snapshot is not None
        and torch.equal(c.snapshot, last.snapshot)
    ]
    leaves = [c for c in candidates if next(c.module.children(), None) is None]
    if leaves:
        return leaves[-1].name, leaves[-1].module
    if candidates:
        return candidates[0].name, candidates[0].module
    raise ValueError(
        f"the last feature maps come from module {spatial[-1].name!r}, which runs more "
        f"than once per forward pass; pass layer=... naming a module that runs once "
        f"(for example the enclosing block)."
    )
