"""Round-robin timing and peak-memory measurement shared by the benchmark scripts."""

from __future__ import annotations

import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

__all__ = ["peak_mb", "race", "resident_mb", "worker_peak_mb"]


def race(
    fns: dict[str, Callable[[], object]], rounds: int, budget: float, *, pause: float = 0.0
) -> dict[str, float]:
    """Median wall time of each function, timed round-robin so drift hits all alike.

    Each function runs once to warm up; then whole rounds (every function once, in turn)
    repeat until ``rounds`` rounds or about ``budget`` seconds, at least one round.

    ``pause`` seconds of untimed sleep before each timed call keep one function's
    after-effects out of the next one's time: numpy's OpenBLAS threads busy-wait for a
    while after a linear-algebra call (pytorch-grad-cam's SVD), and a torch forward pass
    started in that window on two cores took 3.5x its time (76 vs 21 ms, measured).
    """
    start = time.perf_counter()
    for fn in fns.values():
        fn()
    one_round = time.perf_counter() - start
    rounds = max(1, min(rounds, int(budget / max(one_round, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            if pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) for name, values in samples.items()}


def resident_mb(field: str) -> float:
    """A memory field of this process (``VmRSS``, ``VmHWM``) in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_mb(fn: Callable[[], object]) -> float:
    """The peak resident memory of one call of ``fn``, in MB above what the process held
    just before it: freed memory returned to the system, the peak (``VmHWM``) reset
    through ``/proc/self/clear_refs``. Warm ``fn`` up first; run it in a fresh process."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = resident_mb("VmRSS")
    fn()
    return resident_mb("VmHWM") - before


def worker_peak_mb(script: str, args: list[str]) -> float | None:
    """Run ``script --worker *args`` in a fresh process, which prints ``{"peak_mb": ...}``
    as its last line; the peak, or ``None`` (and an HTML comment saying why) if it fails."""
    command = [sys.executable, script, "--worker", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        print(
            f"<!-- memory worker {' '.join(args)} failed: "
            f"{done.stderr.strip().splitlines()[-1:]} -->",
            flush=True,
        )
        return None
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"])
