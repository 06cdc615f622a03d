"""Transformers: token layers folded into their patch grid, the default layer before the
last attention, Hugging Face models built offline; each against a reference written with
plain hooks and an explicit reshape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import xai
from tests._vit import Grid, hf_vit, make_vit, token_gradcam

TARGETS = [0, 3, 1]


def fold(k: int, h: int, w: int):
    return lambda t: t[:, k:].reshape(t.shape[0], h, w, -1).permute(0, 3, 1, 2)


@pytest.fixture
def rgb() -> torch.Tensor:
    torch.manual_seed(3)
    return torch.rand(3, 3, 32, 32)


def test_default_layer_is_the_input_of_the_last_attention(rgb):
    model = make_vit()
    e = xai.explain(model, rgb, target=TARGETS)
    assert e.layer == "blocks.1.norm1"  # not patch_embed, not after the last attention
    assert e.raw.shape == (3, 4, 4)
    assert (e.raw.flatten(1).amax(1) > 0).all()  # every sample has a non-zero map
    expected = token_gradcam(model, model.blocks[1].norm1, rgb, TARGETS, fold(1, 4, 4))
    torch.testing.assert_close(e.raw, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam"])
def test_auto_reshape_equals_the_explicit_callable(method, rgb):
    model = make_vit()
    auto = xai.explain(model, rgb, method=method, layer="blocks.0.norm1", target=TARGETS)
    explicit = xai.explain(
        model, rgb, method=method, layer="blocks.0.norm1", target=TARGETS, reshape=fold(1, 4, 4)
    )
    torch.testing.assert_close(auto.raw, explicit.raw, rtol=0, atol=0)
    assert auto.layer == "blocks.0.norm1"


def test_non_square_grids_come_from_the_patch_convolution():
    model = make_vit(image=(16, 40))  # a 2 x 5 patch grid: 11 tokens, no square fits
    x = torch.rand(2, 3, 16, 40)
    e = xai.explain(model, x, target=[1, 2])
    assert e.raw.shape == (2, 2, 5)
    expected = token_gradcam(model, model.blocks[1].norm1, x, [1, 2], fold(1, 2, 5))
    torch.testing.assert_close(e.raw, expected, rtol=1e-5, atol=1e-6)


def test_register_tokens_are_dropped_as_prefix(rgb):
    model = make_vit(registers=4)  # a class token and 4 registers before 16 patches
    e = xai.explain(model, rgb, target=TARGETS)
    expected = token_gradcam(model, model.blocks[1].norm1, rgb, TARGETS, fold(5, 4, 4))
    torch.testing.assert_close(e.raw, expected, rtol=1e-5, atol=1e-6)


def test_an_average_pooled_vit_also_defaults_to_the_last_attention_input(rgb):
    model = make_vit(pool="avg")
    e = xai.explain(model, rgb, target=TARGETS)
    assert e.layer == "blocks.1.norm1"
    expected = token_gradcam(model, model.blocks[1].norm1, rgb, TARGETS, fold(1, 4, 4))
    torch.testing.assert_close(e.raw, expected, rtol=1e-5, atol=1e-6)


def test_after_the_last_attention_patch_tokens_get_no_gradient(rgb):
    # Why the default stops before the last attention: a class-token head reads no patch
    # token after it, so Grad-CAM there is identically zero.
    e = xai.explain(make_vit(), rgb, layer="blocks.1.norm2", target=TARGETS)
    assert float(e.raw.abs().max()) == 0.0


class TokensOnly(nn.Module):
    """Patches embedded by a Linear on unfolded pixels: no patch convolution."""

    def __init__(self, grid: int, prefix: int = 0) -> None:
        super().__init__()
        self.prefix = prefix
        self.embed = nn.Linear(3 * 4 * 4, 8)
        self.extra = nn.Parameter(torch.randn(1, prefix, 8))
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = nn.functional.unfold(x, 4, stride=4).transpose(1, 2)
        tokens = torch.cat([self.extra.expand(len(x), -1, -1), self.embed(patches)], dim=1)
        return self.head(self.mix(tokens).mean(dim=1))


def test_without_a_patch_convolution_the_only_square_grid_is_used():
    torch.manual_seed(0)
    model = TokensOnly(4, prefix=1).eval()  # 17 tokens: 1 + 4 x 4
    x = torch.rand(2, 3, 16, 16)
    auto = xai.explain(model, x, layer="mix", target=[0, 1])
    explicit = xai.explain(model, x, layer="mix", target=[0, 1], reshape=fold(1, 4, 4))
    torch.testing.assert_close(auto.raw, explicit.raw, rtol=0, atol=0)


def test_an_ambiguous_token_grid_is_refused_with_the_fix():
    torch.manual_seed(0)
    model = TokensOnly(3).eval()  # 9 tokens: 3 x 3, or 2 x 2 after 5 prefix tokens
    x = torch.rand(1, 3, 12, 12)
    with pytest.raises(xai.XAIValueError, match=r"3x3 after 0 prefix.*2x2 after 5.*reshape=lambda"):
        xai.explain(model, x, layer="mix")
    e = xai.explain(model, x, layer="mix", reshape=fold(0, 3, 3))
    assert e.raw.shape == (1, 3, 3)


class ChannelsLast(nn.Module):
    """A stage that returns (N, h, w, C), as Swin's do in timm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 24, 4, stride=4)
        self.stage = nn.Identity()
        self.head = nn.Linear(24, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = self.stage(self.conv(x).permute(0, 2, 3, 1))
        return self.head(last.mean(dim=(1, 2)))


def test_channels_last_layers_need_an_explicit_reshape():
    torch.manual_seed(0)
    model = ChannelsLast().eval()
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(xai.XAIValueError, match=r"channels-last.*t\.permute\(0, 3, 1, 2\)"):
        xai.explain(model, x, layer="stage")
    e = xai.explain(model, x, layer="stage", reshape=lambda t: t.permute(0, 3, 1, 2))
    plain = xai.explain(model, x, layer="conv")
    torch.testing.assert_close(e.raw, plain.raw, rtol=1e-5, atol=1e-6)


def test_a_reshape_that_returns_the_wrong_shape_is_refused(rgb):
    with pytest.raises(xai.XAIValueError, match=r"must return \(N, C, h, w\) with N = 3"):
        xai.explain(make_vit(), rgb, layer="blocks.0.norm1", reshape=lambda t: t[:, 1:])
    with pytest.raises(ValueError, match=r"reshape must be None or .auto."):
        xai.explain(make_vit(), rgb, reshape="tokens")


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "eigencam"])
def test_perturbation_methods_on_token_layers_equal_a_reference(method, rgb):
    """Score-CAM, Ablation-CAM and Eigen-CAM on tokens equal the same methods on a model
    that exposes the folded grid as a layer: the grid module sits exactly where the
    reshape is applied."""
    torch.manual_seed(0)
    plain = make_vit(seed=1)
    exposed = make_vit(seed=1, expose_grid=True)
    exposed.load_state_dict(plain.state_dict())
    tokens = xai.explain(plain, rgb, method=method, layer="blocks.1.norm1", target=TARGETS)
    grid = xai.explain(exposed, rgb, method=method, layer="blocks.1.grid", target=TARGETS)
    torch.testing.assert_close(tokens.raw, grid.raw, rtol=1e-4, atol=1e-6)


