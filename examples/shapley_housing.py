"""The textbook housing example worked line by line: every coalition, its weight, its
marginal contribution, in exact fractions; the sums are the Shapley values, checked
against ``xai.exact_shapley``, and drawn as a waterfall from v(∅) = 20 to v(all) = 30.

Three features of a house (year built, floor area, neighbourhood safety) and the price
predicted from each subset of them (``xai.shapley.housing()``). For player i,

    phi_i = sum over S ⊆ N \\ {i} of |S|! (n − |S| − 1)! / n! · (v(S ∪ {i}) − v(S)).

It is instant; ``--fast`` does the same (the tests pass it):

    python examples/shapley_housing.py [--fast] [--out docs/images/shapley_housing.png]

docs/shapley.md shows this output; ``tests/test_examples_shapley.py`` keeps the two equal.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from fractions import Fraction
from itertools import combinations
from math import factorial
from pathlib import Path

import xai
from xai.shapley import TableGame
from xai.viz.shapley import save_figure, waterfall


def weight(size: int, n: int) -> Fraction:
    """The Shapley weight of a coalition of ``size`` players without i: |S|! (n−|S|−1)! / n!."""
    return Fraction(factorial(size) * factorial(n - size - 1), factorial(n))


def worked_example(game: TableGame) -> tuple[list[str], list[Fraction]]:
    """The lines of the worked example and the Shapley values they add up to."""
    names, n = game.feature_names, game.n

    def v(coalition: Sequence[int]) -> Fraction:
        return game([[j in coalition for j in range(n)]])[0]

    def show(coalition: Sequence[int]) -> str:
        return "{" + ", ".join(names[j] for j in coalition) + "}"

    lines = [
        f"n = {n} players; for each player i and each coalition S without i:",
        "  weight = |S|! (n-|S|-1)! / n!, gain = v(S+i) - v(S) (the marginal contribution)",
        "",
    ]
    values = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        header = f"  {'S':<36} {'|S|':>3} {'weight':>7} {'v(S)':>5} {'v(S+i)':>7}"
        lines += [f"phi({names[i]}):", header + f" {'gain':>5} {'weight x gain':>14}"]
        terms = []
        for size in range(n):
            for S in combinations(others, size):
                w, before, after = weight(size, n), v(S), v((*S, i))
                terms.append(w * (after - before))
                lines.append(
                    f"  {show(S):<36} {size:>3} {w!s:>7} {before!s:>5} {after!s:>7} "
                    f"{after - before!s:>5} {terms[-1]!s:>14}"
                )
        values.append(sum(terms, Fraction(0)))
        total = " + ".join(str(t) for t in terms)
        lines += [f"  phi({names[i]}) = {total} = {values[-1]} ({float(values[-1]):.4f})", ""]
    empty, full = v(()), v(range(n))
    if empty + sum(values) != full:
        raise AssertionError(f"efficiency fails: {empty} + {sum(values)} != {full}")
    lines.append(
        f"efficiency: v({{}}) + sum of phi = {empty} + {' + '.join(map(str, values))} "
        f"= {empty + sum(values)} = v(all)"
    )
    return lines, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="accepted; the run is instant")
    parser.add_argument("--out", type=Path, default=Path("docs/images/shapley_housing.png"))
    args = parser.parse_args()

    game = xai.shapley.housing(exact=True)
    lines, values = worked_example(game)
    result = xai.exact_shapley(game, exact=True)
    if list(result.values) != values or result.base_value + sum(values) != result.full_value:
        raise AssertionError(f"the worked sums {values} disagree with {result}")
    print("\n".join(lines))
    print(f"xai.exact_shapley(game, exact=True).values: {', '.join(map(str, result.values))}")

    figure = waterfall(
        result,
        title="Housing example: exact Shapley values, from v(∅) = 20 to v(all) = 30",
    )
    figure.axes[0].set_xlabel("predicted price (arbitrary units)")
    print(f"wrote {save_figure(figure, args.out)}")


if __name__ == "__main__":
    main()
