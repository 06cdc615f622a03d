"""Forward hooks that live for one call only.

``forward_hooks`` registers hooks and removes every one of them in ``finally``, after
success or after an exception raised anywhere inside the model, so a failed call never
leaves a hook behind. ``capture`` records one layer's output during one forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["Capture", "capture", "forward_hooks"]

Hook = Callable[[nn.Module, Any, Any], Any]


@contextmanager
def forward_hooks(pairs: Iterable[tuple[nn.Module, Hook]]) -> Iterator[None]:
    """Register ``module.register_forward_hook(fn)`` for each pair for the body only."""
    handles = []
    try:
        for module, fn in pairs:
            handles.append(module.register_forward_hook(fn))
        yield
    finally:
        for handle in handles:
            handle.remove()


class Capture:
    """The output of one layer in one forward pass, as ``(N, C, h, w)`` maps.

    With ``grad=True`` the hook swaps the layer's output for a fresh leaf tensor that
    requires grad (and feeds the rest of the network a copy of it), and switches autograd
    recording on from there. Differentiating toward that leaf gives ``d score /
    d activation`` with a backward pass that stops at the layer, that works with frozen
    parameters, and that an in-place operation after the layer (``ReLU(inplace=True)``)
    cannot corrupt. With ``grad=False`` the output is
    copied, for the same reason, and left in place.
    """

    def __init__(self, name: str, *, grad: bool) -> None:
        self.name = name
        self.grad = grad
        self.activation: torch.Tensor | None = None
        self.calls = 0

    def hook(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError(
                f"layer {self.name!r} ran more than once in one forward pass (a reused "
                f"module); its maps are ambiguous. Pass the layer of one call site, e.g. "
                f"the enclosing block, as layer=..."
            )
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            got = (
                f"a tensor of shape {tuple(output.shape)}"
                if isinstance(output, torch.Tensor)
                else type(output).__name__
            )
            raise ValueError(
                f"layer {self.name!r} must output (N, C, h, w) feature maps; it returned "
                f"{got}. Pass a convolutional layer (see the model's named_modules())."
            )
        leaf = output.detach().clone()
        if not self.grad:
            self.activation = leaf
            return None
        leaf.requires_grad_(True)
        self.activation = leaf
        # The forward pass may run under no_grad up to here (see forward_backward): only
        # what follows the layer needs an autograd graph.
        torch.set_grad_enabled(True)
        return leaf.clone()

    @property
    def value(self) -> torch.Tensor:
        if self.activation is None:
            raise RuntimeError(
                f"layer {self.name!r} did not run in the model's forward pass; pass a "
                f"layer that the forward pass uses."
            )
        return self.activation


@contextmanager
def capture(module: nn.Module, name: str, *, grad: bool) -> Iterator[Capture]:
    """Capture ``module``'s output during the body (see ``Capture``)."""
    cap = Capture(name, grad=grad)
    with forward_hooks([(module, cap.hook)]):
        yield cap
