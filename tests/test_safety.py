"""The user's model is left exactly as it was, and odd-but-legal set-ups just work."""

from __future__ import annotations

import copy
import gc
from pathlib import Path

import pytest
import torch
from torch import nn

import xai
from tests.conftest import make_gapcnn

METHODS = xai.methods()
TARGETS = [0, 3, 1, 4]


def all_hooks(model: nn.Module) -> list:
    found = []
    for name, m in model.named_modules():
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_state_dict_hooks",
            "_load_state_dict_pre_hooks",
        ):
            found += [(name, attr)] * len(getattr(m, attr, {}))
        for attr in ("_forward_hooks_with_kwargs", "_forward_hooks_always_called"):
            found += [(name, attr)] * len(getattr(m, attr, {}))
    for p in model.parameters():
        if p._backward_hooks:
            found.append(("param", "_backward_hooks"))
    return found


def run(model, x, method, **kwargs):
    return xai.explain(model, x, method=method, target=kwargs.pop("target", TARGETS), **kwargs)


@pytest.mark.parametrize("method", METHODS)
def test_no_hooks_remain_after_success(method, gray):
    model = make_gapcnn()
    run(model, gray, method)
    assert all_hooks(model) == []


class Failing(nn.Module):
    """Wraps a model; its forward raises on the ``fail_on``-th call, after the features."""

    def __init__(self, inner: nn.Module, fail_on: int) -> None:
        super().__init__()
        self.inner = inner
        self.fail_on = fail_on
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        features = self.inner.features(self.inner.normalize(x))
        if self.calls >= self.fail_on:
            raise RuntimeError("boom inside the model")
        return self.inner.head(self.inner.pool(features).flatten(1))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fail_on", [1, 2, 3])
def test_no_hooks_remain_after_an_exception_inside_the_model(method, fail_on, gray):
    model = Failing(make_gapcnn(), fail_on)
    model.train()
    flags = [m.training for m in model.modules()]
    layer = None if method in ("guided-backprop", "fullgrad") else "inner.features.10"
    try:
        run(model, gray, method, layer=layer)
    except RuntimeError as error:
        message = str(error)
    else:  # the method ran the model fewer than fail_on times
        assert fail_on > 1
        message = "boom"
    assert "boom" in message
    assert all_hooks(model) == []
    assert [m.training for m in model.modules()] == flags


@pytest.mark.parametrize("method", METHODS)
def test_no_hooks_remain_after_an_exception_in_the_target_callable(method, gray):
    model = make_gapcnn()

    def target(output):
        raise KeyError("user bug")

    # CAM refuses a callable target (it names no class) before calling it.
    error, message = (
        (ValueError, "names no single class") if method == "cam" else (KeyError, "user bug")
    )
    with pytest.raises(error, match=message):
        run(model, gray, method, target=target)
    assert all_hooks(model) == []


@pytest.mark.parametrize("method", METHODS)
def test_parameters_grads_and_flags_untouched(method, gray):
    model = make_gapcnn()
    params = list(model.parameters())
    sentinel = torch.full_like(params[0], 7.0)
    params[0].grad = sentinel.clone()
    params[2].requires_grad_(False)
    before = copy.deepcopy(model.state_dict())
    requires = [p.requires_grad for p in params]
    x = gray.clone()
    run(model, x, method)
    assert torch.equal(params[0].grad, sentinel)
    assert all(p.grad is None for p in params[1:])
    assert [p.requires_grad for p in params] == requires
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(x, gray) and not x.requires_grad and x.grad is None


@pytest.mark.parametrize("method", METHODS)
def test_train_mode_flags_and_batchnorm_statistics_are_restored(method, gray):
    model = make_gapcnn()
    expected = run(model, gray, method)  # in eval mode
    model.train()
    model.features[1].eval()  # a mixed state must come back exactly
    flags = {name: m.training for name, m in model.named_modules()}
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_b" in k}
    got = run(model, gray, method)
    assert {name: m.training for name, m in model.named_modules()} == flags
    for key, value in stats.items():
        assert torch.equal(model.state_dict()[key], value), key
    torch.testing.assert_close(got.raw, expected.raw)  # explained in eval mode


