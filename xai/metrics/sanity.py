"""Sanity checks for saliency maps: cascading model-parameter randomisation.

Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim (2018), "Sanity Checks for Saliency
Maps", NeurIPS. A map that explains the *model* must change when the model's learned
weights are destroyed. The weights are re-initialised layer by layer, from the output
towards the input, each step keeping the earlier randomisations (cascading), and after
each step the maps are compared with the trained model's by Spearman rank correlation:

$$
\\rho = \\operatorname{corr}\\big(\\operatorname{rank}(m), \\operatorname{rank}(m')\\big),
$$

the Pearson correlation of the pixels' ranks, ties given their average rank. A method
whose ρ stays near 1 while the network becomes random (the paper's finding for guided
backpropagation) shows the image, not the model's reasoning.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from xai.core.errors import XAITypeError, XAIValueError
from xai.core.state import evaluation_mode
from xai.core.targets import TargetLike
from xai.core.validate import Constraint, Integer, validate

__all__ = ["SanityResult", "cascading_randomization", "spearman"]

# The constraints of ``cascading_randomization``'s own numeric options, declared once
# (the method's options are checked by the method).
_CASCADING: dict[str, Sequence[Constraint]] = {"seed": [Integer(0)]}


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 along the last axis; tied values share their average rank."""
    order = np.argsort(values, axis=-1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=-1)
    ranks = np.empty(values.shape, dtype=np.float64)
    for row in np.ndindex(values.shape[:-1]):
        sorted_row = ordered[row]
        # Start of each run of equal values, and the average position within the run.
        starts = np.flatnonzero(np.r_[True, sorted_row[1:] != sorted_row[:-1]])
        ends = np.r_[starts[1:], sorted_row.size]
        average = (starts + ends - 1) / 2.0
        ranks[row][order[row]] = np.repeat(average, ends - starts)
    return ranks


def spearman(a: Any, b: Any) -> np.ndarray:
    """Spearman rank correlation between matching maps, one value per map.

    Args:
        a: ``(N, H, W)`` maps (tensor or array); every map is flattened.
        b: ``(N, H, W)`` maps of the same shape.

    Returns:
        ``(N,)`` float64 in [-1, 1]. A constant map has no ranking: its ρ is ``nan``.
    """
    x = np.asarray(torch.as_tensor(a).detach().cpu().double())
    y = np.asarray(torch.as_tensor(b).detach().cpu().double())
    if x.shape != y.shape or x.ndim < 2:
        raise XAIValueError(
            f"spearman needs two batches of maps of one shape (N, H, W); got "
            f"{x.shape} and {y.shape}."
        )
    rx = _average_ranks(x.reshape(len(x), -1))
    ry = _average_ranks(y.reshape(len(y), -1))
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denominator = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (rx * ry).sum(axis=1) / denominator, np.nan)


@dataclass(frozen=True)
class SanityResult:
    """Cascading randomisation of one method.

    Attributes:
        method: the method's registry name.
        layers: ``("original", name_1, name_2, ...)``: step k has the top k parameterised
            layers randomised (the output layer first).
        spearman: ``(steps + 1, N)`` rank correlation of each image's map with its map
            under the trained model (row 0 is 1, or ``nan`` for a constant map).
        maps: ``(steps + 1, N, H, W)`` float32, the maps at every step.
    """

    method: str
    layers: tuple[str, ...]
    spearman: np.ndarray
    maps: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """``(steps + 1,)``: the mean ρ over the images at each step (nan ignored)."""
        with np.errstate(invalid="ignore"):
            return np.array(
                [np.nanmean(row) if np.isfinite(row).any() else np.nan for row in self.spearman]
            )

    def table(self) -> str:
        """A plain-text table: layer randomised so far, and the mean ρ."""
        from xai._tables import text_table

        rows = [[name, f"{value:.3f}"] for name, value in zip(self.layers, self.mean, strict=True)]
        return text_table(["randomised down to", "mean Spearman rho"], rows, right=[1])


