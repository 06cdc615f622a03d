r"""The score of each mask: the weighting step Score-CAM, SS-CAM and IS-CAM share.

The three methods weight a layer's maps $A^k$ by the target's score on inputs made from
the image $X$ and the map's mask $H^k = \mathrm{minmax}(\mathrm{Up}(A^k))$ (upsampled
to the input size, then min-max normalised to [0, 1]). They differ only in which inputs
are made from $(X, H^k)$ and how many: Score-CAM scores $X \circ H^k$ once, SS-CAM
``V`` noised masks, IS-CAM ``V`` scaled masks. ``mask_scores`` evaluates those inputs in
chunks and returns, per sample and channel, the mean of their scores; a method supplies
a ``Perturbation`` (how the v-th input is made, and how many there are).

Work that cannot change the result is skipped:

* A channel whose map is constant (all zeros after a ReLU, typically) has the zero mask;
  its inputs are the same for every such channel of a sample, so they are evaluated once
  per sample, and not at all when they are the all-zero image whose score the caller
  already has (Score-CAM's baseline pass with ``baseline=0.0``). The mask of a constant
  map is zero by definition (``minmax``), decided here on the exact low-resolution map,
  so an interpolation rounding error of one ulp cannot turn it into a noise mask.
* Channels of one sample whose low-resolution maps are exactly equal have bit-identical
  masks, hence identical inputs: evaluated once, the score shared.

``batch_size=None`` chooses the chunk size: the first chunks of the real work are timed
at a few sizes (``CANDIDATES``, each after one untimed warm-up chunk, and bounded by
``MEMORY_CAP`` bytes of perturbed inputs and by half the work), for images in both
memory layouts, contiguous and channels-last (``torch.channels_last``: the model is not
touched, only the perturbed inputs are laid out so; on a CPU a ResNet-50 runs 10-20 %
faster per image on them at a chunk of 4 to 16; a model that refuses such inputs, e.g.
one calling ``view`` on them, is simply not run on them again). The size and layout
whose fastest timed chunk took the least time per input are kept for the rest and, when
the search finished, remembered per model (weakly) and per input shape, dtype and
device. Per layout the sizes are tried smallest first and the larger ones left out once
one is ``PRUNE`` times slower per input than the best so far, so that little of the real
work runs at a CPU's slow large chunks. The result does not depend on the chunk size or
layout beyond float rounding. The callers may run the inputs through a copy of the
model with its batch norms folded into the convolutions (``runner``; the same function,
see ``xai.core.fold``).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xai.core.maps import minmax, upsample
from xai.core.targets import ResolvedTarget

__all__ = [
    "CANDIDATES",
    "MEMORY_CAP",
    "MaskStats",
    "Perturbation",
    "chosen_chunk",
    "chosen_plan",
    "mask_scores",
]

logger = logging.getLogger(__name__)

#: Chunk sizes timed by ``batch_size=None``, smallest first.
CANDIDATES: tuple[int, ...] = (4, 8, 16, 32, 64)
#: The most bytes of perturbed inputs one automatic chunk may hold.
MEMORY_CAP = 256 * 2**20
#: Each candidate is timed on at least this many inputs (after its warm-up chunk).
TRIAL_INPUTS = 32
#: Larger sizes of a layout are not tried once one is this much slower than its best.
PRUNE = 1.15

_chosen: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], tuple[int, bool]]] = (
    weakref.WeakKeyDictionary()
)
_chosen_lock = threading.Lock()


@dataclass(frozen=True)
class Perturbation:
    """How a method makes its inputs from the image and one mask.

    Attributes:
        variants: ``V``, the inputs made from each mask; their scores are averaged.
        make: ``make(x_rows, masks, variant)`` -> the inputs, from ``x_rows``
            (B, C, H, W) in the model's dtype, ``masks`` (B, H, W) float32 in [0, 1] and
            ``variant`` (B,) int64 in ``0..V-1`` (on the inputs' device).
        zero_is_blank: a zero mask gives the all-zero image for every variant (then one
            input per sample stands for all its constant channels and variants).
    """

    variants: int
    make: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    zero_is_blank: bool


@dataclass(frozen=True)
class MaskStats:
    """What one ``mask_scores`` call evaluated (logged at DEBUG level)."""

    channels: int  # N * C
    constant: int  # channels with a constant map (the zero mask)
    duplicate: int  # channels whose map equals another non-constant channel's
    inputs: int  # perturbed inputs run through the model
    chunk: int  # the chunk size used for the bulk of them
    channels_last: bool  # whether the bulk ran in the channels-last layout


def chosen_chunk(model: nn.Module, x: torch.Tensor) -> int | None:
    """The chunk size ``batch_size=None`` has settled on for ``model`` and inputs like
    ``x``, or ``None`` if none was measured yet."""
    plan = chosen_plan(model, x)
    return None if plan is None else plan[0]


def chosen_plan(model: nn.Module, x: torch.Tensor) -> tuple[int, bool] | None:
    """``(chunk size, channels_last)`` as ``batch_size=None`` settled on them for
    ``model`` and inputs like ``x``, or ``None`` if not measured yet."""
    with _chosen_lock:
        return _chosen.get(model, {}).get(_key(x))


def _key(x: torch.Tensor) -> tuple[Any, ...]:
    return (tuple(x.shape[1:]), x.dtype, x.device)


def mask_scores(
    model: nn.Module,
    x: torch.Tensor,
    A: torch.Tensor,
    target: ResolvedTarget,
    perturbation: Perturbation,
    *,
    softmax: bool,
    batch_size: int | None,
    blank: torch.Tensor | None = None,
    runner: nn.Module | None = None,
) -> tuple[torch.Tensor, MaskStats]:
    """(N, C) float32: per sample n and channel k, the mean over the variants v of the
    target's score of ``perturbation.make(X_n, H^k_n, v)``.

    Args:
        model: the network, already in evaluation mode; called under ``no_grad``.
        x: the (N, C, H, W) inputs.
        A: the layer's (N, K, h, w) maps.
        target: the resolved target (scores rows of mixed samples).
        perturbation: the method's inputs (see ``Perturbation``).
        softmax: score with probabilities where the target has them.
        batch_size: inputs per forward pass, or ``None`` to choose (see the module doc).
        blank: (N,) scores of the all-zero image, if the caller has them.
        runner: the module that runs the perturbed inputs, if not ``model`` itself (the
            same function: ``xai.core.fold.folded(model, ...)``); ``model`` stays the key
            of the remembered chunk size.
    """
    runner = model if runner is None else runner
    n, k = A.shape[:2]
    height, width = int(x.shape[2]), int(x.shape[3])
    variants = perturbation.variants
    flat = A.detach().float().flatten(2)  # (N, K, hw)

    # One entry per distinct mask of each sample: its low-res map, sample and variants.
    bank: list[torch.Tensor] = []
    owners: list[int] = []
    counts: list[int] = []
    entry = torch.full((n, k), -1, dtype=torch.int64)  # -1: the caller's blank score
    constant_total = duplicate_total = 0
    for s in range(n):
        low, high = torch.aminmax(flat[s], dim=1)
        constant = (low == high).cpu()
        varying = (~constant).nonzero()[:, 0]
        if len(varying):
            unique, inverse = torch.unique(
                flat[s, varying.to(flat.device)], dim=0, return_inverse=True
            )
            entry[s, varying] = inverse.cpu() + len(owners)
            bank.append(unique)
            owners += [s] * len(unique)
            counts += [variants] * len(unique)
            duplicate_total += len(varying) - len(unique)
        if bool(constant.any()):
            constant_total += int(constant.sum())
            if perturbation.zero_is_blank and blank is not None:
                continue  # entry stays -1
            entry[s, constant] = len(owners)
            bank.append(flat.new_zeros(1, flat.shape[2]))
            owners.append(s)
            counts.append(1 if perturbation.zero_is_blank else variants)

    scores = torch.zeros(len(owners), dtype=torch.float64)
    chunk, layout = 0, False
    if owners:
        maps = torch.cat(bank).reshape(-1, A.shape[2], A.shape[3])
        owner = torch.tensor(owners, dtype=torch.int64)
        count = torch.tensor(counts, dtype=torch.int64)
        job_entry = torch.repeat_interleave(torch.arange(len(owners)), count)
        first = torch.cumsum(count, 0) - count
        job_variant = torch.arange(len(job_entry)) - first[job_entry]
        job_scores = torch.empty(len(job_entry), dtype=torch.float64)

        def evaluate(start: int, stop: int, channels_last: bool) -> None:
            entries = job_entry[start:stop]
            ids, inverse = torch.unique_consecutive(entries, return_inverse=True)
            masks = minmax(upsample(maps[ids.to(maps.device)], (height, width)))
            masks = masks.to(x.device)[inverse.to(x.device)]
            rows = owner[entries]
            inputs = perturbation.make(
                x[rows.to(x.device)], masks, job_variant[start:stop].to(x.device)
            )
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            out = runner(inputs)
            chunk_scores = target.scores(out, rows, softmax=softmax)
            job_scores[start:stop] = chunk_scores.detach().double().cpu()

        per_input = x[0].numel() * x.element_size()
        chunk, layout = _run_chunks(evaluate, len(job_entry), batch_size, model, x, per_input)
        scores.index_add_(0, job_entry, job_scores)
        scores /= count.double()

    table = torch.cat([scores, torch.zeros(1, dtype=torch.float64)])  # [-1]: blank
    weights = table[entry]
    if blank is not None and bool((entry < 0).any()):
        base = blank.detach().double().cpu()[:, None].expand(n, k)
        weights = torch.where(entry < 0, base, weights)
    stats = MaskStats(
        channels=n * k,
        constant=constant_total,
        duplicate=duplicate_total,
        inputs=int(count.sum()) if owners else 0,
        chunk=chunk,
        channels_last=layout,
    )
    logger.debug("mask_scores: %s", stats)
    return weights.float(), stats


def _run_chunks(
    evaluate: Callable[[int, int, bool], None],
    total: int,
    batch_size: int | None,
    model: nn.Module,
    x: torch.Tensor,
    per_input: int,
) -> tuple[int, bool]:
    """Evaluate jobs ``0..total-1`` in chunks; return the chunk size and layout used for
    the bulk."""
    position = 0

    def step(size: int, channels_last: bool) -> None:
        nonlocal position
        stop = min(position + size, total)
        evaluate(position, stop, channels_last)
        position = stop

    plan: tuple[int, bool] | None
    plan = (batch_size, False) if batch_size is not None else chosen_plan(model, x)
    if plan is None:
        layouts = (False, True) if x.ndim == 4 else (False,)
        plan, complete = _explore(step, total, max(per_input, 1), layouts)
        if complete:  # the search finished: remember the choice
            with _chosen_lock:
                _chosen.setdefault(model, {})[_key(x)] = plan
    size, channels_last = plan
    while position < total:
        step(size, channels_last)
    return size, channels_last


def _explore(
    step: Callable[[int, bool], None], total: int, per_input: int, layouts: tuple[bool, ...]
) -> tuple[tuple[int, bool], bool]:
    """Time the first chunks at each candidate size and layout; return the fastest per
    input, and whether the search finished (the caller then caches it).

    Per layout the sizes are tried smallest first, and the larger ones are left out once
    a size is ``PRUNE`` times slower per input than the best size of that layout so far
    (the cost per input of a network is unimodal in the chunk size in practice: falling
    while the hardware fills, rising once caches overflow), so that little of the real
    work runs at the slow sizes of a CPU. A GPU, whose cost keeps falling, tries them all.
    """
    cap = max(1, MEMORY_CAP // per_input)
    candidates = [c for c in CANDIDATES if c <= cap] or [cap]
    smallest = -(-TRIAL_INPUTS // candidates[0]) + 1
    if candidates[0] * smallest * 2 > total // 2:  # too little work to measure
        return (candidates[len(candidates) // 2], False), False
    rates: dict[tuple[int, bool], float] = {}
    planned = 0
    finished = True
    for layout in layouts:
        best = float("inf")
        for size in candidates:
            repeats = -(-TRIAL_INPUTS // size)
            need = size * (repeats + 1)
            if planned + need > total // 2:
                finished = False
                break
            planned += need
            try:
                step(size, layout)  # warm-up, not timed
            except RuntimeError:
                if not layout:
                    raise
                break  # the model refuses channels-last inputs: keep to contiguous ones
            fastest = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                step(size, layout)
                fastest = min(fastest, time.perf_counter() - start)
            rate = fastest / size  # the fastest chunk: robust to a busy machine
            rates[(size, layout)] = rate
            if rate > PRUNE * best:
                break  # past the best size of this layout
            best = min(best, rate)
        if not finished:
            break
    best_plan = min(rates, key=rates.__getitem__)
    logger.debug(
        "mask_scores: seconds per input by (chunk, channels_last) %s; chose %s",
        rates,
        best_plan,
    )
    return best_plan, finished
