"""``explain_rows(engine="ray")``: blocks of rows explained by Ray tasks.

The job (the model function, the background and v(∅)) goes into the object store once;
each task runs the local engine on a contiguous block of rows and returns its values,
f(x) and standard errors; the driver puts them in place as they arrive. A row's values
do not depend on the block it falls in (its table is its own, and a sampled row is seeded
from its index in the whole table), so the result is the local engine's.

Ray is imported only here, when ``engine="ray"`` is asked for.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any

import numpy as np

from xai.core.errors import XAIError
from xai.shapley.ray_engine import _check_picklable, _connect, _cpus, _import_ray

__all__ = ["explain_rows_on_ray"]

# Blocks per CPU where there are that many rows: the CPUs that finish first take the rest.
BLOCKS_PER_CPU = 4


def _block(job: Any, rows: np.ndarray, first_row: int, exact: bool) -> tuple[Any, ...]:
    """On a worker: the local engine on one block of rows."""
    return job.exact(rows) if exact else job.sampled(rows, first_row)


@functools.cache
def _remote(ray: Any) -> Any:
    return ray.remote(_block)


def explain_rows_on_ray(
    job: Any, rows: np.ndarray, exact: bool, workers: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """Values, f(x), standard errors (or None) and coalitions evaluated, for every row."""
    ray = _import_ray()
    _check_picklable(ray, job)  # the model function and background, before starting
    _connect(ray)
    blocks = max(workers or 0, BLOCKS_PER_CPU * _cpus(ray))
    size = max(1, math.ceil(len(rows) / blocks))
    job_ref = ray.put(job)
    remote = _remote(ray)
    pending = {
        remote.remote(job_ref, rows[start : start + size], start, exact): start
        for start in range(0, len(rows), size)
    }
    parts: dict[int, tuple[Any, ...]] = {}
    try:
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            start = pending.pop(ref)
            parts[start] = _get(ray, ref)
    finally:
        for ref in pending:  # an error or an interrupt: stop the rest
            with contextlib.suppress(Exception):
                ray.cancel(ref)
    ordered = [parts[start] for start in sorted(parts)]
    phi = np.concatenate([part[0] for part in ordered])
    full = np.concatenate([part[1] for part in ordered])
    stderr = None if exact else np.concatenate([part[2] for part in ordered])
    return phi, full, stderr, sum(int(part[3]) for part in ordered)


def _get(ray: Any, ref: Any) -> tuple[Any, ...]:
    """A task's result; an xai error it raised (a NaN output) as the model raised it."""
    try:
        return tuple(ray.get(ref))
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, XAIError):
            raise cause from None
        raise
