"""The shap and captum wrappers: same game, same numbers; results in xai's types."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

import xai
from tests.conftest import make_gapcnn
from xai.shapley import FunctionGame, ModelGame

shap = pytest.importorskip("shap")
captum_wrap = pytest.importorskip("xai.integrations.captum")
shap_wrap = pytest.importorskip("xai.integrations.shap")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")


@pytest.fixture(scope="session")
def warm_shap():
    """shap's exact explainer compiles (numba) for ~10 s on its first call in a process:
    pay it once for the whole session."""
    shap_wrap.shap_exact(lambda r: r.sum(1), np.ones(2), np.zeros(2))
    return shap_wrap


@pytest.fixture(scope="module")
def net8():
    """A small float64 torch model on 8 features, and one background row."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1), nn.Flatten(0))
    net = net.double().eval()
    return net, torch.randn(8, dtype=torch.float64), torch.randn(1, 8, dtype=torch.float64)


def test_exact_engine_equals_shap_exact_explainer(warm_shap, net8):
    net, x, background = net8
    ours = xai.exact_shapley(ModelGame(net, x, background))
    theirs = warm_shap.shap_exact(net, x, background)
    np.testing.assert_allclose(ours.values, theirs.values, rtol=0, atol=1e-8)
    assert theirs.base_value == pytest.approx(ours.base_value, abs=1e-12)
    assert theirs.full_value == pytest.approx(ours.full_value, abs=1e-12)
    assert isinstance(theirs, xai.ShapleyResult)
    assert theirs.method == "shap-exact"
    assert np.abs(ours.values).max() > 1e-2


def test_shap_exact_keeps_every_background_row(warm_shap):
    """shap's maskers subsample to 100 rows by default; the wrapper keeps all 150."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(5, 8))
    f = lambda r: np.tanh(r @ W).sum(1)  # noqa: E731
    x, background = rng.normal(size=5), rng.normal(size=(150, 5))
    ours = xai.exact_shapley(ModelGame(f, x, background))
    theirs = warm_shap.shap_exact(f, x, background)
    np.testing.assert_allclose(ours.values, theirs.values, atol=1e-10)


def test_exact_engine_equals_captum_shapley_values_with_a_feature_mask(net8):
    """captum enumerates orders of 4 feature groups; our game has the groups as players.
    (captum accumulates in float32, hence 1e-6 and not 1e-12.)"""
    net, x, background = net8
    groups = np.array([0, 0, 1, 1, 2, 2, 3, 3])

    def grouped(masks):
        rows = np.where(masks[:, groups], x.numpy(), background[0].numpy())
        with torch.no_grad():
            return net(torch.as_tensor(rows)).numpy()

    ours = xai.exact_shapley(FunctionGame(grouped, n_features=4))
    theirs = captum_wrap.shapley_values(net, x, background[0], feature_mask=torch.tensor(groups))
    per_group = np.array([theirs.values[groups == g][0] for g in range(4)])
    np.testing.assert_allclose(per_group, ours.values, rtol=0, atol=1e-6)
    for g in range(4):  # captum gives every feature of a group the group's value
        assert np.all(theirs.values[groups == g] == theirs.values[groups == g][0])


def test_shap_kernel_without_l1_reg_enumerates_and_agrees(net8):
    net, x, background = net8
    ours = xai.exact_shapley(ModelGame(net, x, background))
    theirs = shap_wrap.shap_kernel(net, x, background)  # auto: 2^8 coalitions, all of them
    np.testing.assert_allclose(theirs.values, ours.values, atol=1e-8)
    assert theirs.method == "shap-kernel"


def test_shap_kernel_default_l1_reg_would_drop_features():
    """The trap the wrapper avoids: shap's default l1_reg="num_features(10)" keeps 10 of
    14 features when it does not enumerate every coalition, and zeroes the other 4."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=14) + np.sign(rng.normal(size=14))
    f = lambda r: r @ w  # noqa: E731
    x, background = np.ones(14), np.zeros((1, 14))
    trap = shap.KernelExplainer(f, background).shap_values(x[None], nsamples=200, silent=True)
    assert np.sum(np.asarray(trap)[0] == 0) == 4
    ours = shap_wrap.shap_kernel(f, x, background, nsamples=200)
    np.testing.assert_allclose(ours.values, w, atol=1e-6)  # linear: phi_i = w_i (x_i - b_i)


