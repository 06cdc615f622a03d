"""Exact Shapley values of a black-box model: xai's ModelGame against shap's Exact
explainer, and against the floor of evaluating the model on every row.

The game: a tanh MLP, f(X) = tanh(X W1) w2 with 32 hidden units, one instance, a 100-row
background; v(S) is the mean of f over the background with the features in S taken from
the instance. Any exact method must evaluate f on all 2^n x 100 rows: that is the floor.

Every measurement runs in a fresh process, so that its peak resident memory (ru_maxrss)
is its own:

    python benchmarks/bench_shapley.py            # n = 10 to 16 with shap, 20 alone, start-up
    python benchmarks/bench_shapley.py --quick    # n = 10 alone: no n = 20, no start-up
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

HIDDEN, BACKGROUND, SEED = 32, 100, 0


def problem(n: int, hidden: int = HIDDEN) -> tuple[Any, Any, Any]:
    """A tanh MLP with ``hidden`` units, one instance and BACKGROUND rows (seeded)."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    W1 = rng.normal(size=(n, hidden)) / np.sqrt(n)
    w2 = rng.normal(size=hidden)
    x = rng.normal(size=n)
    background = rng.normal(size=(BACKGROUND, n))

    def f(X: Any) -> Any:
        return np.tanh(X @ W1) @ w2

    return f, x, background


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------- workers


def work_floor(n: int) -> dict[str, Any]:
    """f alone on all 2^n x 100 rows, in the same 65,536-row batches ModelGame uses."""
    import numpy as np

    f, x, background = problem(n)
    rows_total = (1 << n) * BACKGROUND
    batch = 1 << 16
    rng = np.random.default_rng(1)
    block = np.where(
        rng.random((batch, n)) < 0.5, x, np.tile(background, (batch // 100 + 1, 1))[:batch]
    )
    start = time.perf_counter()
    done = 0
    while done < rows_total:
        size = min(batch, rows_total - done)
        f(block[:size])
        done += size
    return {"seconds": time.perf_counter() - start, "peak_mb": peak_mb()}


def work_xai(n: int) -> dict[str, Any]:
    import numpy as np

    import xai

    f, x, background = problem(n)
    inside = [0.0]

    def timed(X: Any) -> Any:  # the floor measured in the same run: time spent inside f
        t = time.perf_counter()
        y = f(X)
        inside[0] += time.perf_counter() - t
        return y

    start = time.perf_counter()
    r = xai.exact_shapley(xai.shapley.ModelGame(timed, x, background), max_features=max(20, n))
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "in_f": inside[0],
        "peak_mb": peak_mb(),
        "values": np.asarray(r.values).tolist(),
        "efficiency": float(r.base_value + r.values.sum() - r.full_value),
    }


def work_shap(n: int) -> dict[str, Any]:
    import numpy as np
    import shap

    f, x, background = problem(n)
    masker = shap.maskers.Independent(background, max_samples=BACKGROUND)
    explainer = shap.explainers.Exact(f, masker)
    explainer(x[None, :], silent=True)  # warm: numba compiles on the first call (~10 s)
    start = time.perf_counter()
    out = explainer(x[None, :], max_evals=max(100_000, 2**n + 2), silent=True)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": peak_mb(), "values": np.asarray(out.values[0]).tolist()}


WORKERS = {"floor": work_floor, "xai": work_xai, "shap": work_shap}

PROCESS_XAI = """
import numpy as np, xai
rng = np.random.default_rng(0)
W1 = rng.normal(size=(10, 32)); w2 = rng.normal(size=32)
f = lambda X: np.tanh(X @ W1) @ w2
r = xai.exact_shapley(xai.shapley.ModelGame(f, rng.normal(size=10), rng.normal(size=(100, 10))))
print(r.values.sum())
"""

PROCESS_SHAP = """
import numpy as np, shap
rng = np.random.default_rng(0)
W1 = rng.normal(size=(10, 32)); w2 = rng.normal(size=32)
f = lambda X: np.tanh(X @ W1) @ w2
x, background = rng.normal(size=10), rng.normal(size=(100, 10))
out = shap.explainers.Exact(f, shap.maskers.Independent(background, max_samples=100))(x[None])
print(out.values.sum())
"""


def run_worker(name: str, n: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--n", str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def whole_process(code: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return min(times)


def best(name: str, n: int, rounds: int) -> dict[str, Any]:
    return min((run_worker(name, n) for _ in range(rounds)), key=lambda r: r["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-shap", action="store_true")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.n)))
        return

    import numpy as np

    sizes = [10] if args.quick else list(range(10, 17))
    rounds = 1 if args.quick else 3
    print(
        f"f(X) = tanh(X W1) w2, {HIDDEN} hidden units, one instance, {BACKGROUND} "
        f"background rows; every run is a fresh process; seconds are the best of {rounds} "
        f"(floor and xai alternate) and of {1 if args.quick else 2} for shap (after a warm-up "
        "call in the same process); memory is the peak resident set of the whole process\n"
    )
    print(
        "| n | floor s | xai s | xai / floor | xai / time in f | shap s | shap / xai "
        "| xai MB | shap MB | max abs(xai - shap) | xai efficiency gap |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        floors, runs = [], []
        for _ in range(rounds):  # alternate, so that a busy machine slows both alike
            floors.append(run_worker("floor", n))
            runs.append(run_worker("xai", n))
        floor = min(floors, key=lambda r: r["seconds"])
        ours = min(runs, key=lambda r: r["seconds"])
        cells = [
            f"{n}",
            f"{floor['seconds']:.3f}",
            f"{ours['seconds']:.3f}",
            f"{ours['seconds'] / floor['seconds']:.2f}",
            f"{ours['seconds'] / ours['in_f']:.3f}",
        ]
        if args.skip_shap:
            cells += ["-", "-", f"{ours['peak_mb']:.0f}", "-", "-"]
        else:
            theirs = best("shap", n, 1 if args.quick else 2)
            diff = np.abs(np.array(ours["values"]) - np.array(theirs["values"])).max()
            cells += [
                f"{theirs['seconds']:.3f}",
                f"{theirs['seconds'] / ours['seconds']:.1f}",
                f"{ours['peak_mb']:.0f}",
                f"{theirs['peak_mb']:.0f}",
                f"{diff:.1e}",
            ]
        cells.append(f"{ours['efficiency']:.1e}")
        print("| " + " | ".join(cells) + " |", flush=True)
    if not args.quick:
        big = run_worker("xai", 20)
        print(
            f"\nn = 20, xai alone ({1 << 20:,} coalitions, {(1 << 20) * BACKGROUND:,} model "
            f"rows): {big['seconds']:.1f} s, {big['seconds'] / big['in_f']:.3f} x the time "
            f"spent inside f, peak {big['peak_mb']:.0f} MB, efficiency gap "
            f"{big['efficiency']:.1e}"
        )
    if not args.skip_shap and not args.quick:
        repeats = 3
        ours_process = whole_process(PROCESS_XAI, repeats)
        shap_process = whole_process(PROCESS_SHAP, repeats)
        print(
            f"\nwhole process, imports included, one row at n = 10 (best of {repeats}): "
            f"xai {ours_process:.2f} s, shap {shap_process:.2f} s, "
            f"shap / xai = {shap_process / ours_process:.1f}"
        )


if __name__ == "__main__":
    main()
