"""Exact Shapley values on Ray: the local engine against Ray with 1 and 2 workers on this
machine, and a scaling model, fitted here, for a 64-core cluster.

The game: a tanh MLP, f(X) = tanh(X W1) w2 with 8 hidden units, one instance, a 100-row
background (a ModelGame); every one of the 2^n coalitions costs 100 model rows. Every
process runs numpy's BLAS on one thread (OMP_NUM_THREADS=1, as Ray gives its workers), so
that a worker is one core. Each Ray setting starts its own cluster, ray.init(num_cpus=k),
runs a small warm-up game (the workers start and import xai), and is shut down after.
Seconds are the best of the rounds; the settings alternate within each round.

The model, for p workers and the default number of tasks (4 per worker):

    T(p) = T_serial + T_parallel / p + overhead * tasks / p + bytes / bandwidth

T_serial is the combination of the table into the values (shapley_from_table, timed
here), T_parallel the evaluation of all coalitions (the local engine's time less
T_serial), overhead the cost of one Ray task (timed here: 2^11 one-coalition tasks
against one task making the same 2^11 calls), bytes the table's (8 per coalition and
output), sent to the driver at the bandwidth of 10 Gbit/s Ethernet on a cluster.

    python benchmarks/bench_shapley_ray.py          # n = 20 and 22, 2 rounds (~6 min)
    python benchmarks/bench_shapley_ray.py --fast   # n = 10, 1 round (~20 s)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_shapley import BACKGROUND, problem

HIDDEN = 8  # hidden units of bench_shapley's tanh MLP: a cheap model, many coalitions
CLUSTER_CORES = 64
NETWORK_BYTES_PER_S = 10e9 / 8  # 10 Gbit/s Ethernet


def game(n: int) -> Any:
    import xai

    f, x, background = problem(n, HIDDEN)
    return xai.shapley.ModelGame(f, x, background)


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def solve(n: int, engine: str) -> tuple[float, Any]:
    import xai

    g = game(n)
    return timed(lambda: xai.exact_shapley(g, max_features=max(20, n), engine=engine))


def tasks_of(n: int, workers: int) -> int:
    from xai.shapley.ray_engine import task_size_for

    chunk = game(n).preferred_chunk
    return -(-(1 << n) // task_size_for(1 << n, chunk, workers))


def zeros(masks: Any) -> Any:
    import numpy as np

    return np.zeros(len(masks))


def task_overhead(count_log2: int) -> float:
    """Seconds per Ray task: 2^k tasks of one coalition against one task of 2^k."""
    from xai.shapley import FunctionGame
    from xai.shapley.ray_engine import evaluate_on_ray

    g = FunctionGame(zeros, n_features=count_log2)
    count = 1 << count_log2
    evaluate_on_ray(g, 1, task_size=count)  # warm
    one, _ = timed(lambda: evaluate_on_ray(g, 1, task_size=count))
    many, _ = timed(lambda: evaluate_on_ray(g, 1, task_size=1))
    return (many - one) / (count - 1)


def combine_seconds(n: int, rounds: int) -> float:
    import numpy as np

    from xai.shapley.exact import shapley_from_table

    v = np.random.default_rng(1).normal(size=1 << n)
    return min(timed(lambda: shapley_from_table(v, n))[0] for _ in range(max(rounds, 2)))


def model_seconds(p: int, serial: float, parallel: float, overhead: float, n: int) -> float:
    tasks = tasks_of(n, p)
    return serial + parallel / p + overhead * tasks / p + 8 * (1 << n) / NETWORK_BYTES_PER_S


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fast", "--quick", dest="fast", action="store_true", help="n = 10, one round (seconds)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"  # before numpy is imported: one core per process

    import numpy as np
    import ray

    sizes = [10] if args.fast else [20, 22]
    rounds = 1 if args.fast else args.rounds
    workers = [1, 2]
    load = os.getloadavg()[0]
    print(
        f"f(X) = tanh(X W1) w2, {HIDDEN} hidden units, one instance, {BACKGROUND} background "
        f"rows (ModelGame); BLAS on one thread per process; {os.cpu_count()} CPUs, load "
        f"average {load:.2f} at the start; seconds are the best of {rounds} round(s), "
        f"cluster start-up and warm-up excluded\n"
    )
    best: dict[tuple[str, int, int], float] = {}
    values: dict[tuple[str, int, int], Any] = {}
    starts: dict[int, float] = {}
    overheads: dict[int, float] = {}

    def record(key: tuple[str, int, int], seconds: float, result: Any) -> None:
        best[key] = min(seconds, best.get(key, float("inf")))
        values[key] = result.values

    for _ in range(rounds):
        for n in sizes:
            record(("local", 1, n), *solve(n, "local"))
        for k in workers:
            started, _ = timed(
                lambda k=k: ray.init(num_cpus=k, include_dashboard=False, log_to_driver=False)
            )
            starts[k] = min(started, starts.get(k, float("inf")))
            solve(10, "ray")  # warm-up: the workers start and import xai
            for n in sizes:
                record(("ray", k, n), *solve(n, "ray"))
            if k == 1:
                cost = task_overhead(8 if args.fast else 11)
                overheads[k] = min(cost, overheads.get(k, float("inf")))
            ray.shutdown()

    print(
        "| n | coalitions | model rows | engine | workers | tasks | seconds | speed-up vs "
        "local | parallel efficiency | max abs(values - local) |"
    )
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        local = best[("local", 1, n)]
        for engine, k in [("local", 1), *(("ray", k) for k in workers)]:
            seconds = best[(engine, k, n)]
            diff = np.abs(values[(engine, k, n)] - values[("local", 1, n)]).max()
            tasks = f"{tasks_of(n, k):,}" if engine == "ray" else "-"
            print(
                f"| {n} | {1 << n:,} | {(1 << n) * BACKGROUND:,} | {engine} | {k} | {tasks} "
                f"| {seconds:.2f} | {local / seconds:.2f} | {local / seconds / k:.2f} "
                f"| {diff:.1e} |",
                flush=True,
            )
    startup = ", ".join(f"{k} worker{'s' if k > 1 else ''} {s:.1f} s" for k, s in starts.items())
    print(f"\nray.init (not timed above): {startup}")

    overhead = overheads[1]
    print(
        f"\nScaling model T(p) = T_serial + T_parallel / p + overhead * tasks / p + bytes / "
        f"bandwidth, fitted on this machine: overhead = {overhead * 1e3:.2f} ms per task "
        f"(one worker); bandwidth {NETWORK_BYTES_PER_S / 1e9:.2f} GB/s (10 Gbit/s Ethernet; "
        f"results stay in shared memory on one machine); tasks = the engine's default, about "
        f"4 per worker\n"
    )
    print(
        "| n | T_serial s (combine) | T_parallel s | p | tasks | predicted s | measured s "
        "| speed-up (measured, else predicted) | parallel efficiency |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        local = best[("local", 1, n)]
        serial = combine_seconds(n, rounds)
        parallel = local - serial
        for p in [*workers, CLUSTER_CORES]:
            predicted = model_seconds(p, serial, parallel, overhead, n)
            measured = best.get(("ray", p, n))
            shown = f"{measured:.2f}" if measured is not None else "-"
            speedup = local / (measured if measured is not None else predicted)
            print(
                f"| {n} | {serial:.3f} | {parallel:.2f} | {p} | {tasks_of(n, p):,} "
                f"| {predicted:.2f} | {shown} | {speedup:.1f} | {speedup / p:.2f} |",
                flush=True,
            )
    for n in sizes:
        floor = combine_seconds(n, rounds) + 8 * (1 << n) / NETWORK_BYTES_PER_S
        print(
            f"\nn = {n}: however many workers, T(p) >= T_serial + bytes / bandwidth = "
            f"{floor:.2f} s, a speed-up of at most {best[('local', 1, n)] / floor:.0f} "
            f"(Amdahl: the combination stays on the driver)"
        )


if __name__ == "__main__":
    main()