def test_shap_permutation_and_captum_samplers_on_a_linear_model():
    """On a linear game every order gives phi_i = w_i (x_i - b_i): samplers are exact."""
    torch.manual_seed(2)
    linear = nn.Linear(6, 1).double().eval()
    f = nn.Sequential(linear, nn.Flatten(0)).eval()
    x, b = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    expected = (linear.weight[0] * (x - b)).detach().numpy()
    results = [
        shap_wrap.shap_permutation(f, x, b, max_evals=100, seed=0),
        captum_wrap.shapley_value_sampling(f, x, b, n_samples=3),
        captum_wrap.kernel_shap(f, x, b, n_samples=200),
        captum_wrap.feature_ablation(f, x, b),
    ]
    for r in results:
        assert isinstance(r, xai.ShapleyResult)
        np.testing.assert_allclose(r.values, expected, atol=1e-5, err_msg=r.method)
        with torch.no_grad():
            assert r.base_value == pytest.approx(float(f(b[None])[0]), abs=1e-6)
            assert r.full_value == pytest.approx(float(f(x[None])[0]), abs=1e-6)


# ---------------------------------------------------------------------- conversions


def test_exact_results_plot_through_shap(tmp_path):
    r = xai.exact_shapley(xai.shapley.housing())
    e = shap_wrap.to_explanation(r)
    assert isinstance(e, shap.Explanation)
    np.testing.assert_allclose(e.values, r.values)
    assert e.base_values == 20.0
    assert list(e.feature_names) == list(r.feature_names)
    for plot in (shap.plots.waterfall, shap.plots.bar):
        plot(e, show=False)
        path = tmp_path / f"{plot.__name__}.png"
        plt.savefig(path)
        plt.close("all")
        assert path.stat().st_size > 5_000
    with_data = shap_wrap.to_explanation(r, data=[1990, 120, 8])
    assert with_data.data.tolist() == [1990, 120, 8]


def test_image_results_convert_channel_last(tmp_path):
    model = make_gapcnn()
    images = torch.rand(2, 1, 16, 16)
    for e in (
        xai.explain(model, images, method="guided-backprop"),
        xai.explain(model, images, method="gradcam"),
    ):
        s = shap_wrap.to_explanation(e, images=images.numpy())
        assert s.values.shape == (2, 16, 16, 1, 1)  # one output
        assert s.data.shape == (2, 16, 16, 1)
    shap.plots.image(s, show=False)
    plt.savefig(tmp_path / "image.png")
    plt.close("all")
    with pytest.raises(TypeError, match="ShapleyResult or an Explanation"):
        shap_wrap.to_explanation(42)


# ------------------------------------------------------------------- image wrappers


class LinearImage(nn.Module):
    """f(x) = W flatten(x): every attribution method has a closed form here."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(self.flatten(x))


@pytest.fixture
def linear_images():
    torch.manual_seed(5)
    return LinearImage().eval(), torch.rand(2, 2, 6, 6), torch.rand(1, 2, 6, 6)


def _expected(model, x, base, classes):
    w = model.fc.weight.detach().reshape(3, 2, 6, 6)
    return torch.stack([w[c] * (x[i] - base[0]) for i, c in enumerate(classes)])


def test_shap_deep_and_gradient_explainers_on_a_linear_model(linear_images):
    model, x, background = linear_images
    for e in (
        shap_wrap.shap_deep(model, x, background, target=[0, 2]),
        shap_wrap.shap_gradient(model, x, background, target=[0, 2], nsamples=50, seed=0),
    ):
        assert isinstance(e, xai.Explanation)
        assert e.targets.tolist() == [0, 2]
        torch.testing.assert_close(
            e.attributions, _expected(model, x, background, [0, 2]), rtol=1e-4, atol=1e-5
        )
        torch.testing.assert_close(e.raw, e.attributions.sum(1))


def test_shap_partition_is_efficient(linear_images):
    """Owen values sum to f(x) - f(fully masked image), for each image's class."""
    model, x, _ = linear_images
    e = shap_wrap.shap_partition(model, x, target=1, masker="blur(3,3)", max_evals=200)
    assert e.attributions.shape == (2, 2, 6, 6)
    import cv2  # the blur masker is OpenCV's

    for i in range(2):
        pixels = x[i].permute(1, 2, 0).double().numpy()
        blurred = torch.as_tensor(cv2.blur(pixels, (3, 3))).permute(2, 0, 1).float()
        with torch.no_grad():
            gap = model(x[i : i + 1])[0, 1] - model(blurred[None])[0, 1]
        assert float(e.attributions[i].sum()) == pytest.approx(float(gap), abs=1e-4)