def test_gradcam_on_tokens_equals_captum_on_the_exposed_grid(rgb):
    captum = pytest.importorskip("captum.attr")
    plain = make_vit(seed=1)
    exposed = make_vit(seed=1, expose_grid=True)
    exposed.load_state_dict(plain.state_dict())
    ours = xai.explain(plain, rgb, target=TARGETS)
    assert ours.layer == "blocks.1.norm1"
    theirs = captum.LayerGradCam(exposed, exposed.blocks[1].grid).attribute(
        rgb, target=TARGETS, relu_attributions=True
    )
    torch.testing.assert_close(ours.raw, theirs[:, 0].detach(), rtol=1e-5, atol=1e-6)


def test_the_auto_reshape_is_what_the_grid_module_does(rgb):
    """The library's own "auto" reshape, resolved for the model's token layer, against the
    test's Grid module: the identity the exposed-grid comparisons above rest on."""
    from xai.core.layers import resolve_layer
    from xai.core.reshape import resolve_reshape

    model = make_vit()
    tokens = torch.rand(3, 17, 32)
    auto = resolve_reshape("auto", model, rgb, resolve_layer(model, "blocks.1.norm1"), tokens)
    torch.testing.assert_close(auto(tokens), Grid(1, 4, 4)(tokens), rtol=0, atol=0)


