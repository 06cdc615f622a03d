"""``xai.explain_dataset``: explain a whole dataset into an explanation store.

The data is read and explained one batch at a time (``xai.chunks``); each batch becomes
one chunk of every array of a zarr store on disk (``xai.store``), written whole and then
marked done (``xai.store_writer``). A run never holds more than the batch being
explained, whatever the dataset's size; a run that dies (Ctrl-C, SIGKILL, a bad item)
keeps its done chunks, and ``resume=True`` computes only the missing ones. The result
equals an uninterrupted run's: a batch's samples, and so its maps, do not depend on which
chunks ran before.

An engine decides where batches run: ``"local"`` (this process, writing each chunk
between batches) or ``"ray"`` (an actor pool on Ray Data, each worker building the model
and the explainers once and writing its own chunks; see ``xai.integrations.ray``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xai import registry
from xai.chunks import TOP_K, Plan, build_explainers, chunk_target, explain_chunk
from xai.core.errors import XAITypeError, XAIValueError
from xai.core.validate import Boolean, Constraint, Integer, Literal, NoneValue, validate
from xai.store import ExplanationStore, Layout

if TYPE_CHECKING:
    from torch import nn

    from xai.data.sources import Source

__all__ = ["explain_dataset"]

# The constraints of ``explain_dataset``'s options, declared once.
_OPTIONS: dict[str, Sequence[Constraint]] = {
    "batch_size": [Integer(1, 1 << 16)],
    "resume": [Boolean()],
    "overwrite": [Boolean()],
    "progress": [Boolean()],
    "engine": [Literal("local", "ray")],
    "map_dtype": [Literal("float32", "float16")],
    "workers": [Integer(1), NoneValue()],
}


def model_sha256(model: nn.Module) -> str:
    """SHA-256 of the model's weights and buffers (names, dtypes, shapes and bytes)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not isinstance(tensor, torch.Tensor):
            continue
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _target_spec(target: Any, n: int) -> tuple[Any, str]:
    """The target per chunk, and how the store records it."""
    import torch

    from xai.core.targets import Target

    if target is None:
        return None, "top-1"
    if isinstance(target, str):
        if target != "label":
            raise XAIValueError(
                f"target: the only name a dataset run knows is 'label' (each sample's own "
                f"label); got {target!r}. Pass None (top-1), an int, {n} ints or a Target."
            )
        return "label", "label"
    if isinstance(target, bool):
        raise XAITypeError("target must be None, 'label', an int, N ints or a Target; got a bool")
    if isinstance(target, int | np.integer):
        return int(target), f"class {int(target)}"
    if isinstance(target, Target) or callable(target):
        kind = type(target)
        return target, f"{kind.__module__}.{kind.__qualname__}: {target!r}"
    values = np.asarray(target.cpu() if isinstance(target, torch.Tensor) else target)
    if values.shape != (n,) or not np.issubdtype(values.dtype, np.integer):
        raise XAIValueError(
            f"target: expected None, 'label', an int, {n} ints (one per sample) or a "
            f"Target; got {values.dtype} of shape {values.shape}"
        )
    values = values.astype(np.int64)
    return values, f"{n} classes, SHA-256 {hashlib.sha256(values.tobytes()).hexdigest()[:16]}"


def _layout(
    model: nn.Module, source: Source, plan_args: dict[str, Any], batch_size: int, map_dtype: str
) -> tuple[Layout, dict[str, str | None]]:
    """Explain sample 0 with every method: the layers, the raw maps' and logits' shapes."""
    explainers = build_explainers(
        model, plan_args["methods"], plan_args["layer"], plan_args["options"]
    )
    batch = source.batch(0, 1)
    x = batch.x
    if x.ndim != 4:
        raise XAIValueError(
            f"data: sample 0 is of shape {tuple(x.shape[1:])}; expected a (C, H, W) image"
        )
    target = chunk_target(plan_args["target"], batch.labels, 0, 1)
    layers, raw_shapes, top_k = {}, {}, 0
    for method, explain in explainers.items():
        e = explain(x, target=target)
        layers[method] = e.layer
        raw_shapes[method] = (int(e.raw.shape[1]), int(e.raw.shape[2]))
        if e.logits is not None:
            top_k = min(TOP_K, int(e.logits.shape[1]))
    layout = Layout(
        n=len(source),
        batch_size=batch_size,
        input_shape=tuple(int(s) for s in x.shape[1:]),  # type: ignore[arg-type]
        raw_shapes=raw_shapes,
        top_k=top_k,
        labels=source.has_labels,
        ids_are_paths=source.ids_are_paths,
        map_dtype=map_dtype,
    )
    return layout, layers


