"""ROAD: remove pixels in the map's order, fill them from their neighbours (noisy linear
imputation), and read the model's score.

Rong, Leemann, Borisov, Kasneci & Kasneci, *A Consistent and Efficient Evaluation
Strategy for Attribution Methods*, ICML 2022 (RemOve And Debias).

A removed pixel ``p`` takes, in each channel, the weighted mean of its neighbours ``N(p)``
that lie inside the image (8 at most; ``w = 1/6`` direct, ``1/12`` diagonal), renormalised
by their total weight, plus noise of standard deviation ``σ`` (``noise``, 0.01, seeded):

$$
v_p = \\frac{\\sum_{q \\in N(p)} w_{pq}\\, v_q}{\\sum_{q \\in N(p)} w_{pq}},
\\qquad \\tilde v_p = v_p + \\sigma\\, \\varepsilon_p,\\quad
\\varepsilon_p \\sim \\mathcal N(0, 1).
$$

A removed neighbour is an unknown too: all removed pixels of an image are one sparse
linear system (``scipy.sparse``, one LU factorisation for all channels), non-singular
while one pixel is kept. Kept pixels are not touched.

At each removal percentage ``p_j`` (10, 20, ..., 90 by default) the first
``n_j = ⌊p_j·H·W/100⌋`` pixels of an order are imputed and the target's softmax
probability (or logit) is read:

* **MoRF** (most relevant first, decreasing saliency): **lower is better**;
* **LeRF** (least relevant first, increasing saliency): **higher is better**;
* ``combined = (mean_j LeRF_j − mean_j MoRF_j) / 2`` per image, pytorch-grad-cam's
  ``ROADCombined``: **higher is better**.

Ties are broken by position in both orders (stable sorts): equal pixels go in row-major
order, so a constant map imputes the same pixels, with the same noise, for MoRF and LeRF,
and its ``combined`` is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import torch

from xai.core.errors import XAITypeError, XAIValueError
from xai.core.targets import TargetLike
from xai.core.validate import Boolean, Constraint, Integer, Real, check, check_each, validate
from xai.metrics._inputs import SaliencyLike, as_saliency, explanation_targets
from xai.metrics._model import class_scores, prepare, resolve_classes

__all__ = ["RoadResult", "noisy_linear_imputation", "road"]

SeedLike: TypeAlias = int | Sequence[int] | np.random.Generator  # for numpy's default_rng

# (row offset, column offset, weight): the paper's 8-neighbourhood; the weights sum to 1.
_NEIGHBOURS = (
    (-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
    (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12),
)  # fmt: skip

_ROAD: dict[str, Sequence[Constraint]] = {
    "noise": [Real(0.0)],
    "seed": [Integer(0)],
    "softmax": [Boolean()],
    "batch_size": [Integer(1)],
}
_PERCENTAGE: Sequence[Constraint] = [Real(0.0, 100.0, low_open=True, high_open=True)]


@dataclass(frozen=True, eq=False)
class RoadResult:
    """ROAD's MoRF and LeRF curves for N images at P removal percentages.

    Attributes:
        percentages: ``(P,)`` float64, the share of pixels removed, in percent.
        removed: ``(P,)`` int64, the number of pixels removed, ``⌊p·H·W/100⌋``.
        morf: ``(N, P)`` float64, the target's score with the most salient pixels imputed
            (lower is better).
        lerf: ``(N, P)`` float64, with the least salient pixels imputed (higher is better).
        original: ``(N,)`` float64, the score on the unmodified image (pytorch-grad-cam
            reports ``morf - original[:, None]``).
        targets: ``(N,)`` int64, the class scored for each image.
        noise: the imputation noise's standard deviation.
        seed: the seed of that noise.
        softmax: ``True`` if the scores are probabilities, ``False`` for logits.
    """

    percentages: np.ndarray
    removed: np.ndarray
    morf: np.ndarray
    lerf: np.ndarray
    original: np.ndarray
    targets: np.ndarray
    noise: float
    seed: int
    softmax: bool = True

    @property
    def combined(self) -> np.ndarray:
        """``(N,)`` ``(mean LeRF − mean MoRF) / 2`` per image (higher is better)."""
        return np.asarray((self.lerf.mean(axis=1) - self.morf.mean(axis=1)) / 2)

    @property
    def mean_morf(self) -> float:
        """MoRF averaged over images and percentages (lower is better)."""
        return float(self.morf.mean())

    @property
    def mean_lerf(self) -> float:
        """LeRF averaged over images and percentages (higher is better)."""
        return float(self.lerf.mean())

    @property
    def mean_combined(self) -> float:
        """``(mean_lerf − mean_morf) / 2``: pytorch-grad-cam's ``ROADCombined``."""
        return float(self.combined.mean())

    def __len__(self) -> int:
        return int(self.morf.shape[0])

    def __repr__(self) -> str:
        return (
            f"RoadResult(n={len(self)}, percentages={len(self.percentages)}, "
            f"mean_morf={self.mean_morf:.4f}, mean_lerf={self.mean_lerf:.4f}, "
            f"mean_combined={self.mean_combined:.4f}, noise={self.noise:g})"
        )