def test_a_one_dimensional_layer_is_not_taken_for_tokens():
    """(N, C, L) from a Conv1d would fold as T = C tokens of L channels: a wrong map."""

    class Sequence1d(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(3, 16, 3, padding=1)
            self.head = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x.flatten(2)).mean(dim=2))

    torch.manual_seed(0)
    model, x = Sequence1d().eval(), torch.rand(2, 3, 4, 4)
    with pytest.raises(xai.XAIValueError, match=r"outputs \(N, C, L\).*t\[:, :, None, :\]"):
        xai.explain(model, x, layer="conv")
    e = xai.explain(model, x, layer="conv", reshape=lambda t: t[:, :, None, :])
    assert e.raw.shape == (2, 1, 16)


# --------------------------------------------------------------------- Hugging Face


def test_hugging_face_vit_built_offline_defaults_to_the_last_layernorm_before(rgb):
    model = hf_vit()
    e = xai.explain(model, rgb, target=TARGETS)  # the output's .logits are read
    layers = model.vit.layers if hasattr(model.vit, "layers") else model.vit.encoder.layer
    expected_name = (
        "vit.layers.1.layernorm_before"
        if hasattr(model.vit, "layers")
        else "vit.encoder.layer.1.layernorm_before"
    )
    assert e.layer == expected_name
    assert (e.raw.flatten(1).amax(1) > 0).all()
    expected = token_gradcam(model, layers[-1].layernorm_before, rgb, TARGETS, fold(1, 4, 4))
    torch.testing.assert_close(e.raw, expected, rtol=1e-5, atol=1e-6)
    top1 = xai.explain(model, rgb)
    assert top1.targets.tolist() == model(rgb).logits.argmax(1).tolist()
    assert top1.explained[0].startswith("class ")


@pytest.mark.parametrize(
    "method", [m for m in xai.methods() if not m.startswith(("cam", "guided"))]
)
def test_every_layer_method_runs_on_a_hugging_face_vit(method, rgb):
    model = hf_vit()
    e = xai.explain(model, rgb[:2], method=method, target=[1, 2])
    size = (32, 32) if method == "fullgrad" else (4, 4)  # FullGrad's map: input pixels
    assert e.raw.shape == (2, *size) and torch.isfinite(e.maps).all()
    if xai.registry.get(method).gradients:
        assert (e.raw.flatten(1).amax(1) > 0).all()


def test_a_tuple_returning_block_is_explained_at_its_first_element(rgb):
    """A layer whose forward returns a tuple (Hugging Face's attention returns (hidden,
    weights)) gives its first tensor by default, or the one a selector names."""
    model = hf_vit()
    attention = "vit.layers.1.attention" if hasattr(model.vit, "layers") else None
    if attention is None:
        pytest.skip("transformers < 5 layout")
    default = xai.explain(model, rgb, layer=attention, target=TARGETS)
    named = xai.explain(model, rgb, layer=attention + "[0]", target=TARGETS)
    torch.testing.assert_close(default.raw, named.raw, rtol=0, atol=0)
    assert named.layer == attention + "[0]"
    with pytest.raises(xai.XAIValueError, match=r"gave NoneType, not a tensor.*\[0\] tensor"):
        xai.explain(model, rgb, layer=attention + "[1]", target=TARGETS)
