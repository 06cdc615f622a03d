"""The CNN-vs-DNN and your-own-model examples run fast and print numbers that hold up."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import xai
from tests._background import Job, Scheduler, job
from tests.conftest import fashion_mnist_installed

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _run(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=check,
        cwd=ROOT,
    )


def _picture_shape(path: Path) -> tuple[int, int]:
    import cv2

    assert path.is_file(), f"{path} was not written"
    picture = cv2.imread(str(path))
    assert picture is not None, f"{path} is not a readable image"
    return picture.shape[0], picture.shape[1]


def _fast(script: str) -> Callable[[Path], Job]:
    """``examples/SCRIPT --fast --out FOLDER/x.png``, run in the background."""
    return lambda folder: Job(
        [sys.executable, str(EXAMPLES / script), "--fast", "--out", str(folder / "x.png")],
        cwd=ROOT,
        timeout=600,
    )


job("cnn_vs_dnn")(_fast("cnn_vs_dnn.py"))
job("your_own_model")(_fast("your_own_model.py"))


def _result(background: Scheduler, name: str) -> tuple[str, Path]:
    result = background.result(name)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, result.folder / "x.png"


@pytest.mark.slow
@pytest.mark.background("cnn_vs_dnn")
def test_cnn_vs_dnn_fast_trains_both_models_and_reports_consistent_metrics(background):
    if not fashion_mnist_installed():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    stdout, out = _result(background, "cnn_vs_dnn")

    sizes = re.search(r"(\d+) training, (\d+) validation, (\d+) test images", stdout)
    assert sizes is not None, stdout
    train, val, test = (int(v) for v in sizes.groups())
    assert (train + val, test) == (1200, 200)  # 2 % of 60,000 and of 10,000, stratified

    rows = {
        m[0]: m[1:]
        for m in re.findall(
            r"^\| (\w+) \| ([\d,]+) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|$", stdout, re.M
        )
    }
    assert set(rows) == {"GAPCNN", "MLP"}, stdout
    expected_parameters = {  # the default models: 1 channel in, 10 classes out
        "GAPCNN": sum(p.numel() for p in xai.models.GAPCNN(1, 10).parameters()),
        "MLP": 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10,
    }
    accuracy = {}
    for name, (parameters, best, run, seconds, acc) in rows.items():
        assert int(parameters.replace(",", "")) == expected_parameters[name]
        assert 1 <= int(best) <= int(run) <= 3  # --fast allows 3 epochs
        assert float(seconds) >= 0  # one decimal: a 3-epoch MLP on 1,200 images may show 0.0
        accuracy[name] = float(acc)
        assert 0.0 <= accuracy[name] <= 1.0
    assert accuracy["GAPCNN"] > 0.3  # ten classes: chance is 0.1
    assert accuracy["MLP"] > 0.3

    # Per-class tables: 10 classes of 20 test images each, so accuracy = macro recall.
    tables = stdout.split("per-class metrics on the test images")[1:]
    assert len(tables) == 2
    for name, table in zip(rows, tables, strict=True):
        # class, precision, recall, f1, one-vs-rest AUC, support
        row = r"^(\S.*?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$"
        classes = re.findall(row, table, re.M)
        per_class = [c for c in classes if c[0] != "macro"]
        assert [c[0] for c in per_class] == list(xai.data.CLASS_NAMES["fashion-mnist"])
        assert all(int(c[5]) == 20 for c in per_class)
        assert all(0.5 < float(c[4]) <= 1.0 for c in per_class)  # far better than chance
        recall = [float(c[2]) for c in per_class]
        assert all(0.0 <= r <= 1.0 for r in recall)
        assert sum(recall) / 10 == pytest.approx(accuracy[name], abs=6e-4)
        assert float(re.search(r"accuracy ([\d.]+)", table)[1]) == accuracy[name]

    assert f"wrote {out}" in stdout
    height, width = _picture_shape(out)
    assert width > height > 800  # two rows (models) of three panels


def test_cnn_vs_dnn_without_the_data_says_how_to_install_it(tmp_path):
    out = tmp_path / "x.png"
    result = _run(
        "cnn_vs_dnn.py", "--fast", "--data", str(tmp_path), "--out", str(out), check=False
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "apt-get install dataset-fashion-mnist" in lines[0]
    assert not out.exists()


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in:\n{text}"
    return float(found[1])


@pytest.mark.slow
@pytest.mark.background("your_own_model")
def test_your_own_model_fast_explains_a_resnet_and_leaves_it_as_it_was(background):
    stdout, out = _result(background, "your_own_model")

    assert _number(r"accuracy on the samples ([\d.]+)", stdout) >= 0.9  # it learnt them
    found = re.findall(r"layer=(\S+)\s+\((\S+)\): raw \((\d+, \d+)\)", stdout)
    assert {key: (layer, shape) for layer, key, shape in found} == {
        "layer1.0": ("layer1.0", "28, 28"),
        "layer2.1.conv2": ("layer2.1.conv2", "14, 14"),
        "model.layer2[1]": ("layer2.1", "14, 14"),  # a module is reported by its name
        # the default layer, and CAM's: the block, because its ReLU module runs twice
        "default": ("layer3.1", "7, 7"),
        "cam": ("layer3.1", "7, 7"),
    }

    # Grad-CAM at the default layer is CAM / (h*w) on this GAP + Linear head, and CAM is
    # not trivially zero.
    assert "CAM/(h*w) = CAM/49" in stdout
    assert _number(r"CAM/49: max \|difference\| (\S+)", stdout) < 1e-5
    assert _number(r"CAM's largest value (\S+)\)", stdout) > 1e-2

    # The dict-returning wrapper with callable targets gives the plain model's maps.
    assert _number(r"target=3: (\S+)", stdout) < 1e-6
    assert _number(r"target=labels: (\S+)", stdout) < 1e-6
    assert "CAM on the dict model refuses a callable target" in stdout

    assert (
        "model left as it was: training flags unchanged True (still in train mode: True); "
        "parameters with a .grad: 0; hooks left: 0; weights and batch-norm statistics "
        "unchanged: True"
    ) in stdout

    assert f"wrote {out}" in stdout
    height, width = _picture_shape(out)
    assert width > height > 800  # ten images across, five rows
