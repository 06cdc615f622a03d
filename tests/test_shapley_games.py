"""ModelGame and ImagePatchGame play the games their docstrings define."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import xai
from tests.conftest import make_gapcnn
from xai.shapley import ImagePatchGame, ModelGame, coalition_masks


def tanh_mlp(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(n, 32)) / np.sqrt(n)
    w2 = rng.normal(size=32)
    return lambda X: np.tanh(X @ W1) @ w2


# ------------------------------------------------------------------------ ModelGame


def test_model_game_is_the_interventional_game():
    n = 5
    rng = np.random.default_rng(1)
    f = tanh_mlp(n)
    x = rng.normal(size=n)
    background = rng.normal(size=(7, n))
    game = ModelGame(f, x, background, batch_size=10)  # forces sub-chunks of one coalition
    masks = coalition_masks(0, 1 << n, n)
    got = game(masks)
    for s, mask in enumerate(masks):
        rows = [np.where(mask, x, b) for b in background]  # written out, row by row
        assert got[s] == pytest.approx(np.mean([f(r[None])[0] for r in rows]), abs=1e-12)
    assert game.evaluations_per_coalition == 7
    assert game.preferred_chunk == 1


def test_model_game_feeds_f_in_bounded_batches():
    calls = []
    f = tanh_mlp(6)

    def counted(rows):
        calls.append(len(rows))
        return f(rows)

    game = ModelGame(counted, np.ones(6), np.zeros((10, 6)), batch_size=100)
    xai.exact_shapley(game)
    assert max(calls) <= 100
    assert sum(calls) == 64 * 10


def test_one_background_row_is_the_baseline_game():
    f = tanh_mlp(4, seed=2)
    x, b = np.arange(4.0), np.full(4, -1.0)
    r = xai.exact_shapley(ModelGame(f, x, b))
    assert r.base_value == pytest.approx(f(b[None])[0])
    assert r.full_value == pytest.approx(f(x[None])[0])


def test_torch_model_game_matches_numpy_and_leaves_the_model_alone():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 3)
    )
    net.train()
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
    x = torch.randn(6)
    background = torch.randn(4, 6)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    torch_result = xai.exact_shapley(ModelGame(net, x, background))
    net.eval()
    with torch.no_grad():
        reference = xai.exact_shapley(
            ModelGame(
                lambda r: net(torch.as_tensor(r, dtype=torch.float32)).numpy(),
                x.numpy(),
                background.numpy(),
            )
        )
    net.train()
    assert torch_result.values.shape == (6, 3)  # three outputs
    np.testing.assert_allclose(torch_result.values, reference.values, atol=1e-5)
    assert net.training and net[1].training  # modes restored
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())  # BN stats
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize(
    ("x", "background", "message"),
    [
        (np.ones((2, 3)), np.zeros(3), r"one instance of shape \(n,\)"),
        (np.ones(3), np.zeros((2, 4)), r"background must have shape \(3,\) or \(m, 3\)"),
        (np.ones(3), np.zeros((0, 3)), r"background must have shape"),
    ],
)
def test_model_game_bad_shapes(x, background, message):
    with pytest.raises(ValueError, match=message):
        ModelGame(lambda r: r.sum(1), x, background)


def test_model_game_bad_output():
    game = ModelGame(lambda r: r, np.ones(3), np.zeros(3))  # returns (rows, 3): fine
    assert game(np.ones((2, 3), bool)).shape == (2, 3)
    bad = ModelGame(lambda r: r.sum(), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"f must return \(rows,\) or \(rows, outputs\)"):
        bad(np.ones((2, 3), bool))


# ------------------------------------------------------------------- ImagePatchGame


@pytest.fixture
def patch_case():
    model = make_gapcnn()
    torch.manual_seed(9)
    image = torch.rand(1, 12, 16)  # non-square, and 12 rows do not split evenly in 5
    return model, image


def test_image_patch_game_is_the_masked_image_score(patch_case):
    model, image = patch_case
    game = ImagePatchGame(model, image, target=2, grid=(5, 4), baseline=0.25, batch_size=3)
    assert game.n == 20
    assert game.feature_names[:5] == ("r0c0", "r0c1", "r0c2", "r0c3", "r1c0")
    rows = [round(i * 12 / 5) for i in range(6)]
    cols = [0, 4, 8, 12, 16]
    rng = np.random.default_rng(0)
    masks = rng.random((6, 20)) < 0.5
    got = game(masks)
    for mask, value in zip(masks, got, strict=True):
        composite = torch.full_like(image, 0.25)  # the image, patch by patch, written out
        for p in np.flatnonzero(mask):
            r, c = divmod(int(p), 4)
            sl = (slice(None), slice(rows[r], rows[r + 1]), slice(cols[c], cols[c + 1]))
            composite[sl] = image[sl]
        with torch.no_grad():
            expected = model(composite[None])[0, 2]
        assert value == pytest.approx(float(expected), abs=1e-5)


def test_image_patch_shapley_is_efficient_and_maps_back(patch_case):
    model, image = patch_case
    game = ImagePatchGame(model, image, target=1, grid=(2, 3), baseline="mean")
    r = xai.exact_shapley(game)
    with torch.no_grad():
        full = model(image[None])[0, 1]
        empty = model(game.baseline[None])[0, 1]
    assert r.full_value == pytest.approx(float(full), abs=1e-5)
    assert r.base_value == pytest.approx(float(empty), abs=1e-5)
    assert r.base_value + r.values.sum() == pytest.approx(r.full_value, abs=1e-5)
    heat = game.to_map(r.values)
    assert heat.shape == (12, 16)
    assert heat[0, 0] == r.values[0]
    assert heat[11, 15] == r.values[5]
    assert game.baseline[0, 0, 0] == pytest.approx(float(image.mean()), abs=1e-6)


def test_blur_baseline_keeps_a_constant_image_and_smooths_an_edge():
    from xai.shapley.image_game import gaussian_blur

    flat = torch.full((2, 9, 9), 0.7)
    torch.testing.assert_close(gaussian_blur(flat, 2.0), flat)
    edge = torch.zeros(1, 9, 9)
    edge[:, :, 5:] = 1.0
    blurred = gaussian_blur(edge, 1.0)
    assert 0 < float(blurred[0, 4, 4]) < float(blurred[0, 4, 5]) < 1
    assert float(blurred.sum()) == pytest.approx(float(edge.sum()), rel=0.05)


def test_image_patch_game_with_softmax_and_callable_targets(patch_case):
    model, image = patch_case
    masks = np.array([[True] * 4, [False] * 4])
    probs = ImagePatchGame(model, image, 3, grid=(2, 2), baseline=0.0, softmax=True)(masks)
    with torch.no_grad():
        expected = torch.softmax(model(image[None]), 1)[0, 3]
    assert probs[0] == pytest.approx(float(expected), abs=1e-6)
    call = ImagePatchGame(model, image, lambda out: out[:, 3] - out[:, 0], grid=(2, 2))(masks)
    with torch.no_grad():
        out = model(image[None])
    assert call[0] == pytest.approx(float(out[0, 3] - out[0, 0]), abs=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grid": (13, 2)}, "grid must be between"),
        ({"baseline": "zeros"}, "baseline must be 'blur', 'mean'"),
        ({"baseline": torch.zeros(3, 12, 16)}, "must match the image's shape"),
    ],
)
def test_image_patch_game_bad_options(patch_case, kwargs, message):
    model, image = patch_case
    with pytest.raises(ValueError, match=message):
        ImagePatchGame(model, image, 0, **kwargs)


def test_image_patch_game_bad_target(patch_case):
    model, image = patch_case
    game = ImagePatchGame(model, image, 9, grid=(1, 2))
    with pytest.raises(ValueError, match="target 9 is out of range for 5 classes"):
        game(np.ones((1, 2), bool))


def test_image_game_leaves_the_model_as_it_was(patch_case):
    model, image = patch_case
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    xai.exact_shapley(ImagePatchGame(model, image, 0, grid=(2, 2)))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_every_pair_of_patches_is_a_distinct_player(patch_case):
    model, image = patch_case
    game = ImagePatchGame(model, image, 0, grid=(2, 2))
    pixels = game.patch_of_pixel
    assert sorted(torch.unique(pixels).tolist()) == [0, 1, 2, 3]
    for a, b in itertools.combinations(range(4), 2):
        assert not torch.equal(pixels == a, pixels == b)
