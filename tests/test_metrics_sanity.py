"""Sanity checks (Adebayo et al. 2018): Spearman by hand and against scipy, the cascade
re-derived by hand, the paper's finding on the embedded model, and the user's model and
random state left alone."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import xai
from xai.metrics import cascading_randomization, spearman


@pytest.fixture(scope="module")
def trained():
    model = xai.models.pretrained("fashion-mnist")
    images, labels = xai.models.sample_batch()
    return model, images, labels


def test_spearman_by_hand_with_ties_and_constant_maps():
    a = torch.tensor([[[1.0, 2.0, 3.0]], [[1.0, 1.0, 2.0]], [[5.0, 5.0, 5.0]]])
    b = torch.tensor([[[3.0, 2.0, 1.0]], [[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0]]])
    rho = spearman(a, b)
    assert rho[0] == pytest.approx(-1.0)
    # ranks (0.5, 0.5, 2) and (0, 1, 2): centred dot 1.5, norms sqrt(1.5) and sqrt(2)
    assert rho[1] == pytest.approx(1.5 / math.sqrt(3.0))
    assert math.isnan(rho[2])  # a constant map has no ranking


def test_spearman_agrees_with_scipy_on_tied_maps():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(6, 7, 7)).astype(float)  # many ties
    b = a + rng.integers(0, 3, size=a.shape)
    expected = [stats.spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(spearman(a, b), expected, rtol=0, atol=1e-12)


def test_each_step_is_the_cascade_written_out_by_hand(trained):
    model, images, labels = trained
    result = cascading_randomization(
        model, images, "gradcam", labels, layers=["head", "features.16"], seed=3
    )
    assert result.layers == ("original", "head", "features.16")
    manual = copy.deepcopy(model)
    torch.manual_seed(3)
    expected = []
    for name in ("head", "features.16"):
        with torch.no_grad():
            dict(manual.named_modules())[name].reset_parameters()
        expected.append(xai.explain(manual, images, "gradcam", target=labels).maps)
    original = xai.explain(model, images, "gradcam", target=labels).maps
    np.testing.assert_array_equal(result.maps[0], original.numpy())
    for step, maps in enumerate(expected, start=1):
        np.testing.assert_array_equal(result.maps[step], maps.numpy())
        np.testing.assert_allclose(result.spearman[step], spearman(original, maps))


def test_the_papers_finding_on_the_embedded_model(trained):
    # Grad-CAM depends on the trained head and collapses when it is randomised; guided
    # backpropagation still shows much the same picture with the top four layers random.
    model, images, _ = trained
    gradcam = cascading_randomization(model, images, "gradcam")
    guided = cascading_randomization(model, images, "guided-backprop")
    assert gradcam.layers[1] == "head" and gradcam.layers[-1] == "features.0"
    assert gradcam.mean[0] == pytest.approx(1.0)
    assert gradcam.mean[1] < 0.3
    assert np.nanmax(gradcam.mean[1:]) < 0.4
    assert guided.mean[4] > 0.7
    assert guided.mean[4] - gradcam.mean[4] > 0.5
    # CAM = Grad-CAM * h*w on a GAP head: the same ranks, so the same correlations (up
    # to float32 rounding reordering near-equal pixels).
    cam = cascading_randomization(model, images, "cam")
    np.testing.assert_allclose(cam.maps, gradcam.maps, atol=1e-5)
    np.testing.assert_allclose(cam.spearman, gradcam.spearman, atol=1e-4)
    assert "features.0" in gradcam.table()


def test_the_users_model_and_the_random_state_are_left_alone(trained):
    model, images, _ = trained
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    try:
        first = cascading_randomization(model, images[:3], "gradcam", seed=1)
        assert model.training and all(m.training for m in model.modules())
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        assert torch.equal(torch.get_rng_state(), rng)
        assert all(p.grad is None for p in model.parameters())
        assert not any(m._forward_hooks for m in model.modules())
    finally:
        model.eval()
    again = cascading_randomization(model, images[:3], "gradcam", seed=1)
    other = cascading_randomization(model, images[:3], "gradcam", seed=2)
    np.testing.assert_array_equal(first.maps, again.maps)
    assert not np.array_equal(first.maps[1:], other.maps[1:])


def test_bad_requests_say_what_to_do(trained):
    model, images, _ = trained
    with pytest.raises(ValueError, match=r"no module named 'nope'.*named_modules"):
        cascading_randomization(model, images[:1], layers=["nope"])
    with pytest.raises(TypeError, match="reset_parameters"):
        cascading_randomization(model, images[:1], layers=["features"])
    with pytest.raises(ValueError, match="one class per image"):
        cascading_randomization(model, images[:1], target=lambda out: out[:, 0])
    with pytest.raises(ValueError, match=r"shape \(N, H, W\)"):
        spearman(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))
