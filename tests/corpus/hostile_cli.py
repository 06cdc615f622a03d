"""The hostile command lines of issue 14, as one corpus: each must end in ONE line on
standard error, exit status 2, within bounded time and memory, with nothing written.

    python -m tests.corpus.hostile_cli [--python PY] [--pythonpath DIR] [--cases a,b]

runs every case against ``PY -m xai`` (by default this interpreter and the checkout it
imports; ``--pythonpath`` another checkout, for a before/after count) and prints a table
and the count of cases that held. ``tests/test_hostile_corpus.py`` runs it on this one.
The files are generated into a temporary folder: the bombs are small on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

TIME_LIMIT = 30.0  # seconds, a fresh interpreter importing torch included
MEMORY_LIMIT = 1024.0  # MB of peak resident memory (torch alone takes ~250)
SAMPLES = Path(__file__).resolve().parents[2] / "xai" / "models" / "weights" / "samples"


@dataclass
class Case:
    name: str
    issue: str  # the issue's words for it
    args: list[str]
    out: str | None = None  # a path that must not exist afterwards
    cwd: str | None = None


class _Payload:
    """Unpickling it would create a file: the malicious pickle's payload."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _csv(path: Path, rows: list[str], features: int = 3) -> str:
    header = ",".join(f"f{i}" for i in range(features)) + ",value"
    path.write_text("\n".join([header, *rows]) + "\n")
    return str(path)


def _full_table(values: list[str]) -> list[str]:
    rows = []
    for mask in range(8):
        bits = [str((mask >> i) & 1) for i in range(3)]
        rows.append(",".join([*bits, values[mask]]))
    return rows


def build(root: Path) -> list[Case]:
    """Write the corpus under ``root`` and return its cases."""
    from tests.corpus import make_images
    from tests.test_hostile_models import GiB, deflated_zeros, torch_archive

    root.mkdir(parents=True, exist_ok=True)
    images = make_images.hostile_files()
    for name in ("bomb-20000x20000.png", "bomb-11691x30000.jpg", "cut-mid-scan.jpg",
                 "too-much-data.png", "claims-9000x9000.png"):  # fmt: skip
        (root / name).write_bytes(images[name])
    out = str(root / "out")
    cases = [
        Case("png bomb", "a 380 KB PNG of 20000x20000 took 3.7 GB",
             ["explain", str(root / "bomb-20000x20000.png"), "--out", out], out),
        Case("jpeg bomb", "a 1 KB JPEG claiming 11691x30000 took 6.6 GB",
             ["explain", str(root / "bomb-11691x30000.jpg"), "--out", out], out),
        Case("jpeg cut mid-scan", "explained with 120 of 200 rows wrong",
             ["explain", str(root / "cut-mid-scan.jpg"), "--out", out], out),
        Case("png too much data", "'IDAT: Too much image data' accepted",
             ["explain", str(root / "too-much-data.png"), "--out", out], out),
        Case("png claiming 9000x9000", "a huge IHDR: cv2.error",
             ["explain", str(root / "claims-9000x9000.png"), "--out", out], out),
        Case("input size 30000x30000", "--input-size 1,30000,30000: 7 GB before the error",
             ["layers", "--input-size", "1,30000,30000"]),
    ]  # fmt: skip

    # model files
    payload, crc = deflated_zeros(4 * GiB)
    bomb = torch_archive(
        root / "bomb.pt",
        {"head.weight": ("0", (GiB,), None)},
        {"0": (GiB, payload, 8, crc, 4 * GiB)},
    )
    card = {
        "architecture": {"name": "gapcnn", "config": {"in_channels": 1, "num_classes": 10}},
        "input_size": [1, 28, 28],
    }
    bomb.with_name(bomb.name + ".json").write_text(json.dumps(card))
    (root / "evil.pkl").write_bytes(pickle.dumps({"w": _Payload(str(root / "ran"))}))
    (root / "nets.py").write_text(
        "import xai\ndef build():\n    return xai.models.GAPCNN(in_channels=1).eval()\n"
    )
    cases += [
        Case("zip-bomb model", "a 4 MB .pt expanding to 4 GiB took 4.3 GB and 15 s",
             ["classes", "--model", str(bomb)]),
        Case("malicious pickle", "a plain .pkl called 'damaged', with a torch warning",
             ["classes", "--model", str(root / "evil.pkl")]),
        Case("layers, wrong channels", "xai layers on a one-channel model: 53-line traceback",
             ["layers", "--model", "nets.py:build", "--input-size", "3,28,28"],
             cwd=str(root)),
    ]  # fmt: skip

    # Shapley tables
    good = ["0", "2", "2", "4", "1.5", "3.5", "3.5", "5.5"]
    duplicated = _full_table(good) + ["1, 1 ,0,-60"]
    huge = _full_table([*good[:7], "1e400"])
    text = _full_table([*good[:7], "abc"])
    nan = _full_table([*good[:7], "nan"])
    (root / "broken.json").write_text('{"features": ["a", "b"],\n "values": [\n  {"coalition": []')
    wide = root / "wide.csv"
    with wide.open("w") as handle:  # 21 features: 2^21 rows, only the header matters now
        handle.write(",".join(f"f{i}" for i in range(21)) + ",value\n")
        handle.write(",".join(["0"] * 21) + ",0\n")
    cases += [
        Case("duplicated coalition", "the last row silently wins: -30, 18, 35/2",
             ["shapley", _csv(root / "dup.csv", duplicated)]),
        Case("value 1e400", "OverflowError", ["shapley", _csv(root / "big.csv", huge)]),
        Case("value 'abc'", "no file or line", ["shapley", _csv(root / "abc.csv", text)]),
        Case("broken json", "no file named", ["shapley", str(root / "broken.json")]),
        Case("nan with --float", "exits 0 and prints nan",
             ["shapley", _csv(root / "nan.csv", nan), "--float"]),
        Case("21 features", "25-39 s and 1 GB, then an option the CLI lacks",
             ["shapley", str(wide)]),
    ]  # fmt: skip

    # output paths and runs
    sample = str(SAMPLES / "7-sneaker.png")
    dangling = root / "dangling"
    dangling.symlink_to(root / "nowhere")
    for sub in ("a", "b"):
        (root / sub).mkdir()
        shutil.copy(sample, root / sub / "x.png")
    (root / "train-out").mkdir()
    cases += [
        Case("dangling symlink --out", "[Errno 17] after the model loads",
             ["explain", sample, "--out", str(dangling)]),
        Case("name clash", "two inputs, one folder: results overwritten",
             ["explain", str(root / "a" / "x.png"), str(root / "b" / "x.png"), "--out", out],
             out),
        Case("train --out a folder", "fails only after training",
             ["train", "--model", "mlp", "--fraction", "0.01", "--epochs", "1", "--out",
              str(root / "train-out")]),
    ]  # fmt: skip
    return cases


