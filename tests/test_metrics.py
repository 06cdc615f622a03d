"""xai.metrics: deletion/insertion, average drop, pointing games; proven by hand-computed
cases, references written from the papers' equations, identities and optimality."""

from __future__ import annotations

import itertools
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import xai
from tests._background import Job, job
from tests.conftest import make_gapcnn, make_two_stage
from xai.metrics import (
    average_drop,
    deletion,
    energy_pointing_game,
    insertion,
    perturbation_curve,
    pointing_game,
)
from xai.shapley.image_game import gaussian_blur

ROOT = Path(__file__).resolve().parent.parent


class LinearScore(nn.Module):
    """Logits ``[w·x, 0]``: class 0's logit is linear in the pixels, class 1's is 0, so
    class 0's probability is ``sigmoid(w·x)``, monotone in the logit."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone().double())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x.flatten(1) * self.weight.flatten()).sum(dim=1)
        return torch.stack([score, torch.zeros_like(score)], dim=1)


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# A 2 x 2 image with pixel values 1, 2, 3, 4 (row-major) and all weights 1: logit 10.
X22 = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)
ONES22 = LinearScore(torch.ones(1, 2, 2))
# Saliency order by hand: pixel (0, 1) first, then (1, 0), (1, 1), (0, 0).
S22 = torch.tensor([[[0.1, 0.4], [0.3, 0.2]]])


# -- deletion and insertion -------------------------------------------------------------


def test_deletion_and_insertion_by_hand_on_logits():
    d = deletion(ONES22, X22, S22, target=0, steps=4, softmax=False)
    # remove 2, then 3, then 4, then 1: 10 -> 8 -> 5 -> 1 -> 0
    np.testing.assert_array_equal(d.fractions, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_array_equal(d.scores, [[10, 8, 5, 1, 0]])
    # AUC = 1/4 * ((10+8)/2 + (8+5)/2 + (5+1)/2 + (1+0)/2) = 19/4
    assert d.auc.tolist() == [4.75] and d.mean_auc == 4.75
    assert d.kind == "deletion" and d.targets.tolist() == [0] and d.baseline == "0"

    i = insertion(ONES22, X22, S22, target=0, steps=4, baseline=0.0, softmax=False)
    np.testing.assert_array_equal(i.scores, [[0, 2, 5, 9, 10]])
    assert i.auc.tolist() == [5.25]  # 1/4 * (1 + 3.5 + 7 + 9.5)
    # Identity for a linear score and a zero baseline: deletion + insertion = f(x) + f(0).
    np.testing.assert_allclose(d.scores + i.scores, 10.0)


def test_uneven_steps_change_floor_k_p_over_s_pixels():
    d = deletion(ONES22, X22, S22, target=0, steps=3, softmax=False)
    # n_k = floor(4k / 3) = 0, 1, 2, 4
    np.testing.assert_array_equal(d.fractions, [0, 0.25, 0.5, 1])
    np.testing.assert_array_equal(d.scores, [[10, 8, 5, 0]])
    assert d.auc[0] == pytest.approx(0.25 * 9 + 0.25 * 6.5 + 0.5 * 2.5)
    one = deletion(ONES22, X22, S22, target=0, steps=1, softmax=False)
    np.testing.assert_array_equal(one.scores, [[10, 0]])
    assert one.auc[0] == 5.0


def test_probabilities_by_hand_and_ties_in_row_major_order():
    d = deletion(ONES22, X22, torch.zeros(1, 2, 2), target=0, steps=4)
    # every pixel ties: removed in row-major order, values 1, 2, 3, 4
    logits = [10, 9, 7, 4, 0]
    np.testing.assert_allclose(d.scores[0], [sigmoid(v) for v in logits], rtol=1e-12)
    p = [sigmoid(v) for v in logits]
    assert d.auc[0] == pytest.approx(sum(0.25 * (a + b) / 2 for a, b in itertools.pairwise(p)))
    # class 1's logit is 0 throughout, so its probability is 1 - class 0's
    other = deletion(ONES22, X22, torch.zeros(1, 2, 2), target=1, steps=4)
    np.testing.assert_allclose(other.scores + d.scores, 1.0, rtol=1e-12)
    # ties among some pixels only: 0.5 at (0, 0) and (1, 1); (0, 0) goes first
    tied = torch.tensor([[[0.5, 0.0], [0.0, 0.5]]])
    t = deletion(ONES22, X22, tied, target=0, steps=4, softmax=False)
    np.testing.assert_array_equal(t.scores, [[10, 9, 5, 3, 0]])  # 1, 4, then 2, 3


def test_baselines_mean_number_tensor_and_blur():
    mean = deletion(ONES22, X22, S22, target=0, steps=4, baseline="mean", softmax=False)
    # each removed pixel becomes 2.5: 10 -> 10.5 (2) -> 10 (3) -> 8.5 (4) -> 10 (1)
    np.testing.assert_allclose(mean.scores, [[10, 10.5, 10, 8.5, 10]])
    assert mean.baseline == "mean"
    number = insertion(ONES22, X22, S22, target=0, steps=4, baseline=1.0, softmax=False)
    # start from 1, 1, 1, 1 and reveal 2, 3, 4, 1: 4 -> 5 -> 7 -> 10 -> 10
    np.testing.assert_allclose(number.scores, [[4, 5, 7, 10, 10]])
    board = torch.tensor([[[0.0, 10.0], [20.0, 30.0]]], dtype=torch.float64)  # (C, H, W)
    tensor = deletion(ONES22, X22, S22, target=0, steps=4, baseline=board, softmax=False)
    # 2 -> 10, 3 -> 20, 4 -> 30, 1 -> 0
    np.testing.assert_allclose(tensor.scores, [[10, 18, 35, 61, 60]])
    torch.manual_seed(0)
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    weight = torch.randn(1, 6, 6)
    model = LinearScore(weight)
    blur = insertion(model, x, torch.rand(2, 6, 6), target=0, steps=1, blur_sigma=1.5)
    blurred = [gaussian_blur(image, 1.5) for image in x]
    expected = [sigmoid(float((b * weight).sum())) for b in blurred]
    np.testing.assert_allclose(blur.scores[:, 0], expected, rtol=1e-10)  # step 0: the blur
    assert blur.baseline == "blur (sigma 1.5)"
    default = insertion(model, x, torch.rand(2, 6, 6), target=0, steps=1)  # sigma 6 / 8
    expected = [sigmoid(float((gaussian_blur(i, 0.75) * weight).sum())) for i in x]
    np.testing.assert_allclose(default.scores[:, 0], expected, rtol=1e-10)


def _reference_curve(model, x, saliency, classes, steps, baseline, kind):
    """RISE's deletion/insertion written out: one image and one step at a time."""
    n, _, h, w = x.shape
    pixels = h * w
    scores = np.zeros((n, steps + 1))
    for i in range(n):
        order = np.argsort(-saliency[i].reshape(-1).numpy(), kind="stable")
        for k in range(steps + 1):
            count = k * pixels // steps
            image = x[i].clone() if kind == "deletion" else baseline[i].clone()
            source = baseline[i] if kind == "deletion" else x[i]
            for p in order[:count]:
                image[:, p // w, p % w] = source[:, p // w, p % w]
            with torch.no_grad():
                logits = model(image[None]).double()
            scores[i, k] = torch.softmax(logits, dim=1)[0, classes[i]].item()
    fractions = (np.arange(steps + 1) * pixels // steps) / pixels
    auc = np.array([np.trapezoid(row, fractions) for row in scores])
    return scores, auc


@pytest.mark.parametrize("kind", ["deletion", "insertion"])
def test_matches_the_equations_on_a_random_cnn(kind):
    model = make_two_stage(seed=3)  # 3 channels in, 7 classes, 8 x 8 images
    torch.manual_seed(4)
    x = torch.rand(3, 3, 8, 8)
    saliency = torch.rand(3, 8, 8)
    saliency[0, :2] = 0.5  # some ties
    baseline = torch.rand(3, 3, 8, 8)
    curve = perturbation_curve(kind, model, x, saliency, steps=5, baseline=baseline)
    with torch.no_grad():
        classes = model(x).argmax(dim=1)  # target None: the clean image's top-1
    scores, auc = _reference_curve(model, x, saliency, classes, 5, baseline, kind)
    np.testing.assert_allclose(curve.scores, scores, atol=1e-6)
    np.testing.assert_allclose(curve.auc, auc, atol=1e-6)
    np.testing.assert_array_equal(curve.targets, classes.numpy())
    assert curve.mean_auc == pytest.approx(auc.mean(), abs=1e-6)
    np.testing.assert_allclose(curve.mean_curve, scores.mean(axis=0), atol=1e-6)


def test_results_do_not_depend_on_batch_size():
    model = make_gapcnn(seed=1)
    torch.manual_seed(5)
    x, saliency = torch.rand(3, 1, 8, 8), torch.rand(3, 8, 8)
    for kind in ("deletion", "insertion"):
        curves = [  # 3 x 5 rows: one at a time, uneven chunks, all at once
            perturbation_curve(kind, model, x, saliency, steps=4, batch_size=b)
            for b in (1, 4, 1000)
        ]
        for other in curves[1:]:
            np.testing.assert_allclose(other.scores, curves[0].scores, atol=1e-6)
            np.testing.assert_allclose(other.auc, curves[0].auc, atol=1e-6)
    drops = [average_drop(model, x, saliency, batch_size=b).drop for b in (1, 4, 100)]
    for other in drops[1:]:
        np.testing.assert_allclose(other, drops[0], atol=1e-4)


def test_the_models_own_contributions_beat_any_other_order():
    # For a linear logit w·x and a zero baseline, deleting pixels in decreasing order of
    # their contribution w·x is the order with the lowest curve at every step, so no
    # other saliency can reach a lower deletion AUC, nor a higher insertion AUC.
    torch.manual_seed(6)
    x = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    weight = torch.randn(1, 6, 6)
    model = LinearScore(weight)
    perfect = (x[:, 0] * weight[0].double()).float()
    best_d = deletion(model, x, perfect, target=0, steps=12)
    best_i = insertion(model, x, perfect, target=0, steps=12, baseline=0.0)
    for seed in range(10):
        other = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(seed))
        d = deletion(model, x, other, target=0, steps=12)
        i = insertion(model, x, other, target=0, steps=12, baseline=0.0)
        assert (best_d.auc < d.auc).all() and (best_i.auc > i.auc).all()
        assert (best_d.scores <= d.scores + 1e-12).all()
    worst = deletion(model, x, -perfect, target=0, steps=12)
    assert (worst.auc > best_d.auc + 0.1).all()


def test_explanations_are_taken_with_their_targets():
    model = make_gapcnn(seed=2)
    torch.manual_seed(7)
    x = torch.rand(3, 1, 16, 16)
    e = xai.explain(model, x, method="gradcam", target=[1, 4, 2])
    curve = deletion(model, x, e, steps=4)
    assert curve.targets.tolist() == [1, 4, 2]
    same = deletion(model, x, e.maps, target=[1, 4, 2], steps=4)
    np.testing.assert_array_equal(curve.scores, same.scores)
    np.testing.assert_array_equal(deletion(model, x, e, target=0, steps=4).targets, [0, 0, 0])
    change = average_drop(model, x, e)
    assert change.targets.tolist() == [1, 4, 2]


# -- average drop and increase in confidence -------------------------------------------


def test_average_drop_and_increase_by_hand():
    model = LinearScore(torch.tensor([[[1.0, 1.0], [1.0, -1.0]]]))
    x = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 3.0]]])
    maps = torch.tensor(
        [[[1.0, 0.0], [0.5, 1.0]], [[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 0.0]]]
    )
    r = average_drop(model, x[:, None].double(), maps, target=0)
    # logits, image -> image x map: 2 -> 0.5; 2 -> 2 (a map of ones); 0 -> 3
    y = [sigmoid(2), sigmoid(2), sigmoid(0)]
    o = [sigmoid(0.5), sigmoid(2), sigmoid(3)]
    np.testing.assert_allclose(r.original, y, rtol=1e-12)
    np.testing.assert_allclose(r.explained, o, rtol=1e-12)
    drops = [100 * max(0.0, a - b) / a for a, b in zip(y, o, strict=True)]
    np.testing.assert_allclose(r.drop, drops, rtol=1e-12)
    assert r.drop[1] == 0 and r.drop[2] == 0 and r.drop[0] > 25
    assert r.average_drop == pytest.approx(sum(drops) / 3, rel=1e-12)
    assert r.increased.tolist() == [False, False, True]
    assert r.increase_in_confidence == pytest.approx(100 / 3)


