"""The ``xai`` command: a thin layer over the public API.

It imports nothing heavy to start: ``xai --help`` and ``xai methods`` read the registry
only (no torch, shap, captum, matplotlib or OpenCV).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xai import __version__, registry

EPILOG = """examples:
  xai methods                 list the explanation methods, one line each
  xai train --model gapcnn --fraction 0.1 --out gapcnn.pt
  xai --version               print the version
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xai",
        description="Explain PyTorch image classifiers: CAM, the Grad-CAM family and "
        "Shapley values.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"xai-toolkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("methods", help="list the explanation methods, one line each")
    from xai import cli_train

    cli_train.add_parser(commands)
    return parser


def _methods() -> int:
    width = max(len(name) for name in registry.methods())
    for name in registry.methods():
        info = registry.get(name)
        print(f"{name:<{width}}  {info.summary}  [{info.paper}]")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xai`` console script; returns the exit status.

    Bad input (a missing file, a bad option value, an unreadable data set) prints one line,
    ``xai: error: ...``, on standard error and exits with status 2, never a traceback.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "methods":
            return _methods()
        if args.command == "train":
            from xai import cli_train

            return cli_train.run(args)
    except (ValueError, TypeError, OSError) as error:
        print(f"xai: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xai: interrupted", file=sys.stderr)
        return 130
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
