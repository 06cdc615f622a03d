"""``xai shapley``: exact Shapley values of a coalition table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xai.cli._common import HelpFormatter
from xai.core.errors import XAIValueError

__all__ = ["add_parser", "run"]

HELP = """examples:
  xai shapley                          the textbook housing example (11/6, 10/3, 29/6)
  xai shapley game.csv --plot shapley.png
  xai shapley game.json --plot bar.png --kind bar --float

A CSV table has one 0/1 column per feature and a last column `value`, one row per
coalition (all 2^n of them). A JSON table holds {"features": [...], "values":
[{"coalition": [...], "value": v}, ...]}. Values are kept as exact fractions (decimals
as written: 0.1 is 1/10) unless --float is given. Each coalition appears once, and each
value is a finite number between -1e300 and 1e300: an integer, a decimal (1.5e3) or a
fraction (2/3).

Exact values evaluate all 2^n coalitions and hold their 2^n values in memory, so tables
of more than 20 features are refused unless --max-features allows them.
"""

# The default cap on the number of features, as exact_shapley's.
MAX_FEATURES = 20


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "shapley",
        help="exact Shapley values of a coalition table (CSV or JSON); the housing example",
        description="Exact Shapley values by enumerating every coalition: "
        "phi_i = sum over S without i of |S|!(n-|S|-1)!/n! (v(S+i) - v(S)).",
        epilog=HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "table", nargs="?", type=Path, help="a .csv or .json coalition table (default: housing)"
    )
    p.add_argument("--plot", type=Path, metavar="PNG", help="also draw the values to this PNG")
    p.add_argument(
        "--kind", choices=["waterfall", "bar"], default="waterfall", help="the --plot's kind"
    )
    p.add_argument("--float", action="store_true", help="floating point instead of fractions")
    p.add_argument(
        "--max-features",
        metavar="N",
        default=str(MAX_FEATURES),
        help=f"refuse tables of more than N features (default: {MAX_FEATURES}): exact values "
        f"cost 2^N evaluations and memory for 2^N values",
    )


def parse_max_features(text: str) -> int:
    """``--max-features``: a positive whole number (checked here, so a bad one is one line)."""
    try:
        number = int(text.strip())
    except ValueError:
        number = 0
    if number < 1:
        raise XAIValueError(
            f"--max-features must be a positive whole number of features, such as 22; got "
            f"{text[:40]!r}"
        )
    return number


def run(args: argparse.Namespace) -> int:
    from xai._files import check_writable_file
    from xai.shapley import exact_shapley
    from xai.shapley.game import TooManyFeaturesError
    from xai.shapley.tables import TableGame, housing

    plot: Path | None = args.plot
    if plot is not None:  # checked before any work, so a bad path costs nothing
        if plot.suffix.lower() != ".png":
            raise XAIValueError(f"--plot {plot}: the picture is written as PNG; name a .png file")
        check_writable_file(plot, "--plot", example="values.png")  # a folder, a device ...
    max_features = parse_max_features(args.max_features)
    try:
        game = (
            housing(exact=not args.float)
            if args.table is None
            else TableGame(args.table, exact=not args.float, max_features=max_features)
        )
        result = exact_shapley(game, max_features=max_features)
    except TooManyFeaturesError as error:  # say it with the command line's option
        raise error.spelled(
            "--max-features {}", "estimate the values by sampling (xai.shapley in Python)"
        ) from None
    if game.description:
        print(game.description)
        print()
    print(result.table())
    total = result.base_value + result.values.sum()
    print(
        f"efficiency: v(empty) + sum of values = {total} = v(all)"
        if total == result.full_value
        else f"efficiency: v(empty) + sum = {float(total):.6g}, v(all) = "
        f"{float(result.full_value):.6g}"
    )
    if plot is not None:
        from xai.viz.grids import save_figure
        from xai.viz.shapley import bar, waterfall

        title = "housing example" if args.table is None else args.table.name
        draw = waterfall if args.kind == "waterfall" else bar
        save_figure(draw(result, title=f"Exact Shapley values: {title}"), plot)
        print(f"wrote {plot}")
    return 0