def test_average_drop_matches_the_equation_on_a_cnn_with_channels():
    model = make_two_stage(seed=5)
    torch.manual_seed(8)
    x, maps = torch.rand(4, 3, 8, 8), torch.rand(4, 8, 8)
    r = average_drop(model, x, maps, target=[0, 1, 2, 6])
    with torch.no_grad():
        p = torch.softmax(model(x).double(), dim=1)[range(4), [0, 1, 2, 6]]
        q = torch.softmax(model(x * maps[:, None]).double(), dim=1)[range(4), [0, 1, 2, 6]]
    expected = (100 * (p - q).clamp_min(0) / p).mean().item()
    assert r.average_drop == pytest.approx(expected, abs=1e-4)
    assert r.increase_in_confidence == pytest.approx(100 * (q > p).double().mean().item())


# -- pointing game ----------------------------------------------------------------------


def _peak(n: int, h: int, w: int, points: list[tuple[int, int]]) -> torch.Tensor:
    maps = torch.zeros(n, h, w)
    for i, (r, c) in enumerate(points):
        maps[i, r, c] = 1.0
    return maps


def test_pointing_game_by_hand_with_masks_and_tolerance():
    mask = torch.zeros(3, 10, 10, dtype=torch.bool)
    mask[:, 0, 0] = True  # one object pixel at (0, 0)
    maps = _peak(3, 10, 10, [(0, 0), (3, 4), (6, 8)])  # distances 0, 5, 10
    assert pointing_game(maps, mask, tolerance=0).hits.tolist() == [True, False, False]
    assert pointing_game(maps, mask, tolerance=4.99).hits.tolist() == [True, False, False]
    r = pointing_game(maps, mask, tolerance=5)
    assert r.hits.tolist() == [True, True, False]
    assert r.accuracy == pytest.approx(2 / 3)
    assert r.points.tolist() == [[0, 0], [3, 4], [6, 8]]
    np.testing.assert_allclose(r.area, 0.01)
    assert pointing_game(maps, mask, tolerance=10).hits.all()
    assert pointing_game(maps, mask.int(), tolerance=5).hits.tolist() == [True, True, False]


