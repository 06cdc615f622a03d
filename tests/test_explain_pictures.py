"""What ``xai explain``'s pictures say: each overlay and heatmap titled with the class and
its probability, a labelled colour bar, a note on near-empty maps (``--bare``: the bare
pixels), and the comparison grid showing the model's input beside the original."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import xai
import xai.viz.grids as grids
from xai.cli import main
from xai.images import read_image, to_input
from xai.viz.grids import IMPORTANCE_LABEL, map_figure, method_grid
from xai.viz.map_pictures import MapPictures
from xai.viz.overlay import to_rgb

SAMPLES = dict(xai.models.sample_images())  # class name -> PNG path


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.get_images()]


def _colorbar_labels(fig) -> list[str]:
    return [ax.get_xlabel() for ax in fig.axes if not ax.get_images() and ax.get_xlabel()]


@pytest.fixture
def drawn(monkeypatch):
    """Every figure ``xai explain`` draws, as (kind, figure, keyword arguments)."""
    made: list[tuple[str, object, dict]] = []

    def spy(name, real):
        def wrapper(*args, **kwargs):
            fig = real(*args, **kwargs)
            made.append((name, fig, {"args": args, **kwargs}))
            return fig

        monkeypatch.setattr(grids, name, wrapper)

    spy("map_figure", grids.map_figure)
    spy("method_grid", grids.method_grid)
    real_save = MapPictures.save

    def save(self, pixels, path, **kwargs):  # every picture written, drawn afresh or not
        written = real_save(self, pixels, path, **kwargs)
        made.append(("save", None, {"path": path, **kwargs}))
        return written

    monkeypatch.setattr(MapPictures, "save", save)
    return made


def test_map_figure_title_note_and_colour_bar():
    pixels = np.zeros((224, 224, 3), np.uint8)
    pixels[:, 112:] = 255
    fig = map_figure(pixels, title="Bag  99.8 %  \u2014 gradcam", note="near-empty: 3 % of x")
    (ax,) = _image_axes(fig)
    assert ax.get_title() == "Bag  99.8 %  \u2014 gradcam\nnear-empty: 3 % of x"
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), pixels)
    assert _colorbar_labels(fig) == [IMPORTANCE_LABEL] == ["importance, 0 = least, 1 = most"]
    assert _image_axes(map_figure(pixels, title="t"))[0].get_title() == "t"


def test_pictures_are_titled_with_class_and_probability(tmp_path, drawn, capsys):
    out = tmp_path / "out"
    assert main(["explain", str(SAMPLES["Bag"]), "-m", "gradcam", "-q", "--out", str(out)]) == 0
    model = xai.models.pretrained()
    x = to_input(read_image(SAMPLES["Bag"]), 1, (28, 28))[None]
    with torch.no_grad():
        probability = float(torch.softmax(model(x), dim=1)[0, 8])
    expected = f"Bag  {100 * probability:.1f} %  \u2014 gradcam"
    saved = [kwargs for kind, _, kwargs in drawn if kind == "save"]
    assert [Path(s["path"]).name for s in saved] == ["gradcam_overlay.png", "gradcam_heatmap.png"]
    assert [s["title"] for s in saved] == [expected, expected]
    figures = [fig for kind, fig, _ in drawn if kind == "map_figure"]
    assert len(figures) == 1  # the heat map's layout is the overlay's: its figure is reused
    for fig in figures:
        (ax,) = _image_axes(fig)
        assert ax.get_title() == expected  # no note: the top-1 map
        assert _colorbar_labels(fig) == [IMPORTANCE_LABEL]
        assert ax.get_images()[0].get_array().shape == (224, 224, 3)  # 28x28 shown 8x
    manifest = json.loads((out / "8-bag.png" / "manifest.json").read_text())
    (entry,) = manifest["explanations"]
    assert entry["title"] == expected and entry["note"] is None
    assert manifest["display"]["bare"] is False
    png = cv2.imread(str(out / "8-bag.png" / "gradcam_overlay.png"))
    assert png.shape[0] > 300 and png.shape[1] >= 224  # the picture, its title and bar
    assert (png[0] == 255).all()  # a white margin above (the title), not the bare pixels


def test_near_empty_note_for_a_tiny_map_not_for_top1(tmp_path, drawn):
    shirt = SAMPLES["T-shirt/top"]
    out = tmp_path / "out"
    argv = ["explain", str(shirt), "-m", "gradcam", "-q", "--target", "Sneaker"]
    assert main([*argv, "--out", str(out)]) == 0
    entry = json.loads((out / shirt.name / "manifest.json").read_text())["explanations"][0]
    relative = entry["raw_max_relative_to_top1"]
    assert 0 < relative < 0.05 and entry["near_empty"] is True  # 3 % of the top-1 map
    assert entry["note"] == f"near-empty: {100 * relative:.2g} % of the top-1 map"
    for kind, fig, _ in drawn:
        if kind == "map_figure":
            title = _image_axes(fig)[0].get_title()
            assert title.startswith("Sneaker  0.0 %") and title.endswith(entry["note"])
    notes = [kwargs["note"] for kind, _, kwargs in drawn if kind == "save"]
    assert notes == [entry["note"]] * 2  # the overlay's and the heat map's
    drawn.clear()
    assert main(["explain", str(shirt), "-m", "gradcam", "-q", "--out", str(tmp_path / "b")]) == 0
    for kind, fig, _ in drawn:
        if kind == "map_figure":
            assert "near-empty" not in _image_axes(fig)[0].get_title()


def test_bare_writes_the_pixels_without_figures(tmp_path, drawn):
    out = tmp_path / "out"
    assert main(["explain", str(SAMPLES["Bag"]), "--bare", "-q", "--out", str(out)]) == 0
    assert drawn == []
    assert cv2.imread(str(out / "8-bag.png" / "gradcam_overlay.png")).shape == (224, 224, 3)
    assert json.loads((out / "8-bag.png" / "manifest.json").read_text())["display"]["bare"]


def test_comparison_shows_the_model_input_beside_the_original(tmp_path, drawn):
    photo = np.zeros((60, 90, 3), np.uint8)
    photo[10:50, 20:70] = (200, 40, 40)  # a red block on black, in colour
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), photo[:, :, ::-1])
    out = tmp_path / "out"
    assert main(["explain", str(path), "-m", "cam,gradcam", "-q", "--out", str(out)]) == 0
    ((_, fig, _kwargs),) = [d for d in drawn if d[0] == "method_grid"]
    axes = _image_axes(fig)
    titles = [ax.get_title().split("\n")[0] for ax in axes]
    assert titles == ["original", "model input (1x28x28)", "cam", "gradcam"]
    seen = to_input(read_image(path), 1, (28, 28))
    np.testing.assert_array_equal(axes[1].get_images()[0].get_array(), to_rgb(seen))
    shown = np.repeat(np.repeat(photo, 4, axis=0), 4, axis=1)  # enlarged 4x: 240 x 360
    np.testing.assert_array_equal(axes[0].get_images()[0].get_array(), shown)
    gray = axes[1].get_images()[0].get_array()
    assert (gray[..., 0] == gray[..., 1]).all()  # gray: what a 1-channel model saw
    assert (out / "photo.png" / "comparison.png").is_file()


def test_method_grid_without_model_input_keeps_its_panels():
    image = np.zeros((28, 28), np.uint8)
    fig = method_grid(image, {"cam": np.ones((7, 7))})
    assert [ax.get_title() for ax in _image_axes(fig)] == ["input", "cam"]


def test_picture_titles_by_hand():
    from xai.cli._output import Result, picture_title, weak_note

    names = ["T-shirt/top", "Bag"]
    strong = Result(torch.ones(2, 2), target=1, score=6.0, layer=None, relative=1.0)
    weak = Result(torch.ones(2, 2), target=0, score=-3.0, layer=None, relative=0.031)
    zero = Result(torch.zeros(2, 2), target=0, score=-3.0, layer=None, relative=0.0)
    assert picture_title("gradcam", strong, names, 0.9984) == "Bag  99.8 %  \u2014 gradcam"
    assert picture_title("cam", strong, names, None) == "Bag  6.00  \u2014 cam"  # no softmax
    assert weak_note(strong) is None
    assert weak_note(weak) == "near-empty: 3.1 % of the top-1 map"
    assert weak_note(zero).startswith("all zero")
    assert weak_note(Result(torch.ones(1, 1), 0, 1.0, None, 0.051)) is None  # over 5 %


def test_a_class_agnostic_map_says_so(tmp_path, drawn):
    out = tmp_path / "out"
    assert main(["explain", str(SAMPLES["Bag"]), "-m", "eigencam", "-q", "--out", str(out)]) == 0
    (entry,) = json.loads((out / "8-bag.png" / "manifest.json").read_text())["explanations"]
    assert entry["note"] == "class-agnostic: same for all classes"
    title = _image_axes(drawn[0][1])[0].get_title()
    assert title.startswith("Bag  ") and title.endswith("\nclass-agnostic: same for all classes")
