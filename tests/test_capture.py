"""The core's capture: several layers in one pass, tuple and dict outputs, and inputs
that must be refused (non-finite, wrong channel count)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import xai
from tests.conftest import make_gapcnn, make_two_stage
from xai.core.capture import forward_backward
from xai.core.layers import resolve_layer


def test_two_layers_gradients_in_one_pass_equal_autograd_on_the_plain_model(images):
    """The old leaf trick detached each hooked output, so an upstream layer got no
    gradient through a downstream one; now every layer's gradient is the exact
    d score / d layer of the unhooked model."""
    model = make_two_stage()
    layers = [resolve_layer(model, "body.1"), resolve_layer(model, "body.3")]
    maps, grads, resolved, scores = forward_backward(model, images, layers, [1, 4, 6])
    # the reference: the plain model's intermediate tensors, differentiated directly
    with torch.enable_grad():
        a1 = model.body[:2](images)
        a2 = model.body[2:](a1)
        out = model.tail(a2)
        score = out[torch.arange(3), torch.tensor([1, 4, 6])]
        g1, g2 = torch.autograd.grad(score.sum(), [a1, a2])
    torch.testing.assert_close(maps[0], a1.detach())
    torch.testing.assert_close(maps[1], a2.detach())
    torch.testing.assert_close(grads[0], g1, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grads[1], g2, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(scores, score.detach())
    assert resolved.classes.tolist() == [1, 4, 6]
    assert float(g1.abs().max()) > 0  # the upstream layer really gets a gradient


def test_multi_layer_capture_with_frozen_parameters_and_inplace_relus(images):
    model = make_two_stage(inplace=True)
    for p in model.parameters():
        p.requires_grad_(False)
    layers = [resolve_layer(model, "body.0"), resolve_layer(model, "body.2")]
    maps, grads, _, _ = forward_backward(model, images, layers, 2)
    plain = make_two_stage(inplace=False)
    with torch.enable_grad():
        a1 = plain.body[0](images)  # the conv's own (signed) output, before its ReLU
        a2 = plain.body[1:3](a1)
        out = plain.tail(plain.body[3](a2))
        g1, g2 = torch.autograd.grad(out[:, 2].sum(), [a1, a2])
    torch.testing.assert_close(maps[0], a1.detach())
    torch.testing.assert_close(maps[1], a2.detach())
    torch.testing.assert_close(grads[0], g1, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grads[1], g2, rtol=1e-5, atol=1e-7)
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())


class Pyramid(nn.Module):
    """An FPN-like backbone returning a dict of maps, and a block returning a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.head = nn.Linear(10, 3)

    def forward(self, x):
        return self.neck(self.backbone(x))

    def backbone(self, x):
        return self.features(x)

    def neck(self, feats):
        p1, p2 = feats["p1"], feats["p2"]
        return self.head(torch.cat([p1.mean((2, 3)), p2.mean((2, 3))], dim=1))


class Features(nn.Module):
    def __init__(self, c1: nn.Module, c2: nn.Module, as_tuple: bool) -> None:
        super().__init__()
        self.c1, self.c2, self.as_tuple = c1, c2, as_tuple

    def forward(self, x):
        p1 = torch.relu(self.c1(x))
        p2 = torch.relu(self.c2(p1))
        return (p2, p1) if self.as_tuple else {"p1": p1, "p2": p2}


def make_pyramid(as_tuple: bool) -> nn.Module:
    torch.manual_seed(0)
    model = Pyramid()
    model.features = Features(model.c1, model.c2, as_tuple)
    if as_tuple:
        model.neck = lambda feats: model.head(  # type: ignore[method-assign]
            torch.cat([feats[1].mean((2, 3)), feats[0].mean((2, 3))], dim=1)
        )
    return model.eval()


def test_a_dict_layer_is_explained_at_the_named_tensor(gray):
    model = make_pyramid(as_tuple=False)
    e = xai.explain(model, gray, layer="features['p2']", target=1)
    plain = xai.explain(model, gray, layer="c2", target=1, relu=True)
    assert e.layer == "features['p2']" and e.raw.shape == (4, 8, 8)
    # c2's output goes through a ReLU before it is returned as p2: compare with the
    # reference written from the equations on the dict's tensor
    with torch.enable_grad():
        feats = model.features(gray)
        p2 = feats["p2"]
        out = model.neck({"p1": feats["p1"], "p2": p2})
        (g,) = torch.autograd.grad(out[:, 1].sum(), p2)
    expected = (g.mean((2, 3), keepdim=True) * p2.detach()).sum(1).clamp_min(0)
    torch.testing.assert_close(e.raw, expected, rtol=1e-5, atol=1e-7)
    assert plain.raw.shape == (4, 8, 8)
    for method in ("scorecam", "ablationcam", "eigencam", "gradcam++"):
        assert xai.explain(
            model, gray, method=method, layer="features['p1']", target=1
        ).raw.shape == (4, 16, 16)


def test_a_dict_layer_without_a_key_lists_what_it_returned(gray):
    model = make_pyramid(as_tuple=False)
    with pytest.raises(
        xai.XAIValueError,
        match=r"returned a dict \{'p1': tensor \(4, 4, 16, 16\), 'p2'.*features\['p1'\]",
    ):
        xai.explain(model, gray, layer="features")
    with pytest.raises(xai.XAIValueError, match=r"has no element 'p9'"):
        xai.explain(model, gray, layer="features['p9']")


def test_a_tuple_layer_gives_its_first_tensor_or_the_indexed_one(gray):
    model = make_pyramid(as_tuple=True)
    first = xai.explain(model, gray, layer="features", target=2)
    indexed = xai.explain(model, gray, layer="features[0]", target=2)
    second = xai.explain(model, gray, layer="features[1]", target=2)
    torch.testing.assert_close(first.raw, indexed.raw, rtol=0, atol=0)
    assert first.raw.shape == (4, 8, 8) and second.raw.shape == (4, 16, 16)
    # ablating a tuple element must rebuild the tuple for the rest of the network
    ablation = xai.explain(model, gray, method="ablationcam", layer="features[1]", target=2)
    assert ablation.raw.shape == (4, 16, 16)


# ---------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("method", xai.methods())
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_pixels_are_refused_naming_the_sample(method, bad, gray):
    x = gray.clone()
    x[2, 0, 3, 4] = bad
    with pytest.raises(xai.XAIValueError, match=rf"inputs must be finite; sample 2 holds {bad}"):
        xai.explain(make_gapcnn(), x, method=method)


def test_a_channel_mismatch_gets_a_clear_error(gray):
    rgb = gray.expand(-1, 3, -1, -1)
    with pytest.raises(
        xai.XAIValueError,
        match=r"first convolution expects 1 input channels; the inputs have 3.*grayscale",
    ):
        xai.explain(make_gapcnn(), rgb)
    with pytest.raises(xai.XAIValueError, match=r"expects 3 input channels.*have 1.*expand"):
        xai.explain(make_two_stage(), gray)


def test_a_model_that_overflows_gives_an_error_not_a_map(gray):
    class Overflow(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = make_gapcnn().half()

        def forward(self, x):
            return self.net(x) * 1000.0 * 1000.0  # beyond float16's range: inf logits

    with pytest.raises(xai.XAIValueError, match=r"not finite for sample\(s\) 0, 1, 2, 3.*float16"):
        xai.explain(Overflow().eval(), gray, target=1)
