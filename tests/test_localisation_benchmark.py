"""The localisation benchmark example runs fast and its table holds up: a row per method,
the chance row equal to the printed item area, the map-free baselines near chance and
the CAMs far above them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import xai
from tests._background import Job, job
from tests.conftest import fashion_mnist_installed

ROOT = Path(__file__).resolve().parent.parent


def _table(out: str) -> dict[str, dict[str, float]]:
    lines = [line for line in out.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = {
            name: float(cell)
            for name, cell in zip(header[1:], cells[1:], strict=True)
            if re.fullmatch(r"\d+(\.\d+)?", cell)
        }
    return rows


@job("localisation_benchmark")
def _fast_run(folder: Path) -> Job:
    script = ROOT / "examples" / "localisation_benchmark.py"
    return Job([sys.executable, str(script), "--fast", "--out", "localisation.png"])


@pytest.mark.slow
@pytest.mark.background("localisation_benchmark")
@pytest.mark.skipif(not fashion_mnist_installed(), reason="Fashion-MNIST is not installed")
def test_the_localisation_benchmark_runs_fast(background):
    result = background.result("localisation_benchmark")
    assert result.returncode == 0, result.stderr
    out = result.folder / "localisation.png"
    stdout = result.stdout
    assert "wrote localisation.png" in stdout and out.is_file()
    assert "3,000 training, 300 validation, 300 test canvases; 2 epochs" in stdout
    accuracy = re.search(r"test accuracy (\d+\.\d)%", stdout)
    assert accuracy is not None and float(accuracy.group(1)) > 30  # chance is 10 %
    area = re.search(r"covers (\d+\.\d)% of the canvas on average", stdout)
    assert area is not None and 5 < float(area.group(1)) < 15  # 28 x 28 items on 64 x 64

    rows = _table(stdout)
    assert sorted(rows) == sorted([*xai.methods(), "random", "centre", "chance"])
    assert list(rows)[-3:] == ["random", "centre", "chance"]
    for name in ("gradcam", "xgradcam", "hirescam"):  # identical maps on a GAP head
        assert rows[name] == {**rows["cam"], "map seconds": rows[name]["map seconds"]}
    zero, near = "pointing game % (mask, 0 px) ↑", "pointing game % (mask, 4 px) ↑"
    in_box, mask, box = "pointing game % (box) ↑", "energy in mask % ↑", "energy in box % ↑"
    for name, row in rows.items():
        assert all(0 <= row[key] <= 100 for key in (zero, near, in_box, mask, box)), name
        # the mask lies in the box: the box and a tolerance are looser ground truth
        assert row[zero] <= min(row[near], row[in_box]) and row[mask] <= row[box], name
    chance = rows["chance"]
    assert chance[zero] == chance[mask] == float(area.group(1))
    assert chance[in_box] == chance[box] == 19.1  # 28 * 28 / 64 ** 2
    # the random map is near chance; the centre bump is far below the CAMs
    assert abs(rows["random"][near] - chance[near]) < 10
    for name in ("cam", "gradcam++", "scorecam"):
        assert rows[name][zero] > rows["centre"][zero] + 30, name
        assert rows[name][near] > rows["centre"][near] + 30, name
        assert rows[name][mask] > 2 * rows["centre"][mask], name
    import cv2

    picture = cv2.imread(str(out))
    assert picture is not None and picture.shape[1] > 2000
