"""Capturing layers' outputs, and their gradients, during one forward pass.

``capture`` hooks one or several layers for one forward pass (hooks scoped to the
calling thread and removed in ``finally``, see ``xai.core.hooks``).

With ``grad=True`` each captured tensor can be differentiated toward:

* A layer whose output does not require grad yet (the first captured layer: the forward
  pass runs without recording a graph until then) is swapped for a fresh leaf tensor,
  and autograd recording is switched on from there. Differentiating toward that leaf
  gives ``d score / d activation`` with a backward pass that stops at the layer, that
  works with frozen parameters, and that an in-place operation after the layer
  (``ReLU(inplace=True)``) cannot corrupt: the network is fed a copy.
* A layer whose output already requires grad (a later layer, downstream of the first)
  is kept as it is, in the graph, and the network is fed a copy of it. Gradients
  toward several layers then come from one backward pass through all of them, each the
  exact ``d score / d layer`` of the unhooked model.

With ``grad=False`` the output is copied and left in place.

``forward_backward`` is the one forward and one backward pass of the gradient methods.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from xai.core.errors import XAIValueError
from xai.core.hooks import forward_hooks
from xai.core.layers import LayerRef
from xai.core.reshape import ReshapeLike, resolve_reshape
from xai.core.targets import ResolvedTarget, TargetLike, resolve_target

__all__ = ["Capture", "capture", "forward_backward"]


class Capture:
    """The outputs of some layers in one forward pass (see the module's doc)."""

    def __init__(self, layers: Sequence[LayerRef], *, grad: bool) -> None:
        self.layers = list(layers)
        self.grad = grad
        self.tensors: list[torch.Tensor | None] = [None] * len(self.layers)
        self.calls = [0] * len(self.layers)

    def hook(self, index: int):
        ref = self.layers[index]

        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            self.calls[index] += 1
            if self.calls[index] > 1:
                raise XAIValueError(
                    f"layer {ref.name!r} ran more than once in one forward pass (a reused "
                    f"module); its maps are ambiguous. Pass the layer of one call site, "
                    f"e.g. the enclosing block, as layer=..."
                )
            tensor = ref.select(output)
            if not self.grad:
                self.tensors[index] = tensor.detach().clone()
                return None
            if tensor.requires_grad:
                self.tensors[index] = tensor
                return ref.replace(output, tensor.clone())
            leaf = tensor.detach().clone().requires_grad_(True)
            self.tensors[index] = leaf
            # The forward pass may run under no_grad up to here (see forward_backward):
            # only what follows the layer needs an autograd graph.
            torch.set_grad_enabled(True)
            return ref.replace(output, leaf.clone())

        return hook

    def value(self, index: int = 0) -> torch.Tensor:
        """The captured tensor of layer ``index``, in the layer's own layout."""
        tensor = self.tensors[index]
        if tensor is None:
            raise XAIValueError(
                f"layer {self.layers[index].name!r} did not run in the model's forward "
                f"pass; pass a layer that the forward pass uses."
            )
        return tensor

    def maps(
        self, model: nn.Module, x: torch.Tensor, reshape: ReshapeLike, index: int = 0
    ) -> torch.Tensor:
        """Layer ``index``'s activations as (N, C, h, w) maps (detached)."""
        value = self.value(index)
        return resolve_reshape(reshape, model, x, self.layers[index], value)(value.detach())


@contextmanager
def capture(layers: Sequence[LayerRef], *, grad: bool) -> Iterator[Capture]:
    """Capture the layers' outputs during the body (see ``Capture``)."""
    cap = Capture(layers, grad=grad)
    with forward_hooks([(ref.module, cap.hook(i)) for i, ref in enumerate(cap.layers)]):
        yield cap


def forward_backward(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[LayerRef],
    target: TargetLike | ResolvedTarget,
    reshape: ReshapeLike = "auto",
) -> tuple[list[torch.Tensor], list[torch.Tensor], ResolvedTarget, torch.Tensor]:
    """One forward pass and one backward pass that stops at the earliest layer.

    Returns, per layer, the activations ``A`` (N, C, h, w) and the gradients
    ``dy/dA`` of each sample's target score (same shape, the same ``reshape`` applied),
    then the resolved target and the scores (N,). The scores are summed before
    differentiating; in evaluation mode the samples of a batch are independent, so each
    sample's gradient is its own.
    """
    with torch.no_grad(), capture(layers, grad=True) as cap:
        output = model(x)
    resolved = resolve_target(target, output, x.shape[0])
    with torch.enable_grad():
        scores = resolved.scores(output, torch.arange(x.shape[0]))
    tensors = [cap.value(i) for i in range(len(layers))]
    names = ", ".join(repr(ref.name) for ref in layers)
    if not scores.requires_grad:
        raise XAIValueError(
            f"the target score does not depend on layer {names} through autograd (the "
            f"model or the target detaches it); gradient methods need a differentiable "
            f"path from the layer to the score."
        )
    grads = torch.autograd.grad(scores.sum(), tensors, allow_unused=True)
    maps, gradients = [], []
    for ref, tensor, grad in zip(layers, tensors, grads, strict=True):
        if grad is None:
            raise XAIValueError(
                f"the target score does not depend on layer {ref.name!r}; pick a layer on "
                f"the path to the output."
            )
        shape = resolve_reshape(reshape, model, x, ref, tensor)
        maps.append(shape(tensor.detach()))
        gradients.append(shape(grad.detach()))
    return maps, gradients, resolved, scores.detach()
