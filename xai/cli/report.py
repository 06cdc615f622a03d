"""``xai report``: the figures and summary of a dataset run's explanation store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xai.cli._common import HelpFormatter
from xai.core.errors import XAIValueError

__all__ = ["add_parser", "run"]

HELP = """examples:
  xai explain-dataset fashion-mnist:test --method gradcam,cam --store run.zarr
  xai report run.zarr --out report
  xai report run.zarr --out report --method cam --per-class 5

Writes into --out:
  class_means.png   one row per class: its mean image, then each method's mean map
                    over the class's samples (grouped by true label when known)
  confident.png     one row per predicted class: the K most and K least confident
                    samples with the map over the image; mistakes in red
  summary.json      per class: samples, accuracy, mean confidence; methods, layers
  index.html        the figures and the per-class table on one page, for a browser
                    (offline: it links only the files beside it)

The store must be complete: resume an interrupted run first (--resume). Images are
read again from the run's data (a data set name, an IDX file, a folder); a run on a
tensor or dataset in Python shows the maps alone (use xai.viz.report.write_report(...,
images=x) there).
"""

# The most samples per class and kind that --per-class takes (a row of 2K panels).
MAX_PER_CLASS = 50


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "report",
        help="figures and a summary of an explanation store (xai explain-dataset's output)",
        description="Per-class mean maps, the most and least confident samples of each "
        "class, and a JSON summary of a dataset run.",
        epilog=HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("store", type=Path, help="the explanation store (a .zarr folder)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the files")
    p.add_argument("--method", metavar="NAME", help="draw this method only (default: all)")
    p.add_argument(
        "--per-class",
        metavar="K",
        default="3",
        help=f"most and least confident samples per class (default 3, at most {MAX_PER_CLASS})",
    )


def parse_per_class(text: str) -> int:
    """``--per-class``: a whole number 1..MAX_PER_CLASS (checked here: one line if bad)."""
    try:
        number = int(str(text).strip())
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_PER_CLASS:
        raise XAIValueError(
            f"--per-class must be a whole number from 1 to {MAX_PER_CLASS}, such as 3; got "
            f"{str(text)[:40]!r}"
        )
    return number


def run(args: argparse.Namespace) -> int:
    import json

    from xai._files import check_writable_dir
    from xai.store import open_store
    from xai.viz.report import write_report

    per_class = parse_per_class(args.per_class)
    check_writable_dir(args.out, "--out")  # a file, a read-only folder: before any work
    store = open_store(args.store)  # not a store, or missing: one line
    written = write_report(store, args.out, method=args.method, per_class=per_class)
    from xai.viz.page import write_report_page

    written.append(write_report_page(args.out, written[-1].name))  # after the whole report
    for path in written:
        print(f"wrote {path}")
    summary = json.loads(written[-2].read_text())
    accuracy = summary["accuracy"]
    classes = sum(1 for entry in summary["classes"] if entry["count"] or entry["predicted"])
    print(
        f"report: {summary['samples']} samples, {classes} classes, "
        + (f"accuracy {100 * accuracy:.1f} %, " if accuracy is not None else "no labels, ")
        + f"mean confidence {summary['mean_confidence']:.3f}, "
        + f"methods {', '.join(summary['methods'])} -> {args.out}"
    )
    return 0
