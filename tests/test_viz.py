"""The pictures: colours, blends, grids and Shapley charts, checked pixel for pixel and
number for number (not just for their shapes)."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch
from matplotlib.container import BarContainer

import xai
from tests.conftest import make_gapcnn
from xai.viz._mpl import pyplot
from xai.viz.grids import class_grid, method_grid, save_figure
from xai.viz.overlay import colorize, colormaps, overlay, to_rgb
from xai.viz.shapley import NEGATIVE, POSITIVE, bar, waterfall

plt = pyplot()

# cv2.applyColorMap(0 / 255, COLORMAP_JET) is BGR (128, 0, 0): dark blue; 255 is dark red.
JET_0 = [0, 0, 128]
JET_1 = [128, 0, 0]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def fashion():
    model = xai.models.pretrained("fashion-mnist")
    images, labels = xai.models.sample_batch()
    return model, images, labels


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def rows_of(axes):
    """Axes grouped into rows (top to bottom), each row left to right."""
    rows: dict[float, list] = {}
    for ax in axes:
        rows.setdefault(round(ax.get_position().y0, 3), []).append(ax)
    return [
        sorted(row, key=lambda a: a.get_position().x0)
        for _, row in sorted(rows.items(), reverse=True)
    ]


def pixels(ax):
    return np.asarray(ax.images[0].get_array())


def title_overlaps(fig):
    """Titles that overlap another axes, another title or the figure's title."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = image_axes(fig)
    found = []
    for ax in axes:
        box = ax.title.get_window_extent(renderer)
        others = [b.get_window_extent(renderer) for b in fig.axes if b is not ax]
        others += [b.title.get_window_extent(renderer) for b in axes if b is not ax]
        if fig._suptitle is not None:
            others.append(fig._suptitle.get_window_extent(renderer))
        found += [ax.get_title() for other in others if box.overlaps(other)]
    return found


# --------------------------------------------------------------------------- overlay


def test_colormaps_are_opencvs_lowercased_and_sorted():
    names = colormaps()
    assert names == tuple(sorted(names))
    assert set(names) == {
        n[len("COLORMAP_") :].lower() for n in dir(cv2) if n.startswith("COLORMAP_")
    }
    assert {"jet", "turbo", "viridis", "inferno", "magma", "plasma", "hot"} <= set(names)


def test_colorize_is_rgb_not_bgr():
    rgb = colorize(np.array([[0.0, 1.0]]), "jet")
    assert rgb.shape == (1, 2, 3) and rgb.dtype == np.uint8
    low, high = rgb[0, 0].astype(int), rgb[0, 1].astype(int)
    assert low.tolist() == JET_0 and high.tolist() == JET_1
    assert high[0] == high.max() and high[2] == 0  # 1.0 is red
    assert low[2] == low.max() and low[0] == 0  # 0.0 is blue
    hot = colorize(np.array([[0.5]]), "hot")[0, 0].astype(int)
    assert hot[0] > hot[2]  # "hot" runs black -> red -> yellow -> white: red leads blue


@pytest.mark.parametrize("name", ["jet", "viridis", "turbo", "hot"])
def test_colorize_equals_opencv_flipped(name):
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every colour of the map
    expected = cv2.applyColorMap(levels, getattr(cv2, f"COLORMAP_{name.upper()}"))[..., ::-1]
    np.testing.assert_array_equal(colorize(levels / 255.0, name), expected)
    rng = np.random.default_rng(0)
    saliency = rng.random((7, 5))
    quantised = np.rint(saliency * 255).astype(np.uint8)
    expected = cv2.applyColorMap(quantised, getattr(cv2, f"COLORMAP_{name.upper()}"))[..., ::-1]
    np.testing.assert_array_equal(colorize(saliency, name), expected)


