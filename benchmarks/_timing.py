"""Round-robin timing shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

__all__ = ["race"]


def race(fns: dict[str, Callable[[], object]], rounds: int, budget: float) -> dict[str, float]:
    """Median wall time of each function, timed round-robin so drift hits all alike.

    Each function runs once to warm up; then whole rounds (every function once, in turn)
    repeat until ``rounds`` rounds or about ``budget`` seconds, at least one round.
    """
    start = time.perf_counter()
    for fn in fns.values():
        fn()
    one_round = time.perf_counter() - start
    rounds = max(1, min(rounds, int(budget / max(one_round, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) for name, values in samples.items()}
