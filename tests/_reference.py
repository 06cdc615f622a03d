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


def hooked_gradcam(model, module, x: torch.Tensor, score_fn, reshape=None) -> torch.Tensor:
    """Grad-CAM from the paper's equations with one plain forward hook: A is ``module``'s
    output (``reshape``d to (N, C, h, w) if given), G = d sum(score_fn(output)) / dA,
    alpha_k = mean_ij G_kij, L = ReLU(sum_k alpha_k A_k)."""
    store = {}
    handle = module.register_forward_hook(lambda m, i, o: store.setdefault("a", o))
    try:
        with torch.enable_grad():
            out = model(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(score_fn(out).sum(), store["a"])
    fold = reshape if reshape is not None else (lambda t: t)
    A, G = fold(store["a"].detach()), fold(grad)
    return (G.mean(dim=(2, 3), keepdim=True) * A).sum(dim=1).clamp_min(0)