@pytest.mark.parametrize("method", METHODS)
def test_works_under_no_grad_and_inference_mode(method, gray):
    model = make_gapcnn()
    expected = run(model, gray, method)
    with torch.no_grad():
        got = run(model, gray, method)
    torch.testing.assert_close(got.raw, expected.raw)
    with torch.inference_mode():
        x = gray.clone()
        got = run(model, x, method)
    torch.testing.assert_close(got.raw, expected.raw)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("method", METHODS)
def test_works_with_every_parameter_frozen(method, gray):
    model = make_gapcnn()
    expected = run(model, gray, method)
    for p in model.parameters():
        p.requires_grad_(False)
    got = run(model, gray, method)
    torch.testing.assert_close(got.raw, expected.raw)
    assert all(not p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("method", METHODS)
def test_inplace_relus_give_the_same_maps(method, gray):
    model = make_gapcnn()
    inplace = copy.deepcopy(model)
    for m in inplace.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = True
    expected = run(model, gray, method)
    got = run(inplace, gray, method)
    assert got.layer == expected.layer
    torch.testing.assert_close(got.raw, expected.raw)
    if got.attributions is not None:
        torch.testing.assert_close(got.attributions, expected.attributions)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models(method, dtype, gray):
    model = make_gapcnn()
    expected = run(model, gray, method)
    half = copy.deepcopy(model).to(dtype)
    got = run(half, gray, method)  # float32 inputs are cast to the model's dtype
    assert got.maps.dtype == got.raw.dtype == torch.float32
    assert all(p.dtype == dtype for p in half.parameters())
    # Score-CAM's weights are differences of nearly uniform softmax probabilities of an
    # untrained model: bf16's 8-bit mantissa keeps about two of their digits.
    # FullGrad's plain input gradient cancels across paths: in bf16 it is off by 13-16 %
    # of its largest value for this model (0.1 % in float16), so its maps move by 0.16.
    noisy = {("scorecam", torch.bfloat16), ("fullgrad", torch.bfloat16)}
    map_tolerance = 0.25 if (method, dtype) in noisy else 0.1
    assert float((got.maps - expected.maps).abs().max()) <= map_tolerance
    if method != "ablationcam":
        # Ablation-CAM divides by the score itself, which for this untrained model is
        # near zero (3e-4 for one sample) and so has no correct digits in bf16; its maps
        # (compared above) are scale-free and agree.
        scale = float(expected.raw.abs().max())
        perturbation = method == "scorecam"  # differences of nearly equal scores
        tolerance = {torch.float16: 0.03, torch.bfloat16: 0.1}[dtype] * (3 if perturbation else 1)
        assert float((got.raw - expected.raw).abs().max()) <= tolerance * scale + 1e-6
    assert torch.isfinite(got.maps).all()


@pytest.mark.parametrize("method", METHODS)
def test_non_square_inputs(method):
    torch.manual_seed(5)
    x = torch.rand(2, 1, 12, 20)
    e = xai.explain(make_gapcnn(), x, method=method, target=1)
    assert e.maps.shape == (2, 12, 20)
    full = method in ("guided-backprop", "guided-gradcam", "fullgrad")  # input resolution
    expected_raw = (12, 20) if full else (3, 5)
    assert tuple(e.raw.shape[1:]) == expected_raw


@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_each_sample_alone(method, gray):
    model = make_gapcnn()
    batch = run(model, gray, method)
    for i in range(len(gray)):
        single = xai.explain(model, gray[i : i + 1], method=method, target=TARGETS[i])
        torch.testing.assert_close(single.raw[0], batch.raw[i], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(single.maps[0], batch.maps[i], rtol=1e-4, atol=1e-5)
        assert single.targets.tolist() == [TARGETS[i]]


def test_two_explainers_on_one_model_do_not_interfere(gray):
    model = make_gapcnn()
    deep = xai.GradCAM(model)
    shallow = xai.GradCAM(model, layer="features.6")
    score = xai.ScoreCAM(model, layer="features.6", batch_size=7)
    expected = [deep(gray, 1).raw, shallow(gray, 1).raw, score(gray, 1).raw]
    for _ in range(3):
        got = [deep(gray, 1).raw, shallow(gray, 1).raw, score(gray, 1).raw]
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b)
    assert all_hooks(model) == []


def _live_tensors() -> int:
    gc.collect()
    # issubclass(type(...)) rather than isinstance: isinstance reads __class__, which some
    # lazily deprecated torch objects answer with a FutureWarning.
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "guided-gradcam", "cam"])
def test_many_calls_in_a_loop_do_not_leak(method, gray):
    model = make_gapcnn()
    explainer = xai.explainer(model, method)
    explainer(gray)  # warm: the default layer is cached per input shape
    before = _live_tensors()
    for _ in range(25):
        result = explainer(gray, target=TARGETS)
    del result
    assert _live_tensors() <= before + 2


