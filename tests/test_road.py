"""ROAD (Rong et al., ICML 2022): the imputation is the paper's linear system, solved
exactly; the noise is seeded and of the requested size; the curves are the model's scores
on those images; a map of the region the model reads beats its reverse; bad input is
refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xai.core.errors import XAITypeError, XAIValueError
from xai.metrics import RoadResult, noisy_linear_imputation, road

DIRECT, DIAGONAL = 1 / 6, 1 / 12


def _reference(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The paper's equations, one pixel at a time: for every removed pixel p,
    Σ_q w_pq (v_p − v_q) = 0 over its neighbours q inside the image; a dense solve."""
    _, height, width = image.shape
    unknowns = [(r, c) for r in range(height) for c in range(width) if removed[r, c]]
    number = {pixel: k for k, pixel in enumerate(unknowns)}
    a = np.zeros((len(unknowns), len(unknowns)))
    b = np.zeros((len(unknowns), image.shape[0]))
    for k, (r, c) in enumerate(unknowns):
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                q = (r + dr, c + dc)
                if (dr, dc) == (0, 0) or not (0 <= q[0] < height and 0 <= q[1] < width):
                    continue
                w = DIAGONAL if dr and dc else DIRECT
                a[k, k] += w
                if removed[q]:
                    a[k, number[q]] -= w
                else:
                    b[k] += w * image[:, q[0], q[1]]
    out = image.copy()
    solution = np.linalg.solve(a, b)
    for k, (r, c) in enumerate(unknowns):
        out[:, r, c] = solution[k]
    return out


def _mask(height: int, width: int, share: float, seed: int) -> np.ndarray:
    removed = np.random.default_rng(seed).random((height, width)) < share
    removed[0, 0] = removed[0, 1] = removed[1, 0] = removed[1, 1] = True  # a corner block
    removed[-1, -1] = removed[-1, -2] = removed[0, -1] = True  # corners and the border
    removed[-1, 0] = False
    return removed


@pytest.mark.parametrize("shape", [(3, 7, 9), (2, 1, 6), (1, 5, 1)])
def test_imputation_is_the_papers_linear_system(shape):
    _, height, width = shape
    rng = np.random.default_rng(0)
    image = rng.random(shape)
    if height > 1 and width > 1:
        removed = _mask(height, width, 0.4, 1)
    else:
        removed = rng.random((height, width)) < 0.5
    removed.flat[0], removed.flat[-1] = True, False
    ours = noisy_linear_imputation(torch.from_numpy(image), torch.from_numpy(removed), noise=0)
    assert ours.dtype == torch.float64 and ours.shape == shape
    np.testing.assert_allclose(ours.numpy(), _reference(image, removed), rtol=0, atol=1e-10)
    if shape == (3, 7, 9):
        assert 0.3 < removed.mean() < 0.5
        # each imputed value is the renormalised weighted mean of its 8 neighbours
        v = ours.numpy()
        corner = (DIRECT * (v[:, 0, 1] + v[:, 1, 0]) + DIAGONAL * v[:, 1, 1]) / (
            2 * DIRECT + DIAGONAL
        )
        np.testing.assert_allclose(v[:, 0, 0], corner, atol=1e-12)


def test_a_batch_imputes_each_image_with_its_own_mask():
    rng = np.random.default_rng(2)
    images = rng.random((2, 3, 6, 5))
    removed = np.stack([_mask(6, 5, 0.4, 3), _mask(6, 5, 0.6, 4)])
    ours = noisy_linear_imputation(torch.from_numpy(images), torch.from_numpy(removed), noise=0)
    for i in range(2):
        np.testing.assert_allclose(ours[i].numpy(), _reference(images[i], removed[i]), atol=1e-10)
    shared = noisy_linear_imputation(
        torch.from_numpy(images), torch.from_numpy(removed[0]), noise=0
    )
    np.testing.assert_allclose(shared[1].numpy(), _reference(images[1], removed[0]), atol=1e-10)


def test_kept_pixels_are_untouched_and_the_noise_is_seeded_and_of_the_requested_size():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 64, 64, generator=gen)  # float32, whose dtype is kept
    removed = torch.rand(64, 64, generator=gen) < 0.5
    a = noisy_linear_imputation(image, removed, noise=0.05, seed=7)
    assert a.dtype == torch.float32 and torch.equal(a[:, ~removed], image[:, ~removed])
    assert torch.equal(a, noisy_linear_imputation(image, removed, noise=0.05, seed=7))
    b = noisy_linear_imputation(image, removed, noise=0.05, seed=8)
    assert not torch.equal(a[:, removed], b[:, removed])
    assert torch.equal(a[:, ~removed], b[:, ~removed])

    exact = image.double()
    clean = noisy_linear_imputation(exact, removed, noise=0)
    noisy = noisy_linear_imputation(exact, removed, noise=0.05, seed=7)
    drawn = (noisy - clean)[:, removed].numpy()  # (C, k), the pixels in row-major order
    assert np.array_equal(noisy[:, ~removed], exact[:, ~removed])
    expected = 0.05 * np.random.default_rng(7).standard_normal(drawn.shape)
    np.testing.assert_allclose(drawn, expected, rtol=0, atol=1e-12)  # the documented draw
    assert drawn.size > 5000 and abs(drawn.std() / 0.05 - 1) < 0.05
    assert abs(drawn.mean()) < 4 * 0.05 / np.sqrt(drawn.size)


