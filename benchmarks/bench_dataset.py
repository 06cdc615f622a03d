"""Throughput of ``xai.explain_dataset`` on the Fashion-MNIST test set, against the
model's own forward pass on the same batches.

For each method and batch size it times, in turn within each round (so that a busy
machine slows all alike), over the whole test set (10,000 images, the embedded model):

* ``forward``: ``model(x)`` under ``torch.no_grad()`` on every batch, read from the same
  source as the run (uint8 pixels scaled to [0, 1]);
* ``explain``: ``xai.explain`` on every batch, results dropped;
* ``store``: the whole ``xai.explain_dataset`` call into a new zarr store on local disk
  (data read, explained, top-5 computed, every array written, done flags).

and prints the median images/s and the median of each round's ratio store / forward
(with its range over the rounds: this machine's speed drifts by tens of percent over
minutes, and a round's runs are seconds apart). With Ray installed, the same run on the
Ray engine (a local cluster of this machine's CPUs, started before timing).

    python benchmarks/bench_dataset.py [--quick] [--rounds 3] [--no-ray]

Without Debian's dataset-fashion-mnist the data is 10,000 random images (``--quick``:
2,000), which costs the model the same.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import xai
from xai.data.sources import as_source


def data(quick: bool) -> tuple[object, str]:
    n = 2_000 if quick else 10_000
    try:
        xai.data.find_root("fashion-mnist")
    except xai.XAIError:
        return torch.rand(n, 1, 28, 28), f"{n:,} random 1x28x28 images"
    if quick:
        images = xai.data.load("fashion-mnist", split="test").tensors()[0][:n]
        return images, f"the first {n:,} Fashion-MNIST test images"
    return "fashion-mnist:test", "the 10,000 Fashion-MNIST test images"


def paired(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Each function's wall time in each round, the functions run one after another
    within a round (after one warm-up call each), so that a round's ratios compare runs
    made seconds apart."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            began = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run (tests use it)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--methods", default="gradcam,cam,gradcam++")
    parser.add_argument("--batch-sizes", default="64,256,1024")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    parser.add_argument(
        "--dir",
        help="where the stores go (default: a new folder in the system's temporary "
        "folder, on disk; /dev/shm puts them in memory, leaving the disk out)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    model = xai.models.pretrained()
    spec, described = data(args.quick)
    source = as_source(spec)
    n = len(source)
    folder = Path(tempfile.mkdtemp(prefix="xai-bench-dataset-", dir=args.dir))
    methods = args.methods.split(",") if not args.quick else ["gradcam"]
    sizes = [int(b) for b in args.batch_sizes.split(",")] if not args.quick else [256]
    counter = itertools.count()
    print(
        f"## explain_dataset on {described} (embedded GAPCNN, "
        f"{torch.get_num_threads()} threads), stores in {folder.parent}\n"
    )
    print(
        "| method | batch | forward img/s | explain img/s | store img/s | "
        "store / forward (median of rounds, range) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    try:
        for method in methods:
            for b in sizes:
                cam = xai.explainer(model, method)

                def forward(b: int = b) -> None:
                    with torch.no_grad():
                        for i in range(0, n, b):
                            model(source.batch(i, min(i + b, n)).x)

                def explain(b: int = b, cam: object = cam) -> None:
                    for i in range(0, n, b):
                        cam(source.batch(i, min(i + b, n)).x)  # type: ignore[operator]

                def store(b: int = b, method: str = method) -> None:
                    # A new store each time, as a run makes; earlier ones are deleted
                    # after the race, so that no timed run pays for a deletion.
                    xai.explain_dataset(
                        model,
                        spec,
                        method,
                        store=folder / f"s{next(counter)}.zarr",
                        batch_size=b,
                        progress=False,
                    )

                times = paired(
                    {"forward": forward, "explain": explain, "store": store},
                    rounds=args.rounds if not args.quick else 1,
                )
                rate = {k: n / statistics.median(v) for k, v in times.items()}
                # This machine's speed drifts by tens of percent over minutes: the ratio
                # is the median of each round's own ratio (runs seconds apart).
                ratios = [f / s for f, s in zip(times["forward"], times["store"], strict=True)]
                spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
                last = sorted(folder.glob("s*.zarr"), key=lambda p: int(p.stem[1:]))
                for old in last[:-1]:
                    shutil.rmtree(old)
                print(
                    f"| {method} | {b} | {rate['forward']:,.0f} | {rate['explain']:,.0f} | "
                    f"{rate['store']:,.0f} | {statistics.median(ratios):.2f}x ({spread}) |",
                    flush=True,
                )
        newest = max(folder.glob("s*.zarr"), key=lambda p: int(p.stem[1:]))
        size = sum(f.stat().st_size for f in newest.rglob("*") if f.is_file())
        print(
            f"\nstore on disk: {size / 2**20:.1f} MiB for {n:,} images, one method "
            f"(maps {n:,} x 28 x 28 float32, raw 14 x 14, top-5, labels)\n"
        )
        if not args.no_ray:
            ray_rows(model, spec, n, folder, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ray_rows(model: torch.nn.Module, spec: object, n: int, folder: Path, args: object) -> None:
    try:
        import ray
    except ImportError:
        print("(Ray is not installed: pip install 'xai-toolkit[ray]' for the Ray rows)")
        return
    import os
    import time

    cpus = os.cpu_count() or 1
    began = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    started = time.perf_counter() - began
    print(f"## The Ray engine (a local cluster of {cpus} CPUs, started in {started:.1f} s)\n")
    print("| engine | workers | batch | img/s | vs local engine |")
    print("|---|---:|---:|---:|---:|")
    try:
        b = 256 if not args.quick else 512  # type: ignore[attr-defined]
        local = xai.explain_dataset(
            model, spec, store=folder / "l.zarr", batch_size=b, overwrite=True, progress=False
        )
        t_local = local.attrs["seconds_last_run"]
        print(f"| local | 1 | {b} | {n / t_local:,.0f} | 1.00x |")
        for workers in sorted({1, cpus}):
            s = xai.explain_dataset(
                model,
                spec,
                store=folder / "r.zarr",
                batch_size=b,
                overwrite=True,
                progress=False,
                engine="ray",
                workers=workers,
            )
            t = s.attrs["seconds_last_run"]
            print(f"| ray | {workers} | {b} | {n / t:,.0f} | {t_local / t:.2f}x |", flush=True)
    finally:
        ray.shutdown()
    print(
        "\n(The local engine runs the model on all cores; each Ray actor on one. Ray pays "
        "for actor start-up and data transfer, and wins when it has more machines.)"
    )


if __name__ == "__main__":
    main()