def test_colorize_clips_accepts_tensors_and_refuses_nan():
    outside = colorize(np.array([[-3.0, 7.0]]))
    np.testing.assert_array_equal(outside, colorize(np.array([[0.0, 1.0]])))
    np.testing.assert_array_equal(
        colorize(torch.tensor([[0.0, 1.0]])), colorize(np.array([[0.0, 1.0]]))
    )
    np.testing.assert_array_equal(colorize(np.array([[1.0]]), "JET"), [[JET_1]])
    with pytest.raises(ValueError, match="NaN"):
        colorize(np.array([[0.2, np.nan]]))
    with pytest.raises(ValueError, match=r"\(H, W\).*\(2, 3, 3\)"):
        colorize(np.zeros((2, 3, 3)))


def test_unknown_colormap_names_the_valid_ones_and_the_closest():
    with pytest.raises(ValueError, match="Did you mean 'viridis'") as error:
        colorize(np.zeros((2, 2)), "viridus")
    message = str(error.value)
    assert "'viridus'" in message and "jet" in message and "turbo" in message
    with pytest.raises(ValueError, match="Valid colormaps"):
        overlay(np.zeros((2, 2)), np.zeros((2, 2)), colormap="zzzzzz")


def test_to_rgb_gray_float_uint8_and_one_channel():
    gray = np.array([[0.0, 0.5], [1.0, 0.2]])
    expected = np.repeat(np.array([[0, 128], [255, 51]], dtype=np.uint8)[..., None], 3, axis=2)
    np.testing.assert_array_equal(to_rgb(gray), expected)  # round(255 * 0.5) = 128
    np.testing.assert_array_equal(to_rgb(gray[..., None]), expected)
    np.testing.assert_array_equal(to_rgb(expected[..., 0]), expected)
    rgb = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(to_rgb(rgb), rgb)  # RGB stays RGB


def test_to_rgb_uint16_and_rgba_composited_on_white():
    deep = np.array([[0, 200, 257, 386, 65535]], dtype=np.uint16)  # round(v / 257)
    np.testing.assert_array_equal(to_rgb(deep)[0, :, 0], [0, 1, 1, 2, 255])
    rgba = np.array([[[0, 100, 200, 0], [0, 100, 200, 255], [0, 100, 200, 128]]], dtype=np.uint8)
    # alpha 128/255: 255 * (1 - a) = 127 plus c * a: 0 -> 127, 100 -> 177.2, 200 -> 227.4
    np.testing.assert_array_equal(
        to_rgb(rgba)[0], [[255, 255, 255], [0, 100, 200], [127, 177, 227]]
    )
    rgba_float = rgba.astype(np.float64) / 255.0
    np.testing.assert_array_equal(to_rgb(rgba_float), to_rgb(rgba))


def test_to_rgb_torch_channels_first():
    chw = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0))
    expected = np.rint(chw.permute(1, 2, 0).numpy().astype(np.float64) * 255).astype(np.uint8)
    np.testing.assert_array_equal(to_rgb(chw), expected)
    np.testing.assert_array_equal(to_rgb(chw[:1]), np.repeat(expected[..., :1], 3, axis=2))
    assert to_rgb(chw[0]).shape == (4, 5, 3)


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((4, 4, 2)), r"expected an image of shape .*received shape \(4, 4, 2\)"),
        (np.zeros((2, 4, 4, 3)), r"received shape \(2, 4, 4, 3\)"),
        (np.zeros(5), r"received shape \(5,\)"),
        (torch.zeros(2, 4, 4), r"\(C, H, W\).*received shape \(2, 4, 4\)"),
        (np.full((2, 2), 200.0), r"\[0, 1\].*divide"),
        (np.array([[np.nan, 0.0]]), "NaN"),
    ],
)
def test_to_rgb_refuses_bad_images(image, match):
    with pytest.raises(ValueError, match=match):
        to_rgb(image)