@dataclass
class Outcome:
    case: Case
    status: int
    lines: int
    seconds: float
    peak_mb: float
    wrote: bool
    first: str

    @property
    def held(self) -> bool:
        return (
            self.status == 2
            and self.lines == 1
            and self.first.startswith("xai: error:")
            and self.seconds <= TIME_LIMIT
            and self.peak_mb <= MEMORY_LIMIT
            and not self.wrote
        )


_MEASURE = (
    "import resource, subprocess, sys, json\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
    "print(json.dumps({'status': done.returncode, 'stderr': done.stderr, 'peak': peak}))\n"
)


def run_case(case: Case, python: str, env: dict[str, str], flags: list[str]) -> Outcome:
    start = time.monotonic()
    try:
        done = subprocess.run(
            [python, "-c", _MEASURE, python, *flags, "-m", "xai", *case.args],
            capture_output=True, text=True, env=env, cwd=case.cwd, timeout=150,
        )  # fmt: skip
        report = json.loads(done.stdout.strip().splitlines()[-1])
        status, stderr, peak = report["status"], report["stderr"], report["peak"]
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError):
        status, stderr, peak = -1, "timed out or crashed", float("nan")
    seconds = time.monotonic() - start
    lines = [line for line in stderr.strip().splitlines() if line]
    wrote = case.out is not None and Path(case.out).exists()
    if case.out is not None and Path(case.out).exists():
        shutil.rmtree(case.out, ignore_errors=True)
    return Outcome(case, status, len(lines), seconds, peak, wrote, lines[0] if lines else "")


def run_all(python: str, pythonpath: str | None, only: set[str] | None = None) -> list[Outcome]:
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    flags: list[str] = []
    if pythonpath:
        # Without site (-S) this checkout's editable install cannot shadow the other one;
        # the installed packages come in through PYTHONPATH instead.
        import sysconfig

        env["PYTHONPATH"] = os.pathsep.join([pythonpath, sysconfig.get_paths()["purelib"]])
        flags = ["-S"]
    with tempfile.TemporaryDirectory() as folder:
        cases = build(Path(folder) / "corpus")
        chosen = [c for c in cases if only is None or c.name in only]
        for case in chosen:  # never the checkout's own folder: `-m xai` would import it
            case.cwd = case.cwd or str(Path(folder) / "corpus")
        # two at a time: each case is a fresh interpreter, mostly importing torch on one
        # core; its memory is its own (RUSAGE_CHILDREN of its own wrapper process)
        with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            return list(pool.map(lambda c: run_case(c, python, env, flags), chosen))


def report(outcomes: list[Outcome]) -> str:
    rows = [
        "| case | status | stderr lines | seconds | peak MB | wrote | held |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for o in outcomes:
        rows.append(
            f"| {o.case.name} | {o.status} | {o.lines} | {o.seconds:.1f} | {o.peak_mb:.0f} | "
            f"{'yes' if o.wrote else 'no'} | {'yes' if o.held else 'NO'} |"
        )
    held = sum(o.held for o in outcomes)
    rows.append(f"\n{held} of {len(outcomes)} cases ended in one line and exit 2 within bounds")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--pythonpath", help="a checkout to run instead of this one")
    parser.add_argument("--cases", help="comma-separated case names")
    args = parser.parse_args()
    only = set(args.cases.split(",")) if args.cases else None
    print(report(run_all(args.python, args.pythonpath, only)))


if __name__ == "__main__":
    main()
