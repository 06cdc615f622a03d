"""The computations behind ``write_report`` over a dataset run's store.

Opening a store (an incomplete one is refused, naming its missing chunks), its
per-sample facts read once (``_Run``: labels, predicted class, confidence, the grouping
of the class means), per class the mean maps and mean image (``class_mean_maps``, read
chunk by chunk), per predicted class the most and least confident rows
(``confident_rows``), and where the run's images can be read again (``_images``). The
figures and the summary that use them are in ``xai.viz.report``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xai.core.errors import XAIError, XAIValueError
from xai.core.validate import Integer, validate

if TYPE_CHECKING:
    from xai.data.sources import Source
    from xai.store import ExplanationStore

__all__ = ["class_mean_maps", "confident_rows"]


def _open(store: Any) -> ExplanationStore:
    """The store, opened; an incomplete one is refused, naming its missing chunks."""
    from xai.store import ExplanationStore, open_store

    opened = store if isinstance(store, ExplanationStore) else open_store(store)
    if not opened.complete:
        missing = opened.missing_chunks()
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        what = (
            f"{len(missing)} of its {opened.attrs.get('chunks', '?')} chunks are missing ({shown})"
            if missing
            else "its run did not finish"
        )
        raise XAIValueError(
            f"store: {opened.path} is not complete: {what}. Resume the run to fill it "
            f"(xai.explain_dataset(..., resume=True), or `xai explain-dataset ... --resume` "
            f"with the same options), then write the report"
        )
    return opened


@dataclass(frozen=True)
class _Run:
    """A complete store's per-sample facts, each read once."""

    store: ExplanationStore
    labels: np.ndarray | None
    predicted: np.ndarray  # top5[:, 0]; the explained class without class scores
    confidence: np.ndarray  # top5_probabilities[:, 0]; the score without them
    word: str  # "p" (a probability) or "score"
    groups: np.ndarray  # the class of the mean maps: the label, else the prediction
    grouped_by: str
    classes: int  # K

    def name(self, index: int) -> str:
        names = self.store.class_names or ()
        return str(names[index]) if 0 <= index < len(names) else f"class {index}"


def _facts(store: Any) -> _Run:
    opened = _open(store)
    labels, top, probabilities = opened.labels, opened.top5, opened.top5_probabilities
    if top is not None and probabilities is not None:
        predicted, confidence, word = top[:, 0], probabilities[:, 0].astype(np.float64), "p"
    else:
        predicted, confidence, word = opened.targets, opened.scores.astype(np.float64), "score"
    if labels is not None:
        groups, grouped_by = labels, "true label"
    elif top is not None:
        groups, grouped_by = predicted, "predicted class (the data had no labels)"
    else:
        groups, grouped_by = predicted, "explained class (no labels, no class scores)"
    seen = [a for a in (labels, top, predicted) if a is not None and a.size]
    largest = max((int(a.max()) for a in seen), default=-1)
    classes = max(len(opened.class_names or ()), largest + 1, 1)
    return _Run(opened, labels, predicted, confidence, word, groups, grouped_by, classes)


def _class_means(
    run: _Run, methods: list[str], source: Source | None
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None]:
    """One pass, chunk by chunk: per class, each method's mean map and the mean image."""
    store, count = run.store, run.classes
    height, width = store.maps(methods[0]).shape[1:]
    sums = {m: np.zeros((count, height * width)) for m in methods}
    image_sum: np.ndarray | None = None
    counts = np.zeros(count, dtype=np.int64)
    step = int(store.attrs["batch_size"])
    for start in range(0, len(store), step):
        stop = min(start + step, len(store))
        hot = (run.groups[None, start:stop] == np.arange(count)[:, None]).astype(np.float64)
        counts += hot.sum(axis=1).astype(np.int64)
        for m in methods:
            block = np.asarray(store.maps(m)[start:stop], dtype=np.float64)
            sums[m] += hot @ block.reshape(stop - start, -1)
        if source is not None:
            x = np.asarray(source.batch(start, stop).x.detach().cpu(), dtype=np.float64)
            if image_sum is None:
                image_sum = np.zeros((count, x[0].size))
            image_sum += hot @ x.reshape(stop - start, -1)
    divisor = np.maximum(counts, 1)[:, None]
    means = {m: (s / divisor).reshape(count, height, width) for m, s in sums.items()}
    image_means = None
    if image_sum is not None and source is not None:
        image_means = (image_sum / divisor).reshape(count, *source.sample_shape)
    return means, counts, image_means


def class_mean_maps(store: Any, method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the mean of ``method``'s maps over the class's samples.

    Samples are grouped by true label (by predicted class, ``top5[:, 0]``, when the
    store has no labels). Read chunk by chunk.

    Returns:
        ``(means, counts)``: ``(K, H, W)`` float64 means (zero for a class with no
        sample) and ``(K,)`` sample counts, K classes.
    """
    run = _facts(store)
    key = run.store._method(method)
    means, counts, _ = _class_means(run, [key], None)
    return means[key], counts


def _per_class(value: Any, where: str) -> int:
    return int(validate(where, {"per_class": [Integer(1, 50)]}, per_class=value)["per_class"])


def confident_rows(store: Any, per_class: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per predicted class, the rows of its most and its least confident samples.

    Confidence is ``top5_probabilities[:, 0]`` (``scores`` when the store has no class
    probabilities). Entry c is ``(most, least)``: the ``per_class`` rows predicted as c
    with the highest confidence, highest first, and the ``per_class`` with the lowest,
    lowest first, drawn from the rest (a class of fewer than ``2 * per_class`` samples
    shows each once). Ties keep row order.
    """
    return _confident(_facts(store), _per_class(per_class, "confident_rows"))


def _confident(run: _Run, per_class: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for c in range(run.classes):
        rows = np.flatnonzero(run.predicted == c)
        most = rows[np.argsort(-run.confidence[rows], kind="stable")][:per_class]
        rest = np.setdiff1d(rows, most)  # in row order
        out.append((most, rest[np.argsort(run.confidence[rest], kind="stable")][:per_class]))
    return out


def _images(store: ExplanationStore, images: Any) -> tuple[Source | None, str | None]:
    """Where the inputs can be read again, or why not (a note for the figures)."""
    from xai.data.sources import FolderSource, as_source

    shape = tuple(store.attrs["input_shape"])
    if images is not None:
        source = as_source(images)
        if len(source) != len(store) or tuple(source.sample_shape) != shape:
            raise XAIValueError(
                f"images: {len(source)} samples of shape {tuple(source.sample_shape)}; the "
                f"store explains {len(store)} of shape {shape}. Pass the data of the run"
            )
        return source, None
    data = store.attrs.get("data") or {}
    kind = data.get("kind")
    try:
        if kind == "named":
            source = as_source(str(data["name"]))
        elif kind == "idx":
            source = as_source(Path(data["path"]))
        elif kind == "folder":
            invert = "inverted" in str(data.get("preprocessing", ""))
            source = FolderSource(Path(data["path"]), shape, invert=invert)
            if [str(p) for p in source.paths] != [str(i) for i in store.ids]:
                return None, f"images not shown: the files in {data['path']} changed since the run"
        else:
            return None, (
                f"images not shown: the run's data (a {kind}) is not kept in the store; "
                f"pass images= to draw them"
            )
    except (XAIError, OSError) as error:
        return None, f"images not shown: {' '.join(str(error).split())[:120]}"
    if len(source) != len(store) or tuple(source.sample_shape) != shape:
        return None, f"images not shown: the run's data ({kind}) changed since the run"
    return source, None
