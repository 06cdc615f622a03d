"""The coalition table of exact Shapley values, evaluated by Ray tasks (``engine="ray"``).

The local engine calls the game on coalitions number 0..2^n-1 in chunks of ``chunk``
(``xai.shapley.exact._evaluate_all``). Here the game goes into Ray's object store once,
and each task evaluates a range of coalition numbers [start, stop) in the very same
calls (``chunk`` coalitions each, at the same boundaries), so the table, and everything
``exact_shapley`` computes from it, is the local engine's. The driver keeps at most a
few tasks per CPU in flight and copies each result into its place in one preallocated
table as it arrives, so memory stays bounded by the table plus those results.

Ray is imported only inside ``evaluate_on_ray``, never on ``import xai``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from typing import Any

import numpy as np

from xai.core.errors import XAIError, XAIImportError, XAITypeError
from xai.integrations._lazy import require
from xai.shapley.exact import _store, _table_for
from xai.shapley.game import Game, coalition_masks

__all__ = ["RayClusterError", "evaluate_on_ray", "task_size_for"]

INSTALL = "xai-toolkit[ray]"
# With no task size given: at least this many tasks per CPU, so that the CPUs that finish
# first take the remaining tasks and none idles at the end ...
TASKS_PER_CPU = 4
# ... but no task larger than this many coalitions (a result of 8 MiB per output), so
# that the results in flight stay small beside the table however large n is.
MAX_TASK = 1 << 20
# Tasks submitted and not yet collected, per CPU: one running and one queued on each.
IN_FLIGHT_PER_CPU = 2


class RayClusterError(XAIError, ConnectionError):
    """The Ray cluster to run on cannot be reached, or a local one cannot be started."""


def _import_ray() -> Any:
    try:
        return require("ray", "ray", INSTALL)
    except XAIImportError as error:
        raise XAIImportError(
            f"exact_shapley(engine='ray'): {error}, or use engine='local'"
        ) from None


def _check_picklable(ray: Any, game: Game) -> None:
    try:
        ray.cloudpickle.dumps(game)
    except Exception as error:  # TypeError for a lock, PicklingError, RecursionError, ...
        raise XAITypeError(
            f"exact_shapley(engine='ray'): the game ({type(game).__name__}) cannot be sent "
            f"to the Ray workers: pickling it fails with {type(error).__name__}: "
            f"{_first_line(error)}. Build the game from module-level functions and "
            f"picklable state (no locks, open files, generators or connections in it or in "
            f"the functions it calls), or use engine='local'."
        ) from None


def _connect(ray: Any) -> None:
    """Use the session already initialised (a test's, a user's ``ray.init(address=...)``);
    else ``ray.init()``: RAY_ADDRESS, else the cluster last started on this machine with
    ``ray start``, else a new local cluster with this machine's CPUs."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS", "").strip() or None
    where = (
        f"the Ray cluster at {address} (RAY_ADDRESS)"
        if address
        else "the Ray cluster last started on this machine with `ray start`, or start a local one"
    )
    try:
        if address:
            _probe(address)  # Ray itself waits minutes for an address nothing answers at
        from xai.integrations.ray import init_ray

        init_ray(ray)  # the caller's SIGTERM and SIGINT handlers kept
    except (OSError, RuntimeError, ValueError, TimeoutError) as error:
        raise RayClusterError(
            f"exact_shapley(engine='ray'): could not reach {where}: {_first_line(error)}. "
            f"Start the cluster with `ray start --head` on its head node (and `ray start "
            f"--address=HEAD:6379` on the others), or call ray.init(address=...) yourself "
            f"before exact_shapley (ray.init(num_cpus=N) for a cluster on this machine), "
            f"or use engine='local'."
        ) from None


