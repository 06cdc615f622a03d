"""Items pasted into canvases: the pixels, boxes and masks are exactly where they should
be, the positions are uniform over the allowed range and seeded, and bad input is refused
with a message that says what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xai.data as data
from tests.conftest import fashion_mnist_installed
from xai.metrics import energy_pointing_game, pointing_game


def _items(n: int = 40, h: int = 28, w: int = 28, seed: int = 0) -> np.ndarray:
    """Random float32 items in [0, 1] with a quarter of their pixels exactly 0."""
    rng = np.random.default_rng(seed)
    items = rng.random((n, h, w), dtype=np.float32)
    items[rng.random((n, h, w)) < 0.25] = 0.0
    return items


def test_the_canvas_holds_the_item_exactly_at_its_box_and_zeros_elsewhere():
    items = _items()
    c = data.paste(items, np.arange(40) % 10, size=64, seed=3)
    assert c.canvases.shape == (40, 1, 64, 64) and c.canvases.dtype == np.float32
    for i, (x0, y0, x1, y1) in enumerate(c.boxes):
        assert (x1 - x0, y1 - y0) == (28, 28)
        np.testing.assert_array_equal(c.canvases[i, 0, y0:y1, x0:x1], items[i])
        outside = c.canvases[i, 0].copy()
        outside[y0:y1, x0:x1] = 0.0
        assert not outside.any()
    np.testing.assert_array_equal(c.labels, np.arange(40) % 10)
    assert c.labels.dtype == np.int64


def test_the_mask_is_the_item_above_the_threshold_at_its_box():
    items = _items(n=20, h=10, w=7)
    for threshold in (0.05, 0.5):
        c = data.paste(items, np.zeros(20, dtype=int), size=16, seed=1, threshold=threshold)
        assert c.threshold == threshold and c.masks.dtype == np.bool_
        for i, (x0, y0, x1, y1) in enumerate(c.boxes):
            expected = np.zeros((16, 16), dtype=bool)
            expected[y0:y1, x0:x1] = items[i] > threshold
            np.testing.assert_array_equal(c.masks[i], expected)
        # the mask is also the canvas above the threshold: the background is 0
        np.testing.assert_array_equal(c.masks, c.canvases[:, 0] > threshold)


def test_uint8_items_are_scaled_as_dataset_tensors_scales_them():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.arange(5)
    c = data.paste(images, labels, size=40, seed=0)
    reference, _ = data.Dataset("x", "test", images, labels, ()).tensors()
    for i, (x0, y0, x1, y1) in enumerate(c.boxes):
        np.testing.assert_array_equal(c.canvases[i, 0, y0:y1, x0:x1], reference[i, 0].numpy())
        np.testing.assert_array_equal(c.masks[i, y0:y1, x0:x1], images[i] / 255 > 0.05)


def test_torch_and_channel_first_items_give_the_same_canvases():
    items = _items(n=6)
    labels = np.arange(6)
    a = data.paste(items, labels, seed=5)
    b = data.paste(torch.from_numpy(items)[:, None], torch.arange(6), seed=5)
    for field in ("canvases", "labels", "boxes", "masks"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_a_two_by_two_item_on_a_four_by_four_canvas_by_hand():
    item = np.array([[[0.25, 0.5], [0.75, 1.0]]], dtype=np.float32)
    c = data.paste(item, [7], size=4, seed=0)
    # numpy.random.default_rng(0): integers(0, 3, 1) gives [2] (the top row), then [1]
    # (the left column); the item covers rows 2..3 and columns 1..2
    rng = np.random.default_rng(0)
    assert rng.integers(0, 3, 1).tolist() == [2] and rng.integers(0, 3, 1).tolist() == [1]
    assert c.boxes.tolist() == [[1, 2, 3, 4]]
    expected = [
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.25, 0.5, 0.0],
        [0.0, 0.75, 1.0, 0.0],
    ]
    assert c.canvases[0, 0].tolist() == expected
    assert c.masks[0].tolist() == [[v > 0.05 for v in row] for row in expected]
    assert c.labels.tolist() == [7]
    # with threshold 0.6 only the bottom row of the item is on the mask; a pixel equal
    # to the threshold is not above it
    assert data.paste(item, [7], size=4, threshold=0.6).masks[0].sum() == 2
    assert data.paste(item, [7], size=4, threshold=0.25).masks[0, 2].tolist() == [0, 0, 1, 0]


def test_positions_cover_the_whole_allowed_range_uniformly():
    n, h, w, size = 6500, 5, 3, 17  # tops in 0..12, lefts in 0..14
    c = data.paste(np.ones((n, h, w), dtype=np.float32), np.zeros(n, dtype=int), size=size)
    lefts, tops = c.boxes[:, 0], c.boxes[:, 1]
    np.testing.assert_array_equal(c.boxes[:, 2] - lefts, np.full(n, w))
    np.testing.assert_array_equal(c.boxes[:, 3] - tops, np.full(n, h))
    top_counts = np.bincount(tops, minlength=size)
    left_counts = np.bincount(lefts, minlength=size)
    assert top_counts[: size - h + 1].min() > 0 and not top_counts[size - h + 1 :].any()
    assert left_counts[: size - w + 1].min() > 0 and not left_counts[size - w + 1 :].any()
    # uniform: every position within 25 % of n / positions (about 5 standard deviations)
    for counts, positions in ((top_counts[:13], 13), (left_counts[:15], 15)):
        assert np.abs(counts / (n / positions) - 1).max() < 0.25
    # the top and the left are drawn independently
    assert abs(np.corrcoef(tops, lefts)[0, 1]) < 0.05


def test_an_item_as_large_as_the_canvas_sits_at_the_origin():
    items = _items(n=3, h=8, w=8)
    c = data.paste(items, [0, 1, 2], size=8, seed=9)
    assert c.boxes.tolist() == [[0, 0, 8, 8]] * 3
    np.testing.assert_array_equal(c.canvases[:, 0], items)


def test_positions_are_reproducible_per_seed_and_differ_across_seeds():
    items, labels = _items(n=30), np.zeros(30, dtype=int)
    a, b = data.paste(items, labels, seed=11), data.paste(items, labels, seed=11)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.canvases, b.canvases)
    other = data.paste(items, labels, seed=12)
    assert (other.boxes != a.boxes).any(axis=1).mean() > 0.9


def test_the_boxes_follow_the_metrics_box_convention():
    # a map peaking on the box's first or last row and column hits; one pixel beyond misses
    c = data.paste(np.ones((1, 6, 6), dtype=np.float32), [0], size=20, seed=1)
    x0, y0, x1, y1 = c.boxes[0]
    assert 0 < x0 < x1 < 20 and 0 < y0 < y1 < 20  # seed 1 puts the box away from the edges
    maps = torch.zeros(4, 20, 20)
    maps[0, y0, x0] = maps[1, y1 - 1, x1 - 1] = 1.0
    maps[2, y0 - 1, x0] = maps[3, y1 - 1, x1] = 1.0
    boxes = torch.from_numpy(np.repeat(c.boxes, 4, axis=0))
    assert pointing_game(maps, boxes, tolerance=0).hits.tolist() == [True, True, False, False]
    # the mask of an all-ones item is its box: the two kinds of ground truth agree
    masks = torch.from_numpy(np.repeat(c.masks, 4, axis=0))
    uniform = torch.ones(4, 20, 20)
    assert energy_pointing_game(uniform, masks).shares.tolist() == pytest.approx([36 / 400] * 4)
    assert energy_pointing_game(uniform, boxes).shares.tolist() == pytest.approx([36 / 400] * 4)


def test_tensors_subset_and_repr():
    c = data.paste(_items(n=5), np.arange(5), size=30, seed=0)
    x, y = c.tensors()
    assert x.dtype == torch.float32 and x.shape == (5, 1, 30, 30) and y.dtype == torch.int64
    assert torch.equal(x, torch.from_numpy(c.canvases)) and y.tolist() == [0, 1, 2, 3, 4]
    part = c.subset(np.array([4, 1]))
    assert len(part) == 2 and part.labels.tolist() == [4, 1]
    np.testing.assert_array_equal(part.boxes, c.boxes[[4, 1]])
    np.testing.assert_array_equal(part.masks, c.masks[[4, 1]])
    assert repr(c) == "Canvas(n=5, canvas=30x30, threshold=0.05)"


@pytest.mark.parametrize(
    ("items", "labels", "options", "error", "message"),
    [
        (np.zeros((2, 28, 28)), [0, 1], {"size": 20}, ValueError, r"at least the item's height"),
        (np.zeros((2, 28, 28)), [0, 1], {"size": 20}, ValueError, r"Use size >= 28"),
        (np.zeros((2, 5, 9)), [0, 1], {"size": 8}, ValueError, r"\(5 x 9\).*size=8"),
        (np.zeros((2, 4, 4)), [0, 1], {"size": 8.0}, TypeError, r"size must be a positive int"),
        (np.zeros((2, 4, 4)), [0, 1], {"size": True}, TypeError, r"size must be a positive int"),
        (np.zeros((28, 28)), [0], {}, ValueError, r"\(N, h, w\) or \(N, 1, h, w\).*\(28, 28\)"),
        (np.zeros((2, 3, 8, 8)), [0, 1], {}, ValueError, r"single-channel.*\(2, 3, 8, 8\)"),
        (np.zeros((2, 4, 4)), [0, 1, 2], {}, ValueError, r"labels must be 2 integers.*\(3,\)"),
        (np.zeros((2, 4, 4)), [0.0, 1.0], {}, ValueError, r"labels must be 2 integers.*float"),
        (np.full((1, 4, 4), 255.0), [0], {}, ValueError, r"\[0, 1\].*\[255, 255\].*by 255"),
        (np.full((1, 4, 4), np.nan), [0], {}, ValueError, r"float items must lie in \[0, 1\]"),
        (np.zeros((1, 4, 4)), [0], {"threshold": 1.0}, ValueError, r"threshold must be in"),
        (np.zeros((1, 4, 4)), [0], {"threshold": -0.1}, ValueError, r"threshold must be in"),
        (np.full((1, 2, 2), "a"), [0], {}, TypeError, r"uint8 or real numbers; got dtype <U1"),
    ],
)
def test_bad_input_is_refused_with_the_fix(items, labels, options, error, message):
    with pytest.raises(error, match=message):
        data.paste(items, labels, **options)


@pytest.mark.skipif(not fashion_mnist_installed(), reason="Fashion-MNIST is not installed")
def test_load_canvas_pastes_a_stratified_subsample_of_the_split():
    test = data.load("fashion-mnist", split="test")
    c = data.load_canvas("fashion-mnist", "test", count=200, seed=2)
    assert len(c) == 200 and c.class_names == test.class_names
    assert np.bincount(c.labels).tolist() == [20] * 10  # stratified: 10 % of each class
    kept = test.subset(data.stratified_subsample(test.labels, 200 / len(test), 2))
    np.testing.assert_array_equal(c.labels, kept.labels)
    for i, (x0, y0, x1, y1) in enumerate(c.boxes):
        np.testing.assert_array_equal(
            c.canvases[i, 0, y0:y1, x0:x1], kept.images[i] / np.float32(255)
        )
    again = data.load_canvas("fashion-mnist", "test", count=200, seed=2)
    np.testing.assert_array_equal(again.canvases, c.canvases)
    with pytest.raises(ValueError, match=r"count must be an int in 1\.\.10000 \(or None\); got 0"):
        data.load_canvas("fashion-mnist", "test", count=0)