def test_captum_perturbations_per_eval_changes_speed_not_values(net8):
    net, x, background = net8
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    one = captum_wrap.shapley_values(net, x, background[0], feature_mask=groups)
    many = captum_wrap.shapley_values(
        net, x, background[0], feature_mask=groups, perturbations_per_eval=7
    )
    np.testing.assert_allclose(many.values, one.values, rtol=0, atol=1e-6)
    calls = []
    handle = net.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    try:
        captum_wrap.feature_ablation(
            net, x, background[0], feature_mask=groups, perturbations_per_eval=4
        )
    finally:
        handle.remove()
    assert max(calls) == 4  # the four ablated copies go through the model at once


def test_captum_image_wrappers(linear_images):
    model, x, _ = linear_images
    ig = captum_wrap.integrated_gradients(model, x, target=[1, 0], baselines=0.0)
    torch.testing.assert_close(
        ig.attributions, _expected(model, x, torch.zeros(1, 2, 6, 6), [1, 0]), rtol=1e-4, atol=1e-5
    )
    mask = (torch.arange(36).reshape(1, 1, 6, 6) // 12).expand(1, 2, 6, 6)  # not contiguous
    sv = captum_wrap.shapley_value_sampling(
        model, x, 0.0, feature_mask=mask, n_samples=2, target=[1, 0]
    )
    # captum gives every pixel of a group the group's whole value: one pixel per group
    # (rows 0-1, 2-3, 4-5) adds up to the score gap, which IG matches on a linear model.
    per_group = sv.attributions[:, 0, [0, 2, 4], 0]
    assert torch.equal(
        sv.attributions[:, :, 0:2], sv.attributions[:, :1, :1, :1].expand(2, 2, 2, 6)
    )
    torch.testing.assert_close(
        per_group.sum(1), ig.attributions.sum((1, 2, 3)), rtol=1e-4, atol=1e-5
    )


def test_captum_cam_wrappers_equal_ours(gray):
    model = make_gapcnn()
    ours = xai.explain(model, gray, method="gradcam", target=[0, 1, 2, 3])
    theirs = captum_wrap.layer_gradcam(model, gray, target=[0, 1, 2, 3])
    assert theirs.layer == ours.layer == "features.10"
    torch.testing.assert_close(theirs.raw, ours.raw, rtol=1e-5, atol=1e-6)
    guided = captum_wrap.guided_gradcam(model, gray, target=[0, 1, 2, 3])
    ours_guided = xai.explain(model, gray, method="guided-gradcam", target=[0, 1, 2, 3])
    torch.testing.assert_close(guided.attributions, ours_guided.attributions, rtol=1e-5, atol=1e-6)


def test_wrappers_leave_the_model_as_it_was(linear_images, net8):
    model, x, background = linear_images
    model.train()
    shap_wrap.shap_gradient(model, x, background, nsamples=10, seed=0)
    captum_wrap.integrated_gradients(model, x, n_steps=5)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    net, xt, bt = net8
    net.train()
    shap_wrap.shap_kernel(net, xt, bt, nsamples=50)
    captum_wrap.shapley_value_sampling(net, xt, bt[0], n_samples=2)
    assert net.training
    net.eval()


def test_wrapper_input_errors(net8):
    net, x, background = net8
    with pytest.raises(ValueError, match=r"x must be one instance of shape \(n,\)"):
        shap_wrap.shap_exact(net, x[None], background)
    with pytest.raises(ValueError, match=r"background must have shape \(8,\) or \(m, 8\)"):
        shap_wrap.shap_exact(net, x, background[:, :3])
    with pytest.raises(ValueError, match=r"one tabular instance \(n,\) or images"):
        captum_wrap.feature_ablation(net, x[None], background)