def _versions() -> dict[str, str]:
    import numpy
    import torch
    import zarr

    import xai

    return {
        "xai": xai.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "zarr": zarr.__version__,
        "python": sys.version.split()[0],
    }


def _model_record(model: nn.Module) -> dict[str, Any]:
    card = getattr(model, "card", None)
    kind = type(model)
    first = next(iter(model.parameters()), None)
    return {
        "class": f"{kind.__module__}.{kind.__qualname__}",
        "sha256": model_sha256(model),
        "parameters": sum(p.numel() for p in model.parameters()),
        "card": card if isinstance(card, dict) else None,
        "device": str(first.device) if first is not None else "cpu",  # where it ran
    }


def _class_names(model: nn.Module, source: Source) -> list[str] | None:
    names = getattr(model, "class_names", None) or source.class_names
    return None if names is None else [str(n) for n in names]


def explain_dataset(
    model: nn.Module,
    data: Any,
    method: str | Sequence[str] = "gradcam",
    *,
    store: str | os.PathLike[str],
    layer: str | nn.Module | None = None,
    target: Any = None,
    batch_size: int = 256,
    resume: bool = False,
    overwrite: bool = False,
    engine: str = "local",
    map_dtype: str = "float32",
    progress: bool = True,
    input_size: tuple[int, int, int] | None = None,
    labels: Any = None,
    model_factory: Callable[[], nn.Module] | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    **options: Any,
) -> ExplanationStore:
    """Explain every sample of a dataset into a zarr store on disk, batch by batch.

    Args:
        model: the classifier; left exactly as it was.
        data: an ``(N, C, H, W)`` float tensor (with ``labels=`` if you have them), a
            map-style torch ``Dataset`` (items ``x`` or ``(x, label)``), a ``DataLoader``
            that reads it in order, a folder of PNG/JPEG images (converted to the model's
            ``input_size``), an MNIST-family IDX image file (its labels file beside it is
            used), or a name such as ``"fashion-mnist:test"``.
        method: a registered method name, or several (``["gradcam", "cam"]``).
        store: the store's path (a folder, e.g. ``"run.zarr"``): new, or a store this
            function made (see ``resume`` and ``overwrite``); anything else is refused.
        layer: as for ``xai.explain`` (``None``: each method's default layer).
        target: ``None`` (each sample's top-1 class), ``"label"`` (its own label), an
            int, N ints, or a ``xai.targets.Target``.
        batch_size: samples per batch, and per chunk of the store.
        resume: continue a store made by the same run (the same methods, layers,
            options, target, model weights, input shape, data and batch size; anything
            else is refused naming the difference): only chunks not marked done are
            computed.
        overwrite: replace an existing store (made by this function) with a new run.
        engine: ``"local"``, or ``"ray"`` (needs ``pip install 'xai-toolkit[ray]'``; see
            ``xai.integrations.ray``).
        map_dtype: ``"float32"``, or ``"float16"`` for half the disk space.
        progress: a progress bar (images/s, ETA) on stderr.
        input_size: (C, H, W) a folder's images are converted to (default: the model's
            ``input_size`` attribute).
        labels: (N,) labels of a tensor ``data``.
        model_factory: the Ray engine: a picklable function building the model's
            architecture on a worker (the weights travel separately); not needed for
            ``xai.models`` architectures.
        workers: the Ray engine: how many actors (default: the cluster's CPUs).
        ray_address: the Ray engine: the cluster to use when Ray is not initialised yet
            (default: $RAY_ADDRESS, else a new local cluster of this machine's CPUs).
        **options: the methods' own options (as for ``xai.explain``).

    Returns:
        The store, opened read-only (``xai.open_store``).
    """
    from xai.data.sources import as_source

    checked = validate(
        "explain_dataset",
        _OPTIONS,
        batch_size=batch_size,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        engine=engine,
        map_dtype=map_dtype,
        workers=workers,
    )
    batch_size, engine, map_dtype = checked["batch_size"], checked["engine"], checked["map_dtype"]
    methods = _methods(method)
    path = Path(store)
    from xai.store import check_destination

    mode = check_destination(path, resume=resume, overwrite=overwrite)
    if engine == "ray":  # the install hint, or an unreachable cluster, before any work
        from xai.integrations.ray import ensure_ray

        ensure_ray(ray_address)
    source = as_source(
        data, input_shape=input_size or getattr(model, "input_size", None), labels=labels
    )
    n = len(source)
    if n == 0:
        raise XAIValueError("data: the dataset is empty; there is nothing to explain")
    target_value, target_words = _target_spec(target, n)
    plan_args = {
        "methods": methods,
        "layer": layer,
        "options": dict(options),
        "target": target_value,
    }
    layout, layers = _layout(model, source, plan_args, batch_size, map_dtype)
    plan = Plan(source=source, layout=layout, **plan_args)
    model_record = _model_record(model)
    if engine == "ray":  # the workers build their own copies, on their CPUs
        model_record["device"] = "cpu (Ray workers)"
    attrs: dict[str, Any] = {
        "methods": list(methods),
        "layers": layers,
        "options": {k: repr(v) for k, v in sorted(options.items())},
        "target": target_words,
        "model": model_record,
        "model_sha256": model_record["sha256"],
        "input_shape": list(layout.input_shape),
        "n": n,
        "batch_size": batch_size,
        "chunks": layout.chunks,
        "map_dtype": map_dtype,
        "data": source.describe(),
        "class_names": _class_names(model, source),
        "top_k": layout.top_k,
        "versions": _versions(),
        "engine": engine,
    }
    from xai import store as stores

    if mode == "resume":
        group = stores.open_group(path)
        stored = dict(group.attrs["xai"])
        differ = stores.differences(stored, attrs)
        if differ:
            raise XAIValueError(
                f"store: {path} was made by another run, so resume=True cannot continue it: "
                + "; ".join(differ)
                + ". Resume with the same settings, or pass overwrite=True to start again."
            )
    else:
        group = stores.create(path, layout, attrs, overwrite=mode == "overwrite")
    todo = [int(i) for i in np.flatnonzero(~stores.done_chunks(group))]
    began = time.perf_counter()
    if engine == "ray":
        from xai.integrations.ray import run_on_ray

        run_on_ray(
            model,
            plan,
            path,
            todo,
            progress=checked["progress"],
            model_factory=model_factory,
            workers=checked["workers"],
            address=ray_address,
        )
    else:
        _run_local(model, plan, group, path, todo, progress=checked["progress"])
    seconds = time.perf_counter() - began
    missing = [int(i) for i in np.flatnonzero(~stores.done_chunks(stores.open_group(path)))]
    if missing:  # pragma: no cover - an engine that returned without every chunk
        raise XAIValueError(
            f"store: chunks {missing[:5]} were not written; run again with resume=True"
        )
    stores.finish(path, {"complete": True, "seconds_last_run": round(seconds, 3)})
    return ExplanationStore(path)


