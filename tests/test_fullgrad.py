"""FullGrad against the paper: the completeness identity, and the map from its equations.

Srinivas & Fleuret (2019): for a piecewise-linear network with biases,
f(x) = grad_x f . x + sum_l sum_c (grad_{z_l} f * b_l), and the saliency map is
psi(grad_x f * x) summed over channels plus psi(grad_{z_l} f * b_l) summed over channels
for every convolution and batch norm, psi = |.|, min-max per sample, bilinear resize.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xai
from xai.cam.fullgrad import FullGrad, full_gradients

CLASSES = [2, 5, 0, 3]


class Net(nn.Module):
    """Piecewise linear: convolutions (one transposed, one strided), batch norms with
    and without affine parameters, ReLUs (two in place), max-pooling, a flattening
    Linear head. Input (N, 3, 10, 12); bias layers at 10 x 12 and at 5 x 6."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(5, affine=False)
        self.relu2 = nn.ReLU()
        self.up = nn.ConvTranspose2d(5, 3, 2, stride=2)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.relu4 = nn.ReLU()
        self.fc = nn.Linear(4 * 5 * 6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        x = self.relu3(self.up(self.relu2(self.bn2(self.conv2(x)))))
        return self.fc(self.relu4(self.conv3(x)).flatten(1))


MAPPED = ["conv1", "bn1", "bn2", "up", "conv3"]  # conv and batch-norm layers with a bias


def make_net(dtype: torch.dtype = torch.float64) -> Net:
    torch.manual_seed(0)
    model = Net()
    with torch.no_grad():  # non-trivial statistics, biases large enough to matter
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.4)
            elif getattr(m, "bias", None) is not None:
                m.bias.uniform_(-0.2, 0.4)
    return model.to(dtype).eval()


@pytest.fixture
def x() -> torch.Tensor:
    torch.manual_seed(3)
    return torch.rand(4, 3, 10, 12, dtype=torch.float64)


def test_completeness_identity_is_exact(x):
    model = make_net()
    full = full_gradients(model, x, CLASSES)
    assert sorted(full.bias_terms) == sorted([*MAPPED, "fc"])
    assert sorted(full.spatial) == sorted(MAPPED)
    with torch.no_grad():
        f = model(x)[torch.arange(4), CLASSES]
    torch.testing.assert_close(full.scores, f, rtol=0, atol=1e-12)
    bias_sum = sum(t.flatten(1).sum(dim=1) for t in full.bias_terms.values())
    total = (full.input_gradient * x).flatten(1).sum(dim=1) + bias_sum
    torch.testing.assert_close(total, f, rtol=0, atol=1e-10)
    # Not trivially true: the bias terms carry a large share of each score.
    assert float(bias_sum.abs().min()) > 1e-2


def test_a_callable_target_gives_the_class_target(x):
    model = make_net()
    by_class = full_gradients(model, x, 2)
    by_callable = full_gradients(model, x, lambda out: out[:, 2])
    torch.testing.assert_close(by_callable.input_gradient, by_class.input_gradient)
    for name, term in by_class.bias_terms.items():
        torch.testing.assert_close(by_callable.bias_terms[name], term)


