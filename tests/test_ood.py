"""Inputs far from the training images: ``xai.core.ood``'s checks, the model cards'
statistics they compare with, and ``xai explain``'s warnings (stderr and manifest)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import xai
from tests._synthetic import write_idx_dataset
from tests.conftest import fashion_mnist_installed
from xai.cli import main
from xai.core.ood import (
    MAX_BORDER_GAP,
    MAX_MEAN_Z,
    check_input,
    colourful,
    input_statistics,
)
from xai.images import read_image, to_input

SAMPLES = dict(xai.models.sample_images())  # class name -> PNG path
STATS = xai.models.model_card()["input_statistics"]


def _reasons(found) -> list[str]:
    return [w.reason for w in found]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    """A colour photo-like picture, a dark-on-light drawing and a 3:1 picture, and a
    gray picture saved as a colour JPEG (which is not colour)."""
    root = tmp_path_factory.mktemp("ood")
    height, width = 200, 240
    rows, columns = np.mgrid[0:height, 0:width]
    photo = np.dstack(
        [255 * columns / width, 255 * rows / height, 200 * (1 - columns / width)]
    ).astype(np.uint8)
    cv2.circle(photo, (120, 100), 50, (30, 200, 60), -1)
    cv2.imwrite(str(root / "photo.jpg"), photo[:, :, ::-1])
    drawing = np.full((28, 28), 255, np.uint8)
    cv2.rectangle(drawing, (8, 4), (20, 24), 0, 2)  # a dark bag outline on white
    cv2.imwrite(str(root / "drawing.png"), drawing)
    wide = np.zeros((28, 84), np.uint8)
    wide[8:20, 10:74] = 180
    cv2.imwrite(str(root / "wide.png"), wide)
    bag = cv2.imread(str(SAMPLES["Bag"]), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(root / "gray-as-rgb.jpg"), np.dstack([bag] * 3))
    return {p.stem: p for p in root.iterdir()}


def _check(path: Path, *, invert: bool = False):
    image = read_image(path)
    return check_input(image.pixels, to_input(image, 1, (28, 28), invert=invert), STATS,
                       inverted=invert)  # fmt: skip


# ------------------------------------------------------------------ the statistics


def test_input_statistics_by_hand():
    images = np.zeros((2, 4, 4), np.uint8)
    images[0, 1:3, 1:3] = 255  # image 0: a white 2x2 square inside a black ring
    images[1] = 51  # image 1: all 0.2
    stats = input_statistics(images)
    assert stats["pixel_mean"] == pytest.approx((4 / 16 + 0.2) / 2, abs=1e-4)
    assert stats["pixel_std"] == pytest.approx(np.std(images / 255.0), abs=1e-4)
    assert stats["image_mean_mean"] == pytest.approx(0.225, abs=1e-4)
    assert stats["image_mean_std"] == pytest.approx(0.025, abs=1e-4)
    assert stats["border_mean"] == pytest.approx(0.1, abs=1e-4)  # 0 and 0.2 rings
    assert stats["background"] == 0.2  # 16 pixels of 51 against 12 of 0
    assert stats["background_share"] == 0.5
    assert stats["images"] == 2
    same = input_statistics(images[:, None].astype(np.float32) / 255)  # (N, C, H, W) floats
    assert {k: same[k] for k in stats} == pytest.approx(stats)


@pytest.mark.skipif(not fashion_mnist_installed(), reason="dataset-fashion-mnist not installed")
def test_the_cards_statistics_are_those_of_the_training_images():
    train = xai.data.load("fashion-mnist", split="train")
    measured = input_statistics(train.images)
    for key in measured:
        assert STATS[key] == measured[key], key
    # the thresholds leave every training image unwarned on intensity and background
    pixels = train.images
    means = pixels.reshape(len(pixels), -1).mean(axis=1) / 255
    z = np.abs(means - STATS["image_mean_mean"]) / STATS["image_mean_std"]
    assert 3 < z.max() < MAX_MEAN_Z
    ring = np.concatenate([pixels[:, 0], pixels[:, -1], pixels[:, 1:-1, 0], pixels[:, 1:-1, -1]], 1)
    assert 0.3 < np.abs(ring.mean(axis=1) / 255 - STATS["border_mean"]).max() < MAX_BORDER_GAP


def test_xai_train_records_the_statistics_in_its_card(tmp_path):
    folder = write_idx_dataset(tmp_path / "data", per_class=6)
    out = tmp_path / "m.pt"
    argv = ["train", "--data", str(folder), "--model", "mlp", "--epochs", "1", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    card = json.loads((tmp_path / "m.pt.json").read_text())
    data = xai.data.splits("fashion-mnist", str(folder), fraction=1.0, seed=0)
    assert card["input_statistics"] == input_statistics(data.train.images)
    assert card["input_statistics"]["images"] == len(data.train)
    from xai.cli._common import load
    from xai.cli.explain import training_statistics

    args = type("Args", (), {"model": str(out), "arch": None, "config": None,
                             "trust_pickle": False, "device": "cpu"})()  # fmt: skip
    assert training_statistics(load(args)) == card["input_statistics"]


# ------------------------------------------------------------------ the checks


def test_no_shipped_sample_warns():
    for name, path in SAMPLES.items():
        assert _check(path) == [], name


def test_each_reason_is_found(pictures):
    photo = _check(pictures["photo"])
    assert "colour" in _reasons(photo) and "size" in _reasons(photo)
    assert "aspect" not in _reasons(photo)  # 240:200 is 1.2x off square
    assert _reasons(_check(pictures["wide"])) == ["aspect"]
    drawing = _check(pictures["drawing"])
    assert _reasons(drawing) == ["background"]
    assert "try --invert" in drawing[0].message
    assert _check(pictures["drawing"], invert=True) == []  # what --invert is for
    assert _check(pictures["gray-as-rgb"]) == []  # gray saved as RGB is not colour


def test_the_thresholds_numbers():
    gray = np.zeros((28, 28), np.uint8)
    x = np.zeros((1, 28, 28))
    assert check_input(gray, x, STATS) == []
    # aspect: 42:28 is 1.5x off (not more), 43:28 is
    assert _reasons(check_input(np.zeros((28, 42), np.uint8), x)) == []
    assert _reasons(check_input(np.zeros((28, 43), np.uint8), x)) == ["aspect"]
    # size: 112 = 4x (not more), 113 is
    assert _reasons(check_input(np.zeros((112, 112), np.uint8), x)) == []
    assert _reasons(check_input(np.zeros((113, 113), np.uint8), x)) == ["size"]
    assert _reasons(check_input(np.zeros((6, 6), np.uint8), x)) == ["size"]  # enlarged 4.7x
    # colour: a few coloured pixels (JPEG noise) do not count; 5 % do
    rgb = np.zeros((28, 28, 3), np.uint8)
    rgb[0, :10, 0] = 200  # 10 of 784 pixels: 1.3 %
    assert colourful(rgb) == pytest.approx(10 / 784)
    assert check_input(rgb, x, STATS) == []
    rgb[1, :30, 0] = 200
    assert _reasons(check_input(rgb, x, STATS)) == ["colour"]
    assert check_input(rgb, np.zeros((3, 28, 28)), STATS) == []  # an RGB model keeps colour
    # intensity: a mean MAX_MEAN_Z stds away
    mean, std = STATS["image_mean_mean"], STATS["image_mean_std"]
    inside = np.zeros((1, 28, 28))
    inside[:, 1:-1, 1:-1] = (mean + 3.9 * std) * 28 * 28 / (26 * 26)  # dark border kept
    assert check_input(gray, inside, STATS) == []
    outside = np.zeros((1, 28, 28))
    outside[:, 1:-1, 1:-1] = (mean + 4.2 * std) * 28 * 28 / (26 * 26)
    found = check_input(gray, outside, STATS)
    assert _reasons(found) == ["intensity"] and "4.2 standard deviations" in found[0].message
    assert check_input(gray, outside) == []  # no statistics, no intensity check


# ------------------------------------------------------------------ xai explain


def test_explain_warns_and_records_each_reason(tmp_path, pictures, capsys):
    out = tmp_path / "out"
    names = ["photo", "drawing", "wide", "gray-as-rgb"]
    status = main(
        ["explain", *(str(pictures[n]) for n in names), "--bare", "-q", "--out", str(out)]
    )
    assert status == 0  # a warning, not a refusal
    lines = capsys.readouterr().err.splitlines()
    warned = [line for line in lines if "warning" in line]
    expected = {"photo": ["colour", "size", "background"], "drawing": ["background"],
                "wide": ["aspect"], "gray-as-rgb": []}  # fmt: skip
    assert len(warned) == sum(map(len, expected.values()))  # one line per image and reason
    for name in names:
        path = pictures[name]
        manifest = json.loads((out / path.name / "manifest.json").read_text())
        reasons = [w["reason"] for w in manifest["input_warnings"]]
        assert reasons == expected[name], name
        for warning in manifest["input_warnings"]:
            assert f"xai: warning: {path}: {warning['message']} [{warning['reason']}]" in warned


def test_explain_on_every_shipped_sample_warns_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["explain", *map(str, SAMPLES.values()), "--bare", "-q", "--out", str(out)])
    assert status == 0
    assert "warning" not in capsys.readouterr().err
    for path in SAMPLES.values():
        assert json.loads((out / path.name / "manifest.json").read_text())["input_warnings"] == []
