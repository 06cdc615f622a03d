"""Identities between methods, hand-computed maps, and agreement with captum."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

import xai
from tests.conftest import make_gapcnn, make_two_stage

# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcam_equals_cam_over_hw_on_gap_head(seed, gray):
    """On a GAP head, dy/dA^k_ij = w_k / (h w), so Grad-CAM = CAM / (h w) exactly."""
    model = make_gapcnn(seed)
    for target in (None, 3, [4, 0, 2, 2]):
        for relu in (True, False):
            cam = xai.explain(model, gray, method="cam", target=target, relu=relu)
            grad = xai.explain(model, gray, method="gradcam", target=target, relu=relu)
            h, w = cam.raw.shape[1:]
            assert cam.layer == grad.layer == "features.10"
            torch.testing.assert_close(grad.raw, cam.raw / (h * w), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(grad.targets, cam.targets)
            torch.testing.assert_close(grad.scores, cam.scores)
        assert cam.raw.abs().max() > 1e-3  # not a vacuous identity between empty maps


def test_hirescam_equals_gradcam_on_gap_head(gapcnn, gray):
    """With spatially constant gradients the element-wise product is Grad-CAM itself."""
    hires = xai.explain(gapcnn, gray, method="hirescam")
    grad = xai.explain(gapcnn, gray, method="gradcam")
    torch.testing.assert_close(hires.raw, grad.raw, rtol=1e-5, atol=1e-6)


def test_methods_differ_where_gradients_vary(images):
    """The converse: on a flattening head the variants give different maps."""
    model = make_two_stage()
    raws = {
        m: xai.explain(model, images, method=m, layer="body.3", target=1).raw
        for m in ("gradcam", "hirescam", "layercam", "xgradcam", "gradcam++")
    }
    names = list(raws)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.allclose(
                raws[a] / (raws[a].max() + 1e-12), raws[b] / (raws[b].max() + 1e-12), atol=1e-3
            ), (a, b)


class Block(nn.Module):
    """A torchvision-style BasicBlock: in-place residual add, one ReLU module used twice."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.conv1(x))
        out = self.conv2(out)
        out += x
        return self.relu(out)


class TinyResNet(nn.Module):
    """conv -> two blocks -> avgpool -> flatten -> fc, as torchvision names them."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Block(6), Block(6))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = self.layer1(self.relu(self.conv1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def test_cam_on_torchvision_style_resnet_head(gray):
    """avgpool + flatten + fc, with a reused in-place ReLU inside each block."""
    torch.manual_seed(0)
    model = TinyResNet().eval()
    cam = xai.explain(model, gray, method="cam")
    grad = xai.explain(model, gray, method="gradcam")
    assert cam.layer == "layer1.1"  # the block: its ReLU module runs twice
    torch.testing.assert_close(grad.raw, cam.raw / (16 * 16), rtol=1e-5, atol=1e-7)


def test_cam_with_functional_mean_head(gray):
    class MeanHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 5, 3)
            self.act = nn.ReLU()
            self.fc = nn.Linear(5, 3)

        def forward(self, x):
            return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))

    torch.manual_seed(3)
    model = MeanHead().eval()
    cam = xai.explain(model, gray, method="cam", target=2)
    assert cam.layer == "act"
    A = model.act(model.conv(gray))
    expected = torch.einsum("k,nkhw->nhw", model.fc.weight[2], A).clamp_min(0)
    torch.testing.assert_close(cam.raw, expected.detach(), rtol=1e-5, atol=1e-6)


def test_cam_refuses_a_model_without_gap_head(images):
    with pytest.raises(ValueError, match=r"global average of layer 'body.3'.*gradcam"):
        xai.explain(make_two_stage(), images, method="cam", layer="body.3")


def test_cam_refuses_a_layer_that_does_not_feed_the_pool(gapcnn, gray):
    with pytest.raises(ValueError, match=r"global average of layer 'features.6'"):
        xai.explain(gapcnn, gray, method="cam", layer="features.6")


def test_cam_refuses_an_output_after_the_head(gray):
    model = nn.Sequential(make_gapcnn(), nn.Softmax(dim=1)).eval()
    with pytest.raises(ValueError, match=r"output of a torch\.nn\.Linear"):
        xai.explain(model, gray, method="cam")


# --------------------------------------------------------------------- hand-computed


class HandModel(nn.Module):
    """conv 1x1 with weights (1, -1): A^0 = relu(x), A^1 = relu(-x); GAP; Linear W."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[2.0, 1.0], [-1.0, 3.0]]))

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


HAND_X = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]]]])


def test_hand_computed_gradcam_and_cam():
    # A^0 = [[1, 0], [3, 0]], A^1 = [[0, 2], [0, 0]];  y^0 = 2*1 + 1*0.5 = 2.5
    # class 0: alpha = (2/4, 1/4) -> 0.5 A^0 + 0.25 A^1 = [[0.5, 0.5], [1.5, 0]]
    # class 1: alpha = (-1/4, 3/4) -> [[-0.25, 1.5], [-0.75, 0]] -> ReLU [[0, 1.5], [0, 0]]
    model = HandModel().eval()
    g0 = xai.explain(model, HAND_X, method="gradcam", target=0)
    g1 = xai.explain(model, HAND_X, method="gradcam", target=1)
    assert g0.raw.tolist() == [[[0.5, 0.5], [1.5, 0.0]]]
    assert g1.raw.tolist() == [[[0.0, 1.5], [0.0, 0.0]]]
    assert g0.scores.tolist() == [2.5] and g0.targets.tolist() == [0]
    assert g1.scores.tolist() == [0.5]  # -1 * mean(A^0) + 3 * mean(A^1)
    cam0 = xai.explain(model, HAND_X, method="cam", target=0)
    assert cam0.raw.tolist() == [[[2.0, 2.0], [6.0, 0.0]]]
    # maps: min-max of the (here same-size) raw map
    np.testing.assert_allclose(g0.maps.numpy(), [[[1 / 3, 1 / 3], [1.0, 0.0]]], rtol=1e-6)
    # top-1 is class 0 (2.5 > 0.5)
    assert xai.explain(model, HAND_X, method="gradcam").targets.tolist() == [0]