def test_pointing_game_boxes_are_x0_y0_inclusive_x1_y1_exclusive():
    maps = _peak(4, 6, 8, [(1, 2), (2, 1), (1, 3), (3, 2)])  # (row, column)
    box = torch.tensor([[1, 0, 3, 3]] * 4)  # columns 1..2, rows 0..2
    r = pointing_game(maps, box, tolerance=0)
    assert r.hits.tolist() == [True, True, False, False]
    np.testing.assert_allclose(r.area, 6 / 48)
    mask = torch.zeros(4, 6, 8, dtype=torch.bool)
    mask[:, 0:3, 1:3] = True
    np.testing.assert_array_equal(pointing_game(maps, mask, tolerance=0).hits, r.hits)
    np.testing.assert_array_equal(
        pointing_game(maps, box.double(), tolerance=1).hits, [True, True, True, True]
    )


def test_pointing_game_ties_and_flat_maps():
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 3, 3] = True
    two = torch.zeros(1, 4, 4)
    two[0, 0, 0] = two[0, 3, 3] = 1.0  # one maximum off the object (first), one on it
    assert not pointing_game(two, mask, tolerance=0, ties="all").hits[0]
    assert pointing_game(two, mask, tolerance=0, ties="any").hits[0]
    assert not pointing_game(two, mask, tolerance=0, ties="first").hits[0]
    swapped = two.flip(-1).flip(-2)
    assert pointing_game(swapped, mask.flip(-1).flip(-2), ties="first", tolerance=0).hits[0]
    for flat in (torch.zeros(1, 4, 4), torch.full((1, 4, 4), 0.3)):
        r = pointing_game(flat, torch.ones(1, 4, 4, dtype=torch.bool), ties="any")
        assert r.flat.tolist() == [True] and r.hits.tolist() == [False]  # points nowhere