def noisy_linear_imputation(
    image: torch.Tensor | np.ndarray,
    removed: torch.Tensor | np.ndarray,
    *,
    noise: float = 0.01,
    seed: SeedLike = 0,
) -> torch.Tensor:
    """ROAD's noisy linear imputation (Rong et al. 2022) of the ``removed`` pixels.

    Each removed pixel becomes, in every channel, the weighted mean of its neighbours that
    exist (direct 1/6, diagonal 1/12, renormalised to sum to 1), removed neighbours being
    unknowns of the same sparse system; then ``noise · ε``, ``ε ~ N(0, 1)``, is added.

    Args:
        image: ``(C, H, W)`` or ``(N, C, H, W)`` finite floats.
        removed: boolean ``(H, W)`` (the same pixels for every image) or ``(N, H, W)``;
            ``True`` marks a pixel to impute. Each image must keep at least one pixel.
        noise: the noise's standard deviation, >= 0 (0: the plain linear imputation).
        seed: seeds ``numpy.random.default_rng``; the noise of each image, in order, is
            one ``standard_normal((C, k))`` draw for its ``k`` removed pixels in
            row-major order (nothing is drawn when ``noise`` is 0).

    Returns:
        A new tensor of the image's shape, dtype and device: the kept pixels bit for bit,
        the removed ones imputed (solved in float64).
    """
    where = "noisy_linear_imputation"
    noise = validate(where, {"noise": _ROAD["noise"]}, noise=noise)["noise"]
    x, mask = (torch.as_tensor(a) if isinstance(a, np.ndarray) else a for a in (image, removed))
    if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
        got = getattr(x, "dtype", type(x).__name__)
        raise XAITypeError(f"{where}: image must be a float tensor or array; got {got}.")
    if not (isinstance(mask, torch.Tensor) and mask.dtype == torch.bool):
        got = getattr(mask, "dtype", type(mask).__name__)
        raise XAITypeError(f"{where}: removed must be a boolean tensor or array; got {got}.")
    batch, mask = (x[None] if x.ndim == 3 else x), mask.detach().cpu()
    if batch.ndim != 4 or mask.shape not in (batch.shape[2:], batch.shape[:1] + batch.shape[2:]):
        raise XAIValueError(
            f"{where}: image must be (C, H, W) or (N, C, H, W) and removed (H, W) or (N, H, W) "
            f"at its size; got {tuple(x.shape)} and {tuple(mask.shape)}."
        )
    if not torch.isfinite(batch).all():
        raise XAIValueError(f"{where}: image contains NaN or infinite values.")
    mask = mask.expand(batch.shape[:1] + batch.shape[2:])
    if mask.flatten(1).all(dim=1).any():
        raise XAIValueError(f"{where}: keep at least one pixel of each image to impute from.")
    rng = _generator(seed)
    out = torch.stack([_impute(one, m, noise, rng) for one, m in zip(batch, mask, strict=True)])
    return out[0] if x.ndim == 3 else out


def _generator(seed: Any) -> np.random.Generator:
    """``seed`` (an int >= 0, a sequence of them, or a Generator) as a numpy Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    where = "noisy_linear_imputation"
    if isinstance(seed, Sequence | np.ndarray):  # a str is refused by check_each
        return np.random.default_rng(check_each(seed, [Integer(0)], "seed", where))
    return np.random.default_rng(check(seed, [Integer(0)], "seed", where))


def _impute(
    image: torch.Tensor, removed: torch.Tensor, noise: float, rng: np.random.Generator
) -> torch.Tensor:
    """One (C, H, W) image with its (H, W) ``removed`` pixels imputed (some kept)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    channels, height, width = image.shape
    flat = removed.numpy().reshape(-1)
    unknown = np.flatnonzero(flat)  # row-major; equation k is pixel unknown[k]
    k = unknown.size
    out = image.detach().clone(memory_format=torch.contiguous_format)
    if k == 0:
        return out
    values = image.detach().to("cpu", torch.float64).reshape(channels, -1).numpy()
    index = np.full(flat.size, -1, dtype=np.int64)
    index[unknown] = np.arange(k)
    rows, cols = np.divmod(unknown, width)
    diagonal = np.zeros(k)
    rhs = np.zeros((k, channels))
    i, j, v = [np.arange(k)], [np.arange(k)], [diagonal]  # the matrix, as COO triplets
    # Equation of pixel p: (Σ_q w_pq) v_p − Σ_{q removed} w_pq v_q = Σ_{q kept} w_pq v_q.
    for dy, dx, weight in _NEIGHBOURS:
        r, c = rows + dy, cols + dx
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        equation = np.flatnonzero(inside)  # each equation at most once per offset
        neighbour = r[inside] * width + c[inside]
        diagonal[equation] += weight
        is_unknown = flat[neighbour]
        i.append(equation[is_unknown])
        j.append(index[neighbour[is_unknown]])
        v.append(np.full(i[-1].size, -weight))
        rhs[equation[~is_unknown]] += weight * values[:, neighbour[~is_unknown]].T
    coordinates = (np.concatenate(i), np.concatenate(j))
    system = coo_matrix((np.concatenate(v), coordinates), shape=(k, k)).tocsc()
    solution = splu(system).solve(rhs).T  # (C, k)
    if noise > 0:
        solution = solution + noise * rng.standard_normal((channels, k))
    filled = torch.from_numpy(np.ascontiguousarray(solution)).to(out.dtype)
    where = torch.from_numpy(unknown).to(out.device)
    out.view(channels, -1)[:, where] = filled.to(out.device)
    return out


