"""``xai shapley``: exact Shapley values of a coalition table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xai.core.errors import XAIValueError

__all__ = ["add_parser", "run"]

HELP = """examples:
  xai shapley                          the textbook housing example (11/6, 10/3, 29/6)
  xai shapley game.csv --plot shapley.png
  xai shapley game.json --plot bar.png --kind bar --float

A CSV table has one 0/1 column per feature and a last column `value`, one row per
coalition (all 2^n of them). A JSON table holds {"features": [...], "values":
[{"coalition": [...], "value": v}, ...]}. Values are kept as exact fractions (decimals
as written: 0.1 is 1/10) unless --float is given.
"""


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "shapley",
        help="exact Shapley values of a coalition table (CSV or JSON); the housing example",
        description="Exact Shapley values by enumerating every coalition: "
        "phi_i = sum over S without i of |S|!(n-|S|-1)!/n! (v(S+i) - v(S)).",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "table", nargs="?", type=Path, help="a .csv or .json coalition table (default: housing)"
    )
    p.add_argument("--plot", type=Path, metavar="PNG", help="also draw the values to this PNG")
    p.add_argument("--kind", choices=["waterfall", "bar"], default="waterfall")
    p.add_argument("--float", action="store_true", help="floating point instead of fractions")


def run(args: argparse.Namespace) -> int:
    from xai._files import check_writable_dir
    from xai.shapley import exact_shapley
    from xai.shapley.tables import TableGame, housing

    plot: Path | None = args.plot
    if plot is not None:  # checked before any work, so a bad path costs nothing
        if plot.suffix.lower() != ".png":
            raise XAIValueError(f"--plot {plot}: the picture is written as PNG; name a .png file")
        check_writable_dir(plot.parent, "--plot")
    game = (
        housing(exact=not args.float)
        if args.table is None
        else TableGame(args.table, exact=not args.float)
    )
    result = exact_shapley(game)
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
