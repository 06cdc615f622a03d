"""Every method against a reference written here from its paper's equations.

The references take the activations and gradients from plain autograd on a float64 copy
of the model (``tests/_reference.py``, no hooks), and spell each formula out with loops
over channels and positions, independent of the library's vectorised code. The explained
layer sits in the middle of a network whose tail flattens into a Linear, so gradients
vary over space and the Grad-CAM variants genuinely differ.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import xai
from tests._reference import split_activations
from tests.conftest import make_two_stage
from xai.core.layers import resolve_layer
from xai.core.targets import resolve_target

LAYER = "body.3"
CLASSES = [2, 5, 0]


def relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0.0)


@pytest.fixture
def case(images):
    model = make_two_stage()
    A, G, y, _ = split_activations(model, images, CLASSES)
    return model, images, A.numpy(), G.numpy(), y.numpy()


def explain(model, x, method, **options):
    return xai.explain(model, x, method=method, layer=LAYER, target=CLASSES, **options)


def assert_maps(result, expected, tol=1e-5):
    expected = np.asarray(expected)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(result.raw.numpy(), expected, atol=tol * scale, rtol=tol)


def test_reference_is_not_degenerate(case):
    """The test case must exercise what distinguishes the methods."""
    _, _, A, G, _ = case
    assert (A > 0).mean() > 0.3 and (A == 0).mean() > 0.05
    per_channel_spread = G.std(axis=(2, 3))
    assert per_channel_spread.mean() > 0.1 * np.abs(G).mean()  # gradients vary over space
    assert (G < 0).any() and (G > 0).any()


def test_gradcam_matches_equation(case):
    model, x, A, G, _ = case
    expected = np.zeros((A.shape[0],) + A.shape[2:])
    for n in range(A.shape[0]):
        for k in range(A.shape[1]):
            alpha = G[n, k].sum() / (A.shape[2] * A.shape[3])
            expected[n] += alpha * A[n, k]
    assert_maps(explain(model, x, "gradcam"), relu(expected))


def test_gradcampp_matches_equation(case):
    """alpha_ij = g^2 / (2 g^2 + sum_ab A_ab g^3); w_k = sum_ij alpha_ij relu(g_ij)."""
    model, x, A, G, _ = case
    expected = np.zeros((A.shape[0],) + A.shape[2:])
    for n in range(A.shape[0]):
        for k in range(A.shape[1]):
            total = A[n, k].sum()
            w = 0.0
            for i in range(A.shape[2]):
                for j in range(A.shape[3]):
                    g = G[n, k, i, j]
                    denominator = 2 * g**2 + total * g**3
                    alpha = g**2 / denominator if denominator != 0 else 0.0
                    w += alpha * max(g, 0.0)
            expected[n] += w * A[n, k]
    result = explain(model, x, "gradcam++")
    assert_maps(result, relu(expected))
    # The denominator matters here: without it the map would differ.
    undivided = np.einsum("nk,nkhw->nhw", (G**2 * relu(G)).sum(axis=(2, 3)), A)
    assert not np.allclose(result.raw.numpy(), relu(undivided), rtol=1e-2)


def test_xgradcam_matches_equation(case):
    model, x, A, G, _ = case
    expected = np.zeros((A.shape[0],) + A.shape[2:])
    for n in range(A.shape[0]):
        for k in range(A.shape[1]):
            total = A[n, k].sum()
            alpha = (A[n, k] * G[n, k]).sum() / total if total != 0 else 0.0
            expected[n] += alpha * A[n, k]
    assert_maps(explain(model, x, "xgradcam"), relu(expected))


def test_hirescam_matches_equation(case):
    model, x, A, G, _ = case
    expected = sum(G[:, k] * A[:, k] for k in range(A.shape[1]))
    assert_maps(explain(model, x, "hirescam"), relu(expected))


def test_layercam_matches_equation(case):
    model, x, A, G, _ = case
    expected = sum(relu(G[:, k]) * A[:, k] for k in range(A.shape[1]))
    assert_maps(explain(model, x, "layercam"), relu(expected))


def _score_cam_reference(model, x, A, classes, softmax=True, baseline=0.0, channels=False):
    m = model.double()
    xd = x.double()
    h, w = x.shape[2:]
    expected = np.zeros((A.shape[0],) + A.shape[2:])
    with torch.no_grad():
        for n in range(A.shape[0]):

            def f(image, n=n):
                out = m(image[None])[0]
                return float(torch.softmax(out, 0)[classes[n]] if softmax else out[classes[n]])

            base = f(torch.full_like(xd[n], baseline)) if baseline is not None else 0.0
            alphas = []
            for k in range(A.shape[1]):
                up = F.interpolate(
                    torch.from_numpy(A[n, k])[None, None],
                    size=(h, w),
                    mode="bilinear",
                    align_corners=False,
                )[0, 0]
                span = up.max() - up.min()
                mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
                alphas.append(f(xd[n] * mask) - base)
            if channels:  # softmax over the channels: exp(a_k) / sum_j exp(a_j)
                e = np.exp(np.array(alphas) - max(alphas))
                alphas = list(e / e.sum())
            for k, alpha in enumerate(alphas):
                expected[n] += alpha * A[n, k]
    return relu(expected)


@pytest.mark.parametrize(
    ("softmax", "baseline", "channels"),
    [(True, 0.0, False), (False, None, False), (True, 0.5, False), (False, None, True)],
)
def test_scorecam_matches_equation(case, softmax, baseline, channels):
    model, x, A, _, _ = case
    expected = _score_cam_reference(make_two_stage(), x, A, CLASSES, softmax, baseline, channels)
    result = explain(
        model,
        x,
        "scorecam",
        softmax=softmax,
        baseline=baseline,
        channel_softmax=channels,
        batch_size=5,
    )
    assert_maps(result, expected, tol=2e-5)


def test_scorecam_channel_softmax_ignores_the_baseline(case):
    """A softmax over channels is shift-invariant: f^c(X_b) drops out of the weights."""
    model, x, _, _, _ = case
    maps = [
        explain(model, x, "scorecam", softmax=False, baseline=b, channel_softmax=True).raw
        for b in (None, 0.0, 0.7)
    ]
    torch.testing.assert_close(maps[0], maps[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(maps[0], maps[2], rtol=1e-5, atol=1e-6)


def test_ablationcam_matches_equation(case):
    """w_k = (y - y_k) / y, where y_k is the score with channel k of A set to zero."""
    model, x, A, _, y = case
    _, _, _, m = split_activations(model, x, CLASSES)
    expected = np.zeros((A.shape[0],) + A.shape[2:])
    with torch.no_grad():
        for n in range(A.shape[0]):
            for k in range(A.shape[1]):
                ablated = torch.from_numpy(A[n].copy())
                ablated[k] = 0
                y_k = float(m.tail(ablated[None])[0, CLASSES[n]])
                expected[n] += (y[n] - y_k) / y[n] * A[n, k]
    assert_maps(explain(model, x, "ablationcam", batch_size=4), relu(expected))


def test_eigencam_matches_first_principal_direction(case):
    """The map is M v1, v1 the top eigenvector of M^T M (numpy's eigh, not an SVD)."""
    model, x, A, _, _ = case
    n, c, h, w = A.shape
    result = explain(model, x, "eigencam")
    for s in range(n):
        M = A[s].reshape(c, h * w).T
        _, vectors = np.linalg.eigh(M.T @ M)
        v1 = vectors[:, -1]
        projection = M @ v1
        if projection @ M.sum(axis=1) < 0:  # the sign that agrees with sum_k A^k
            projection = -projection
        np.testing.assert_allclose(result.raw[s].numpy().ravel(), projection, atol=1e-4, rtol=1e-4)
    # Class-agnostic: another target gives the same map.
    other = xai.explain(model, x, method="eigencam", layer=LAYER, target=1)
    torch.testing.assert_close(other.raw, result.raw)


def test_gradcam_elementwise_matches_equation(case):
    """L = ReLU(sum_k ReLU(G^k * A^k)): every (channel, position) product rectified."""
    model, x, A, G, _ = case
    n, c, h, w = A.shape
    expected = np.zeros((n, h, w))
    for s in range(n):
        for k in range(c):
            for i in range(h):
                for j in range(w):
                    expected[s, i, j] += max(G[s, k, i, j] * A[s, k, i, j], 0.0)
    assert_maps(explain(model, x, "gradcam-elementwise"), expected)
    # It differs from HiResCAM exactly where products of both signs meet at a position.
    hires = explain(model, x, "hirescam", relu=False).raw.numpy()
    signed_sum = (G * A).sum(axis=1)
    np.testing.assert_allclose(hires, signed_sum, atol=1e-5 * max(1, np.abs(signed_sum).max()))
    assert (expected - relu(signed_sum)).max() > 1e-3


def _first_component(T: np.ndarray, center: bool) -> np.ndarray:
    """(C, h, w) terms -> M v1 by numpy's symmetric eigensolver (not an SVD), the sign
    agreeing with the plain sum of the terms."""
    c, h, w = T.shape
    M = T.reshape(c, h * w).T  # one row per position
    if center:
        M = M - M.mean(axis=0, keepdims=True)
    _, vectors = np.linalg.eigh(M.T @ M)
    projection = M @ vectors[:, -1]
    if projection @ T.reshape(c, h * w).sum(axis=0) < 0:
        projection = -projection
    return projection.reshape(h, w)


@pytest.mark.parametrize("center", [False, True])
def test_eigengradcam_matches_first_principal_direction(case, center):
    model, x, A, G, _ = case
    T = G * A
    expected = np.stack([_first_component(T[s], center) for s in range(len(T))])
    signed = explain(model, x, "eigengradcam", relu=False, center=center)
    assert_maps(signed, expected, tol=1e-4)
    assert_maps(explain(model, x, "eigengradcam", center=center), relu(expected), tol=1e-4)
    # Class-specific, unlike Eigen-CAM: another class gives another map.
    other = xai.explain(model, x, method="eigengradcam", layer=LAYER, target=[1, 1, 1])
    assert not torch.allclose(other.raw, signed.raw.clamp_min(0), atol=1e-3)


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward is the guided rule: grad * [input > 0] * [grad > 0]."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return z.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        return grad * (z > 0) * (grad > 0)


def _guided_reference(model, x, classes):
    """The network written out by hand with guided ReLUs, in float64."""
    m = make_two_stage().double()
    m.load_state_dict(model.state_dict())
    b, t = m.body, m.tail
    xi = x.double().requires_grad_(True)
    h = _GuidedReLU.apply(b[0](xi))
    h = _GuidedReLU.apply(b[2](h))
    h = _GuidedReLU.apply(t[0](h))
    out = t[4](t[3](t[2](h)))
    y = out[torch.arange(len(classes)), torch.as_tensor(classes)]
    (g,) = torch.autograd.grad(y.sum(), xi)
    return g.numpy()


def test_guided_backprop_matches_hand_written_guided_network(case):
    model, x, _, _, _ = case
    expected = _guided_reference(model, x, CLASSES)
    result = xai.explain(model, x, method="guided-backprop", target=CLASSES)
    np.testing.assert_allclose(result.attributions.numpy(), expected, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(result.raw.numpy(), np.abs(expected).max(axis=1), atol=1e-5)
    assert result.layer is None
    # Guidance matters: the plain gradient is different.
    xi = x.clone().requires_grad_(True)
    out = model(xi)
    (plain,) = torch.autograd.grad(out[torch.arange(3), CLASSES].sum(), xi)
    assert not np.allclose(plain.numpy(), expected, atol=1e-3)


def test_guided_gradcam_is_guided_backprop_times_upsampled_gradcam(case):
    model, x, A, G, _ = case
    cam = relu(np.einsum("nk,nkhw->nhw", G.mean(axis=(2, 3)), A))
    up = F.interpolate(
        torch.from_numpy(cam)[:, None], size=x.shape[2:], mode="bilinear", align_corners=False
    )[:, 0].numpy()
    expected = _guided_reference(model, x, CLASSES) * up[:, None]
    result = explain(model, x, "guided-gradcam")
    np.testing.assert_allclose(result.attributions.numpy(), expected, atol=1e-5, rtol=1e-4)
    assert result.layer == LAYER


def test_cam_matches_equation(gapcnn, gray):
    """CAM = ReLU(sum_k w^c_k A^k) with the head's weights, bias left out."""
    from tests._reference import gap_activations

    classes = [0, 3, 4, 1]
    A, _, _, m = gap_activations(gapcnn, gray, classes)
    W = m.head.weight.detach().numpy()
    A = A.numpy()
    expected = np.zeros((A.shape[0],) + A.shape[2:])
    for n in range(A.shape[0]):
        for k in range(A.shape[1]):
            expected[n] += W[classes[n], k] * A[n, k]
    result = xai.explain(gapcnn, gray, method="cam", target=classes)
    np.testing.assert_allclose(result.raw.numpy(), relu(expected), atol=1e-5)
    signed = xai.explain(gapcnn, gray, method="cam", target=classes, relu=False)
    np.testing.assert_allclose(signed.raw.numpy(), expected, atol=1e-5)
    assert (expected < 0).any()  # the signed option is exercised


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_chunked_equals_unchunked(method, case):
    """The batch_size option trades memory for speed; the maps must not depend on it."""
    model, x, _, _, _ = case
    n_masked = x.shape[0] * 6  # 3 samples x 6 channels
    sizes = (1, 4, 7, n_masked, 10_000) + ((None,) if method == "ablationcam" else ())
    results = [explain(model, x, method, batch_size=b).raw for b in sizes]
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=1e-5, atol=1e-6)
    assert results[0].abs().max() > 1e-3


class _SkipCat(torch.nn.Module):
    """The layer ``act`` is concatenated with an earlier tensor: copies cannot broadcast."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.stem = torch.nn.Conv2d(1, 3, 3, padding=1)
        self.act0 = torch.nn.ReLU()
        self.block = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.act = torch.nn.ReLU()
        self.fc = torch.nn.Linear(7, 3)

    def tail(self, s, a):
        return self.fc(torch.cat([s, a], 1).mean((2, 3)))

    def forward(self, x):
        s = self.act0(self.stem(x))
        return self.tail(s, self.act(self.block(s)))


def test_ablationcam_with_a_concatenated_skip_connection(gray):
    model = _SkipCat().eval()
    with torch.no_grad():
        s = model.act0(model.stem(gray))
        a = model.act(model.block(s))
        y = model.tail(s, a)[:, 1]
        expected = torch.zeros(a.shape[0], *a.shape[2:])
        for k in range(a.shape[1]):
            ablated = a.clone()
            ablated[:, k] = 0
            w = (y - model.tail(s, ablated)[:, 1]) / y
            expected += w[:, None, None] * a[:, k]
    result = xai.explain(model, gray, method="ablationcam", layer="act", target=1)
    torch.testing.assert_close(result.raw, expected.clamp_min(0), rtol=1e-5, atol=1e-6)


def test_ablation_shortcut_equals_running_every_copy_whole(gray):
    """Ablating after the layer on a batch-1 prefix equals ablating whole copies, also
    across residual additions, which broadcast the single sample over its copies."""
    from tests.test_identities import TinyResNet

    torch.manual_seed(0)
    model = TinyResNet().eval()
    explainer = xai.AblationCAM(model, layer="layer1.0", batch_size=4)
    layer = resolve_layer(model, "layer1.0")
    positions = torch.arange(6 * 8 * 8).reshape(6, 64)  # NCHW: channel k is its own block
    with torch.no_grad():
        target = resolve_target([0, 1, 2, 3], model(gray), 4)
        fast = explainer._ablate_after_layer(gray, layer, positions, target, 4)
        whole = explainer._ablate_whole(gray, layer, positions, target, 4)
    torch.testing.assert_close(fast, whole, rtol=1e-5, atol=1e-6)
    unablated = model(gray)[torch.arange(4), [0, 1, 2, 3]][:, None].detach()
    assert (fast != unablated).float().mean() > 0.5  # ablation really changes the scores
