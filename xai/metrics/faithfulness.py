"""Deletion and insertion: does the model's score follow the saliency's order of pixels?

Petsiuk, Das & Saenko, *RISE: Randomized Input Sampling for Explanation of Black-box
Models*, BMVC 2018, section 4.1.

Pixels are ranked by their saliency, most important first. With ``P = H·W`` pixels and
``S`` steps, step ``k = 0..S`` changes the first ``n_k = ⌊k·P/S⌋`` pixels of that order
(all channels of a pixel together), at the fraction ``x_k = n_k / P``:

* **deletion**: the image with its first ``n_k`` pixels replaced by the baseline; from
  the image (k = 0) to the baseline (k = S). A faithful map makes the score fall fast:
  **lower AUC is better**.
* **insertion**: the baseline with the image's first ``n_k`` pixels put back; from the
  baseline (k = 0) to the image (k = S). A faithful map makes the score rise fast:
  **higher AUC is better**.

The curve is the target class's softmax probability ``p_k`` (or logit) at each step, and
``AUC = Σ_{k<S} (x_{k+1} − x_k)·(p_k + p_{k+1})/2`` (trapezoid rule on x in [0, 1]).

Ties in the saliency are broken by position: equal pixels keep their row-major order
(row by row, left to right), by a stable sort. The result does not depend on
``batch_size``, which only sets how many perturbed images go through the model at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from xai.core.errors import XAIValueError
from xai.core.targets import TargetLike
from xai.core.validate import Boolean, Constraint, Integer, NoneValue, Real, validate
from xai.metrics._inputs import SaliencyLike, as_saliency, explanation_targets
from xai.metrics._model import class_scores, prepare, resolve_classes
from xai.shapley.image_game import gaussian_blur

__all__ = ["BaselineLike", "Curve", "deletion", "insertion", "perturbation_curve"]

BaselineLike = float | str | torch.Tensor
"""A number, ``"blur"``, ``"mean"``, or a tensor broadcastable to the images."""

# The constraints of the curves' options, declared once (``baseline`` is a number, a
# name or a tensor: ``_baseline`` checks it).
_CURVE: dict[str, Sequence[Constraint]] = {
    "steps": [Integer(1)],  # checked unless None (automatic)
    "blur_sigma": [Real(0.0, low_open=True), NoneValue()],
    "softmax": [Boolean()],
    "batch_size": [Integer(1)],
}


@dataclass(frozen=True, eq=False)
class Curve:
    """A deletion or insertion curve for each of N images.

    Attributes:
        kind: ``"deletion"`` (lower AUC is better) or ``"insertion"`` (higher is better).
        fractions: ``(S + 1,)`` float64, the share of pixels changed at each step, from 0
            to 1.
        scores: ``(N, S + 1)`` float64, the target's probability (or logit) at each step;
            column 0 is the unmodified image (deletion) or the baseline (insertion).
        auc: ``(N,)`` float64, the trapezoid area under each image's curve.
        targets: ``(N,)`` int64, the class scored for each image.
        baseline: what replaced the pixels, e.g. ``"0"``, ``"blur (sigma 3.5)"``, ``"mean"``.
        softmax: ``True`` if ``scores`` are probabilities, ``False`` for logits.
    """

    kind: str
    fractions: np.ndarray
    scores: np.ndarray
    auc: np.ndarray
    targets: np.ndarray
    baseline: str
    softmax: bool = True

    @property
    def mean_auc(self) -> float:
        """The AUC averaged over the images (the number papers report)."""
        return float(self.auc.mean())

    @property
    def mean_curve(self) -> np.ndarray:
        """``(S + 1,)`` the curve averaged over the images; its AUC is ``mean_auc``."""
        return np.asarray(self.scores.mean(axis=0))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __repr__(self) -> str:
        return (
            f"Curve(kind={self.kind!r}, n={len(self)}, steps={len(self.fractions) - 1}, "
            f"mean_auc={self.mean_auc:.4f}, baseline={self.baseline!r})"
        )


def deletion(
    model: torch.nn.Module,
    images: torch.Tensor,
    saliency: SaliencyLike,
    target: TargetLike = None,
    *,
    steps: int | None = None,
    baseline: BaselineLike = 0.0,
    blur_sigma: float | None = None,
    softmax: bool = True,
    batch_size: int = 256,
) -> Curve:
    """The deletion curve (RISE, Petsiuk et al. 2018): remove the most salient pixels
    first; a faithful map makes the score drop fast, so **lower AUC is better**.

    See ``perturbation_curve`` for the arguments; the default baseline is 0 (black
    for images in [0, 1]), as in the paper.
    """
    return perturbation_curve(
        "deletion",
        model,
        images,
        saliency,
        target,
        steps=steps,
        baseline=baseline,
        blur_sigma=blur_sigma,
        softmax=softmax,
        batch_size=batch_size,
    )


def insertion(
    model: torch.nn.Module,
    images: torch.Tensor,
    saliency: SaliencyLike,
    target: TargetLike = None,
    *,
    steps: int | None = None,
    baseline: BaselineLike = "blur",
    blur_sigma: float | None = None,
    softmax: bool = True,
    batch_size: int = 256,
) -> Curve:
    """The insertion curve (RISE, Petsiuk et al. 2018): start from the baseline and put
    the most salient pixels back first; **higher AUC is better**.

    See ``perturbation_curve`` for the arguments; the default baseline is a Gaussian
    blur of the image, as in the paper.
    """
    return perturbation_curve(
        "insertion",
        model,
        images,
        saliency,
        target,
        steps=steps,
        baseline=baseline,
        blur_sigma=blur_sigma,
        softmax=softmax,
        batch_size=batch_size,
    )


def perturbation_curve(
    kind: Literal["deletion", "insertion"],
    model: torch.nn.Module,
    images: torch.Tensor,
    saliency: SaliencyLike,
    target: TargetLike = None,
    *,
    steps: int | None = None,
    baseline: BaselineLike = 0.0,
    blur_sigma: float | None = None,
    softmax: bool = True,
    batch_size: int = 256,
) -> Curve:
    """Deletion or insertion curves and their AUCs for a batch of images.

    With ``P = H·W`` pixels ranked by saliency (ties: row-major order), step ``k = 0..S``
    changes the top ``n_k = ⌊k·P/S⌋`` pixels, at ``x_k = n_k / P``. Deletion scores
    ``x ← baseline`` on them, insertion ``baseline ← x``; the score is the target's
    softmax probability (or logit) and ``AUC = Σ_k (x_{k+1} − x_k)(p_k + p_{k+1})/2``.

    Args:
        kind: ``"deletion"`` or ``"insertion"``.
        model: an image classifier returning ``(N, classes)`` logits; run under
            ``torch.no_grad()`` in eval mode, every submodule's flag restored after.
        images: ``(N, C, H, W)`` float, scaled as the model expects.
        saliency: an ``Explanation`` (its ``maps``) or ``(N, H, W)`` maps at the
            images' resolution; larger means more important.
        target: ``None`` (the Explanation's targets, or else each image's top-1 class on
            the clean image), an int, or one int per image.
        steps: S >= 1, the number of equal increments of pixels (at most H·W); ``None``
            means 100, or H·W for images of fewer pixels. The model runs on
            ``N·(S + 1)`` images.
        baseline: what a removed pixel becomes: a number, ``"blur"`` (a Gaussian blur of
            the image), ``"mean"`` (the image's per-channel mean) or a tensor that
            broadcasts to ``(N, C, H, W)``.
        blur_sigma: the blur's standard deviation in pixels; ``None`` means
            ``max(H, W) / 8`` (strong enough to erase a 28×28 garment's details).
        softmax: score the class probability (default) or, if ``False``, its logit.
        batch_size: perturbed images per forward pass; the result does not depend on it.

    Returns:
        A ``Curve`` with ``fractions``, ``scores`` (N, S + 1), ``auc`` (N,) and
        ``mean_auc``.
    """
    if kind not in ("deletion", "insertion"):
        raise XAIValueError(f"kind must be 'deletion' or 'insertion'; got {kind!r}.")
    given = {"blur_sigma": blur_sigma, "softmax": softmax, "batch_size": batch_size}
    options = validate(kind, _CURVE, **given, **({} if steps is None else {"steps": steps}))
    blur_sigma, softmax = options["blur_sigma"], options["softmax"]
    batch_size = options["batch_size"]
    x = prepare(model, images)
    n, _, height, width = x.shape
    pixels = height * width
    steps = options.get("steps", min(100, pixels))
    if steps > pixels:
        raise XAIValueError(
            f"{kind}: steps must be at most the number of pixels H*W = {pixels}, so that "
            f"every step changes at least one pixel; got {steps}."
        )
    maps = as_saliency(saliency, n=n, size=(height, width))
    default = explanation_targets(saliency) if target is None else None
    classes = resolve_classes(model, x, target, default, batch_size)
    fill, described = _baseline(baseline, x, blur_sigma)

    # rank[i, p]: the position of pixel p in image i's order (0 = most salient).
    order = torch.sort(maps.reshape(n, pixels), dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels).expand(n, pixels).contiguous())
    rank = rank.to(x.device)
    counts = torch.arange(steps + 1, dtype=torch.int64) * pixels // steps
    counts_on_device = counts.to(x.device)
    per_image = steps + 1
    deleting = kind == "deletion"

    def make_rows(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = torch.arange(start, stop, device=x.device)
        owner, step = row // per_image, row % per_image
        changed = rank[owner] < counts_on_device[step][:, None]
        changed = changed.view(-1, 1, height, width)
        if deleting:
            return torch.where(changed, fill[owner], x[owner]), owner
        return torch.where(changed, x[owner], fill[owner]), owner

    scores = class_scores(
        model, make_rows, n * per_image, classes, softmax=softmax, batch_size=batch_size
    ).reshape(n, per_image)
    fractions = counts.to(torch.float64) / pixels
    widths = fractions[1:] - fractions[:-1]
    auc = ((scores[:, 1:] + scores[:, :-1]) / 2 * widths).sum(dim=1)
    return Curve(
        kind=kind,
        fractions=fractions.numpy(),
        scores=scores.numpy(),
        auc=auc.numpy(),
        targets=classes.numpy(),
        baseline=described,
        softmax=softmax,
    )


def _baseline(baseline: Any, x: torch.Tensor, blur_sigma: float | None) -> tuple[torch.Tensor, str]:
    """The (N, C, H, W) image each pixel is replaced by, and how to describe it."""
    if blur_sigma is not None and not (isinstance(baseline, str) and baseline == "blur"):
        raise XAIValueError("blur_sigma is only used with baseline='blur'; leave it None.")
    if isinstance(baseline, torch.Tensor | np.ndarray):
        tensor = torch.as_tensor(baseline).detach().to(device=x.device, dtype=x.dtype)
        try:
            return torch.broadcast_to(tensor, x.shape), "tensor"
        except RuntimeError:
            raise XAIValueError(
                f"a baseline tensor must broadcast to the images' shape {tuple(x.shape)}, "
                f"e.g. (C, H, W), (C, 1, 1) or (N, C, H, W); got {tuple(tensor.shape)}."
            ) from None
    if isinstance(baseline, str):
        if baseline == "blur":
            sigma = max(x.shape[2:]) / 8 if blur_sigma is None else blur_sigma  # checked
            blurred = torch.stack([gaussian_blur(image, float(sigma)) for image in x])
            return blurred, f"blur (sigma {float(sigma):g})"
        if baseline == "mean":
            return x.mean(dim=(2, 3), keepdim=True).expand_as(x), "mean"
    elif isinstance(baseline, int | float) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline)), f"{float(baseline):g}"
    raise XAIValueError(
        f"baseline must be a number, 'blur', 'mean' or a tensor that broadcasts to the "
        f"images; got {baseline!r}."
    )
