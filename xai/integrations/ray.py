"""The Ray engine of ``xai.explain_dataset``: the same run on Ray Data, across a cluster.

The chunks to compute become a Ray dataset of chunk numbers; ``map_batches`` sends them
to a pool of actors. Each actor builds the model once, from a factory (an ``xai.models``
architecture's own, or ``model_factory=``) and the weights, which travel once through
Ray's object store as tensors (the model is never pickled as code or as a closure), builds
the explainers once, then for each chunk number reads its samples from the data source,
explains them and writes them into the zarr store itself. Actors write disjoint chunks
(one chunk per batch, chunk-aligned in every array), each whole before its ``done`` flag,
so a worker killed mid-chunk leaves that chunk not done; Ray restarts the actor and runs
the chunk again, and writing a chunk twice writes the same bytes.

The store must be on a file system every node sees (one machine, or a shared mount).
Ray is imported here only, on first use: ``import xai`` never imports it.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xai.core.errors import XAIOSError, XAITypeError, XAIValueError

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn

    from xai.chunks import Plan

__all__ = ["ensure_ray", "init_ray", "model_factory_of", "require_ray", "run_on_ray"]

INSTALL = "pip install 'xai-toolkit[ray]'"


def require_ray() -> Any:
    """Import ray, or say in one line how to install it."""
    try:
        import ray
    except ImportError:
        from xai.core.errors import XAIImportError

        raise XAIImportError(f"engine='ray' needs Ray: {INSTALL}") from None
    return ray


def ensure_ray(address: str | None = None) -> Any:
    """Ray, connected: the session already started (``ray.init(...)`` by the caller),
    else ``address`` (or $RAY_ADDRESS), else a new local cluster of this machine's CPUs."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    where = address or os.environ.get("RAY_ADDRESS")
    if where:
        _probe(where)
    try:
        init_ray(
            ray,
            address=where,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
        first = " ".join(str(error).split())[:200]
        raise XAIOSError(
            f"cannot reach the Ray cluster at {where!r} ({first}); start it with "
            f"`ray start --head` on its head node and pass that address, or call "
            f"ray.init(...) yourself before explaining"
        ) from None
    return ray


def init_ray(ray: Any, **options: Any) -> None:
    """``ray.init(**options)``, leaving this process's SIGTERM and SIGINT handlers as they
    were: Ray's driver installs its own SIGTERM handler, which would silently replace the
    caller's (the command line's, which turns SIGTERM into a clean exit with status 143),
    and a library does not change its caller's signal handling."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        ray.init(**options)
    finally:
        if threading.current_thread() is threading.main_thread():
            for number, handler in saved.items():
                if handler is not None and signal.getsignal(number) is not handler:
                    signal.signal(number, handler)


def _probe(address: str) -> None:
    """Refuse at once a cluster address nothing answers at (Ray itself waits minutes)."""
    text = address.strip()
    if text in ("auto", "local"):
        return  # Ray finds (or refuses) a cluster on this machine quickly itself
    host, _, port = text.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise XAIValueError(
            f"Ray address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379), "
            f"ray://HOST:PORT, or auto"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except OSError as error:
        raise XAIOSError(
            f"cannot reach the Ray cluster at {address} ({error.strerror or error}); start "
            f"it with `ray start --head` on its head node and pass the address it prints, "
            f"or leave the address out for a local cluster"
        ) from None


def model_factory_of(model: nn.Module, factory: Callable[[], nn.Module] | None) -> Any:
    """A picklable function that builds ``model``'s architecture (weights not included)."""
    if factory is not None:
        return factory
    from xai.models.registry import ARCHITECTURES, build

    name = type(model).__name__.lower()
    config = getattr(model, "config", None)
    if ARCHITECTURES.get(name) is type(model) and isinstance(config, dict):
        return functools.partial(build, name, dict(config))
    raise XAITypeError(
        f"engine='ray' builds the model on each worker from its weights, and cannot know "
        f"how to build a {type(model).__name__}; pass model_factory=, a function returning "
        f"the architecture (e.g. functools.partial(torchvision.models.resnet18, "
        f"num_classes=10)); its weights are sent separately"
    )


def _check_factory(factory: Any, weights: dict[str, Any]) -> None:
    """Build the model here once, before any worker does: a bad factory fails here."""
    from ray import cloudpickle

    try:
        cloudpickle.dumps(factory)
    except Exception as error:
        raise XAITypeError(
            f"model_factory cannot be sent to Ray workers ({type(error).__name__}: {error}); "
            f"pass a module-level function or a functools.partial of one"
        ) from None
    model = factory()
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        first = " ".join(str(error).split())[:300]
        raise XAIValueError(
            f"model_factory builds a model that does not take this model's weights ({first})"
        ) from None


class _ChunkWorker:
    """A Ray Data actor: the model and the explainers built once, then one chunk a call."""

    def __init__(self, factory: Any, weights: Any, plan: Any, path: str) -> None:
        import ray
        import torch

        from xai.chunks import build_explainers
        from xai.store import open_group
        from xai.store_writer import StoreWriter

        torch.set_num_threads(1)  # one CPU per actor: no oversubscription
        weights = ray.get(weights) if isinstance(weights, ray.ObjectRef) else weights
        self.plan: Plan = ray.get(plan) if isinstance(plan, ray.ObjectRef) else plan
        model = factory()
        model.load_state_dict(weights)
        model.eval()
        plan = self.plan
        self.explainers = build_explainers(model, plan.methods, plan.layer, plan.options)
        self.writer = StoreWriter(open_group(Path(path)), Path(path))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from xai.chunks import explain_chunk

        chunks, counts, seconds = [], [], []
        for index in batch["chunk"].tolist():
            began = time.perf_counter()
            result = explain_chunk(self.explainers, self.plan, int(index))
            self.writer.write([result])
            chunks.append(int(index))
            counts.append(result.stop - result.start)
            seconds.append(time.perf_counter() - began)
        return {
            "chunk": np.array(chunks, dtype=np.int64),
            "images": np.array(counts, dtype=np.int64),
            "pid": np.full(len(chunks), os.getpid(), dtype=np.int64),
            "seconds": np.array(seconds),
        }


def run_on_ray(
    model: nn.Module,
    plan: Plan,
    path: Path,
    todo: list[int],
    *,
    progress: bool,
    model_factory: Callable[[], nn.Module] | None = None,
    workers: int | None = None,
    address: str | None = None,
) -> None:
    """Explain the chunks ``todo`` on Ray Data actors, which write them into ``path``."""
    from xai.runner import progress_bar

    ray = ensure_ray(address)
    factory = model_factory_of(model, model_factory)
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    _check_factory(factory, weights)
    if not todo:
        return
    cpus = int(ray.cluster_resources().get("CPU", 1))
    size = max(1, min(workers or cpus, len(todo)))
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # xai's own bar counts images
    context.print_on_execution_start = False
    weights_ref, plan_ref = ray.put(weights), ray.put(plan)  # alive until the run ends
    chunks = ray.data.from_items([{"chunk": i} for i in todo], override_num_blocks=len(todo))
    results = chunks.map_batches(
        _ChunkWorker,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=size),
        num_cpus=1,
        fn_constructor_kwargs={
            "factory": factory,
            "weights": weights_ref,
            "plan": plan_ref,
            "path": str(path.resolve()),
        },
    )  # Ray Data's actor pools restart a killed actor and retry its chunk by default
    layout = plan.layout
    bar = progress_bar(layout.n, layout.n - layout.samples(todo), progress)
    quiet = logging.getLogger("ray.data")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # no "execution finished" lines among xai's output
    try:
        for row in results.iter_rows():
            bar.update(int(row["images"]))
    except Exception as error:
        cause = _cause(error)
        if cause is error:
            raise
        raise cause from None
    finally:
        quiet.setLevel(level)
        bar.close()
        del weights_ref, plan_ref


def _cause(error: Exception) -> BaseException:
    """The xai error a worker raised, without Ray's wrapping."""
    from xai.core.errors import XAIError

    seen: BaseException = error
    for _ in range(8):
        cause = getattr(seen, "cause", None) or seen.__cause__
        if cause is None:
            break
        if isinstance(cause, XAIError):
            return cause
        seen = cause
    return error