class _Tiny(nn.Module):
    """Three classes from a 3 x 3 convolution and global average pooling."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv(x) * x.sum(dim=1, keepdim=True)).mean(dim=(2, 3)) * 10


def test_the_curves_are_the_models_scores_on_the_imputed_images():
    model = _Tiny()
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(3, 2, 6, 7, generator=gen, dtype=torch.float64).float()
    maps = (torch.rand(3, 6, 7, generator=gen) * 4).round()  # many ties
    percentages = (12.5, 40, 75, 99)
    result = road(model, images, maps, [0, 2, 1], percentages=percentages, seed=5, batch_size=4)
    assert isinstance(result, RoadResult) and len(result) == 3
    counts = [int(p * 42 / 100) for p in percentages]  # 5, 16, 31, 41 of 42 pixels
    assert result.removed.tolist() == counts == [5, 16, 31, 41]
    np.testing.assert_array_equal(result.percentages, percentages)
    with torch.no_grad():
        for i, target in enumerate([0, 2, 1]):
            flat = maps[i].reshape(-1).numpy()
            orders = (np.argsort(-flat, kind="stable"), np.argsort(flat, kind="stable"))
            for curve, order in zip((result.morf, result.lerf), orders, strict=True):
                for j, count in enumerate(counts):
                    removed = np.zeros(42, dtype=bool)
                    removed[order[:count]] = True
                    mask = torch.from_numpy(removed.reshape(6, 7))
                    imputed = noisy_linear_imputation(images[i], mask, seed=(5, i, j))
                    score = torch.softmax(model(imputed[None]).double(), dim=1)[0, target]
                    assert curve[i, j] == pytest.approx(score.item(), abs=1e-6)
            clean = torch.softmax(model(images[i : i + 1]).double(), dim=1)[0, target]
            assert result.original[i] == pytest.approx(clean.item(), abs=1e-6)
    assert result.targets.tolist() == [0, 2, 1]
    np.testing.assert_allclose(result.combined, (result.lerf - result.morf).mean(axis=1) / 2)
    assert result.mean_combined == pytest.approx((result.mean_lerf - result.mean_morf) / 2)
    again = road(model, images, maps, [0, 2, 1], percentages=percentages, seed=5, batch_size=1)
    np.testing.assert_allclose(again.morf, result.morf, atol=1e-6)  # batch_size is free
    np.testing.assert_allclose(again.lerf, result.lerf, atol=1e-6)
    other = road(model, images, maps, [0, 2, 1], percentages=percentages, seed=6)
    assert not np.allclose(other.morf, result.morf, rtol=0, atol=1e-9)


def test_a_flat_map_removes_the_same_pixels_both_ways_and_scores_exactly_zero():
    model = _Tiny()
    images = torch.rand(2, 2, 5, 5, generator=torch.Generator().manual_seed(3))
    result = road(model, images, torch.zeros(2, 5, 5), softmax=False, batch_size=1)
    assert np.array_equal(result.morf, result.lerf) and np.all(result.combined == 0)
    assert result.morf.shape == (2, 9) and result.percentages.tolist() == list(range(10, 100, 10))
    assert not result.softmax


class _Region(nn.Module):
    """Class 0's logit is the sum of a 3 x 3 region's pixels; class 1's is 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        region = x[:, 0, 3:6, 3:6].sum(dim=(1, 2))
        return torch.stack([region, torch.zeros_like(region)], dim=1)


