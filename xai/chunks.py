"""What any engine of ``xai.explain_dataset`` does with one chunk: read its samples from
the data source, explain them with every method, and gather the store's values for it
(maps, raw maps, targets, scores, the top-5 of the explained forward pass).

The local engine (``xai.runner``) and the Ray actors (``xai.integrations.ray``) both call
``explain_chunk``; a ``Plan`` is all a worker needs besides the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from xai.core.errors import XAIValueError
from xai.store import Layout
from xai.store_writer import ChunkResult

if TYPE_CHECKING:
    from torch import nn

    from xai.data.sources import Source

__all__ = ["TOP_K", "Plan", "build_explainers", "chunk_target", "explain_chunk"]

TOP_K = 5


@dataclass(frozen=True)
class Plan:
    """What a worker needs to explain any chunk: everything but the model's weights."""

    source: Source
    methods: tuple[str, ...]
    layer: Any
    options: dict[str, Any]
    target: Any  # None | int | "label" | (N,) int64 array | a Target or callable
    layout: Layout


def chunk_target(target: Any, labels: np.ndarray | None, start: int, stop: int) -> Any:
    """The ``target=`` of ``xai.explain`` for samples start..stop-1 (their ``labels``)."""
    if isinstance(target, str):  # "label"
        if labels is None:
            raise XAIValueError(
                "target='label' explains each sample's own label, but the data has no labels"
            )
        return labels.tolist()
    if isinstance(target, np.ndarray):
        return target[start:stop].tolist()
    return target


def build_explainers(
    model: nn.Module, methods: Sequence[str], layer: Any, options: dict[str, Any]
) -> dict[str, Any]:
    """One explainer per method, built once and reused for every chunk."""
    from xai.api import explainer

    return {m: explainer(model, m, layer, **options) for m in methods}


def explain_chunk(explainers: dict[str, Any], plan: Plan, index: int) -> ChunkResult:
    """Read and explain chunk ``index`` (samples ``plan.layout.rows(index)``)."""
    import torch

    start, stop = plan.layout.rows(index)
    batch = plan.source.batch(start, stop)
    _check_batch(tuple(batch.x.shape), plan.layout, start, stop)
    target = chunk_target(plan.target, batch.labels, start, stop)
    dtype = np.float16 if plan.layout.map_dtype == "float16" else np.float32
    maps, raw, explained = {}, {}, []
    for method, explain in explainers.items():
        try:
            e = explain(batch.x, target=target)
        except XAIValueError as error:  # say which samples of the dataset it is about
            raise XAIValueError(
                f"data: samples {start}..{stop - 1} (sample k of this batch is sample "
                f"{start} + k): {error} The chunks before sample {start} are kept "
                f"(resume=True continues from there)."
            ) from error
        explained.append(e)
        maps[method] = e.maps.numpy().astype(dtype, copy=False)
        raw[method] = e.raw.numpy()
    first = explained[0]  # every method explains the same targets, with the same scores
    top = probabilities = None
    if plan.layout.top_k and first.logits is not None:
        p = torch.softmax(first.logits.double(), dim=1)
        values, classes = p.topk(plan.layout.top_k, dim=1)
        top, probabilities = classes.numpy(), values.float().numpy()
    return ChunkResult(
        index=index,
        start=start,
        stop=stop,
        ids=batch.ids,
        labels=batch.labels,
        targets=first.targets.numpy(),
        scores=first.scores.numpy(),
        top=top,
        probabilities=probabilities,
        maps=maps,
        raw=raw,
    )


def _check_batch(shape: tuple[int, ...], layout: Layout, start: int, stop: int) -> None:
    expected = (stop - start, *layout.input_shape)
    if shape != expected:
        raise XAIValueError(
            f"data: samples {start}..{stop - 1} come as {shape}, expected {expected} like "
            f"sample 0; every sample of a dataset run has one shape. The chunks before "
            f"sample {start} are kept (resume=True continues from there)."
        )