def _parameterised_layers_top_down(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Modules with their own parameters and ``reset_parameters``, in the reverse of the
    order they first run in a forward pass (the output layer first)."""
    names = {module: name for name, module in model.named_modules()}
    seen: list[str] = []
    handles = []

    def record(module: nn.Module, _inputs: Any, _output: Any) -> None:
        name = names[module]
        if name not in seen:
            seen.append(name)

    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if own and hasattr(module, "reset_parameters"):
            handles.append(module.register_forward_hook(record))
    try:
        with torch.no_grad(), evaluation_mode(model):  # no batch-norm statistic moves
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    return seen[::-1]


def cascading_randomization(
    model: nn.Module,
    images: torch.Tensor,
    method: str = "gradcam",
    target: TargetLike = None,
    *,
    layer: str | None = None,
    layers: list[str] | None = None,
    seed: int = 0,
    **options: Any,
) -> SanityResult:
    """Cascading model-parameter randomisation (Adebayo et al. 2018) for one method.

    The model is copied (yours is never touched, nor the global random state); in the
    copy, the parameterised layers are re-initialised with their own
    ``reset_parameters()`` one at a time from the output towards the input, cumulatively,
    and after each the images are explained again for the *same* targets as under the
    trained model (by default each image's top-1 class under the trained model).

    Args:
        model: the trained classifier.
        images: ``(N, C, H, W)``, scaled as the model expects.
        method: a name from ``xai.methods()``.
        target: as in ``xai.explain``; resolved once, on the trained model.
        layer: the explained layer's dotted name (``None``: the method's default,
            chosen on the trained model and kept for every step).
        layers: the dotted names to randomise, in order (default: every module with its
            own parameters and a ``reset_parameters`` method, output layer first).
        seed: seeds the re-initialisation.
        **options: the method's own options.

    Returns:
        A ``SanityResult`` with the names, the per-image Spearman ρ at each step, and the
        maps.
    """
    from xai.api import explainer

    seed = validate("cascading_randomization", _CASCADING, seed=seed)["seed"]
    original = explainer(model, method, layer, **options)(images, target=target)
    chosen = original.layer if layer is None else layer
    classes = original.targets
    if (classes < 0).any():
        raise XAIValueError(
            "cascading_randomization needs one class per image; a callable target gives "
            "none. Pass class indices as target."
        )
    copied = copy.deepcopy(model)
    modules = dict(copied.named_modules())
    if layers is None:
        order = _parameterised_layers_top_down(copied, images)
    else:
        unknown = [name for name in layers if name not in modules]
        if unknown:
            raise XAIValueError(
                f"layers: no module named {', '.join(map(repr, unknown))} in the model; "
                f"names come from model.named_modules()."
            )
        order = list(layers)
    if not order:
        raise XAIValueError(
            "the model has no module with its own parameters and a reset_parameters() "
            "method to randomise; pass layers=[...] naming the modules to re-initialise."
        )
    maps = [original.maps]
    devices = [p.device for p in copied.parameters()]
    with torch.random.fork_rng(devices=[d for d in set(devices) if d.type == "cuda"]):
        torch.manual_seed(seed)
        for name in order:
            module = modules[name]
            if not hasattr(module, "reset_parameters"):
                raise XAITypeError(
                    f"layers: module {name!r} ({type(module).__name__}) has no "
                    f"reset_parameters() to re-initialise it with."
                )
            with torch.no_grad():
                module.reset_parameters()
            e = explainer(copied, method, chosen, **options)(images, target=classes)
            maps.append(e.maps)
    stacked = torch.stack(maps).float()
    rho = np.stack([spearman(original.maps, m) for m in stacked])
    return SanityResult(
        method=original.method,
        layers=("original", *order),
        spearman=rho,
        maps=stacked.numpy(),
    )
