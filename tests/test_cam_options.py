"""What every CAM shares: several layers fused (``layer=[...]``), ``eigen_smooth`` and
``aug_smooth``, each against a reference computed here from its definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import xai
from tests._reference import split_activations
from tests.conftest import make_gapcnn, make_two_stage
from xai.core.errors import XAITypeError, XAIValueError

CLASSES = [2, 5, 0]


def _norm(m: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max to [0, 1], written out (a constant map becomes zeros)."""
    flat = m.double().flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    high = flat.max(dim=1, keepdim=True).values
    span = high - low
    out = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, 1.0), 0.0)
    return out.reshape(m.shape)


def _resize(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(m.shape[-2:]) == size:
        return m
    return F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


# ------------------------------------------------------------------------------ fusion


def _model_and_inputs():
    model = make_gapcnn(channels=(4, 8, 6))
    torch.manual_seed(3)
    return model, torch.rand(3, 1, 16, 16)


@pytest.mark.parametrize("method", ["gradcam", "layercam", "scorecam", "eigencam"])
@pytest.mark.parametrize("fuse", ["mean", "max"])
def test_fused_layers_equal_each_layers_map_normalised_resized_and_combined(method, fuse):
    model, x = _model_and_inputs()
    layers = ["features.6", "features.10"]
    single = [xai.explain(model, x, method, layer=name, target=[0, 3, 1]).raw for name in layers]
    height = max(m.shape[1] for m in single)
    width = max(m.shape[2] for m in single)
    assert {tuple(m.shape[1:]) for m in single} == {(8, 8), (4, 4)}  # two resolutions
    stacked = torch.stack([_resize(_norm(m), (height, width)) for m in single])
    expected = stacked.mean(dim=0) if fuse == "mean" else stacked.amax(dim=0)
    fused = xai.explain(model, x, method, layer=layers, target=[0, 3, 1], fuse=fuse)
    torch.testing.assert_close(fused.raw.double(), expected, atol=1e-5, rtol=1e-5)
    assert fused.layer == "features.6, features.10"
    assert fused.raw.shape == (3, 8, 8) and fused.maps.shape == (3, 16, 16)
    assert not torch.allclose(fused.raw.double(), stacked[0], atol=1e-3)  # both count


def test_fused_gradient_methods_take_one_forward_and_one_backward_pass():
    model, x = _model_and_inputs()
    calls = []
    handle = model.register_forward_pre_hook(lambda m, i: calls.append(1))
    try:
        xai.explain(model, x, "gradcam", layer=["features.2", "features.6", "features.10"])
    finally:
        handle.remove()
    assert len(calls) == 1


def test_one_layer_in_a_list_is_that_layer():
    model, x = _model_and_inputs()
    alone = xai.explain(model, x, "gradcam", layer="features.8")
    listed = xai.explain(model, x, "gradcam", layer=["features.8"])
    torch.testing.assert_close(listed.raw, alone.raw)
    assert listed.layer == "features.8"


def test_bad_layer_lists_are_refused():
    model, x = _model_and_inputs()
    with pytest.raises(XAIValueError, match="more than once"):
        xai.explain(model, x, "gradcam", layer=["features.8", "features.8"])
    with pytest.raises(XAIValueError, match="names no layer"):
        xai.explain(model, x, "gradcam", layer=[])
    with pytest.raises(XAITypeError, match="list of them"):
        xai.explain(model, x, "gradcam", layer=3)
    with pytest.raises(XAIValueError, match="fuse"):
        xai.explain(model, x, "gradcam", layer=["features.8"], fuse="median")


# ------------------------------------------------------------------------ eigen_smooth


def _projection(T: np.ndarray) -> np.ndarray:
    """(C, h, w) -> M v1 with numpy's eigensolver, the sign agreeing with sum_k T_k."""
    c, h, w = T.shape
    M = T.reshape(c, h * w).T
    _, vectors = np.linalg.eigh(M.T @ M)
    p = M @ vectors[:, -1]
    return (p if p @ M.sum(axis=1) >= 0 else -p).reshape(h, w)


def test_eigen_smooth_is_the_first_component_of_the_weighted_maps():
    """Grad-CAM's terms alpha_k A^k and HiResCAM's G^k A^k, from float64 autograd."""
    model = make_two_stage()
    torch.manual_seed(1)
    x = torch.rand(3, 3, 8, 8)
    A, G, _, _ = split_activations(model, x, CLASSES)
    A, G = A.numpy(), G.numpy()
    terms = {
        "gradcam": G.mean(axis=(2, 3), keepdims=True) * A,
        "hirescam": G * A,
        "layercam": np.maximum(G, 0) * A,
    }
    for method, T in terms.items():
        expected = np.stack([_projection(T[s]) for s in range(len(T))])
        e = xai.explain(
            model, x, method, layer="body.3", target=CLASSES, eigen_smooth=True, relu=False
        )
        np.testing.assert_allclose(e.raw.numpy(), expected, atol=1e-4, rtol=1e-4)
        plain = xai.explain(model, x, method, layer="body.3", target=CLASSES, relu=False)
        assert not np.allclose(plain.raw.numpy(), expected, atol=1e-3)  # it does something


def test_eigen_smooth_on_weight_methods_uses_their_weights():
    """CAM's terms are w^c_k A^k with the head's weights; Score-CAM's its own weights."""
    model = make_gapcnn()
    torch.manual_seed(2)
    x = torch.rand(4, 1, 16, 16)
    classes = [0, 3, 1, 4]
    e = xai.explain(model, x, "cam", target=classes, eigen_smooth=True, relu=False)
    A = xai.explain(model, x, "eigencam", relu=False).raw  # only to learn h, w
    m = model.double()
    with torch.no_grad():
        feats = m.features(m.normalize(x.double())).numpy()
    w = model.head.weight.detach().double().numpy()[classes]
    expected = np.stack([_projection(w[s][:, None, None] * feats[s]) for s in range(4)])
    assert expected.shape[1:] == tuple(A.shape[1:])
    np.testing.assert_allclose(e.raw.numpy(), expected, atol=1e-4, rtol=1e-4)


def test_eigen_smooth_is_not_an_option_of_the_eigen_methods():
    model, x = _model_and_inputs()
    for method in ("eigencam", "eigengradcam"):
        with pytest.raises(XAITypeError, match="eigen_smooth"):
            xai.explain(model, x, method, eigen_smooth=True)


# -------------------------------------------------------------------------- aug_smooth


def test_aug_smooth_averages_six_augmented_maps_in_the_original_frame():
    model, x = _model_and_inputs()
    plain = xai.explain(model, x, "gradcam", layer="features.8")
    classes = plain.targets.tolist()  # the original input's top-1, kept for every copy
    expected = torch.zeros_like(plain.raw, dtype=torch.float64)
    for flip in (False, True):
        for factor in (0.9, 1.0, 1.1):
            xa = (x.flip(-1) if flip else x) * factor
            m = xai.explain(model, xa, "gradcam", layer="features.8", target=classes).raw
            expected += _norm(m.flip(-1) if flip else m)
    expected /= 6
    e = xai.explain(model, x, "gradcam", layer="features.8", aug_smooth=True)
    torch.testing.assert_close(e.raw.double(), expected, atol=1e-5, rtol=1e-5)
    assert e.targets.tolist() == classes
    torch.testing.assert_close(e.scores, plain.scores)
    assert not torch.allclose(e.raw.double(), _norm(plain.raw), atol=1e-3)
    again = xai.explain(model, x, "gradcam", layer="features.8", aug_smooth=True)
    assert torch.equal(again.raw, e.raw)  # deterministic


def test_aug_smooth_with_fused_layers_and_a_frame_tied_target():
    model, x = _model_and_inputs()
    e = xai.explain(model, x, "gradcam", layer=["features.6", "features.10"], aug_smooth=True)
    assert e.raw.shape == (3, 8, 8) and float(e.raw.max()) <= 1.0
    mask = torch.zeros(3, 16, 16, dtype=torch.bool)
    mask[:, :8, :8] = True

    def score(output):  # a callable target: its meaning may depend on the frame
        return output[:, 0]

    with pytest.raises(XAIValueError, match="aug_smooth flips the image"):
        xai.explain(model, x, "gradcam", target=score, aug_smooth=True)


# ------------------------------------------------------------------------ command line


def test_cli_fuses_layers_and_smooths_as_the_library_does(tmp_path):
    import json

    from tests.test_cli import SAMPLES, _one_line_error, run
    from xai.images import read_image, to_input

    out = tmp_path / "out"
    result = run(
        "explain", SAMPLES["Bag"], "--method", "gradcam,eigencam", "--layer",
        "features.12,features.18", "--fuse", "max", "--eigen-smooth", "--aug-smooth",
        "--out", out, "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (
        "warning: --eigen-smooth does not apply to eigencam; explained without it"
    )
    folder = out / SAMPLES["Bag"].name  # beside it, the run's index.html
    manifest = json.loads((folder / "manifest.json").read_text())
    model = xai.models.pretrained()
    x = to_input(read_image(SAMPLES["Bag"]), 1)[None]
    layers = ["features.12", "features.18"]
    for entry in manifest["explanations"]:
        options = {"fuse": "max", "aug_smooth": True}
        if entry["method"] == "gradcam":
            options["eigen_smooth"] = True
        assert entry["options"] == options
        assert entry["layer"] == "features.12, features.18"
        expected = xai.explain(model, x, entry["method"], layer=layers, **options)
        raw = np.load(folder / f"{entry['method']}_raw.npy")
        np.testing.assert_allclose(raw, expected.raw[0].numpy(), atol=1e-5)
    refused = run("explain", SAMPLES["Bag"], "-m", "guided-backprop", "--aug-smooth", "-o", out)
    _one_line_error(refused, "--aug-smooth does not apply to guided-backprop")
    refused = run("explain", SAMPLES["Bag"], "--layer", "features.12,", "-o", out)
    _one_line_error(refused, "empty name")