def test_pointing_game_tolerance_matches_brute_force_distances():
    torch.manual_seed(9)
    mask = torch.rand(20, 9, 11) > 0.93
    maps = torch.rand(20, 9, 11)
    for tolerance in (0, 1, 1.5, 2.3, 4):
        r = pointing_game(maps, mask, tolerance=tolerance, ties="first")
        for i in range(20):
            pr, pc = divmod(int(maps[i].argmax()), 11)
            rows, cols = np.nonzero(mask[i].numpy())
            distance = np.sqrt((rows - pr) ** 2 + (cols - pc) ** 2).min() if len(rows) else 99
            assert r.hits[i] == (distance <= tolerance), (i, tolerance)


# -- energy pointing game ---------------------------------------------------------------


def test_energy_pointing_game_by_hand():
    maps = torch.tensor(
        [
            [[3.0, 1.0], [0.0, -2.0]],  # energy 3 + 1 = 4; on the mask: 3
            [[1.0, 1.0], [1.0, 1.0]],  # uniform: the share is the mask's area
            [[0.0, 0.0], [0.0, 0.0]],  # no energy
            [[-1.0, -1.0], [-2.0, -1.0]],  # no positive energy
        ]
    )
    mask = torch.tensor([[[True, False], [False, True]]] * 4)
    r = energy_pointing_game(maps, mask)
    np.testing.assert_allclose(r.shares, [0.75, 0.5, 0.0, 0.0])
    assert r.zero_energy.tolist() == [False, False, True, True]
    assert r.mean == pytest.approx(1.25 / 4)
    np.testing.assert_allclose(r.area, 0.5)
    boxes = torch.tensor([[0, 0, 1, 2]] * 4)  # column 0, rows 0..1
    np.testing.assert_allclose(energy_pointing_game(maps, boxes).shares, [0.75, 0.5, 0, 0])


