"""`xai explain` against reruns, name clashes, failures found late and interrupted runs:
nothing wrong, nothing lost, nothing half-written on disk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import xai
from tests._forkserver import run_xai
from xai.cli import main

XAI = str(Path(sys.executable).parent / "xai")
SAMPLES = dict(xai.models.sample_images())


def run(*args, cwd=None) -> subprocess.CompletedProcess[str]:
    """``xai ARGS`` in a process of its own, forked from one with torch and xai imported
    (tests/_forkserver.py); the signal tests below start the real console script."""
    return run_xai(*args, cwd=cwd)


def one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xai: error: "), result.stderr
    return lines[0]


def whole(folder: Path) -> bool:
    """An image folder as a run writes it: a manifest, and every file it lists, and no
    file it does not list."""
    manifest = json.loads((folder / "manifest.json").read_text())
    listed = {"manifest.json", manifest.get("comparison")} - {None}
    for entry in manifest["explanations"]:
        listed |= set(entry["files"].values())
    return {p.name for p in folder.iterdir()} == listed


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for path in list(SAMPLES.values())[:3]:
        shutil.copy(path, folder / path.name)
    return folder


# ------------------------------------------------------------------------ names


def test_folder_names_are_unique_and_stable(tmp_path):
    """x-2.png, x.png and x.jpg gave two folders (x-2 was taken by the de-duplication):
    one image's results were overwritten. Each now has its own folder, named after its
    file, the same whatever else is in the run."""
    import cv2

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(SAMPLES["Sneaker"], src / "x.png")
    shutil.copy(SAMPLES["Bag"], src / "x-2.png")
    cv2.imwrite(str(src / "x.jpg"), cv2.imread(str(SAMPLES["Coat"])))
    out = tmp_path / "out"
    result = run("explain", src / "x-2.png", src / "x.png", src / "x.jpg", "--out", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "x-2.png", "x.jpg", "x.png"]
    for name in ("x-2.png", "x.jpg", "x.png"):
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert Path(manifest["image"]["path"]).name == name  # each its own image
    alone = tmp_path / "alone"
    assert run("explain", src / "x.png", "--out", alone).returncode == 0
    assert sorted(p.name for p in alone.iterdir()) == ["index.html", "x.png"]


def test_two_inputs_that_would_share_a_folder_are_refused_before_writing(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(SAMPLES["Sneaker"], tmp_path / sub / "shoe.png")
    out = tmp_path / "out"
    line = one_line_error(run("explain", tmp_path / "a", tmp_path / "b", "--out", out))
    assert "would both be written to the folder 'shoe.png'" in line
    assert not out.exists()


# ------------------------------------------------------------------------ reruns


def test_a_rerun_replaces_each_image_folder_as_a_whole(images, tmp_path):
    out = tmp_path / "out"
    assert run("explain", images, "--method", "gradcam,scorecam", "--out", out).returncode == 0
    before = sorted(p.name for p in out.iterdir())
    result = run("explain", images, "--method", "cam", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "(3 replaced an earlier run's folder)" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == before  # no leftovers, no partials
    for folder in (p for p in out.iterdir() if p.name != "index.html"):
        assert whole(folder)
        assert sorted(p.name for p in folder.iterdir()) == [
            "cam_heatmap.png",
            "cam_overlay.png",
            "cam_raw.npy",
            "manifest.json",
        ]  # no gradcam/scorecam files, no comparison.png from the first run


def test_a_rerun_that_fails_while_writing_leaves_old_or_new_folders_never_mixed(
    images, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    assert main(["explain", str(images), "--method", "gradcam", "--out", str(out), "-q"]) == 0
    first = {p.name: (p / "manifest.json").read_text() for p in out.iterdir() if p.is_dir()}

    import xai.cli.explain as explain

    calls = {"n": 0}
    real = explain.write_item

    def failing(folder, *args, **kwargs):
        calls["n"] += 1
        real(folder, *args, **kwargs)  # the files are written ...
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")  # ... then the disk fills up

    monkeypatch.setattr(explain, "write_item", failing)
    status = main(["explain", str(images), "--method", "cam", "--target", "3", "--out", str(out)])
    assert status == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "1 of 3 image folders were written" in err
    names = sorted(first)
    new = json.loads((out / names[0] / "manifest.json").read_text())
    assert [e["method"] for e in new["explanations"]] == ["cam"]  # the one written
    for name in names[1:]:  # the others: the first run's folders, whole and unchanged
        assert (out / name / "manifest.json").read_text() == first[name]
        assert whole(out / name)
    assert sorted(p.name for p in out.iterdir()) == names  # no partial folder left
    # and no page: the first run's would show folders that changed; this run's is not whole


# ------------------------------------------------------------ failures found late


def test_a_failure_in_a_later_batch_writes_nothing(tmp_path):
    """The model refuses the second image's size: previously the first image's files were
    already on disk when the run stopped with 'bad input'."""
    import cv2

    src = tmp_path / "src"
    src.mkdir()
    sneaker = cv2.imread(str(SAMPLES["Sneaker"]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(src / "a.png"), sneaker)
    cv2.imwrite(str(src / "b.png"), cv2.resize(sneaker, (40, 40)))
    (tmp_path / "nets.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),\n"
        "                         nn.Linear(4 * 28 * 28, 10)).eval()\n"
    )
    out = tmp_path / "out"
    result = run(
        "explain", src / "a.png", src / "b.png", "--model", "nets.py:build", "--out", out,
        "--batch-size", "1", cwd=tmp_path,
    )  # fmt: skip
    line = one_line_error(result)
    assert "cannot take inputs of shape (1, 40, 40)" in line
    assert not out.exists()


# -------------------------------------------------------------------- interrupts


def _many(tmp_path: Path, count: int) -> Path:
    src = tmp_path / "many"
    src.mkdir()
    paths = list(SAMPLES.values())
    for i in range(count):
        shutil.copy(paths[i % len(paths)], src / f"{i:03d}.png")
    return src


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "status", "line"),
    [(signal.SIGINT, 130, "xai: interrupted"), (signal.SIGTERM, 143, "xai: terminated")],
)
def test_a_signal_while_writing_leaves_whole_folders_and_one_line(sig, status, line, tmp_path):
    # bare pictures: the folders' atomicity is the point here, not their titles
    src, out = _many(tmp_path, 24), tmp_path / "out"
    process = subprocess.Popen(
        [XAI, "explain", str(src), "--method", "gradcam,cam", "--bare", "--out", str(out), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and len(os.listdir(out)) >= 3):
        time.sleep(0.01)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    assert err.strip().splitlines() == [line]  # one line, no traceback
    folders = list(out.iterdir())
    assert 0 < len(folders) < 60
    for folder in folders:
        assert not folder.name.startswith("."), folder  # no partial folder left behind
        assert whole(folder)


@pytest.mark.slow
def test_a_killed_run_leaves_no_half_written_image_folder(tmp_path):
    # bare pictures: the folders' atomicity is the point here, not their titles
    src, out = _many(tmp_path, 24), tmp_path / "out"
    process = subprocess.Popen(
        [XAI, "explain", str(src), "--method", "gradcam,cam", "--bare", "--out", str(out), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and len(os.listdir(out)) >= 3):
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=60)
    visible = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert 0 < len(visible) < 24
    assert all(whole(folder) for folder in visible)
    # a rerun removes what the kill left (a hidden partial folder) and completes the set
    rerun = run("explain", src, "--method", "gradcam,cam", "--bare", "--out", out, "-q")
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(out.iterdir())) == 24 + 1  # and the run's index.html
    assert all(whole(folder) for folder in out.iterdir() if folder.name != "index.html")


# ------------------------------------------------------------------ weak maps


def test_near_empty_maps_are_reported_with_their_scale(tmp_path):
    """Per-sample min-max makes a map whose maximum is a tiny share of the top-1 class's
    look like a bright spot: the manifest and the table say how strong it really is."""
    out = tmp_path / "out"
    result = run(
        "explain", SAMPLES["T-shirt/top"], SAMPLES["Sneaker"], "--method", "scorecam,gradcam",
        "--target", "Sneaker", "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    shirt = json.loads((out / SAMPLES["T-shirt/top"].name / "manifest.json").read_text())
    shoe = json.loads((out / SAMPLES["Sneaker"].name / "manifest.json").read_text())
    for entry in shoe["explanations"]:  # the sneaker's own class is its top-1
        assert entry["raw_max_relative_to_top1"] == pytest.approx(1.0)
        assert entry["near_empty"] is False
    weak = {e["method"]: e for e in shirt["explanations"]}
    import numpy as np

    top1 = xai.explain(
        xai.models.pretrained(),
        xai.images.to_input(xai.images.read_image(SAMPLES["T-shirt/top"]), 1, (28, 28))[None],
        method="gradcam",
    )
    own = float(np.load(out / SAMPLES["T-shirt/top"].name / "gradcam_raw.npy").max())
    expected = own / float(top1.raw.max())
    assert weak["gradcam"]["raw_max_relative_to_top1"] == pytest.approx(expected, rel=1e-4)
    assert weak["scorecam"]["near_empty"] is True  # no evidence for a sneaker in a shirt
    rows = {r.split()[0]: r for r in result.stdout.splitlines()[1:3]}
    assert rows[SAMPLES["T-shirt/top"].name].endswith(("near-empty", "all zero"))
    assert rows[SAMPLES["Sneaker"].name].endswith("100%")


# ------------------------------------------------------------ image limits, damage


def test_max_pixels_and_allow_damaged_from_the_command_line(tmp_path):
    import cv2

    gray = cv2.resize(cv2.imread(str(SAMPLES["Sneaker"]), cv2.IMREAD_GRAYSCALE), (200, 200))
    ok, encoded = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(encoded.tobytes()[: len(encoded) * 6 // 10])  # cut mid-scan
    out = tmp_path / "out"
    line = one_line_error(run("explain", cut, "--out", out))
    assert "truncated JPEG" in line
    assert not out.exists()
    result = run("explain", cut, "--out", out, "--allow-damaged", "-q")
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.strip().splitlines()
    damaged = [w for w in warnings if "damaged" in w]  # once; besides: 200x200 -> 28x28
    assert len(damaged) == 1 and damaged[0].startswith("xai: warning: "), result.stderr
    assert [w.rpartition(" ")[2] for w in warnings if w not in damaged] == ["[size]"]
    assert whole(out / "cut.jpg")
    line = one_line_error(run("explain", SAMPLES["Sneaker"], "--out", out, "--max-pixels", "700"))
    assert "784" in line and "--max-pixels" in line  # 28 x 28 pixels over a cap of 700
    one_line_error(run("explain", SAMPLES["Sneaker"], "--out", out, "--max-pixels", "0"))


def test_a_huge_input_size_and_bad_options_are_one_line_before_any_work(tmp_path):
    """--input-size 1,30000,30000 took 7 GB before failing; argparse's errors printed
    their usage first. Both are one line and exit 2 now, at once."""
    start = time.monotonic()
    line = one_line_error(run("layers", "--input-size", "1,30000,30000"))
    assert "900,000,000 pixels" in line and "89,478,485" in line
    assert time.monotonic() - start < 30
    line = one_line_error(run("explain", "x.png", "--batch-size", "x"))
    assert "invalid int value: 'x'" in line and line.endswith("(see xai explain --help)")
