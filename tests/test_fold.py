"""Batch norm folded into its convolution (xai.core.fold): the same function, a hand-
computed fold, the user's model untouched, and every case where folding must not happen.
"""

from __future__ import annotations

import copy
import logging
import subprocess
import sys

import pytest
import torch
from torch import fx, nn

import xai
from xai.core import fold
from xai.core.fold import folded
from xai.models import GAPCNN


@pytest.fixture(autouse=True)
def _alone(request, monkeypatch):
    """Folding is refused while another thread lives (zarr and Ray leave theirs in this
    process once earlier tests used them): the tests of what folding computes pretend to be
    alone; the rule itself is tested in a fresh interpreter below."""
    if "thread" not in request.node.name:
        monkeypatch.setattr(fold, "_other_threads_alive", lambda: False)


def _gapcnn() -> nn.Module:
    torch.manual_seed(3)
    model = GAPCNN(channels=(8, 16), batch_norm=True)
    for m in model.modules():  # statistics far from the identity, so a missed fold shows
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.2, 3.0)
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-1, 1)
    return model.eval()


def test_hand_computed_fold_of_one_channel():
    # y = BN(2x + 1) with mean 1, var 3, eps 1, gamma 3, beta -1: 3 (2x + 1 - 1) / 2 - 1
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1, eps=1.0)).eval()
    with torch.no_grad():
        model[0].weight.fill_(2.0)
        model[0].bias.fill_(1.0)
        model[1].running_mean.fill_(1.0)
        model[1].running_var.fill_(3.0)
        model[1].weight.fill_(3.0)
        model[1].bias.fill_(-1.0)
    x = torch.tensor([[[[0.0, 1.0], [-2.0, 0.5]]]])
    copy_ = folded(model, x, model(x))
    assert isinstance(copy_, fx.GraphModule)
    called = [n.target for n in copy_.graph.nodes if n.op == "call_module"]
    assert called == ["xai_folded_0"]  # the batch norm is no longer called
    fused = copy_.get_submodule("xai_folded_0")
    assert fused.weight.detach().item() == 3.0 and fused.bias.detach().item() == -1.0
    torch.testing.assert_close(copy_(x), 3 * x - 1)


def test_same_function_and_the_users_model_untouched():
    model = _gapcnn()
    x = torch.randn(5, 1, 28, 28)
    before = copy.deepcopy(model.state_dict())
    modes = [m.training for m in model.modules()]
    with torch.no_grad():
        out = model(x)
        copy_ = folded(model, x, out)
        assert isinstance(copy_, fx.GraphModule)
        names = [n.target for n in copy_.graph.nodes if n.op == "call_module"]
        assert not any(isinstance(copy_.get_submodule(t), nn.BatchNorm2d) for t in names)
        torch.testing.assert_close(copy_(x), out, atol=1e-5, rtol=1e-5)
        other = torch.randn(3, 1, 28, 28)
        torch.testing.assert_close(copy_(other), model(other), atol=1e-5, rtol=1e-5)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == modes
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_refuses_whatever_could_change_the_function():
    x = torch.randn(2, 1, 28, 28)

    # training mode: the batch's statistics, not the running ones
    model = _gapcnn().train()
    with torch.no_grad():
        assert folded(model, x, model(x)) is model

    # a hook anywhere: the traced copy would not call it
    model = _gapcnn()
    handle = model.features.register_forward_hook(lambda m, i, o: None)
    try:
        with torch.no_grad():
            assert folded(model, x, model(x)) is model
    finally:
        handle.remove()

    # data-dependent control flow: fx cannot trace it
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.norm(self.conv(x))
            return y if float(y.sum()) > 0 else -y

    model = Branchy().eval()
    with torch.no_grad():
        assert folded(model, x, model(x)) is model

    # a wrong output to check against: the copy is not used
    model = _gapcnn()
    with torch.no_grad():
        assert folded(model, x, model(x) + 1.0) is model

    # a convolution whose output is also used elsewhere is not folded
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.norm(y) + y

    model = Shared().eval()
    with torch.no_grad():
        assert folded(model, x, model(x)) is model

    # nothing to fold: the model itself, not a copy
    plain = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).eval()
    with torch.no_grad():
        assert folded(plain, x, plain(x)) is plain


def test_scorecam_family_uses_the_folded_copy_and_gives_the_same_maps(caplog):
    # Folding changes float32 rounding only: against a float64 run of the model itself,
    # the folded run errs no more than the unfolded float32 run does (this random model
    # makes Score-CAM's probability differences ill-conditioned: ~3e-4 in float32).
    model = _gapcnn()
    exact = copy.deepcopy(model).double()
    x = torch.randn(3, 1, 28, 28)
    targets = [1, 4, 7]
    for method in (xai.ScoreCAM, xai.SSCAM, xai.ISCAM):
        extra = {} if method is xai.ScoreCAM else {"num_samples": 3}
        with caplog.at_level(logging.DEBUG, logger="xai.core.fold"):
            caplog.clear()
            on = method(model, batch_size=16, **extra)(x, targets).maps
            assert any("folded into their convolutions" in r.message for r in caplog.records)
        off = method(model, batch_size=16, fold_batchnorm=False, **extra)(x, targets).maps
        reference = method(exact, batch_size=16, fold_batchnorm=False, **extra)(
            x.double(), targets
        ).maps.float()
        rounding = float((off - reference).abs().max())
        assert float((on - reference).abs().max()) <= 2 * rounding + 1e-6, method
        assert model.training is False
        assert all(p.grad is None for p in model.parameters())


_THREADS = """
import threading, torch
from tests.test_fold import _gapcnn
from xai.core.fold import folded

model = _gapcnn()
x = torch.randn(2, 1, 28, 28)
with torch.no_grad():
    output = model(x)
alone = folded(model, x, output) is not model
release = threading.Event()
other = threading.Thread(target=release.wait)
other.start()
with_other = folded(model, x, output) is not model
release.set()
other.join()
print(threading.active_count(), alone, with_other, folded(model, x, output) is not model)
"""


def test_no_tracing_while_another_thread_is_alive():
    """torch.fx patches torch.nn.Module.__call__ for the whole process while it traces:
    a forward pass in another thread then gets proxies. So no fold (no trace) while any
    other Python thread lives; once it has ended, the fold is back. In a fresh
    interpreter, where no earlier test has left a thread behind."""
    done = subprocess.run([sys.executable, "-c", _THREADS], capture_output=True, text=True,
                          check=True, timeout=120)  # fmt: skip
    assert done.stdout.split() == ["1", "True", "False", "True"], done.stderr


def test_the_traced_window_really_breaks_another_threads_forward():
    """Why the rule above: inside fx's tracing window a plain call of a module from
    another thread returns a Proxy, not a tensor (what the FAQ's thread example hit)."""
    import threading

    model = nn.Sequential(nn.Linear(2, 2))
    seen = []

    def call() -> None:
        try:
            seen.append(type(model(torch.ones(1, 2))))
        except Exception as error:  # the patched call fails outright
            seen.append(error)

    class Slow(nn.Module):
        def forward(self, x):
            worker = threading.Thread(target=call)
            worker.start()
            worker.join()
            return x

    call()
    assert seen == [torch.Tensor]  # outside the window: a tensor
    fx.symbolic_trace(Slow())
    assert len(seen) == 2 and seen[1] is not torch.Tensor, seen  # inside: anything but