@pytest.mark.parametrize(
    "method", [m for m in METHODS if m not in ("cam", "guided-backprop", "fullgrad")]
)
def test_an_inplace_relu_after_the_explained_conv_does_not_change_its_maps(method, gray):
    """The layer's output is copied when captured: a later ReLU(inplace=True) that
    overwrites it must not leak into the maps (the conv's signed output is explained).
    CAM is left out: it needs the pooled, post-ReLU maps; guided backpropagation and
    FullGrad take no layer (``test_inplace_relus_give_the_same_maps`` covers them)."""
    model = make_gapcnn(batch_norm=False)
    inplace = copy.deepcopy(model)
    for m in inplace.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = True
    layer = "features.6"  # the last conv; features.7 is its ReLU
    assert isinstance(model.features[6], nn.Conv2d)
    with torch.no_grad():
        assert (model.features[:7](gray) < 0).any()  # the in-place ReLU would change it
    options = {} if method == "guided-gradcam" else {"relu": False}
    expected = run(model, gray, method, layer=layer, **options)
    got = run(inplace, gray, method, layer=layer, **options)
    torch.testing.assert_close(got.raw, expected.raw)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("compile_with", ["trace", "script"])
def test_a_torchscript_model_is_refused_not_explained_wrongly(compile_with, gray):
    # A traced module accepts hooks and never calls them: guided backpropagation would
    # silently become a plain gradient. Every method must refuse it with the fix.
    model = make_gapcnn().eval()
    compiled = (
        torch.jit.trace(model, gray[:1]) if compile_with == "trace" else torch.jit.script(model)
    )
    for method in METHODS:
        with pytest.raises(TypeError, match=r"TorchScript module.*state_dict"):
            xai.explain(compiled, gray, method=method)


@pytest.mark.slow
def test_resident_memory_stays_flat_over_a_thousand_calls():
    """1,000 explanations in one process (every method in turn): the resident set after
    the first 100 calls and after the last differ by less than 20 MB."""
    import subprocess
    import sys

    code = (
        "import resource, torch, xai\n"
        "from tests.conftest import make_gapcnn\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20\n"
        "model, x = make_gapcnn(), torch.rand(4, 1, 16, 16)\n"
        "methods = xai.methods()\n"
        "def call(i):\n"
        "    xai.explain(model, x, method=methods[i % len(methods)], target=[0, 3, 1, 4])\n"
        "for i in range(100): call(i)\n"
        "warm = rss()\n"
        "for i in range(100, 1000): call(i)\n"
        "print(rss() - warm)\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    growth = float(out.stdout.strip().splitlines()[-1])
    assert growth < 20, f"resident memory grew by {growth:.1f} MB over 900 calls"
