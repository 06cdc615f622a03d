"""One recorded forward pass: every submodule call, in order, with what it returned.

``trace`` runs the model once (batch of one, no gradients) with a hook on every
submodule, recording when each call started and finished, its output, a copy of a tensor
output as it was when the call finished (a later in-place operation changes the tensor,
not the copy), and, for attention modules, the tensor they were given.

``profile`` keeps what later calls need from such a trace (names, shapes, order), cached
per model and input shape without keeping the model alive.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xai.core.hooks import forward_hooks, forward_pre_hooks

__all__ = ["Call", "Profile", "is_attention", "profile", "remember", "remembered", "trace"]

_ATTENTION_NAME = re.compile(r"attention|attn", re.IGNORECASE)


def is_attention(module: nn.Module) -> bool:
    """An attention module: ``torch.nn.MultiheadAttention``, or a class named like one
    (timm's ``Attention``, Hugging Face's ``ViTAttention``, ...)."""
    return isinstance(module, nn.MultiheadAttention) or bool(
        _ATTENTION_NAME.search(type(module).__name__)
    )


@dataclass
class Call:
    """One module's completed forward call during a trace."""

    name: str
    module: nn.Module
    output: Any
    snapshot: torch.Tensor | None  # a copy of a tensor output, as it was at completion
    start: int  # order of the call's start among all starts and ends
    end: int  # order of its end
    given: torch.Tensor | None = None  # attention modules: the hidden states passed in


def _first_tensor(args: tuple, kwargs: Mapping[str, Any]) -> torch.Tensor | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def trace(model: nn.Module, x: torch.Tensor) -> tuple[list[Call], Any]:
    """Run ``model(x)`` without gradients and record every submodule call in order.

    Returns the calls (in order of completion) and the model's output.
    """
    calls: list[Call] = []
    clock = [0]
    open_calls: dict[int, list[tuple[int, torch.Tensor | None]]] = {}

    def started(module: nn.Module, args: tuple, kwargs: dict) -> None:
        given = _first_tensor(args, kwargs) if is_attention(module) else None
        open_calls.setdefault(id(module), []).append((clock[0], given))
        clock[0] += 1

    def recorder(name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            start, given = open_calls[id(module)].pop()
            snapshot = output.detach().clone() if isinstance(output, torch.Tensor) else None
            calls.append(Call(name, module, output, snapshot, start, clock[0], given))
            clock[0] += 1

        return hook

    named = [(n, m) for n, m in model.named_modules(remove_duplicate=False) if n]
    with (
        torch.no_grad(),
        forward_pre_hooks([(m, started) for _, m in named]),
        forward_hooks([(m, recorder(n)) for n, m in named]),
    ):
        output = model(x)
    return calls, output


@dataclass(frozen=True)
class CallInfo:
    """What a profile keeps of one call."""

    name: str
    shape: tuple[int, ...] | None  # of a tensor output
    conv2d: bool
    start: int
    end: int


@dataclass
class Profile:
    """A model's calls for one input shape, without tensors or modules."""

    calls: tuple[CallInfo, ...]
    cache: dict[str, Any] = field(default_factory=dict)  # per-profile results (default layer)

    def grids_before(self, name: str) -> list[tuple[int, int]]:
        """The (h, w) grids of the 2-D convolutions that finished before ``name``'s first
        call started, last first: where token layers get their patch grid from."""
        starts = [c.start for c in self.calls if c.name == name]
        start = min(starts) if starts else max((c.end for c in self.calls), default=0) + 1
        grids = [
            (c.shape[2], c.shape[3])
            for c in self.calls
            if c.conv2d and c.shape is not None and len(c.shape) == 4 and c.end < start
        ]
        return grids[::-1]


def _summary(calls: list[Call]) -> Profile:
    infos = tuple(
        CallInfo(
            c.name,
            tuple(c.output.shape) if isinstance(c.output, torch.Tensor) else None,
            isinstance(c.module, nn.Conv2d),
            c.start,
            c.end,
        )
        for c in calls
    )
    return Profile(infos)


_LOCK = threading.Lock()
_PROFILES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Profile]] = weakref.WeakKeyDictionary()


def _key(x: torch.Tensor) -> tuple:
    return (tuple(x.shape[1:]), x.dtype, x.device)


def profile(model: nn.Module, x: torch.Tensor, calls: list[Call] | None = None) -> Profile:
    """The model's ``Profile`` for inputs shaped like ``x``: traced once (or made from
    ``calls``, a trace of such an input), then cached; the cache does not keep the model
    alive. Call in evaluation mode."""
    key = _key(x)
    with _LOCK:
        found = _PROFILES.get(model, {}).get(key)
    if found is not None:
        return found
    if calls is None:
        calls, _ = trace(model, x[:1])
    made = _summary(calls)
    with _LOCK:
        return _PROFILES.setdefault(model, {}).setdefault(key, made)


def remembered(model: nn.Module, x: torch.Tensor, name: str) -> Any:
    """What ``remember`` stored under ``name`` for this model and input shape, or None."""
    with _LOCK:
        found = _PROFILES.get(model, {}).get(_key(x))
        return None if found is None else found.cache.get(name)


def remember(model: nn.Module, x: torch.Tensor, name: str, value: Any, calls: list[Call]) -> Any:
    """Store ``value`` under ``name`` for this model and input shape (first one wins)."""
    prof = profile(model, x, calls)
    with _LOCK:
        return prof.cache.setdefault(name, value)
