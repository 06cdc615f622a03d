"""The ``xai`` command: a thin layer over the public API.

It imports nothing heavy to start: ``xai --help`` and ``xai methods`` read the registry
only (no torch, shap, captum, matplotlib or OpenCV). Each command imports what it needs
when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from xai import __version__, registry
from xai.core.errors import XAIError
from xai.core.interrupts import Terminated, deferred_interrupts, terminate_as_exception

__all__ = ["main"]

EPILOG = """examples:
  xai samples --out samples                the embedded model's test images, one per class
  xai explain samples/7-sneaker.png        Grad-CAM for the class the model predicts
  xai explain photos/ --method all         every method, one comparison grid per image
  xai explain-dataset fashion-mnist:test --store test.zarr
                                           a whole dataset into a zarr store (resumable)
  xai report test.zarr --out report        its per-class mean maps, most/least confident
  xai grid --out grid.png                  one example per class with its CAM and Grad-CAM
  xai methods                              the explanation methods, one line each
  xai layers                               the layers --layer accepts, with their shapes
  xai classes                              the classes --target accepts
  xai shapley                              exact Shapley values of the housing example
  xai train --model gapcnn --fraction 0.1 --out gapcnn.pt

`xai COMMAND --help` shows a command's options and examples. Bad input prints one line,
`xai: error: ...`, and exits with status 2.
"""


class _Parser(argparse.ArgumentParser):
    """argparse with the command line's error format: one line, exit status 2 (the usage
    argparse would print first is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"xai: error: {text} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    from xai.cli import explain, explain_dataset, grid, inspect, report, shapley, train
    from xai.cli import search as search_parser

    parser = _Parser(
        prog="xai",
        description="Explain PyTorch image classifiers: CAM, the Grad-CAM family and "
        "Shapley values.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"xai-toolkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    explain.add_parser(commands)
    explain_dataset.add_parser(commands)
    commands.add_parser("methods", help="list the explanation methods, one line each")
    inspect.add_parsers(commands)
    shapley.add_parser(commands)
    report.add_parser(commands)
    train.add_parser(commands)
    search_parser.add_parser(commands)
    grid.add_parser(commands)
    return parser


def _methods() -> int:
    from xai._tables import text_table

    rows = []
    for name in registry.methods():
        info = registry.get(name)
        rows.append((name, f"{info.summary}  [{info.paper}]"))
    print(text_table(("method", "summary"), rows, show_header=False))  # a name per line
    return 0


def _dispatch(args: argparse.Namespace) -> int | None:
    if args.command == "methods":
        return _methods()
    if args.command == "explain":
        from xai.cli import explain

        return explain.run(args)
    if args.command == "explain-dataset":
        from xai.cli import explain_dataset

        return explain_dataset.run(args)
    if args.command in ("layers", "classes", "samples"):
        from xai.cli import inspect

        return getattr(inspect, args.command)(args)
    if args.command == "shapley":
        from xai.cli import shapley

        return shapley.run(args)
    if args.command == "report":
        from xai.cli import report

        return report.run(args)
    if args.command == "train":
        from xai.cli import train

        return train.run(args)
    if args.command == "search":
        from xai.cli import search

        return search.run(args)
    if args.command == "grid":
        from xai.cli import grid

        return grid.run(args)
    return None


#: The heavy modules a command imports, loaded first with Ctrl-C held back, so that an
#: interrupt never lands inside a compiled module's import (see xai.core.interrupts).
_PRELOAD = {
    "explain": ("torch", "cv2"),
    "explain-dataset": ("torch", "zarr"),
    "report": ("torch", "cv2"),
    "layers": ("torch",),
    "classes": ("torch",),
    "samples": ("torch", "cv2"),
    "train": ("torch",),
    "search": ("torch",),
    "grid": ("torch", "cv2"),
}


def _preload(command: str | None) -> None:
    import importlib

    modules = _PRELOAD.get(command or "", ())
    if modules:
        with deferred_interrupts():
            for name in modules:
                importlib.import_module(name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xai`` console script; returns the exit status.

    Bad input (a missing file, a bad option value, an unreadable image or model) prints
    one line, ``xai: error: ...``, on standard error and exits with status 2, never a
    traceback. Ctrl-C exits with status 130 and SIGTERM with 143, one line each.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with terminate_as_exception():
            _preload(args.command)
            status = _dispatch(args)
    except BrokenPipeError:  # the reader went away (`xai layers | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (XAIError, OSError) as error:
        # Only xai's own refusals (and the system's file errors: a missing file, a full
        # disk) become one line; any other exception is a bug and shows its traceback.
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"xai: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: every output folder is whole or absent
        print("xai: interrupted", file=sys.stderr)
        return 130
    except Terminated:  # SIGTERM (kill): the same, with the shell's status for it
        print("xai: terminated", file=sys.stderr)
        return 143
    if status is None:
        parser.print_help()
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