class FlatModel(nn.Module):
    """A = relu(x) (one channel, 2x2); y = sum_ij v_ij A_ij with v = [[1, 2], [3, 4]]."""

    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 1, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))

    def forward(self, x):
        return self.fc(self.act(x).flatten(1))


FLAT_X = torch.tensor([[[[1.0, -1.0], [2.0, 3.0]]]])  # A = [[1, 0], [2, 3]], sum 6


@pytest.mark.parametrize(
    ("method", "weight"),
    [
        ("gradcam", Fraction(10, 4)),  # mean(v) = 2.5
        ("xgradcam", Fraction(1 + 6 + 12, 6)),  # sum(A v) / sum(A) = 19/6
        # alpha_ij = v^2 / (2 v^2 + 6 v^3) = 1 / (2 + 6 v); w = sum alpha relu(v)
        ("gradcam++", sum(Fraction(v, 2 + 6 * v) for v in (1, 2, 3, 4))),
    ],
)
def test_hand_computed_channel_weighted_methods(method, weight):
    e = xai.explain(FlatModel().eval(), FLAT_X, method=method, layer="act", target=0)
    expected = float(weight) * np.array([[[1.0, 0.0], [2.0, 3.0]]])
    np.testing.assert_allclose(e.raw.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("method", ["hirescam", "layercam"])
def test_hand_computed_elementwise_methods(method):
    e = xai.explain(FlatModel().eval(), FLAT_X, method=method, layer="act", target=0)
    assert e.raw.tolist() == [[[1.0, 0.0], [6.0, 12.0]]]  # v * A


def test_hand_computed_ablationcam():
    # y = 1*1 + 3*2 + 4*3 = 19; zeroing the only channel gives 0: w = (19 - 0) / 19 = 1
    e = xai.explain(FlatModel().eval(), FLAT_X, method="ablationcam", layer="act", target=0)
    np.testing.assert_allclose(e.raw.numpy(), [[[1.0, 0.0], [2.0, 3.0]]], rtol=1e-6)
    assert e.scores.tolist() == [19.0]


def test_hand_computed_scorecam_logit():
    # H = minmax(A) = A / 3; y(x * H) = sum v_ij relu(x_ij A_ij / 3)
    #   = (1*1 + 3*4 + 4*9) / 3 = 49/3; baseline y(0) = 0  -> map = 49/3 * A
    e = xai.explain(
        FlatModel().eval(), FLAT_X, method="scorecam", layer="act", target=0, softmax=False
    )
    np.testing.assert_allclose(
        e.raw.numpy(), 49 / 3 * np.array([[[1.0, 0.0], [2.0, 3.0]]]), rtol=1e-6
    )


def test_hand_computed_eigencam():
    # One channel: M is a column, v1 = [1], the map is A itself.
    e = xai.explain(FlatModel().eval(), FLAT_X, method="eigencam", layer="act")
    np.testing.assert_allclose(e.raw.numpy(), [[[1.0, 0.0], [2.0, 3.0]]], rtol=1e-6)


def test_hand_computed_guided_backprop():
    # dy/dx = v where x > 0, 0 where x <= 0; guidance keeps positive v only.
    e = xai.explain(FlatModel().eval(), FLAT_X, method="guided-backprop", target=0)
    assert e.attributions.tolist() == [[[[1.0, 0.0], [3.0, 4.0]]]]


# -------------------------------------------------------------------------- captum


captum = pytest.importorskip("captum.attr")


@pytest.mark.parametrize(
    ("factory", "layer"),
    [(make_gapcnn, "features.10"), (make_two_stage, "body.3"), (make_two_stage, "body.2")],
)
def test_gradcam_equals_captum_layergradcam(factory, layer, gray, images):
    model = factory()
    x = gray if factory is make_gapcnn else images
    targets = list(range(x.shape[0]))
    ours = xai.explain(model, x, method="gradcam", layer=layer, target=targets)
    module = dict(model.named_modules())[layer]
    theirs = captum.LayerGradCam(model, module).attribute(x, target=targets, relu_attributions=True)
    torch.testing.assert_close(ours.raw, theirs[:, 0].detach(), rtol=1e-5, atol=1e-5)
    assert ours.raw.abs().max() > 1e-3


def test_guided_backprop_equals_captum(images):
    model = make_two_stage()
    ours = xai.explain(model, images, method="guided-backprop", target=[1, 2, 3])
    theirs = captum.GuidedBackprop(model).attribute(images, target=[1, 2, 3])
    torch.testing.assert_close(ours.attributions, theirs.detach(), rtol=1e-5, atol=1e-6)


def test_guided_gradcam_equals_captum(images):
    model = make_two_stage()
    ours = xai.explain(model, images, method="guided-gradcam", layer="body.3", target=4)
    theirs = captum.GuidedGradCam(model, model.body[3]).attribute(
        images, target=4, interpolate_mode="bilinear"
    )
    torch.testing.assert_close(ours.attributions, theirs.detach(), rtol=1e-5, atol=1e-6)
