"""The Shapley examples run, print the right numbers, and docs/shapley.md shows exactly
what they print."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from fractions import Fraction
from itertools import permutations
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import xai
from tests._background import Job, job

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DOC = ROOT / "docs" / "shapley.md"


def _run(script: str, *args: str, timeout: int = 300) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _module(name: str) -> ModuleType:
    """An example script as a module (registered, as its dataclasses need)."""
    if f"examples.{name}" in sys.modules:
        return sys.modules[f"examples.{name}"]
    spec = importlib.util.spec_from_file_location(f"examples.{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _png_shape(path: Path) -> tuple[int, ...]:
    import cv2

    picture = cv2.imread(str(path))
    assert picture is not None, f"{path} is not a readable image"
    return picture.shape


def _housing_by_orders() -> list[Fraction]:
    """Shapley values of the housing game from the definition: the average marginal
    contribution over all 3! orders (independent of the subset formula the example uses)."""
    game = xai.shapley.housing(exact=True)
    n = game.n

    def v(members: set[int]) -> Fraction:
        return game([[j in members for j in range(n)]])[0]

    totals = [Fraction(0)] * n
    orders = list(permutations(range(n)))
    for order in orders:
        before: set[int] = set()
        for i in order:
            totals[i] += v(before | {i}) - v(before)
            before.add(i)
    return [t / len(orders) for t in totals]


# --------------------------------------------------------------------------- housing


@pytest.fixture(scope="module")
def housing_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("housing") / "x.png"
    return _run("shapley_housing.py", "--fast", "--out", str(out)), out


def test_housing_prints_the_shapley_values_of_the_definition(housing_output):
    text, _ = housing_output
    expected = _housing_by_orders()
    assert expected == [Fraction(11, 6), Fraction(10, 3), Fraction(29, 6)]
    names = xai.shapley.housing().feature_names
    assert names == ("year_built", "floor_area", "neighbourhood_safety")
    for name, value in zip(names, expected, strict=True):
        found = re.search(rf"^  phi\({name}\) = (.*) = (\S+) \((\S+)\)$", text, flags=re.M)
        assert found, f"no sum line for {name}"
        terms, total, decimal = found.groups()
        assert sum(Fraction(t) for t in terms.split(" + ")) == value
        assert Fraction(total) == value
        assert float(decimal) == pytest.approx(float(value), abs=5e-5)
    assert (
        "efficiency: v({}) + sum of phi = 20 + 11/6 + 10/3 + 29/6 = 30 = v(all)"
        in text.splitlines()
    )
    assert "xai.exact_shapley(game, exact=True).values: 11/6, 10/3, 29/6" in text


def test_housing_rows_have_the_shapley_weights_and_the_table_values(housing_output):
    text, _ = housing_output
    game = xai.shapley.housing(exact=True)
    names = list(game.feature_names)
    row = re.compile(r"^  (\{.*?\})\s+(\d)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$", flags=re.M)
    rows = row.findall(text)
    assert len(rows) == 12  # 3 players x 4 coalitions without each
    for block in range(3):
        weights = [Fraction(r[2]) for r in rows[4 * block : 4 * block + 4]]
        assert weights == [Fraction(1, 3), Fraction(1, 6), Fraction(1, 6), Fraction(1, 3)]
    for k, (coalition, size, weight, before, after, gain, term) in enumerate(rows):
        i = k // 4
        members = [names.index(m) for m in coalition.strip("{}").split(", ") if m]
        assert int(size) == len(members) and i not in members
        mask = np.zeros((2, 3), dtype=bool)
        mask[:, members] = True
        mask[1, i] = True
        v_before, v_after = game(mask)
        assert (Fraction(before), Fraction(after)) == (v_before, v_after)
        assert Fraction(gain) == v_after - v_before
        assert Fraction(term) == Fraction(weight) * Fraction(gain)


def test_housing_waterfall_is_written(housing_output):
    text, out = housing_output
    assert text.splitlines()[-1] == f"wrote {out}"
    height, width, _ = _png_shape(out)
    assert width > height > 200


def _worked_blocks() -> tuple[str, str]:
    block = r"((?:(?!```).)*)```"  # a fenced block's text, up to its closing fence
    found = re.search(rf"```python\n{block}\s*```text\n{block}", DOC.read_text(), flags=re.S)
    assert found, "docs/shapley.md needs a python block followed by its text output"
    return found.group(1), found.group(2)


def test_the_docs_show_what_the_housing_example_prints(housing_output, tmp_path):
    text, _ = housing_output
    code, shown = _worked_blocks()
    assert "phi(year_built)" in shown
    printed = text.splitlines()[:-1]  # all but "wrote PATH"
    assert shown.rstrip("\n").splitlines() == printed
    block = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert block.rstrip("\n").splitlines() == printed


# --------------------------------------------------------------------- shap vs exact


def test_owen_values_of_the_housing_game_by_hand():
    # Hierarchy {{year_built, floor_area}, {neighbourhood_safety}}: at the top the two
    # groups split 10 as a two-player game, safety getting ((25-20) + (30-24)) / 2 = 11/2;
    # year_built averages v(S+0)-v(S) over S in {}, {1}, {2}, {1,2}: (3 + 0 + 1 + 2) / 4.
    owen_values = _module("shap_vs_exact").owen_values
    game = xai.shapley.housing()
    hierarchy = np.array([[0, 1, 1.0, 2], [2, 3, 2.0, 3]])
    assert owen_values(game, 3, hierarchy) == pytest.approx([1.5, 3.0, 5.5], abs=1e-12)
    swapped = np.array([[1, 0, 1.0, 2], [3, 2, 2.0, 3]])  # the same tree, children swapped
    assert owen_values(game, 3, swapped) == pytest.approx([1.5, 3.0, 5.5], abs=1e-12)
    # Another hierarchy, {{floor_area, safety}, {year_built}}, another split of the 10:
    # year_built ((23-20) + (30-28)) / 2; floor_area (4 + 3 + 1 + 4) / 4; safety (5+4+3+6)/4.
    other = np.array([[1, 2, 1.0, 2], [0, 3, 2.0, 3]])
    assert owen_values(game, 3, other) == pytest.approx([2.5, 3.0, 4.5], abs=1e-12)


def test_owen_values_equal_shapley_values_for_an_additive_game():
    owen_values = _module("shap_vs_exact").owen_values
    weights = np.array([0.5, -2.0, 3.0, 1.25, 0.0])
    game = xai.shapley.FunctionGame(lambda m: m @ weights, n_features=5)
    hierarchy = _module("shap_vs_exact").patch_linkage((1, 5))
    assert owen_values(game, 5, hierarchy) == pytest.approx(weights, abs=1e-12)


def _table(text: str) -> dict[str, dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert lines[1].startswith("|---")
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


@job("shap_vs_exact")
def _shap_vs_exact(folder: Path) -> Job:
    script = str(EXAMPLES / "shap_vs_exact.py")
    return Job([sys.executable, script, "--fast", "--out", str(folder / "x.png")], cwd=ROOT)


@pytest.mark.slow
@pytest.mark.background("shap_vs_exact")
def test_shap_vs_exact_fast_run(background):
    result = background.result("shap_vs_exact")
    assert result.returncode == 0, result.stdout + result.stderr
    text, out = result.stdout, result.folder / "x.png"
    rows = _table(text)
    assert set(rows) == {
        "exact (xai.exact_shapley)",
        "xai permutation",
        "xai kernel_shap",
        "shap Kernel",
        "shap Partition",
        "xai permutation at Partition's budget",
        "captum ShapleyValueSampling",
    }
    exact = rows.pop("exact (xai.exact_shapley)")
    assert exact["evaluations"] == "512"  # 3 x 3 patches: 2^9 coalitions
    assert float(exact["max abs error"]) == 0 and float(exact["relative L2 error"]) == 0
    assert float(exact["Spearman ρ"]) == 1 and exact["top-3 patches"] == "3/3"
    assert float(exact["efficiency gap"]) < 1e-9
    for name, row in rows.items():
        evaluations = int(row["evaluations"].replace(",", ""))
        assert 0 < evaluations <= 128 + 3, name  # the stated budget, plus the two ends
        # sane bounds (measured: relative errors 0.08-0.15, rho >= 0.93 at 128 evaluations)
        assert 0 < float(row["max abs error"]) < 0.6, name
        assert 0 < float(row["relative L2 error"]) < 0.3, name
        assert float(row["Spearman ρ"]) > 0.7, name
        assert float(row["efficiency gap"]) < 1e-4, name  # all of them are efficient
    base, full, total = map(
        float,
        re.search(r"v\(∅\) = (\S+), v\(all\) = (\S+), sum of exact values = (\S+)", text).groups(),
    )
    assert total == pytest.approx(full - base, abs=2e-4)
    partition = re.search(r"max abs difference (\S+); Owen vs Shapley: (\S+)", text)
    assert partition, text
    assert float(partition.group(1)) < 1e-5  # Partition computes the Owen values ...
    assert float(partition.group(2)) > 1e-3  # ... which are not the Shapley values
    assert text.splitlines()[-1] == f"wrote {out}"
    height, width, _ = _png_shape(out)
    assert width > 1500 and height > 800