def road(
    model: torch.nn.Module,
    images: torch.Tensor,
    saliency: SaliencyLike,
    target: TargetLike = None,
    *,
    percentages: Sequence[float] = (10, 20, 30, 40, 50, 60, 70, 80, 90),
    noise: float = 0.01,
    seed: int = 0,
    softmax: bool = True,
    batch_size: int = 256,
) -> RoadResult:
    """ROAD's MoRF and LeRF curves (Rong et al., ICML 2022) and their combined score.

    For each image and percentage ``p``, the ``⌊p·H·W/100⌋`` most (MoRF) or least
    (LeRF) salient pixels are removed and filled by ``noisy_linear_imputation``; the
    target's score on the result is read. Ties: row-major order in both orders (stable
    sorts of the decreasing and the increasing saliency).

    Args:
        model: an image classifier returning ``(N, classes)`` logits; run under
            ``torch.no_grad()`` in eval mode, every submodule's flag restored after.
        images: ``(N, C, H, W)`` float, scaled as the model expects (the imputation works
            on these values).
        saliency: an ``Explanation`` (its ``maps``) or ``(N, H, W)`` maps at the
            images' resolution; larger means more important.
        target: ``None`` (the Explanation's targets, or else each image's top-1 class on
            the clean image), an int, or one int per image.
        percentages: the removal percentages, each in (0, 100); pytorch-grad-cam's 10, 20,
            ..., 90 by default.
        noise: the imputation noise's standard deviation (in the images' units), >= 0.
        seed: the noise of image ``i`` at percentage index ``j`` is drawn by
            ``numpy.random.default_rng((seed, i, j))``, the same for MoRF and LeRF; the
            result does not depend on ``batch_size``.
        softmax: score the class probability (default) or, if ``False``, its logit.
        batch_size: images per forward pass. The model runs on ``N·(2P + 1)`` images
            (the clean one too), and ``2·N·P`` sparse systems are solved, one at a time.

    Returns:
        A ``RoadResult`` with ``morf`` and ``lerf`` (N, P), ``original`` (N,),
        ``combined`` (N,) and their means.
    """
    options = validate(
        "road", _ROAD, noise=noise, seed=seed, softmax=softmax, batch_size=batch_size
    )
    noise, seed, softmax = options["noise"], options["seed"], options["softmax"]
    batch_size = options["batch_size"]
    shares = check_each(percentages, _PERCENTAGE, "percentages", "road")
    if not shares:
        raise XAIValueError("road: percentages must hold at least one percentage in (0, 100).")
    x = prepare(model, images)
    n, _, height, width = x.shape
    pixels = height * width
    maps = as_saliency(saliency, n=n, size=(height, width))
    default = explanation_targets(saliency) if target is None else None
    classes = resolve_classes(model, x, target, default, batch_size)
    counts = [min(int(share * pixels / 100), pixels - 1) for share in shares]
    flat = maps.reshape(n, pixels)
    orders = (  # MoRF, LeRF: pixel indices, first removed first
        torch.sort(flat, dim=1, descending=True, stable=True).indices,
        torch.sort(flat, dim=1, stable=True).indices,
    )
    steps = len(shares)
    per_image = 1 + 2 * steps  # the clean image, MoRF at each percentage, LeRF at each

    def make_rows(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows, owners = [], []
        for row in range(start, stop):
            i, column = divmod(row, per_image)
            owners.append(i)
            if column == 0:
                rows.append(x[i])
                continue
            curve, j = divmod(column - 1, steps)
            removed = torch.zeros(pixels, dtype=torch.bool)
            removed[orders[curve][i, : counts[j]]] = True
            rng = np.random.default_rng((seed, i, j))
            rows.append(_impute(x[i], removed.view(height, width), noise, rng))
        return torch.stack(rows), torch.tensor(owners, device=x.device)

    scores = class_scores(
        model, make_rows, n * per_image, classes, softmax=softmax, batch_size=batch_size
    ).reshape(n, per_image)
    return RoadResult(
        percentages=np.asarray(shares, dtype=np.float64),
        removed=np.asarray(counts, dtype=np.int64),
        morf=scores[:, 1 : 1 + steps].numpy(),
        lerf=scores[:, 1 + steps :].numpy(),
        original=scores[:, 0].numpy(),
        targets=classes.numpy(),
        noise=noise,
        seed=seed,
        softmax=softmax,
    )