def _probe(address: str) -> None:
    """Refuse at once an address nothing answers at (``xai.integrations.ray``'s check,
    shared with the dataset engine)."""
    from xai.integrations.ray import _probe as probe

    probe(address)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def task_size_for(total: int, chunk: int, cpus: int) -> int:
    """Coalitions per task, a multiple of ``chunk``: at least ``TASKS_PER_CPU`` tasks per
    CPU where there are that many chunks, none above ``MAX_TASK`` coalitions (unless one
    chunk is), and never less than one chunk (the game's own preferred call)."""
    calls = math.ceil(total / chunk)
    per_task = max(1, calls // (TASKS_PER_CPU * max(1, cpus)))
    per_task = min(per_task, max(1, MAX_TASK // chunk))
    return per_task * chunk


def _evaluate_range(game: Game, start: int, stop: int, chunk: int) -> list[np.ndarray]:
    """On a worker: the values of coalitions start..stop-1, one array per call of
    ``chunk`` coalitions (the local engine's calls)."""
    return [
        game(coalition_masks(s, min(s + chunk, stop), game.n)) for s in range(start, stop, chunk)
    ]


@functools.cache
def _remote(ray: Any) -> Any:
    return ray.remote(_evaluate_range)


def _cpus(ray: Any) -> int:
    free = int(ray.available_resources().get("CPU", 0))
    return max(1, free or int(ray.cluster_resources().get("CPU", 1)))


def evaluate_on_ray(game: Game, chunk: int, *, task_size: int | None = None) -> np.ndarray:
    """The values of all 2^n coalitions of ``game``, computed by Ray tasks.

    The contract of the local ``_evaluate_all(game, chunk)``: the game is called on
    ``chunk`` coalitions at a time, at the same boundaries; the table has a row per
    coalition number, dtype object for exact (Fraction) games and float64 otherwise.

    Args:
        game: any picklable ``xai.shapley`` game; it is put in the object store once.
        chunk: coalitions per call to the game.
        task_size: coalitions per task, a multiple of ``chunk``. ``None``: at least four
            tasks per available CPU, each at most ``MAX_TASK`` coalitions
            (``task_size_for``).

    Raises:
        XAIImportError: Ray is not installed.
        XAITypeError: the game cannot be pickled.
        RayClusterError: Ray was not initialised and ``ray.init()`` failed.
        XAIError: an error of the game on a worker (a NaN value, a wrong shape), as
            the game raised it.
    """
    ray = _import_ray()
    _check_picklable(ray, game)  # before starting anything
    _connect(ray)
    n = game.n
    total = 1 << n
    cpus = _cpus(ray)
    size = task_size_for(total, chunk, cpus) if task_size is None else task_size
    assert size % chunk == 0, f"task_size {size} is not a multiple of chunk {chunk}"
    in_flight = IN_FLIGHT_PER_CPU * cpus
    remote = _remote(ray)
    game_ref = ray.put(game)
    starts = iter(range(0, total, size))
    pending: dict[Any, int] = {}  # task -> its first coalition number
    first = None  # the task of coalitions from 0: its values fix the table's dtype, shape
    failed: tuple[int, XAIError] | None = None  # the error of the first failing task
    v: np.ndarray | None = None
    try:
        while True:
            while failed is None and len(pending) < in_flight:
                start = next(starts, None)
                if start is None:
                    break
                ref = remote.remote(game_ref, start, min(start + size, total), chunk)
                pending[ref] = start
                first = ref if start == 0 else first
            if not pending:
                break
            if first is not None:  # the local engine starts with it too
                ref, first = first, None
            else:
                [ref], _ = ray.wait(list(pending), num_returns=1)
            start = pending.pop(ref)
            try:
                at = start
                for out in _get(ray, ref):
                    if v is None:
                        v = _table_for(out, total)
                    _store(v, at, out)
                    at += len(out)
            except XAIError as error:
                # Raise the error of the first failing chunk, as the local engine does:
                # wait for the tasks before it, stop those after it.
                if failed is None or start < failed[0]:
                    failed = (start, error)
                for later in [r for r, s in pending.items() if s > start]:
                    del pending[later]
                    _cancel(ray, later)
    finally:
        for ref in pending:  # an interrupt, or a bug in the model: stop the others
            _cancel(ray, ref)
    if failed is not None:
        raise failed[1]
    assert v is not None
    return v


def _cancel(ray: Any, ref: Any) -> None:
    with contextlib.suppress(Exception):
        ray.cancel(ref)


def _get(ray: Any, ref: Any) -> list[np.ndarray]:
    """A task's result; an xai error it raised (a NaN value, say) as the game raised it,
    with its type and message, not wrapped in Ray's ``RayTaskError``."""
    try:
        return list(ray.get(ref))
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, XAIError):
            raise cause from None
        raise  # a bug in the model: Ray's error (an instance of the cause's type too)