def test_energy_pointing_game_of_an_explanation_matches_the_equation():
    model = make_gapcnn(seed=3)
    torch.manual_seed(10)
    x = torch.rand(5, 1, 16, 16)
    e = xai.explain(model, x, method="gradcam++")
    mask = x[:, 0] > 0.5
    r = energy_pointing_game(e, mask)
    m = e.maps.double()
    np.testing.assert_allclose(r.shares, ((m * mask).sum((1, 2)) / m.sum((1, 2))).numpy())
    p = pointing_game(e, mask, tolerance=0, ties="first")
    rows, cols = p.points.T
    assert p.hits.tolist() == mask[torch.arange(5), rows, cols].tolist()


# -- the model is left as it was ----------------------------------------------------------


def test_model_flags_statistics_and_grads_are_left_alone():
    model = make_gapcnn(seed=4, dropout=0.5)
    model.train()
    model.features[1].eval()  # a mixed state, which must come back exactly
    flags = {name: m.training for name, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(11)
    x = torch.rand(3, 1, 16, 16, requires_grad=True)
    saliency = torch.rand(3, 16, 16)
    d1 = deletion(model, x, saliency, steps=4)
    i1 = insertion(model, x, saliency, steps=4)
    a1 = average_drop(model, x, saliency)
    assert {name: m.training for name, m in model.named_modules()} == flags
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(p.grad is None for p in model.parameters()) and x.grad is None
    model.eval()  # eval mode was used inside: dropout off, the same numbers
    np.testing.assert_allclose(deletion(model, x, saliency, steps=4).scores, d1.scores)
    np.testing.assert_allclose(insertion(model, x, saliency, steps=4).scores, i1.scores)
    with torch.no_grad():
        np.testing.assert_allclose(average_drop(model, x, saliency).drop, a1.drop)


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": 0}, ValueError, "deletion: steps must be a positive int; got 0"),
        ({"steps": 17}, ValueError, "at most the number of pixels H\\*W = 16"),
        ({"steps": 2.5}, TypeError, "steps must be a positive int; got float"),
        ({"steps": True}, TypeError, "steps must be a positive int; got the bool"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int; got 0"),
        ({"target": 5}, ValueError, "out of range for a model with 5 classes"),
        ({"target": [1, 2]}, ValueError, "target has 2 entries but the inputs hold 3"),
        ({"target": lambda out: out[:, 0]}, TypeError, "callable target is not supported"),
        ({"baseline": "noise"}, ValueError, "baseline must be a number, 'blur', 'mean'"),
        ({"baseline": True}, ValueError, "baseline must be a number"),
        ({"baseline": torch.zeros(2, 4, 4)}, ValueError, "must broadcast to the images"),
        ({"blur_sigma": 2.0}, ValueError, "blur_sigma is only used with baseline='blur'"),
        ({"baseline": "blur", "blur_sigma": -1.0}, ValueError, "blur_sigma must be a finite"),
        ({"softmax": "yes"}, TypeError, "softmax must be a bool; got str 'yes'"),
    ],
)
def test_curve_errors_name_the_parameter(kwargs, error, match):
    model = make_gapcnn(seed=0)
    x = torch.rand(3, 1, 4, 4)
    with pytest.raises(error, match=match):
        deletion(model, x, torch.rand(3, 4, 4), **kwargs)