def test_overlay_is_the_blend_computed_by_hand():
    image = np.array([[[100, 60, 200], [100, 60, 200]]], dtype=np.uint8)
    saliency = np.array([[1.0, 0.0]])
    # alpha 0.25: 0.75 * image + 0.25 * heat; heat(1.0) = (128, 0, 0), heat(0.0) = (0, 0, 128)
    expected = [[[107, 45, 150], [75, 45, 182]]]
    np.testing.assert_array_equal(overlay(image, saliency, alpha=0.25), expected)

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    saliency = rng.random((6, 7))
    for alpha, name in [(0.3, "jet"), (0.5, "viridis"), (0.8, "turbo")]:
        heat = colorize(saliency, name).astype(np.float64)
        blend = np.rint((1 - alpha) * image + alpha * heat).astype(np.uint8)
        result = overlay(image, saliency, alpha=alpha, colormap=name)
        assert result.dtype == np.uint8 and result.shape == (6, 7, 3)
        np.testing.assert_array_equal(result, blend)


def test_overlay_alpha_ends_and_range():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    saliency = rng.random((5, 5))
    np.testing.assert_array_equal(overlay(image, saliency, alpha=0.0), image)
    np.testing.assert_array_equal(overlay(image, saliency, alpha=1.0), colorize(saliency))
    for alpha in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
            overlay(image, saliency, alpha=alpha)


def test_overlay_gray_tensor_image_and_tensor_map():
    image = torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(3))
    saliency = torch.rand(6, 6, generator=torch.Generator().manual_seed(4))
    gray = np.repeat(np.rint(image[0].numpy().astype(np.float64) * 255)[..., None], 3, axis=2)
    expected = np.rint(0.5 * gray + 0.5 * colorize(saliency.numpy())).astype(np.uint8)
    np.testing.assert_array_equal(overlay(image, saliency), expected)


