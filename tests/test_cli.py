"""The ``xai`` command, run for real in subprocesses: what it writes and prints, and how
it refuses bad input (one line on stderr, exit 2, nothing written)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from itertools import combinations
from math import factorial
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import xai
from tests._forkserver import run_xai
from xai.core.maps import minmax, upsample
from xai.images import read_image, to_input
from xai.viz.overlay import colorize, overlay

XAI = str(Path(sys.executable).parent / "xai")
SAMPLES = dict(xai.models.sample_images())  # class name -> PNG path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``xai ARGS`` in a process of its own, forked from one with torch and xai imported
    (tests/_forkserver.py): what the console script does, without its imports' time."""
    return run_xai(*args, cwd=cwd)


@pytest.fixture(scope="module")
def model():
    return xai.models.pretrained()


@pytest.fixture(scope="module")
def files(tmp_path_factory, model) -> dict[str, Path]:
    """Inputs of every kind: images good and bad, models of every spec."""
    root = tmp_path_factory.mktemp("cli")
    sneaker = cv2.imread(str(SAMPLES["Sneaker"]), cv2.IMREAD_GRAYSCALE)
    big = cv2.resize(sneaker, (300, 180), interpolation=cv2.INTER_CUBIC)
    colour = np.dstack([big, big // 2, 255 - big])  # B, G, R for OpenCV
    cv2.imwrite(str(root / "wide.jpg"), colour, [cv2.IMWRITE_JPEG_QUALITY, 95])
    alpha = np.where(cv2.resize(sneaker, (56, 56)) > 10, 255, 0).astype(np.uint8)
    rgba = np.dstack([cv2.resize(sneaker, (56, 56))] * 3 + [alpha])
    cv2.imwrite(str(root / "alpha.png"), rgba)
    cv2.imwrite(str(root / "deep.png"), sneaker.astype(np.uint16) * 257)
    good = SAMPLES["Bag"].read_bytes()
    (root / "notes.png").write_text("not an image")
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    corrupt = bytearray(good)
    corrupt[60] ^= 0xFF
    (root / "corrupt.png").write_bytes(bytes(corrupt))
    (root / "empty").mkdir()
    torch.save(model.state_dict(), root / "weights.pt")
    torch.save(model, root / "whole.pt")
    torch.save({"lr": 0.1}, root / "settings.pt")
    (root / "nets.py").write_text(
        "import xai\n\ndef fashion():\n    return xai.models.pretrained()\n"
    )
    return {p.name: p for p in root.iterdir()} | {"root": root}


def _fill(arg: str, paths: dict[str, Path]) -> str:
    """``{name.ext}`` -> the path of that input file."""
    return re.sub(r"\{([^}]+)\}", lambda m: str(paths[m[1]]), arg)


def _one_line_error(result: subprocess.CompletedProcess[str], pattern: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("xai: error: ")
    assert "Traceback" not in result.stderr
    assert re.search(pattern, lines[0]), lines[0]


# ---------------------------------------------------------------- explain: the numbers


def test_explain_one_image_writes_what_the_library_computes(tmp_path, model):
    out = tmp_path / "out"
    result = run("explain", SAMPLES["Sneaker"], "--bare", "--out", out)  # the bare pixels
    assert result.returncode == 0, result.stderr
    folder = out / "7-sneaker.png"
    assert sorted(p.name for p in folder.iterdir()) == [
        "gradcam_heatmap.png",
        "gradcam_overlay.png",
        "gradcam_raw.npy",
        "manifest.json",
    ]
    x = to_input(read_image(SAMPLES["Sneaker"]), 1)[None]
    logits = model(x)[0].detach()
    expected = xai.explain(model, x, method="gradcam")
    manifest = json.loads((folder / "manifest.json").read_text())

    entry = manifest["explanations"][0]
    assert entry["method"] == "gradcam"
    assert entry["layer"] == expected.layer == "features.18"
    assert entry["target"] == int(logits.argmax()) == 7
    assert entry["target_class"] == "Sneaker"
    assert entry["score"] == pytest.approx(float(logits[7]), abs=1e-4)
    probabilities = torch.softmax(logits, 0)
    top = manifest["prediction"]
    assert [p["index"] for p in top] == probabilities.topk(5).indices.tolist()
    for p in top:
        assert p["probability"] == pytest.approx(float(probabilities[p["index"]]), abs=1e-5)
        assert p["class"] == model.class_names[p["index"]]
    assert manifest["input_size"] == [1, 28, 28]
    assert manifest["model"]["spec"] == "builtin:fashion-mnist"
    assert manifest["image"] == {
        "path": str(SAMPLES["Sneaker"]),
        "height": 28,
        "width": 28,
        "mode": "gray",
    }
    assert set(manifest["versions"]) >= {"xai-toolkit", "torch", "numpy", "opencv"}

    raw = np.load(folder / "gradcam_raw.npy")
    np.testing.assert_allclose(raw, expected.raw[0].numpy(), rtol=1e-5, atol=1e-6)
    # the pictures: 28x28 shown 8x larger, the raw map resized once to 224x224
    display = cv2.resize(
        read_image(SAMPLES["Sneaker"]).rgb(), (224, 224), interpolation=cv2.INTER_NEAREST
    )
    saliency = minmax(upsample(torch.from_numpy(raw)[None], (224, 224)))[0].numpy()
    heat = cv2.imread(str(folder / "gradcam_heatmap.png"))[:, :, ::-1]
    blend = cv2.imread(str(folder / "gradcam_overlay.png"))[:, :, ::-1]
    assert np.abs(heat.astype(int) - colorize(saliency, "jet")).max() <= 1
    assert np.abs(blend.astype(int) - overlay(display, saliency, 0.5, "jet")).max() <= 1
    assert "Sneaker 100.0%" in result.stdout or "Sneaker 99." in result.stdout
    assert not list(out.rglob(".*"))  # no temporary files left


def test_explain_many_images_all_methods_and_a_named_target(tmp_path, files):
    out = tmp_path / "maps"
    pattern = str(SAMPLES["Bag"].parent / "[78]-*.png")
    result = run(
        "explain",
        pattern,
        files["wide.jpg"],
        "--method",
        "all",
        "--target",
        "ankle boot",
        "--out",
        out,
        "--colormap",
        "viridis",
        "--alpha",
        "0.3",
        "--bare",  # the titled pictures: tests/test_explain_pictures.py
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "7-sneaker.png",
        "8-bag.png",
        "index.html",  # the run's page (tests/test_page.py)
        "wide.jpg",
    ]
    for folder in (p for p in out.iterdir() if p.is_dir()):
        manifest = json.loads((folder / "manifest.json").read_text())
        entries = {e["method"]: e for e in manifest["explanations"]}
        assert list(entries) == list(xai.methods())
        for method, entry in entries.items():
            assert entry["target"] == 9
            assert entry["class_specific"] == (method != "eigencam")
            for name in entry["files"].values():
                assert (folder / name).is_file()
        assert manifest["display"]["colormap"] == "viridis"
        grid = cv2.imread(str(folder / manifest["comparison"]))
        assert grid is not None
        assert grid.shape[0] > 300
    assert "explaining" in result.stderr  # the progress bar
    table = result.stdout.splitlines()
    assert table[0].split() == ["image", "prediction", "explained", "(score)", "map", "vs", "top-1"]
    assert all("Ankle boot (" in line for line in table[1:4])
    assert f"wrote 3 images x {len(xai.methods())} methods" in result.stdout


def test_explain_converts_colour_transparency_and_16_bit(tmp_path, files, model):
    out = tmp_path / "out"
    names = ("wide.jpg", "alpha.png", "deep.png")
    result = run("explain", *(files[n] for n in names), "--method", "cam", "--bare", "--out", out)
    assert result.returncode == 0, result.stderr
    for name, mode, display in [
        ("wide.jpg", "rgb", [360, 600]),
        ("alpha.png", "rgba", [224, 224]),
        ("deep.png", "gray", [224, 224]),
    ]:
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert manifest["image"]["mode"] == mode
        assert manifest["input_size"] == [1, 28, 28]
        assert [manifest["display"]["height"], manifest["display"]["width"]] == display
        path = files[name]
        x = to_input(read_image(path), 1, (28, 28))[None]
        expected = xai.explain(model, x, method="cam")
        raw = np.load(out / name / "cam_raw.npy")
        # The command explains the three images as one batch, this one alone: float32
        # convolutions may sum in another order per batch size (~1e-5 relative).
        np.testing.assert_allclose(raw, expected.raw[0].numpy(), rtol=1e-4, atol=1e-5)
        overlay_png = cv2.imread(str(out / name / "cam_overlay.png"))
        assert list(overlay_png.shape[:2]) == display
    # the 16-bit sneaker is the 8-bit one times 257: the same input, the same map
    same = np.load(out / "deep.png" / "cam_raw.npy")
    x8 = to_input(read_image(SAMPLES["Sneaker"]), 1)[None]
    np.testing.assert_allclose(same, xai.explain(model, x8, method="cam").raw[0], atol=1e-5)


@pytest.mark.parametrize(
    "spec",
    [
        ["--model", "{weights.pt}", "--arch", "gapcnn"],
        ["--model", "nets:fashion"],
        ["--model", "{whole.pt}", "--trust-pickle"],
    ],
    ids=["state_dict", "factory", "trusted-pickle"],
)
def test_every_model_spec_gives_the_builtin_model_s_map(tmp_path, files, model, spec):
    args = [_fill(a, files) for a in spec]
    out = tmp_path / "out"
    result = run(
        "explain",
        SAMPLES["Coat"],
        "--layer",
        "features.10",
        *args,
        "--out",
        out,
        cwd=files["root"],
    )
    assert result.returncode == 0, result.stderr
    x = to_input(read_image(SAMPLES["Coat"]), 1)[None]
    expected = xai.explain(model, x, method="gradcam", layer="features.10")
    raw = np.load(out / "4-coat.png" / "gradcam_raw.npy")
    np.testing.assert_allclose(raw, expected.raw[0].numpy(), rtol=1e-5, atol=1e-6)
    manifest = json.loads((out / "4-coat.png" / "manifest.json").read_text())
    assert manifest["explanations"][0]["layer"] == "features.10"
    assert manifest["model"]["kind"] in ("state_dict", "factory", "pickle")


# --------------------------------------------------------------- the other commands


def test_layers_and_classes(model):
    result = run("layers")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:-1]]
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert [r[0] for r in rows if r[1] == "Conv2d"] == convs
    # shapes as the model computes them, layer by layer
    h = model.normalize(torch.zeros(1, 1, 28, 28))
    shapes = {}
    for index, layer in enumerate(model.features):
        h = layer(h)
        shapes[f"features.{index}"] = " ".join(str(d) for d in h.shape[1:])
    for row in rows:
        assert " ".join(row[2:7:2]) == shapes[row[0]]
    assert rows[-1][0] == "features.18"
    assert rows[-1][-1] == "default"

    result = run("classes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{i}  {n}" for i, n in enumerate(model.class_names)]


def _shapley_by_definition(values: dict[frozenset, Fraction], n: int) -> list[Fraction]:
    phi = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        total = Fraction(0)
        for size in range(n):
            weight = Fraction(factorial(size) * factorial(n - size - 1), factorial(n))
            for s in combinations(others, size):
                total += weight * (values[frozenset(s) | {i}] - values[frozenset(s)])
        phi.append(total)
    return phi


def test_shapley_housing_and_a_csv_table_with_a_plot(tmp_path):
    result = run("shapley")
    assert result.returncode == 0, result.stderr
    for name, value in [
        ("year_built", "11/6"),
        ("floor_area", "10/3"),
        ("neighbourhood_safety", "29/6"),
    ]:
        assert re.search(rf"^{name}\s+{value} ", result.stdout, re.M)
    assert "efficiency: v(empty) + sum of values = 30 = v(all)" in result.stdout

    rng = np.random.default_rng(3)
    names = ["a", "b", "c", "d"]
    values = {}
    lines = [",".join([*names, "value"])]
    for mask in range(16):
        members = frozenset(i for i in range(4) if mask >> i & 1)
        value = Fraction(int(rng.integers(-50, 50)), 4)
        values[members] = value
        bits = ",".join("1" if i in members else "0" for i in range(4))
        lines.append(f"{bits},{float(value)}")
    table = tmp_path / "game.csv"
    table.write_text("\n".join(lines) + "\n")
    plot = tmp_path / "bars.png"
    result = run("shapley", table, "--plot", plot, "--kind", "bar")
    assert result.returncode == 0, result.stderr
    for name, phi in zip(names, _shapley_by_definition(values, 4), strict=True):
        assert re.search(rf"^{name}\s+{phi} ", result.stdout, re.M), (name, phi, result.stdout)
    assert cv2.imread(str(plot)) is not None


# -------------------------------------------------------------------------- bad input

SAMPLE = str(SAMPLES["Bag"])
BAD = {
    "missing file": (["explain", "missing.png"], r"missing\.png: no such file or folder"),
    "empty folder": (["explain", "{empty}"], r"has no PNG or JPEG images"),
    "not an image": (["explain", "{notes.png}"], r"not a PNG or JPEG image"),
    "truncated png": (["explain", "{truncated.png}"], r"truncated PNG"),
    "corrupt png": (["explain", SAMPLE, "{corrupt.png}"], r"corrupt PNG: the checksum"),
    "no match": (["explain", "{root}/*.gif"], r"no file matches the pattern"),
    "unknown method": (
        ["explain", SAMPLE, "--method", "gradcan"],
        r"unknown method 'gradcan'\. Did you mean 'gradcam'\? Valid methods: cam, gradcam,",
    ),
    "unknown layer": (
        ["explain", SAMPLE, "--layer", "features.81"],
        r"--layer 'features\.81' is not a layer.*nearest: features\.8, features\.1",
    ),
    "target out of range": (["explain", SAMPLE, "--target", "10"], r"out of range.*0\.\.9"),
    "unknown class": (
        ["explain", SAMPLE, "--target", "sneakers"],
        r"'sneakers' is not a class.*Did you mean 'Sneaker'",
    ),
    "not a model": (["explain", SAMPLE, "--model", "{notes.png}"], r"not a PyTorch model"),
    "settings, not weights": (
        ["explain", SAMPLE, "--model", "{settings.pt}"],
        r"holds a dict, not a model's state_dict",
    ),
    "pickled model": (["explain", SAMPLE, "--model", "{whole.pt}"], r"--trust-pickle"),
    "weights without arch": (["explain", SAMPLE, "--model", "{weights.pt}"], r"--arch"),
    "unwritable out": (
        ["explain", SAMPLE, "--out", "/proc/xai-cannot-write"],
        r"--out: cannot write to the folder /proc/xai-cannot-write",
    ),
    "out is a file": (["explain", SAMPLE, "--out", "{notes.png}"], r"is a file, not a folder"),
    "unknown colormap": (["explain", SAMPLE, "--colormap", "jett"], r"Did you mean 'jet'"),
    "alpha": (["explain", SAMPLE, "--alpha", "1.5"], r"--alpha must be between 0 and 1"),
    "layers of a missing model": (["layers", "--model", "x.pt"], r"x\.pt: no such file"),
    "shapley missing table": (["shapley", "none.csv"], r"no coalition table at none\.csv"),
    "shapley incomplete table": (["shapley", "{half.csv}"], r"coalition \{b\} is missing"),
    "shapley plot not png": (["shapley", "--plot", "v.jpg"], r"--plot v\.jpg: .* \.png file"),
    "shapley plot unwritable": (
        ["shapley", "--plot", "/proc/xai-no/v.png"],
        r"--plot: folder /proc/xai-no does not exist",
    ),
}


@pytest.fixture(scope="module")
def bad_results(files, tmp_path_factory):
    """Every bad-input case, run at once (they are independent processes)."""
    (files["root"] / "half.csv").write_text("a,b,value\n0,0,1\n1,0,2\n1,1,3\n")
    paths = files | {"half.csv": files["root"] / "half.csv"}
    outs = {}

    def launch(case: str) -> subprocess.CompletedProcess[str]:
        args, _ = BAD[case]
        args = [_fill(a, paths) for a in args]
        if args[0] == "explain" and "--out" not in args:
            outs[case] = tmp_path_factory.mktemp("bad") / "out"
            args += ["--out", str(outs[case])]
        return run(*args, cwd=files["root"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(BAD, pool.map(launch, BAD), strict=True))
    return results, outs


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2_and_nothing_written(bad_results, case):
    results, outs = bad_results
    _one_line_error(results[case], BAD[case][1])
    assert results[case].stdout == ""
    if case in outs:
        assert not outs[case].exists()  # not even the folder


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_is_refused_with_the_reason_and_the_fix(tmp_path, model):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    result = run("explain", SAMPLE, "--model", path, "--out", tmp_path / "o")
    _one_line_error(result, r"is TorchScript: its layers run as compiled code.*state_dict")
    assert not (tmp_path / "o").exists()
    classes = run("classes", "--model", path, "--input-size", "1,28,28")
    assert classes.returncode == 0, classes.stderr
    assert "10 outputs" in classes.stdout
