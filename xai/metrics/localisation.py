"""Localisation: does the saliency fall on the object? Measured against ground truth
given as boolean masks ``(N, H, W)`` or boxes ``(N, 4)``.

A box is ``(x0, y0, x1, y1)`` in pixels of the saliency map, ``(x0, y0)`` inclusive and
``(x1, y1)`` exclusive: it covers the columns ``x0 <= x < x1`` and the rows
``y0 <= y < y1``, like ``mask[y0:y1, x0:x1]``. (Pascal VOC's inclusive corners need
``x1 + 1, y1 + 1``.) Neither metric runs the model.

* ``pointing_game``: Zhang, Bargal, Lin, Brandt, Shen & Sclaroff, *Top-down Neural
  Attention by Excitation Backprop*, ECCV 2016 / IJCV 2018.
* ``energy_pointing_game``: Wang et al., *Score-CAM: Score-Weighted Visual
  Explanations for Convolutional Neural Networks*, CVPR Workshops 2020, section 4.3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from xai.core.errors import XAIValueError
from xai.core.validate import Constraint, Real, validate
from xai.metrics._inputs import SaliencyLike, as_ground_truth, as_saliency

__all__ = ["EnergyResult", "PointingResult", "energy_pointing_game", "pointing_game"]


# The constraints of ``pointing_game``'s numeric options, declared once (``ties`` is
# checked against its three names).
_POINTING_GAME: dict[str, Sequence[Constraint]] = {"tolerance": [Real(0.0)]}


@dataclass(frozen=True, eq=False)
class PointingResult:
    """The pointing game for N maps.

    Attributes:
        hits: ``(N,)`` bool, whether each map's maximum is (within the tolerance) on the
            ground truth.
        points: ``(N, 2)`` int64, (row, column) of each map's first maximum in row-major
            order (the ``argmax`` of the flattened map).
        flat: ``(N,)`` bool, maps with no maximum (every value equal, e.g. all zeros):
            they point nowhere and count as misses.
        area: ``(N,)`` float64, the share of the image the ground truth covers (before
            the tolerance): how likely a point dropped at random is a hit.
        tolerance: the tolerance in pixels.
        ties: how several maxima were treated (``"all"``, ``"any"`` or ``"first"``).
    """

    hits: np.ndarray
    points: np.ndarray
    flat: np.ndarray
    area: np.ndarray
    tolerance: float
    ties: str

    @property
    def accuracy(self) -> float:
        """The share of hits, in [0, 1]: ``#hits / N``."""
        return float(self.hits.mean())

    def __len__(self) -> int:
        return int(self.hits.shape[0])

    def __repr__(self) -> str:
        return (
            f"PointingResult(n={len(self)}, accuracy={self.accuracy:.4f}, "
            f"tolerance={self.tolerance:g}, ties={self.ties!r})"
        )


@dataclass(frozen=True, eq=False)
class EnergyResult:
    """The energy-based pointing game for N maps.

    Attributes:
        shares: ``(N,)`` float64 in [0, 1], each map's share of its energy on the ground
            truth; 0 for a map with no energy.
        zero_energy: ``(N,)`` bool, maps whose positive part sums to zero.
        area: ``(N,)`` float64, the share of the image the ground truth covers: the share
            a uniform map would score.
    """

    shares: np.ndarray
    zero_energy: np.ndarray
    area: np.ndarray

    @property
    def mean(self) -> float:
        """The share averaged over the images (zero-energy maps count as 0)."""
        return float(self.shares.mean())

    def __len__(self) -> int:
        return int(self.shares.shape[0])

    def __repr__(self) -> str:
        return (
            f"EnergyResult(n={len(self)}, mean={self.mean:.4f}, "
            f"zero_energy={int(self.zero_energy.sum())})"
        )


