"""Every benchmark in turn, one markdown report on standard output (and ``--out``).

    python benchmarks/run_all.py [--quick] [--out benchmarks/results.md]

Each script runs as its own process with the same interpreter, so run this with the
benchmark environment's python (benchmarks/README.md) to include pytorch-grad-cam.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "bench_cam.py",
    "bench_peers.py",
    "bench_new_methods.py",
    "bench_vit.py",
    "bench_shapley.py",
    "bench_dataset.py",
    "bench_shapley_ray.py",
    "bench_tabular.py",
    "bench_cli.py",
)


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as info:
            kb = int(next(line.split()[1] for line in info if line.startswith("MemTotal")))
        memory = f", {kb / 2**20:.0f} GiB memory"
    except (OSError, StopIteration):
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}){memory}; Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.system()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    today = datetime.date.today().isoformat()
    parts = [f"# Benchmark report, {today}\n\nMachine: {machine()}\n"]
    print(parts[0], flush=True)
    for script in SCRIPTS:
        command = [sys.executable, str(HERE / script)] + (["--quick"] if args.quick else [])
        shown = f"python benchmarks/{script}" + (" --quick" if args.quick else "")
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        minutes = (time.perf_counter() - start) / 60
        text = f"## `{shown}` ({minutes:.1f} min)\n\n{done.stdout.strip()}\n"
        if done.returncode != 0:
            text += f"\nFAILED with exit code {done.returncode}:\n\n{done.stderr[-2000:]}\n"
        print(text, flush=True)
        parts.append(text)
    if args.out:
        args.out.write_text("\n".join(parts), encoding="utf-8")


if __name__ == "__main__":
    main()
