"""``xai grid`` and ``xai.viz.class_columns``: one example per class, one class per
column, its maps under each method (the coursework's per-class figure, in landscape)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import xai
from tests._forkserver import run_xai
from tests.conftest import fashion_mnist_installed
from tests.test_viz import title_overlaps
from xai.explanation import IMPORTANCE_LABEL
from xai.models.loading import load_model
from xai.viz.class_columns import class_columns
from xai.viz.grids import _MISTAKE_COLOR
from xai.viz.overlay import to_rgb


@pytest.fixture(scope="module")
def fashion():
    model = xai.models.pretrained("fashion-mnist")
    images, labels = xai.models.sample_batch()
    return model, images, labels


def _panels(fig) -> dict[str, object]:
    """The figure's panels by their label: ``"input c"`` and ``"METHOD c"``."""
    return {ax.get_label(): ax for ax in fig.axes if ax.get_label()}


def _one_line_error(result, pattern: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("xai: error: ") and pattern in lines[0], lines[0]


def test_columns_titles_maps_and_a_red_mistake(fashion):
    model, images, labels = fashion
    labels = labels.clone()
    labels[5] = 7  # the sandal said to be a sneaker: class 7's first image, a mistake
    fig = class_columns(model, images, labels, methods=("cam", "gradcam"), model_name="net")
    panels = _panels(fig)
    shown = [c for c in range(10) if c != 5]  # no example of Sandal any more
    picked = [c if c != 7 else 5 for c in shown]  # the image each column shows
    assert sorted(panels) == sorted(f"{m} {c}" for m in ("input", "cam", "gradcam") for c in shown)
    with torch.no_grad():
        probabilities = torch.softmax(model(images[picked]), dim=1)
    predicted = probabilities.argmax(dim=1).tolist()
    assert predicted == picked  # the embedded model gets the ten samples right
    names = model.class_names
    for column, c in enumerate(shown):
        title = panels[f"input {c}"].title
        guess = predicted[column]
        p = float(probabilities[column, guess])
        assert title.get_text() == f"true: {names[c]}\npred: {names[guess]}\np = {p:.2f}"
        assert title.get_color() == (_MISTAKE_COLOR if c == 7 else "black")
        assert (title.get_fontweight() == "bold") == (c == 7)
        np.testing.assert_array_equal(
            panels[f"input {c}"].get_images()[0].get_array(), to_rgb(images[picked[column]])
        )
    assert "true: Sneaker\npred: Sandal" in panels["input 7"].get_title()
    # Each map panel draws the input, then the map itself: exactly xai.explain's.
    for method in ("cam", "gradcam"):
        maps = xai.explain(model, images[picked], method=method, target=predicted).maps
        for column, c in enumerate(shown):
            background, drawn = panels[f"{method} {c}"].get_images()
            np.testing.assert_array_equal(background.get_array(), to_rgb(images[picked[column]]))
            np.testing.assert_allclose(drawn.get_array(), maps[column].numpy(), atol=1e-6)
            assert drawn.get_alpha() == 0.5 and drawn.norm.vmin == 0 and drawn.norm.vmax == 1
    title = fig.get_suptitle()
    assert title.startswith("net: cam, gradcam maps of the predicted class")
    assert "1 of 9 misclassified (red titles); no example of Sandal" in title
    # Landscape: classes run across, the methods down.
    rows = {round(ax.get_position().y0, 3) for ax in panels.values()}
    columns = {round(ax.get_position().x0, 3) for ax in panels.values()}
    assert len(rows) == 3 and len(columns) == 9
    assert fig.get_figwidth() > fig.get_figheight()
    assert title_overlaps(fig) == []


def test_colour_bar_is_solid_and_labelled(fashion):
    model, images, labels = fashion
    fig = class_columns(model, images[:3], labels[:3], methods="eigencam", colormap="viridis")
    (bar_axes,) = [ax for ax in fig.axes if hasattr(ax, "_colorbar")]
    bar = bar_axes._colorbar
    assert bar_axes.get_xlabel() == IMPORTANCE_LABEL == "importance, 0 = least, 1 = most"
    assert bar.alpha is None and bar.norm.vmin == 0 and bar.norm.vmax == 1
    assert np.all(bar.cmap(np.linspace(0, 1, 16))[:, 3] == 1.0)  # opaque colours
    drawn = _panels(fig)["eigencam 1"].get_images()[1]
    assert drawn.cmap is bar.cmap or drawn.cmap.name == bar.cmap.name
    assert "no example of Dress, Coat, Sandal" in fig.get_suptitle()


def test_refuses_bad_arguments(fashion):
    model, images, labels = fashion
    with pytest.raises(ValueError, match="at least one method"):
        class_columns(model, images, labels, methods=())
    with pytest.raises(ValueError, match="outside the 10 classes"):
        class_columns(model, images, labels + 5)
    with pytest.raises(ValueError, match="jett"):
        class_columns(model, images, labels, colormap="jett")


def test_cli_writes_a_landscape_png(tmp_path):
    result = run_xai("grid", "--out", "grid.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wrote grid.png"
    png = cv2.imread(str(tmp_path / "grid.png"))
    height, width = png.shape[:2]
    assert width > height > 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]


def test_cli_reads_class_indices_from_file_names(tmp_path, fashion):
    """A folder like the samples, with the sneaker renamed into class 5: class 5's first
    image is the sneaker, the model says Sneaker, so its title is red; the samples as
    shipped give no red title."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for _, path in xai.models.sample_images():
        shutil.copy(path, folder / path.name.replace("7-sneaker", "5-a-sneaker"))
    from xai.cli import grid

    args = argparse.Namespace(input_size=None)
    loaded = load_model(None)
    x, labels = grid._folder(sorted(folder.iterdir()), "--data", loaded, args)
    assert labels == [0, 1, 2, 3, 4, 5, 5, 6, 8, 9]
    images = fashion[1]
    np.testing.assert_array_equal(x[5].numpy(), images[7].numpy())  # 5-a-sneaker sorts first
    result = run_xai(
        "grid", "--data", folder, "--methods", "gradcam", "--out", "g.png", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    png = cv2.imread(str(tmp_path / "g.png"))
    red = np.array([0x1A, 0x00, 0xC0])  # _MISTAKE_COLOR in OpenCV's BGR
    titles = png[: png.shape[0] // 4]  # above the images (the colour bar has such reds too)
    assert (np.abs(titles.astype(int) - red).sum(axis=2) < 40).sum() > 300  # one red title
    samples = xai.models.sample_images()[0][1].parent
    result = run_xai(
        "grid", "--data", samples, "--methods", "gradcam", "--out", "ok.png", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    png = cv2.imread(str(tmp_path / "ok.png"))
    titles = png[: png.shape[0] // 4]
    assert (np.abs(titles.astype(int) - red).sum(axis=2) < 40).sum() == 0  # none is wrong


@pytest.mark.skipif(not fashion_mnist_installed(), reason="Fashion-MNIST is not installed")
def test_data_spec_takes_the_first_test_image_of_each_class():
    from xai.cli import grid

    test = xai.data.load("fashion-mnist", split="test")
    loaded = load_model(None)
    x, labels = grid._data_set("fashion-mnist:test", loaded, argparse.Namespace(input_size=None))
    assert labels == list(range(10))
    for c in range(10):
        first = int(np.flatnonzero(test.labels == c)[0])
        np.testing.assert_array_equal(x[c, 0].numpy(), test.images[first] / np.float32(255))


@pytest.mark.skipif(not fashion_mnist_installed(), reason="Fashion-MNIST is not installed")
def test_mistakes_are_the_first_misclassified_test_samples_read_in_chunks(monkeypatch):
    """--mistakes N keeps exactly find_mistakes' first N over the whole test set (their
    positions, images and labels), reading it in chunks smaller than the run needs."""
    from xai.cli import grid
    from xai.viz.mistakes import find_mistakes

    test = xai.data.load("fashion-mnist", split="test")
    model = xai.models.pretrained("fashion-mnist")
    x, y = test.tensors()
    expected = find_mistakes(model, (x[:3000], y[:3000]), 40)  # 7 % of 3,000: enough
    assert len(expected) == 40
    monkeypatch.setattr(grid, "_CHUNK", 100)  # the 40th mistake lies beyond many chunks
    args = argparse.Namespace(input_size=None, mistakes=40, data="fashion-mnist:test")
    images, labels, positions, seen = grid._mistakes(load_model(None), args, [], "--data")
    assert positions == expected.indices.tolist() and seen == positions[-1] + 1
    np.testing.assert_array_equal(labels.numpy(), y[positions].numpy())
    np.testing.assert_array_equal(images.numpy(), x[positions].numpy())
    fig = xai.viz.mistakes.plot_mistakes(model, (images, labels), 3, positions=positions)
    assert fig.mistakes.indices.tolist() == [0, 1, 2]  # every kept sample is a mistake
    assert fig.axes[0].get_title().startswith(f"image #{positions[0]}\n")
    with pytest.raises(ValueError, match="one number per sample: 40 samples, got 1"):
        xai.viz.mistakes.plot_mistakes(model, (images, labels), 3, positions=[7])


@pytest.mark.skipif(not fashion_mnist_installed(), reason="Fashion-MNIST is not installed")
def test_cli_mistakes_writes_the_gallery_and_says_when_there_is_none(tmp_path):
    result = run_xai("grid", "--data", "fashion-mnist:test", "--mistakes", "2", "--out",
                     "m.png", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wrote m.png"
    height, width = cv2.imread(str(tmp_path / "m.png")).shape[:2]
    assert width > 1000 and height > 500  # two rows of four panels
    result = run_xai("grid", "--mistakes", "3", "--out", "none.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no sample is misclassified; nothing written" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--mistakes", "2", "--methods", "cam,gradcam"], "--mistakes draws one method's"),
        (["--mistakes", "0"], "at least 1, got '0'"),
        (["--methods", "gradcan"], "unknown method 'gradcan'"),
        (["--data", "nowhere"], "nowhere is no file or folder"),
        (["--data", "{empty}"], "has no PNG or JPEG images"),
        (["--data", "{unnamed}"], "does not start with its class index"),
        (["--data", "fashion-mnist:validation"], "names no split"),
        (["--out", "{empty}"], "is a folder"),
        (["--layer", "nope"], "nope"),
    ],
)
def test_cli_bad_options_one_line_exit_2_nothing_written(tmp_path, args, pattern):
    (tmp_path / "empty").mkdir()
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    shutil.copy(xai.models.sample_images()[0][1], unnamed / "shirt.png")
    paths = {"{empty}": str(tmp_path / "empty"), "{unnamed}": str(unnamed)}
    before = sorted(tmp_path.rglob("*"))
    result = run_xai("grid", *[paths.get(a, a) for a in args], cwd=tmp_path)
    _one_line_error(result, pattern)
    assert sorted(tmp_path.rglob("*")) == before


def test_readme_figure_colour_bar_label():
    """The README figure's colour bar names what it shows (the figure itself is made by
    tests/test_docs.py's run of examples/readme_figure.py)."""
    text = Path("examples/readme_figure.py").read_text()
    assert '"importance, 0 = least, 1 = most"' in text and "Explanation.maps" not in text


def test_the_old_path_finds_class_columns():
    # class_columns moved out of xai.viz.grids (its own module); the old import still works
    from xai.viz import grids

    assert grids.class_columns is class_columns
    with pytest.raises(AttributeError):
        grids.no_such_thing
