"""Start-up and per-image cost of the ``xai`` command.

Each command runs as a fresh process, the way a user runs it; `python -c pass` is the
floor every Python program pays. Rounds alternate the commands so that drift on a busy
machine hits them alike; the table shows the median and the best of the rounds.

    python benchmarks/bench_cli.py            # 7 rounds
    python benchmarks/bench_cli.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _xai() -> str:
    return str(Path(sys.executable).parent / "xai")


def _commands(folder: Path) -> dict[str, list[str]]:
    import xai

    samples = [str(path) for _, path in xai.models.sample_images()]
    return {
        "python -c pass (floor)": [sys.executable, "-c", "pass"],
        "xai --help": [_xai(), "--help"],
        "xai methods": [_xai(), "methods"],
        "xai explain 1 image, gradcam": [
            _xai(),
            "explain",
            samples[0],
            "-q",
            "--out",
            str(folder / "one"),
        ],
        "xai explain 10 images, gradcam": [
            _xai(),
            "explain",
            *samples,
            "-q",
            "--out",
            str(folder / "ten"),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        commands = _commands(Path(tmp))
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                start = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
    print(f"| command | median (s) | best (s) |  ({args.rounds} rounds, fresh processes)")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} |")


if __name__ == "__main__":
    main()