def test_saliency_and_image_errors():
    model = make_gapcnn(seed=0)
    x = torch.rand(2, 1, 16, 16)
    e = xai.explain(model, x, method="gradcam")
    with pytest.raises(ValueError, match=r"\(4, 4\) but the images are \(16, 16\).*not \.raw"):
        deletion(model, x, e.raw)
    with pytest.raises(ValueError, match=r"must have shape \(N, H, W\).*maps\[:, 0\]"):
        deletion(model, x, torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="holds 3 maps but there are 2 images"):
        insertion(model, x, torch.rand(3, 16, 16))
    with pytest.raises(TypeError, match=r"an xai\.Explanation or an \(N, H, W\) tensor"):
        deletion(model, x, [[0.0]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        deletion(model, x, torch.full((2, 16, 16), float("nan")))
    with pytest.raises(ValueError, match=r"x\.unsqueeze\(0\)"):
        deletion(model, x[0], e)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*min-max normalise"):
        average_drop(model, x, e.maps * 2)
    with pytest.raises(ValueError, match="kind must be 'deletion' or 'insertion'"):
        perturbation_curve("both", model, x, e)  # type: ignore[arg-type]
    called = xai.explain(model, x, method="gradcam", target=lambda out: out[:, 1])
    with pytest.raises(ValueError, match="callable target, so it names no class"):
        deletion(model, x, called)
    assert deletion(model, x, called, target=1, steps=2).targets.tolist() == [1, 1]


def test_ground_truth_and_tolerance_errors():
    maps = torch.rand(2, 5, 5)
    mask = torch.ones(2, 5, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"masks are \(2, 4, 5\) but the saliency maps are"):
        pointing_game(maps, mask[:, :4])
    with pytest.raises(ValueError, match=r"only 0 and 1.*threshold them"):
        energy_pointing_game(maps, torch.rand(2, 5, 5))
    with pytest.raises(ValueError, match=r"box 1 is \(0, 0, 6, 2\).*x1 <= 5"):
        pointing_game(maps, torch.tensor([[0, 0, 2, 2], [0, 0, 6, 2]]))
    with pytest.raises(ValueError, match=r"box 0 is \(2, 0, 2, 2\)"):
        pointing_game(maps, torch.tensor([[2, 0, 2, 2], [0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="whole pixel coordinates"):
        pointing_game(maps, torch.tensor([[0, 0, 2.5, 2], [0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="has 1 boxes but there are 2 maps"):
        pointing_game(maps, torch.tensor([[0, 0, 2, 2]]))
    with pytest.raises(TypeError, match="ground_truth must be"):
        pointing_game(maps, [[0, 0, 2, 2]] * 2)
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 0"):
        pointing_game(maps, mask, tolerance=-1)
    with pytest.raises(ValueError, match="ties must be 'all', 'any' or 'first'"):
        pointing_game(maps, mask, ties="most")  # type: ignore[arg-type]


# -- the example -------------------------------------------------------------------------


def _table(out: str) -> dict[str, dict[str, float]]:
    lines = [line for line in out.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        numbers = {}
        for name, cell in zip(header[1:], cells[1:], strict=True):
            found = re.match(r"-?\d+(\.\d+)?", cell)
            if found:
                numbers[name] = float(found.group())
        rows[cells[0]] = numbers
    return rows


@pytest.mark.slow
@job("evaluate_explanations")
def _evaluation(folder: Path) -> Job:
    script = ROOT / "examples" / "evaluate_explanations.py"
    return Job([sys.executable, str(script), "--fast", "--out", str(folder / "evaluate.png")])


@pytest.mark.background("evaluate_explanations")
def test_the_evaluation_example_runs_fast(background):
    result = background.result("evaluate_explanations")
    assert result.returncode == 0, result.stderr
    out = result.folder / "evaluate.png"
    assert f"wrote {out}" in result.stdout
    rows = _table(result.stdout)
    assert {"random", "centre", "gradcam", "scorecam", "cam"} <= set(rows)
    for name, row in rows.items():
        deletion_auc, insertion_auc = row["deletion AUC ↓"], row["insertion AUC ↑"]
        assert 0 <= deletion_auc <= 1 and 0 <= insertion_auc <= 1, name
        assert 0 <= row["average drop % ↓"] <= 100 and 0 <= row["increase % ↑"] <= 100
        assert 0 <= row["pointing game % ↑"] <= 100 and 0 <= row["energy in mask % ↑"] <= 100
    # on the ten samples Grad-CAM deletes the class faster than a random order
    assert rows["gradcam"]["deletion AUC ↓"] < rows["random"]["deletion AUC ↓"] - 0.1
    assert rows["gradcam"]["insertion AUC ↑"] > rows["random"]["insertion AUC ↑"]
    import cv2

    picture = cv2.imread(str(out))
    assert picture is not None and picture.shape[1] > 1000


def test_metrics_read_logits_from_an_output_object(gray):
    """A model whose output carries .logits (every Hugging Face model) is scored as the
    plain model is: the core's class_logits, not a check of its own."""
    from tests.conftest import make_gapcnn

    plain = make_gapcnn()

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = plain

        def forward(self, x):
            return type("Output", (), {"logits": self.net(x)})()

    maps = xai.explain(plain, gray).maps
    expected = xai.metrics.deletion(plain, gray, maps, steps=4)
    got = xai.metrics.deletion(Wrapped().eval(), gray, maps, steps=4)
    np.testing.assert_allclose(got.auc, expected.auc, rtol=1e-6)
