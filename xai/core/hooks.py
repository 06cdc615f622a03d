"""Forward hooks that belong to one call, in one thread, and live for that call only.

PyTorch's hooks belong to a module, so a hook registered by one explanation fires for
every forward pass of that module, including another thread's. Two threads explaining
one model (a server answering two requests) would each see the other's activations.
Here every hook is *scoped*: it is registered together with a token, the token is
active only in the context (thread) that registered it, and the hook does nothing
when it fires in any other context. Hooks are removed in ``finally``, after success or
after an exception raised anywhere inside the model.

The active tokens live in a ``contextvars.ContextVar``: each thread starts with its own
(empty) value, and nested scopes in one thread stack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from torch import nn

__all__ = ["Hook", "PreHook", "active", "forward_hooks", "forward_pre_hooks"]

Hook = Callable[[nn.Module, Any, Any], Any]
PreHook = Callable[[nn.Module, Any, Any], Any]  # (module, args, kwargs) -> None | (args, kwargs)

_ACTIVE: ContextVar[tuple[object, ...]] = ContextVar("xai_active_hook_scopes", default=())


def active(token: object) -> bool:
    """Whether ``token``'s scope is live in the calling context (thread)."""
    return token in _ACTIVE.get()


@contextmanager
def _scope() -> Iterator[object]:
    token = object()
    reset = _ACTIVE.set((*_ACTIVE.get(), token))
    try:
        yield token
    finally:
        _ACTIVE.reset(reset)


def _scoped(fn: Hook, token: object) -> Hook:
    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        if token in _ACTIVE.get():
            return fn(module, inputs, output)
        return None

    return hook


@contextmanager
def forward_hooks(pairs: Iterable[tuple[nn.Module, Hook]]) -> Iterator[None]:
    """``module.register_forward_hook(fn)`` for each pair, for the body only, and firing
    only for forward passes that the body's own thread runs."""
    handles = []
    with _scope() as token:
        try:
            for module, fn in pairs:
                handles.append(module.register_forward_hook(_scoped(fn, token)))
            yield
        finally:
            for handle in handles:
                handle.remove()


@contextmanager
def forward_pre_hooks(pairs: Iterable[tuple[nn.Module, PreHook]]) -> Iterator[None]:
    """As ``forward_hooks`` for pre-hooks called as ``fn(module, args, kwargs)``."""
    handles = []
    with _scope() as token:
        try:
            for module, fn in pairs:
                handles.append(
                    module.register_forward_pre_hook(_scoped(fn, token), with_kwargs=True)
                )
            yield
        finally:
            for handle in handles:
                handle.remove()
