"""Reference quantities computed without the library's hooks, in float64."""

from __future__ import annotations

import copy

import torch


def split_activations(model, x: torch.Tensor, classes):
    """A = model.body(x), y = scores, G = dy/dA: float64, by plain autograd on a copy."""
    m = copy.deepcopy(model).double().eval()
    xd = x.double()
    A = m.body(xd).detach().requires_grad_(True)
    out = m.tail(A)
    y = out[torch.arange(len(classes)), torch.as_tensor(classes)]
    (G,) = torch.autograd.grad(y.sum(), A)
    return A.detach(), G, y.detach(), m


def gap_activations(model, x: torch.Tensor, classes):
    """The same for a GAPCNN: A = features(normalize(x)), head(mean(A))."""
    m = copy.deepcopy(model).double().eval()
    A = m.features(m.normalize(x.double())).detach().requires_grad_(True)
    out = m.head(A.mean(dim=(2, 3)))
    y = out[torch.arange(len(classes)), torch.as_tensor(classes)]
    (G,) = torch.autograd.grad(y.sum(), A)
    return A.detach(), G, y.detach(), m