def _methods(method: str | Sequence[str]) -> tuple[str, ...]:
    names = [method] if isinstance(method, str) else list(method)
    if not names or not all(isinstance(m, str) for m in names):
        raise XAITypeError(f"method must be a method name or a list of them; got {method!r}")
    keys = tuple(dict.fromkeys(registry.resolve_name(m) for m in names))
    return keys


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="img",
        unit_scale=False,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
        desc="xai explain-dataset",
    )


def _run_local(
    model: nn.Module, plan: Plan, group: Any, path: Path, todo: list[int], *, progress: bool
) -> None:
    """Explain the chunks in ``todo`` here, writing each into the store as it is done.

    The writes run in this thread, between batches. A writer thread would overlap them
    with the model, but on a small machine it preempts one of the model's own threads
    in the middle of a parallel operation, which then waits for it at its barrier:
    measured on two cores, that cost 10-30 % of the throughput at random, against the
    ~3 % that the writes take here. Only the batch being explained is held in memory.
    A run stopped in any way keeps every chunk written before it.
    """
    from xai.store_writer import StoreWriter

    layout = plan.layout
    done_images = layout.n - layout.samples(todo)
    explainers = build_explainers(model, plan.methods, plan.layer, plan.options)
    writer = StoreWriter(group, path)
    bar = progress_bar(layout.n, done_images, progress)
    try:
        for index in todo:
            result = explain_chunk(explainers, plan, index)
            writer.write([result])
            bar.update(result.stop - result.start)
    finally:
        bar.close()