def test_a_map_of_the_region_the_model_reads_beats_its_reverse():
    model = _Region()
    images = torch.zeros(2, 1, 10, 10)
    images[:, 0, 3:6, 3:6] = 1.0  # the region is bright, the rest black
    images[1] += 0.2 * torch.rand(1, 10, 10, generator=torch.Generator().manual_seed(0))
    good = torch.zeros(2, 10, 10)
    good[:, 3:6, 3:6] = 1.0
    exact = {"good": road(model, images, good, 0, noise=0, softmax=False)}
    exact["bad"] = road(model, images, -good, 0, noise=0, softmax=False)
    # MoRF with the region's map removes the region at 10 % (10 of 100 pixels) already;
    # its reverse never reaches the region below 91 %, nor LeRF with the good map.
    np.testing.assert_allclose(exact["good"].morf[0], 0.0, atol=1e-12)
    np.testing.assert_allclose(exact["bad"].morf[0], 9.0, atol=1e-12)
    np.testing.assert_allclose(exact["good"].lerf[0], 9.0, atol=1e-12)
    np.testing.assert_allclose(exact["bad"].lerf[0], 0.0, atol=1e-12)
    assert exact["good"].combined[0] == pytest.approx(4.5)
    # With noise (and a noisy background on image 1) the order holds at every percentage.
    g, b = road(model, images, good, 0, softmax=False), road(model, images, -good, 0, softmax=False)
    assert (g.morf < b.morf).all() and (g.lerf > b.lerf).all()
    assert (g.morf < 0.2 * g.original[:, None]).all()  # fallen at the first step
    assert (b.morf > 0.9 * b.original[:, None]).all()
    assert (g.combined > 3).all() and (b.combined < -3).all()
    probability = road(model, images, good, 0).mean_combined
    assert probability > 0.15 > -0.15 > road(model, images, -good, 0).mean_combined


def _args() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return _Tiny(), torch.rand(2, 2, 4, 4), torch.rand(2, 4, 4)


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"saliency": torch.rand(2, 1, 4, 4)}, XAIValueError, "shape (N, H, W)"),
        ({"saliency": torch.rand(2, 4, 5)}, XAIValueError, "resolution"),
        ({"saliency": torch.rand(3, 4, 4)}, XAIValueError, "3 maps but there are 2"),
        ({"saliency": torch.full((2, 4, 4), float("nan"))}, XAIValueError, "NaN"),
        ({"saliency": torch.tensor([[[float("inf")] * 4] * 4] * 2)}, XAIValueError, "infinite"),
        ({"percentages": (0, 50)}, XAIValueError, "percentages[0]"),
        ({"percentages": (50, 100)}, XAIValueError, "percentages[1]"),
        ({"percentages": (-10,)}, XAIValueError, "percentages[0]"),
        ({"percentages": (float("nan"),)}, XAIValueError, "percentages[0]"),
        ({"percentages": ()}, XAIValueError, "at least one"),
        ({"percentages": 50}, XAITypeError, "sequence"),
        ({"percentages": ("10",)}, XAITypeError, "percentages[0]"),
        ({"noise": -0.1}, XAIValueError, "noise"),
        ({"noise": float("inf")}, XAIValueError, "noise"),
        ({"seed": -1}, XAIValueError, "seed"),
        ({"seed": 1.5}, XAITypeError, "seed"),
        ({"softmax": 1}, XAITypeError, "softmax"),
        ({"batch_size": 0}, XAIValueError, "batch_size"),
        ({"target": 5}, XAIValueError, ""),
    ],
)
def test_road_refuses_bad_input_clearly(change, error, words):
    model, images, maps = _args()
    kwargs = {"saliency": maps, **change}
    saliency = kwargs.pop("saliency")
    with pytest.raises(error) as caught:
        road(model, images, saliency, **kwargs)
    assert words in str(caught.value)
    if "percentages" in change or "noise" in change or "seed" in change:
        assert str(caught.value).startswith("road: ")


def test_the_imputation_refuses_bad_input_clearly():
    image = torch.rand(3, 4, 4)
    some = torch.zeros(4, 4, dtype=torch.bool)
    some[0, 0] = True
    with pytest.raises(XAITypeError, match="boolean"):
        noisy_linear_imputation(image, some.float())
    with pytest.raises(XAIValueError, match=r"\(3, 4, 4\) and \(3, 4\)"):
        noisy_linear_imputation(image, some[:3])
    with pytest.raises(XAIValueError, match="at least one pixel"):
        noisy_linear_imputation(image, torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(XAIValueError, match="at least one pixel"):  # image 1 of 2
        noisy_linear_imputation(torch.rand(2, 3, 4, 4), torch.stack([some, ~some | some]))
    with pytest.raises(XAIValueError, match="NaN"):
        noisy_linear_imputation(image.masked_fill(some, float("nan")), some)
    with pytest.raises(XAITypeError, match="float"):
        noisy_linear_imputation(torch.ones(3, 4, 4, dtype=torch.int64), some)
    with pytest.raises(XAIValueError, match="noise"):
        noisy_linear_imputation(image, some, noise=-1.0)
    with pytest.raises(XAIValueError, match="seed"):
        noisy_linear_imputation(image, some, seed=-3)
    with pytest.raises(XAITypeError):
        noisy_linear_imputation([[0.0]], some)  # type: ignore[arg-type]


def test_the_model_is_left_as_it_was():
    model, images, maps = _args()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    road(model, images, maps, percentages=(50,))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
