"""Ablation-CAM's passes: each sample's unablated row rides with its ablated copies, so
the network runs once per sample in all; the maps equal those of the plain algorithm (a
forward pass, then the copies), whatever the model, layer, target or output.

No timing here: the passes are counted (benchmarks/bench_cam.py times them)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from torch import nn

import xai
from tests._vit import make_vit
from tests.conftest import make_gapcnn
from xai.cam import _ablation_passes
from xai.core.targets import resolve_target

LAYER = "features.10"  # make_gapcnn's last ReLU (6 channels)


@contextmanager
def separately():
    """Ablation-CAM as before: a plain forward pass, then the copies."""

    def refuse(self):
        raise _ablation_passes.FallbackError

    real = _ablation_passes.AblationPasses.run
    _ablation_passes.AblationPasses.run = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        _ablation_passes.AblationPasses.run = real  # type: ignore[method-assign]


@contextmanager
def batches(module: nn.Module):
    """The batch size of every call of ``module`` in the body."""
    sizes: list[int] = []
    handle = module.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        yield sizes
    finally:
        handle.remove()


def both(model, x, target=None, **options):
    explainer = xai.AblationCAM(model, **options)
    explainer(x, target)  # what is cached per model (the default layer, a token grid)
    with batches(model) as sizes:
        fast = explainer(x, target)
    with separately():
        plain = explainer(x, target)
    return fast, plain, sizes


def assert_same(fast, plain):
    # Up to float32 rounding: the plain algorithm's scores come from a batch of another
    # size than the copies' scores, so their differences y - y_k round differently.
    scale = float(plain.raw.abs().max())
    torch.testing.assert_close(fast.raw, plain.raw, rtol=0, atol=1e-5 * scale + 1e-7)
    torch.testing.assert_close(fast.scores, plain.scores, rtol=1e-6, atol=1e-6)
    assert fast.targets.tolist() == plain.targets.tolist()
    assert fast.layer == plain.layer
    if plain.logits is None:
        assert fast.logits is None
    else:
        torch.testing.assert_close(fast.logits, plain.logits, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "target", [None, 2, [0, 3, 1, 4], xai.targets.Class([1, 1, 0, 2]), lambda out: out[:, 3]]
)
def test_one_pass_for_the_first_sample_one_for_the_rest(target, gray):
    model = make_gapcnn()
    fast, plain, sizes = both(model, gray, target, layer=LAYER)
    assert sizes == [1, 3]  # no separate forward pass; not one pass per sample
    assert_same(fast, plain)
    assert fast.raw.abs().max() > 1e-3


def test_the_default_layer_and_batch_size_option(gray):
    model = make_gapcnn()
    fast, plain, sizes = both(model, gray)
    assert len(sizes) == 2
    assert_same(fast, plain)
    # batch_size: copies per pass; 6 channels, so 2 samples per pass after the first.
    fast, plain, sizes = both(model, gray, batch_size=12, layer=LAYER)
    assert sizes == [1, 2, 1]
    assert_same(fast, plain)
    # Fewer copies per pass than channels: the sample's first pass has its own row too.
    fast, plain, sizes = both(model, gray, batch_size=4, layer=LAYER)
    assert sizes == [1, 1] * 4
    assert_same(fast, plain)


def test_a_single_sample_takes_one_pass(gray):
    fast, plain, sizes = both(make_gapcnn(), gray[:1], 3, layer=LAYER)
    assert sizes == [1]
    assert_same(fast, plain)


class _Residual(nn.Module):
    """The explained conv's output is added to the block's input: the part after the
    layer mixes in an earlier tensor, which broadcasts over one sample's copies only."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.stem = nn.Sequential(nn.Conv2d(1, 5, 3, padding=1), nn.ReLU())
        self.conv = nn.Conv2d(5, 5, 3, padding=1)
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        s = self.stem(x)
        return self.fc((self.conv(s) + s).relu().mean((2, 3)))


def test_several_samples_per_pass_where_the_tail_mixes_in_the_batch(gray):
    model = _Residual().eval()
    fast, plain, sizes = both(model, gray, [0, 1, 2, 3], layer="conv")
    assert sizes == [1, 3, 1, 1, 1]  # three samples at once fail; then one at a time
    assert_same(fast, plain)