def reference_map(model: Net, x: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """S(x) from the paper: plain autograd on a copy (ReLUs not in place), outputs kept
    with ``retain_grad`` by forward hooks written here, psi spelled out per sample."""
    m = copy.deepcopy(model).double().eval()
    for module in m.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name in MAPPED:

        def keep(module, inputs, output, name=name):
            output.retain_grad()
            outputs[name] = output

        handles.append(getattr(m, name).register_forward_hook(keep))
    xd = x.double().clone().requires_grad_(True)
    try:
        out = m(xd)
    finally:
        for handle in handles:
            handle.remove()
    out[torch.arange(len(classes)), torch.tensor(classes)].sum().backward()

    def psi(term: torch.Tensor) -> torch.Tensor:  # one sample's (C, h, w) term
        a = term.abs()
        return (a - a.min()) / (a.max() - a.min())

    n, _, height, width = x.shape
    saliency = torch.zeros(n, height, width, dtype=torch.float64)
    for s in range(n):
        saliency[s] += psi(xd.grad[s] * xd[s].detach()).sum(dim=0)
    for name in MAPPED:
        module = getattr(m, name)
        if isinstance(module, nn.BatchNorm2d):
            gamma = 1.0 if module.weight is None else module.weight
            beta = 0.0 if module.bias is None else module.bias
            bias = beta - gamma * module.running_mean / torch.sqrt(module.running_var + module.eps)
        else:
            bias = module.bias
        grad = outputs[name].grad
        for s in range(n):
            term = psi(grad[s] * bias.detach()[:, None, None]).sum(dim=0)
            resized = F.interpolate(
                term[None, None], size=(height, width), mode="bilinear", align_corners=False
            )
            saliency[s] += resized[0, 0]
    return saliency


def test_map_matches_the_papers_equations(x):
    model = make_net()
    expected = reference_map(model, x, CLASSES)
    e = xai.explain(model, x, method="fullgrad", target=CLASSES)
    assert e.layer is None and e.method == "fullgrad"
    assert e.raw.shape == (4, 10, 12)
    torch.testing.assert_close(e.raw, expected.float(), rtol=1e-5, atol=1e-5)
    flat = expected.flatten(1)
    low, high = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
    maps = ((flat - low) / (high - low)).reshape(expected.shape)
    torch.testing.assert_close(e.maps, maps.float(), rtol=1e-5, atol=1e-5)
    # The same for the float32 model.
    e32 = FullGrad(make_net(torch.float32))(x.float(), target=CLASSES)
    torch.testing.assert_close(e32.raw, expected.float(), rtol=1e-4, atol=1e-4)


def test_batch_norm_with_batch_statistics_contributes_only_beta():
    """track_running_stats=False: no fixed offset; the term is d score / d z * beta."""
    torch.manual_seed(5)
    bn = nn.BatchNorm2d(2, track_running_stats=False).double()
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), bn, nn.Flatten(), nn.Linear(16, 3))
    model = model.double().eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.7]))
        bn.bias.copy_(torch.tensor([0.5, -2.0]))
    x = torch.rand(2, 1, 4, 6, dtype=torch.float64)
    kept = {}
    handle = bn.register_forward_hook(lambda m, i, o: kept.setdefault("z", o))
    try:
        out = model(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(out[:, 1].sum(), kept["z"])
    full = full_gradients(model, x, 1)
    expected = grad * bn.bias.detach()[None, :, None, None]
    torch.testing.assert_close(full.bias_terms["1"], expected, rtol=1e-12, atol=1e-12)


def test_refusals(x):
    no_bias = nn.Sequential(
        nn.Conv2d(3, 2, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(160, 4, bias=False)
    )
    with pytest.raises(ValueError, match="fullgrad needs a model with bias terms"):
        xai.explain(no_bias, x.float(), method="fullgrad")
    with pytest.raises(ValueError, match="takes no layer; pass layer=None"):
        xai.explain(make_net(), x, method="fullgrad", layer="conv1")

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(self.conv(x)).mean((2, 3)))

    with pytest.raises(ValueError, match="bias layer 'conv' ran more than once"):
        xai.explain(Twice(), x.float(), method="fullgrad")


def test_registry_runs_it_on_the_shipped_gapcnn():
    torch.manual_seed(4)
    model = xai.models.GAPCNN(in_channels=1, num_classes=10, channels=(8, 16)).eval()
    images = torch.rand(3, 1, 28, 28)
    e = xai.explain(model, images, method="fullgrad")
    assert xai.FullGrad is FullGrad and e.method == "fullgrad" and e.layer is None
    assert e.maps.shape == e.raw.shape == (3, 28, 28)
    assert float(e.maps.min()) >= 0.0 and float(e.maps.max()) <= 1.0
    assert all(float(m.max()) == 1.0 for m in e.maps)
    assert e.targets.tolist() == model(images).argmax(1).tolist()