def pointing_game(
    saliency: SaliencyLike,
    ground_truth: Any,
    *,
    tolerance: float = 15,
    ties: Literal["all", "any", "first"] = "all",
) -> PointingResult:
    """The pointing game (Zhang et al. 2016): a hit when the map's maximum lies on the
    ground truth, or within ``tolerance`` pixels of it.

    With ``M_i = {p : L_i(p) = max L_i}`` the maxima of map i and ``G_i`` its ground-truth
    pixels, the maximum ``p`` hits when ``min_{g ∈ G_i} ‖p − g‖₂ <= tolerance`` (pixel
    centres, Euclidean distance); ``accuracy = #hits / N``.

    Args:
        saliency: an ``Explanation`` (its ``maps``) or ``(N, H, W)`` maps.
        ground_truth: ``(N, H, W)`` boolean masks, or ``(N, 4)`` boxes ``(x0, y0, x1, y1)``
            with ``x1, y1`` exclusive.
        tolerance: pixels; the paper uses 15 on images of about 224 pixels a side, so
            scale it to your images (2 on 28 × 28). 0 demands the maximum itself is on
            the ground truth.
        ties: when the maximum is reached at several pixels: ``"all"`` (default: a hit
            only if every maximum hits, so a plateau is not rewarded for touching the
            object), ``"any"`` (one hitting maximum suffices) or ``"first"`` (the first
            maximum in row-major order, the plain ``argmax``). A flat map (all values
            equal) has no maximum and is always a miss.

    Returns:
        A ``PointingResult`` with ``hits`` (N,) and ``accuracy``.

    Example:
        >>> import torch
        >>> maps = torch.zeros(2, 5, 5)
        >>> maps[0, 1, 1] = maps[1, 3, 3] = 1.0
        >>> boxes = torch.tensor([[0, 0, 3, 3], [0, 0, 3, 3]])  # rows and columns 0..2
        >>> pointing_game(maps, boxes, tolerance=0).hits.tolist()
        [True, False]
        >>> pointing_game(maps, boxes, tolerance=1.5).hits.tolist()  # (3, 3) is 1.41 from (2, 2)
        [True, True]
    """
    tolerance = validate("pointing_game", _POINTING_GAME, tolerance=tolerance)["tolerance"]
    if ties not in ("all", "any", "first"):
        raise XAIValueError(f"ties must be 'all', 'any' or 'first'; got {ties!r}.")
    maps = as_saliency(saliency)
    n, height, width = maps.shape
    truth = as_ground_truth(ground_truth, n, (height, width))
    near = _dilate(truth, tolerance)
    flat_maps = maps.reshape(n, -1)
    top = flat_maps.max(dim=1, keepdim=True).values
    flat = (flat_maps.min(dim=1, keepdim=True).values == top)[:, 0]
    maxima = flat_maps == top
    near_flat = near.reshape(n, -1)
    first = flat_maps.argmax(dim=1)
    if ties == "all":
        hits = (near_flat | ~maxima).all(dim=1)
    elif ties == "any":
        hits = (near_flat & maxima).any(dim=1)
    else:
        hits = near_flat.gather(1, first[:, None])[:, 0]
    hits = hits & ~flat
    points = torch.stack([first // width, first % width], dim=1)
    return PointingResult(
        hits=hits.numpy(),
        points=points.numpy(),
        flat=flat.numpy(),
        area=truth.reshape(n, -1).double().mean(dim=1).numpy(),
        tolerance=tolerance,
        ties=ties,
    )


def _dilate(truth: torch.Tensor, radius: float) -> torch.Tensor:
    """Pixels within Euclidean distance ``radius`` of a true pixel of each mask."""
    reach = math.floor(radius)
    if reach == 0 or not truth.any():
        return truth.clone()
    offsets = torch.arange(-reach, reach + 1, dtype=torch.float64)
    disk = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).double()
    counts = F.conv2d(truth[:, None].double(), disk[None, None], padding=reach)
    return counts[:, 0] > 0.5


def energy_pointing_game(saliency: SaliencyLike, ground_truth: Any) -> EnergyResult:
    """The energy-based pointing game (Score-CAM, Wang et al. 2020): the share of each
    map's energy that lies on the ground truth.

    ``E_i = max(L_i, 0)`` (negative values carry no energy) and
    ``share_i = Σ_{p ∈ G_i} E_i(p) / Σ_p E_i(p)``, in [0, 1]; ``mean = (1/N) Σ_i share_i``.
    A map with no energy (all values <= 0, such as the all-zero ``maps`` of a constant
    explanation) puts none on the object: its share is 0 (not NaN, so it lowers the mean
    instead of hiding), and ``zero_energy`` marks it.

    Args:
        saliency: an ``Explanation`` (its ``maps``) or ``(N, H, W)`` maps.
        ground_truth: ``(N, H, W)`` boolean masks, or ``(N, 4)`` boxes ``(x0, y0, x1, y1)``
            with ``x1, y1`` exclusive.

    Returns:
        An ``EnergyResult`` with ``shares`` (N,), ``mean`` and ``zero_energy``.

    Example:
        >>> import torch
        >>> maps = torch.tensor([[[3.0, 1.0], [0.0, -2.0]]])
        >>> mask = torch.tensor([[[True, False], [False, True]]])
        >>> energy_pointing_game(maps, mask).shares.tolist()  # 3 / (3 + 1)
        [0.75]
    """
    maps = as_saliency(saliency)
    n, height, width = maps.shape
    truth = as_ground_truth(ground_truth, n, (height, width))
    energy = maps.clamp_min(0.0).reshape(n, -1)
    total = energy.sum(dim=1)
    inside = (energy * truth.reshape(n, -1)).sum(dim=1)
    zero = total <= 0
    shares = torch.where(zero, torch.zeros_like(total), inside / torch.where(zero, 1.0, total))
    return EnergyResult(
        shares=shares.numpy(),
        zero_energy=zero.numpy(),
        area=truth.reshape(n, -1).double().mean(dim=1).numpy(),
    )