class _Concatenated(nn.Module):
    """The layer is concatenated with an earlier tensor: no batch of copies fits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.stem = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU())
        self.act = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(7, 3)

    def forward(self, x):
        s = self.stem(x)
        return self.fc(torch.cat([s, self.act(s)], 1).mean((2, 3)))


def test_a_concatenation_after_the_layer_runs_every_copy_whole(gray):
    fast, plain, _ = both(_Concatenated().eval(), gray, 1, layer="act")
    assert_same(fast, plain)
    with torch.no_grad():  # by hand
        model = _Concatenated().eval()
        s = model.stem(gray)
        a = model.act(s)
        y = model.fc(torch.cat([s, a], 1).mean((2, 3)))[:, 1]
        expected = torch.zeros(a.shape[0], *a.shape[2:])
        for k in range(a.shape[1]):
            ablated = a.clone()
            ablated[:, k] = 0
            y_k = model.fc(torch.cat([s, ablated], 1).mean((2, 3)))[:, 1]
            expected += ((y - y_k) / y)[:, None, None] * a[:, k]
    torch.testing.assert_close(fast.raw, expected.clamp_min(0), rtol=1e-5, atol=1e-6)


class _DeadChannels(nn.Module):
    """Channels 0 and 2 of ``act`` are all zero for every input (and -0.0 in channel 3
    is not zero: its bits are not)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv2d(1, 5, 3, padding=1)
        with torch.no_grad():
            self.conv.weight[[0, 2]] = 0.0
            self.conv.bias[[0, 2]] = -1.0
        self.act = nn.ReLU()
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(self.act(self.conv(x)).mean((2, 3)))


def test_all_zero_channels_are_not_run(gray):
    model = _DeadChannels().eval()
    explainer = xai.AblationCAM(model, layer="act")
    with batches(model.head) as rows:
        fast = explainer(gray, 1)
    assert sum(rows) == 4 + 4 * 3  # each sample's own row, and 3 of its 5 channels
    with separately():
        plain = explainer(gray, 1)
    assert_same(fast, plain)


def test_token_layers(gray):
    torch.manual_seed(3)
    rgb = torch.rand(3, 3, 32, 32)
    model = make_vit()
    fast, plain, sizes = both(model, rgb, [0, 1, 2], layer="blocks.1.norm1")
    # The first pass finds the patch grid (outside the model), then its copies follow;
    # the residual around the attention mixes in the batch: one sample per pass.
    assert sizes == [1, 1, 2, 1, 1]
    assert_same(fast, plain)


class _DictOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = make_gapcnn()

    def forward(self, x):
        m = self.inner
        features = m.features(m.normalize(x))
        return {"logits": m.head(m.pool(features).flatten(1)), "features": features}


def test_an_output_that_is_not_a_tensor(gray):
    model = _DictOutput().eval()
    layer = "inner.features.10"
    # Class targets read the output's logits: kept until every sample's row is in.
    fast, plain, sizes = both(model, gray, None, layer=layer)
    assert sizes == [1, 3]
    assert_same(fast, plain)
    # Anything else needs the output itself: one plain forward pass resolves the target.
    fast, plain, sizes = both(model, gray, lambda out: out["logits"][:, 2], layer=layer)
    assert sizes == [1, 4, 3]
    assert_same(fast, plain)


def test_outputs_beyond_the_budget_take_a_plain_pass(gray, monkeypatch):
    model = make_gapcnn()
    monkeypatch.setattr(_ablation_passes, "AUTO_BYTES", 200)  # 7 rows of 5 scores
    fast, plain, sizes = both(model, gray, None, layer=LAYER, batch_size=6)
    assert sizes == [1, 1, 4, 1, 1]  # the second pass's scores do not fit with the first
    assert_same(fast, plain)


def test_a_target_already_resolved(gray):
    model = make_gapcnn()
    explainer = xai.AblationCAM(model, layer=LAYER)
    layer = explainer.layer_for(gray)
    with torch.no_grad():
        resolved = resolve_target([4, 3, 2, 1], model(gray), 4)
    with batches(model) as sizes, torch.no_grad():
        fast = explainer._signed_map(gray, layer, resolved)
    assert sizes == [1, 3]
    with separately():
        plain = explainer._signed_map(gray, layer, resolved)
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast[2], plain[2])
    assert fast[1] is resolved


def test_the_layer_output_as_the_model_output(gray):
    """The passes reuse one buffer for the copies; an output that is that buffer is
    copied before the next pass overwrites it."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU()).eval()
    fast, plain, _ = both(model, gray, lambda out: out.mean((1, 2, 3)), layer="1", batch_size=3)
    assert_same(fast, plain)
