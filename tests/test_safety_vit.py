"""The safety promises of tests/test_safety.py, on vision transformers: every method
(CAM aside: a class-token head is no GAP head) leaves the model as it was."""

from __future__ import annotations

import contextlib
import copy
import warnings

import pytest
import torch

import xai
from tests._vit import hf_vit, make_vit
from tests.test_safety import all_hooks

METHODS = [m for m in xai.methods() if m != "cam"]
TARGETS = [0, 3, 1]


@pytest.fixture
def rgb() -> torch.Tensor:
    torch.manual_seed(3)
    return torch.rand(3, 3, 32, 32)


def run(model, x, method, **kwargs):
    # A ViT has GELUs, no ReLU modules: the guided methods say they cannot guide.
    warns = (
        pytest.warns(UserWarning, match="no torch.nn.ReLU")
        if method.startswith("guided")
        else contextlib.nullcontext()
    )
    with warns:
        return xai.explain(model, x, method=method, target=kwargs.pop("target", TARGETS), **kwargs)


@pytest.mark.parametrize("method", METHODS)
def test_vit_hooks_grads_flags_and_state_untouched(method, rgb):
    model = make_vit()
    params = list(model.parameters())
    params[0].grad = torch.full_like(params[0], 7.0)
    params[3].requires_grad_(False)
    requires = [p.requires_grad for p in params]
    before = copy.deepcopy(model.state_dict())
    expected = run(model, rgb, method)
    model.train()  # dropout on: a map computed in train mode would differ
    got = run(model, rgb, method)
    torch.testing.assert_close(got.raw, expected.raw)
    assert all(m.training for m in model.modules())
    assert all_hooks(model) == []
    assert torch.equal(params[0].grad, torch.full_like(params[0], 7.0))
    assert all(p.grad is None for p in params[1:])
    assert [p.requires_grad for p in params] == requires
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("method", METHODS)
def test_vit_under_no_grad_inference_mode_and_frozen(method, rgb):
    model = make_vit()
    expected = run(model, rgb, method)
    with torch.no_grad():
        torch.testing.assert_close(run(model, rgb, method).raw, expected.raw)
    with torch.inference_mode():
        torch.testing.assert_close(run(model, rgb.clone(), method).raw, expected.raw)
    for p in model.parameters():
        p.requires_grad_(False)
    torch.testing.assert_close(run(model, rgb, method).raw, expected.raw)


@pytest.mark.parametrize("method", METHODS)
def test_vit_batch_equals_each_sample_alone(method, rgb):
    model = make_vit()
    batch = run(model, rgb, method)
    for i in range(3):
        single = run(model, rgb[i : i + 1], method, target=TARGETS[i])
        torch.testing.assert_close(single.raw[0], batch.raw[i], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_vit_in_half_precision(method, dtype, rgb):
    model = make_vit()
    expected = run(model, rgb, method)
    got = run(copy.deepcopy(model).to(dtype), rgb, method)
    assert got.raw.dtype == torch.float32 and torch.isfinite(got.maps).all()
    assert float((got.maps - expected.maps).abs().max()) <= 0.25


@pytest.mark.parametrize("method", METHODS)
def test_vit_no_hooks_remain_after_an_exception(method, rgb):
    model = make_vit()

    def target(output):
        raise KeyError("user bug")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # guided methods warn only if they get that far
        with pytest.raises(KeyError, match="user bug"):
            xai.explain(model, rgb, method=method, target=target)
    assert all_hooks(model) == []


def test_hugging_face_vit_is_left_as_it_was(rgb):
    model = hf_vit()
    model.train()
    before = copy.deepcopy(model.state_dict())
    for method in ("gradcam", "scorecam", "ablationcam"):
        xai.explain(model, rgb[:2], method=method, target=[1, 2])
    assert all(m.training for m in model.modules())
    assert all_hooks(model) == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