def test_overlay_resizes_the_map_bilinearly_half_pixel_centred():
    image = np.zeros((4, 4), dtype=np.uint8)
    small = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    result = overlay(image, small, alpha=1.0)
    assert result.shape == (4, 4, 3)
    # Output pixel (1, 1) samples the input at (0.25, 0.25) (pixel centres aligned):
    # 0.75 * 0.25 * 1 + 0.25 * 0.75 * 1 = 0.375. Pixel (0, 0) is clamped to input (0, 0).
    np.testing.assert_array_equal(result[1, 1], colorize(np.array([[0.375]]))[0, 0])
    np.testing.assert_array_equal(result[0, 0], JET_0)
    np.testing.assert_array_equal(result[0, 3], JET_1)
    reference = torch.nn.functional.interpolate(
        torch.from_numpy(small)[None, None], size=(4, 4), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_array_equal(result, colorize(reference))


# --------------------------------------------------------------------------- grids


def test_method_grid_panels_titles_pixels_and_colorbar():
    rng = np.random.default_rng(5)
    image = rng.random((12, 12))
    maps = {
        "cam": rng.random((12, 12)),
        "gradcam": rng.random((6, 6)),
        "layercam": rng.random((12, 12)),
    }
    fig = method_grid(
        image, maps, title="three methods", alpha=0.4, colormap="viridis",
        subtitles={"gradcam": "Shirt (3.03)"},
    )  # fmt: skip
    axes = image_axes(fig)
    assert len(axes) == 4
    assert [ax.get_title() for ax in axes] == ["input", "cam", "gradcam\nShirt (3.03)", "layercam"]
    np.testing.assert_array_equal(pixels(axes[0]), to_rgb(image))
    for ax, saliency in zip(axes[1:], maps.values(), strict=True):
        np.testing.assert_array_equal(pixels(ax), overlay(image, saliency, 0.4, "viridis"))
    assert fig._suptitle.get_text() == "three methods"
    (bar_axes,) = [ax for ax in fig.axes if hasattr(ax, "_colorbar")]
    colorbar = bar_axes._colorbar
    assert "0 = least" in colorbar.ax.get_xlabel() + colorbar.ax.get_ylabel()
    colors = colorbar.cmap(np.linspace(0, 1, 256))[:, :3]
    np.testing.assert_allclose(colors * 255, colorize(np.linspace(0, 1, 256)[None], "viridis")[0])
    assert colorbar.norm.vmin == 0 and colorbar.norm.vmax == 1
    assert title_overlaps(fig) == []


def test_method_grid_wraps_into_rows_of_six_without_overlaps():
    rng = np.random.default_rng(6)
    maps = {f"method {i}": rng.random((8, 8)) for i in range(8)}
    fig = method_grid(rng.random((8, 8)), maps, title="nine panels", subtitles={"method 3": "x"})
    rows = rows_of(image_axes(fig))
    assert [len(row) for row in rows] == [6, 3]
    assert [ax.get_title() for ax in rows[1]] == ["method 5", "method 6", "method 7"]
    assert title_overlaps(fig) == []


def test_method_grid_refuses_empty_maps_and_stray_subtitles():
    with pytest.raises(ValueError, match="non-empty"):
        method_grid(np.zeros((4, 4)), {})
    with pytest.raises(ValueError, match="'gradcam'"):
        method_grid(np.zeros((4, 4)), {"cam": np.zeros((4, 4))}, subtitles={"gradcam": "x"})


def test_class_grid_rows_titles_and_pixels(fashion):
    model, images, labels = fashion
    with torch.no_grad():
        predicted = model(images).argmax(1).tolist()
    names = model.class_names
    fig = class_grid(model, images, labels)
    rows = rows_of(image_axes(fig))
    assert len(rows) == 10 and all(len(row) == 3 for row in rows)
    cam = xai.explain(model, images, method="cam").maps
    gradcam = xai.explain(model, images, method="gradcam").maps
    for c, row in enumerate(rows):
        title = row[0].title
        assert title.get_text() == f"true: {names[c]}\npred: {names[predicted[c]]}"
        assert title.get_color() == "black"
        assert [ax.get_title() for ax in row[1:]] == ["cam", "gradcam"]
        np.testing.assert_array_equal(pixels(row[0]), to_rgb(images[c]))
        np.testing.assert_array_equal(pixels(row[1]), overlay(images[c], cam[c]))
        np.testing.assert_array_equal(pixels(row[2]), overlay(images[c], gradcam[c]))
    assert "0 of 10 misclassified" in fig._suptitle.get_text()
    assert title_overlaps(fig) == []


def test_class_grid_flags_mistakes_and_picks_the_first_example(fashion):
    model, images, labels = fashion
    swapped = labels.clone()
    swapped[0], swapped[6] = 6, 0  # the T-shirt now "is" a Shirt and the Shirt a T-shirt
    with torch.no_grad():
        predicted = model(images).argmax(1).tolist()
    fig = class_grid(model, images, swapped, methods=("cam",), colormap="turbo")
    rows = rows_of(image_axes(fig))
    assert len(rows) == 10
    names = model.class_names
    for c, row in enumerate(rows):
        source = int(np.flatnonzero(swapped.numpy() == c)[0])
        np.testing.assert_array_equal(pixels(row[0]), to_rgb(images[source]))
        title = row[0].title
        assert title.get_text() == f"true: {names[c]}\npred: {names[predicted[source]]}"
        mistake = predicted[source] != c
        assert mistake == (c in (0, 6))
        assert (title.get_color() != "black") == mistake
        assert (title.get_fontweight() == "bold") == mistake
    assert rows[0][0].get_title() == "true: T-shirt/top\npred: Shirt"
    assert "2 of 10 misclassified" in fig._suptitle.get_text()


def test_class_grid_skips_missing_classes_and_names_them(fashion):
    model, images, labels = fashion
    keep = labels != 9
    fig = class_grid(model, images[keep], labels[keep], methods=("cam",))
    rows = rows_of(image_axes(fig))
    assert len(rows) == 9
    assert "no example of Ankle boot" in fig._suptitle.get_text().replace("\n", " ")


def test_class_grid_default_names_without_class_names(gray):
    model = make_gapcnn()  # 5 classes, no class_names
    labels = torch.tensor([2, 0, 2, 4])
    fig = class_grid(model, gray, labels, methods=("gradcam",))
    rows = rows_of(image_axes(fig))
    with torch.no_grad():
        predicted = model(gray).argmax(1).tolist()
    assert [row[0].get_title().split("\n")[0] for row in rows] == [
        "true: class 0",
        "true: class 2",
        "true: class 4",
    ]
    assert rows[1][0].get_title().split("\n")[1] == f"pred: class {predicted[0]}"
    np.testing.assert_array_equal(pixels(rows[1][0]), to_rgb(gray[0]))
    suptitle = fig._suptitle.get_text().replace("\n", " ")
    assert "no example of class 1, class 3" in suptitle
    named = class_grid(model, gray, labels, list("ABCDE"), methods=("cam",))
    assert rows_of(image_axes(named))[2][0].get_title().startswith("true: E\n")


def test_class_grid_refuses_bad_labels(gray):
    model = make_gapcnn()
    with pytest.raises(ValueError, match=r"labels \[7\] are outside the 5 classes"):
        class_grid(model, gray, torch.tensor([0, 1, 7, 2]))
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        class_grid(model, gray, torch.tensor([0, 1, 2]))


def test_save_figure_writes_atomically_and_closes(tmp_path):
    fig = method_grid(np.zeros((4, 4)), {"cam": np.ones((4, 4))})
    path = save_figure(fig, tmp_path / "sub" / "grid.png", dpi=50)
    assert path == tmp_path / "sub" / "grid.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    pdf = save_figure(waterfall(xai.exact_shapley(xai.shapley.housing())), tmp_path / "w.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    bare = save_figure(plt.figure(), tmp_path / "bare")
    assert bare.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bare", "grid.png", "sub", "w.pdf"]


# --------------------------------------------------------------------------- Shapley


def bars(ax):
    """Each bar's (bottom-to-top rank, x0, x1, face colour), top bar first."""
    rectangles = sorted(ax.patches, key=lambda p: p.get_y())
    return [(p.get_x(), p.get_x() + p.get_width(), p.get_facecolor()) for p in rectangles]


def texts(ax):
    return [t.get_text() for t in ax.texts]


def test_waterfall_housing_is_the_cumulative_sum():
    result = xai.exact_shapley(xai.shapley.housing(), exact=True)
    fig = waterfall(result)
    ax = fig.axes[0]
    drawn = bars(ax)
    a, b, c = 20 + Fraction(29, 6), 20 + Fraction(29, 6) + Fraction(10, 3), 30
    expected = [(20, a), (a, b), (b, c)]
    np.testing.assert_allclose(
        [(x0, x1) for x0, x1, _ in drawn],
        [(float(x0), float(x1)) for x0, x1 in expected],
        rtol=0,
        atol=1e-12,
    )
    red = plt.matplotlib.colors.to_rgba(POSITIVE)
    assert all(color == pytest.approx(red) for _, _, color in drawn)
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    ylim = ax.get_ylim()
    assert ylim[0] > ylim[1]  # inverted: the first (largest) bar at the top
    assert ticks == ["neighbourhood_safety", "floor_area", "year_built"]
    labels = texts(ax)
    assert labels[:3] == ["+29/6 (4.833)", "+10/3 (3.333)", "+11/6 (1.833)"]
    assert any("v(∅) = 20" in t for t in labels)
    assert any("v(all) = 30" in t for t in labels)
    for text, (_, x1, _) in zip(ax.texts[:3], drawn, strict=True):
        assert text.get_position()[0] > x1  # written just right of the bar's end
    assert ax.get_xlabel()


def test_waterfall_negative_contribution_goes_left():
    game = {(): 10, (0,): 14, (1,): 7, (2,): 11, (0, 1): 9, (0, 2): 16, (1, 2): 6, (0, 1, 2): 12}
    result = xai.exact_shapley(game, ["income", "debt", "age"])
    # By hand: income 1/3 * 4 + 1/6 * (2 + 5) + 1/3 * 6 = 4.5, debt -4, age 1.5.
    np.testing.assert_allclose(result.values, [4.5, -4.0, 1.5])
    ax = waterfall(result, digits=2).axes[0]
    drawn = bars(ax)
    np.testing.assert_allclose(
        [(x0, x1) for x0, x1, _ in drawn], [(10, 14.5), (10.5, 14.5), (10.5, 12)]
    )
    colors = plt.matplotlib.colors
    assert [c for _, _, c in drawn] == [
        pytest.approx(colors.to_rgba(POSITIVE)),
        pytest.approx(colors.to_rgba(NEGATIVE)),
        pytest.approx(colors.to_rgba(POSITIVE)),
    ]
    debt = ax.texts[1]
    assert debt.get_text() == "−4.00"
    assert debt.get_position()[0] < 10.5 and debt.get_horizontalalignment() == "right"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["income", "debt", "age"]


def test_waterfall_and_bar_pick_the_output_of_a_vector_game():
    weights = np.array([[1.0, -1.0], [2.0, 0.0], [3.0, 5.0]])
    result = xai.exact_shapley(lambda masks: masks @ weights, ["a", "b", "c"])
    assert result.values.shape == (3, 2)
    ax = waterfall(result, output=1).axes[0]
    np.testing.assert_allclose([(x0, x1) for x0, x1, _ in bars(ax)], [(0, 5), (4, 5), (4, 4)])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "a", "b"]
    assert "output 1" in ax.get_title()
    widths = [p.get_width() for p in sorted(bar(result).axes[0].patches, key=lambda p: p.get_y())]
    assert widths == pytest.approx([3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="out of range"):
        waterfall(result, output=2)


def test_bar_values_sorted_with_signs_and_no_error_bars_for_exact():
    game = {(): 10, (0,): 14, (1,): 7, (2,): 11, (0, 1): 9, (0, 2): 16, (1, 2): 6, (0, 1, 2): 12}
    result = xai.exact_shapley(game, ["income", "debt", "age"], exact=True)
    ax = bar(result, title="credit").axes[0]
    rectangles = sorted(ax.patches, key=lambda p: p.get_y())
    ends = [(p.get_x(), p.get_x() + p.get_width()) for p in rectangles]
    np.testing.assert_allclose(ends, [(0, 4.5), (0, -4.0), (0, 1.5)])
    assert texts(ax) == ["+9/2 (4.500)", "−4", "+3/2 (1.500)"]
    assert ax.get_title() == "credit"
    (bars_drawn,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert bars_drawn.errorbar is None


def test_bar_draws_standard_error_bars():
    result = xai.shapley.permutation_shapley(xai.shapley.housing(), 20, seed=0)
    assert result.stderr is not None
    ax = bar(result).axes[0]
    (container,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert container.errorbar is not None
    order = np.argsort(-np.abs(result.values))
    segments = container.errorbar.lines[2][0].get_segments()
    assert len(segments) == 3
    for row, (segment, i) in enumerate(zip(segments, order, strict=True)):
        (x0, y0), (x1, y1) = segment
        assert y0 == y1 == pytest.approx(row)
        assert (x0, x1) == pytest.approx(
            (result.values[i] - result.stderr[i], result.values[i] + result.stderr[i])
        )
    assert all(" ± " in t for t in texts(ax))
    assert "standard error" in ax.get_xlabel()


def test_importing_viz_loads_neither_matplotlib_nor_opencv():
    code = (
        "import sys, xai.viz, xai.viz.overlay, xai.viz.grids, xai.viz.shapley; "
        "loaded = [m for m in ('matplotlib', 'cv2') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
