"""The public API: explain, the classes, targets, layers, inputs, the result type."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xai
from tests.conftest import make_gapcnn, make_two_stage

# ------------------------------------------------------------------------- registry


def test_registry_lists_every_required_method():
    required = {
        "cam",
        "gradcam",
        "gradcam++",
        "xgradcam",
        "hirescam",
        "layercam",
        "scorecam",
        "ablationcam",
        "eigencam",
        "guided-backprop",
        "guided-gradcam",
    }
    assert required <= set(xai.methods())
    for name in xai.methods():
        cls = xai.registry.get(name).load()
        assert cls.name == name
        assert getattr(xai, cls.__name__) is cls  # every method is a public class


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("Grad-CAM", "gradcam"),
        ("GradCAM++", "gradcam++"),
        ("gradcampp", "gradcam++"),
        ("score_cam", "scorecam"),
        ("Guided Backprop", "guided-backprop"),
    ],
)
def test_method_names_are_forgiving(typed, name, gray):
    assert xai.registry.resolve_name(typed) == name
    assert xai.explain(make_gapcnn(), gray, method=typed).method == name


def test_unknown_method_lists_the_valid_ones(gray):
    with pytest.raises(
        ValueError,
        match=r"unknown method 'gradcan'\. Did you mean 'gradcam'\?.*"
        r"Valid methods: cam, gradcam",
    ):
        xai.explain(make_gapcnn(), gray, method="gradcan")


def test_unknown_option_lists_the_methods_options(gray):
    with pytest.raises(
        TypeError,
        match=r"'scorecam' got unknown option\(s\) batchsize; its "
        r"options are: relu, reshape, batch_size, softmax, baseline",
    ):
        xai.explain(make_gapcnn(), gray, method="scorecam", batchsize=4)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_batch_size(bad):
    with pytest.raises((TypeError, ValueError), match="batch_size must be a positive int"):
        xai.ScoreCAM(make_gapcnn(), batch_size=bad)


# ------------------------------------------------------------------------ the result


@pytest.mark.parametrize("method", xai.methods())
def test_explanation_contract(method, gray):
    e = xai.explain(make_gapcnn(), gray, method=method, target=[1, 2, 3, 4])
    assert isinstance(e, xai.Explanation)
    assert e.maps.shape == (4, 16, 16) and e.maps.dtype == torch.float32
    assert e.raw.dtype == torch.float32 and e.raw.ndim == 3
    assert e.targets.dtype == torch.int64 and e.targets.tolist() == [1, 2, 3, 4]
    assert e.scores.shape == (4,) and e.method == method
    assert e.maps.device.type == "cpu" and not e.maps.requires_grad
    for m in e.maps:  # per-sample min-max: each map spans [0, 1] (or is all zeros)
        assert float(m.min()) == 0.0 and float(m.max()) in (0.0, 1.0)
    if method not in ("guided-backprop", "eigencam") and e.raw.ndim == 3:
        assert float(e.raw.min()) >= 0.0  # after the method's ReLU
    logits = make_gapcnn()(gray)
    torch.testing.assert_close(e.scores, logits[torch.arange(4), e.targets].detach())


def test_maps_are_the_bilinear_resize_of_raw_then_minmax(gray):
    e = xai.explain(make_gapcnn(), gray, method="gradcam", target=2, relu=False)
    up = torch.nn.functional.interpolate(
        e.raw[:, None], size=(16, 16), mode="bilinear", align_corners=False
    )[:, 0]
    for n in range(4):
        expected = (up[n] - up[n].min()) / (up[n].max() - up[n].min())
        torch.testing.assert_close(e.maps[n], expected)


def test_a_constant_map_normalises_to_zeros_not_nan():
    class Zero(nn.Module):  # every activation is zero -> every map is constant
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.act = nn.ReLU()
            self.fc = nn.Linear(2, 3)
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.bias.fill_(-1.0)

        def forward(self, x):
            return self.fc(self.act(self.conv(x)).mean((2, 3)))

    for method in xai.methods():
        e = xai.explain(Zero().eval(), torch.rand(2, 1, 5, 5), method=method)
        assert torch.equal(e.maps, torch.zeros(2, 5, 5)), method


def test_explanation_indexing_and_repr(gray):
    e = xai.explain(make_gapcnn(), gray, method="gradcam", target=[0, 1, 2, 3])
    assert len(e) == 4
    assert e[2].targets.tolist() == [2] and torch.equal(e[2].maps[0], e.maps[2])
    assert e[-1].targets.tolist() == [3] and e[1:3].targets.tolist() == [1, 2]
    with pytest.raises(IndexError):
        e[4]
    assert "method='gradcam'" in repr(e) and "features.10" in repr(e)


# ---------------------------------------------------------------------------- target


def test_target_forms_agree(gray):
    model = make_gapcnn()
    per_sample = [3, 1, 4, 1]
    base = xai.explain(model, gray, target=per_sample)
    for form in (torch.tensor(per_sample), np.array(per_sample), tuple(per_sample)):
        torch.testing.assert_close(xai.explain(model, gray, target=form).raw, base.raw)
    top1 = model(gray).argmax(1)
    assert xai.explain(model, gray).targets.tolist() == top1.tolist()
    assert xai.explain(model, gray, target=torch.tensor(2)).targets.tolist() == [2] * 4
    assert xai.explain(model, gray, target=np.int64(2)).targets.tolist() == [2] * 4


def test_callable_target_on_a_model_that_returns_a_dict(gray):
    class DictModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = make_gapcnn()

        def forward(self, x):
            return {"logits": self.net(x), "aux": x.mean()}

    model = DictModel().eval()
    for method in xai.methods():
        if method == "cam":
            with pytest.raises(ValueError, match="names no single class"):
                xai.explain(model, gray, method=method, target=lambda out: out["logits"][:, 2])
            continue
        e = xai.explain(model, gray, method=method, target=lambda out: out["logits"][:, 2])
        # A callable's score is used as it is: Score-CAM's softmax does not apply to it.
        options = {"softmax": False} if method == "scorecam" else {}
        plain = xai.explain(model.net, gray, method=method, target=2, **options)
        torch.testing.assert_close(e.raw, plain.raw, rtol=1e-5, atol=1e-6)
        assert e.targets.tolist() == [-1] * 4
        torch.testing.assert_close(e.scores, plain.scores)
    # A mapping with "logits" is read as logits by the default targets ...
    torch.testing.assert_close(xai.explain(model, gray).raw, xai.explain(model.net, gray).raw)

    # ... a mapping without them needs a target that reads it.
    class Scores(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = make_gapcnn()

        def forward(self, x):
            return {"scores": self.net(x)}

    with pytest.raises(ValueError, match=r"returned a dict.*target=callable"):
        xai.explain(Scores(), gray)


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        ([1, 2], ValueError, r"target has 2 entries but the inputs hold 4 samples"),
        ([1, 2, 3, 4, 0], ValueError, r"target has 5 entries"),
        (5, ValueError, r"target 5 is out of range for a model with 5 classes; valid .* 0\.\.4"),
        (-1, ValueError, r"target -1 is out of range"),
        ([0, 1, 9, 2], ValueError, r"target 9 is out of range"),
        (True, TypeError, r"must be an int class index; got the bool"),
        (1.5, TypeError, r"must be an int class index; got float"),
        ("Coat", TypeError, r"got the string 'Coat'"),
        (lambda out: out[:1, 0], ValueError, r"must return a tensor of shape \(4,\)"),
    ],
)
@pytest.mark.parametrize("method", ["gradcam", "scorecam", "cam"])
def test_bad_targets_are_refused_clearly(target, error, message, method, gray):
    if method == "cam" and callable(target):
        message = "names no single class"
    with pytest.raises(error, match=message):
        xai.explain(make_gapcnn(), gray, method=method, target=target)


# ---------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    ("inputs", "error", "message"),
    [
        (
            torch.rand(1, 16, 16),
            ValueError,
            r"got 3 dimensions \(1, 16, 16\)\. Add the batch "
            r"dimension with x\.unsqueeze\(0\)",
        ),
        (torch.rand(16, 16), ValueError, r"got 2 dimensions"),
        (
            np.zeros((1, 1, 16, 16), np.float32),
            TypeError,
            r"got ndarray\. Convert with "
            r"torch\.as_tensor",
        ),
        (torch.zeros(1, 1, 16, 16, dtype=torch.uint8), TypeError, r"x\.float\(\) / 255"),
        (torch.zeros(0, 1, 16, 16), ValueError, r"must not be empty"),
    ],
)
def test_bad_inputs_are_refused_clearly(inputs, error, message):
    with pytest.raises(error, match=message):
        xai.explain(make_gapcnn(), inputs)


def test_bad_model_is_refused():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module; got function"):
        xai.explain(lambda x: x, torch.rand(1, 1, 8, 8))


def test_inputs_follow_the_model_dtype(gray):
    model = make_gapcnn().double()
    e = xai.explain(model, gray, target=1)
    assert e.maps.dtype == torch.float32
    torch.testing.assert_close(
        e.raw, xai.explain(make_gapcnn(), gray, target=1).raw, rtol=1e-5, atol=1e-6
    )


# ---------------------------------------------------------------------------- layers


def test_default_layer_is_the_last_relu_before_global_pooling(gray):
    model = make_gapcnn()
    e = xai.explain(model, gray)
    assert e.layer == "features.10" and isinstance(model.features[10], nn.ReLU)
    assert repr(xai.GradCAM(model)) == "GradCAM(model=GAPCNN, layer='auto')"
    assert (
        xai.explain(
            xai.models.GAPCNN(batch_norm=False, convs_per_block=1), torch.rand(1, 1, 28, 28)
        ).layer
        == "features.7"
    )


def test_default_layer_with_inplace_relus_is_the_relu_not_the_conv(gray):
    model = make_gapcnn()
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = True
    assert xai.explain(model, gray).layer == "features.10"


def test_default_layer_without_global_pooling_is_the_last_spatial_output(images):
    assert xai.explain(make_two_stage(), images).layer == "tail.2"  # the max-pool, 4 x 4


def test_layer_by_name_and_by_module_agree(gray):
    model = make_gapcnn()
    by_name = xai.explain(model, gray, layer="features.6", target=1)
    by_module = xai.explain(model, gray, layer=model.features[6], target=1)
    assert by_name.layer == by_module.layer == "features.6"
    torch.testing.assert_close(by_name.raw, by_module.raw)
    assert by_name.raw.shape == (4, 8, 8)


def test_unknown_layer_lists_the_nearest_names():
    with pytest.raises(
        ValueError,
        match=r"unknown layer 'features.100'; the nearest valid "
        r"names are: features\.10.*named_modules",
    ):
        xai.GradCAM(make_gapcnn(), layer="features.100")


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (nn.Conv2d(1, 1, 3), "is not a submodule of this model"),
        (
            "head",
            r"outputs a vector per sample \(N, C\), with no spatial or token dimension "
            r"\(4, 5\)",
        ),
        (
            3,
            r"layer must be a layer name, a module, a list of them \(fused into one map\) "
            r"or None; got int",
        ),
    ],
)
def test_bad_layers_are_refused_clearly(layer, message, gray):
    with pytest.raises((ValueError, TypeError), match=message):
        xai.explain(make_gapcnn(), gray, layer=layer)


def test_the_model_itself_is_not_a_layer(gray):
    model = make_gapcnn()
    with pytest.raises(ValueError, match="not the model itself"):
        xai.GradCAM(model, layer=model)


def test_a_layer_that_does_not_run_is_refused(gray):
    model = make_gapcnn()
    model.unused = nn.Conv2d(1, 1, 1)
    with pytest.raises(xai.XAIValueError, match="did not run in the model's forward pass"):
        xai.explain(model, gray, layer="unused")


def test_a_reused_layer_is_refused(gray):
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            self.fc = nn.Linear(1, 2)

        def forward(self, x):
            return self.fc(self.conv(self.conv(x)).mean((2, 3)))

    with pytest.raises(xai.XAIValueError, match="ran more than once"):
        xai.explain(Twice(), gray, layer="conv")
    with pytest.raises(ValueError, match="runs more than once per forward pass"):
        xai.explain(Twice(), gray)


def test_a_model_without_feature_maps_is_refused():
    mlp = xai.models.MLP(in_features=16)
    with pytest.raises(ValueError, match=r"no submodule .* returns \(N, C, h, w\) feature maps"):
        xai.explain(mlp, torch.rand(2, 1, 4, 4))
    # guided backpropagation needs no layer and works on an MLP
    e = xai.explain(mlp, torch.rand(2, 1, 4, 4), method="guided-backprop")
    assert e.attributions.shape == (2, 1, 4, 4)


def test_guided_backprop_takes_no_layer(gray):
    with pytest.raises(ValueError, match="takes no layer"):
        xai.explain(make_gapcnn(), gray, method="guided-backprop", layer="features.6")


def test_guided_backprop_warns_when_it_cannot_guide():
    class NoReLU(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    with pytest.warns(UserWarning, match="no torch.nn.ReLU modules"):
        xai.explain(NoReLU(), torch.rand(1, 1, 6, 6), method="guided-backprop")


def test_default_layer_is_found_once_per_model_and_input_shape(gray):
    class Counted(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = make_gapcnn()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.inner(x)

    model = Counted()
    assert xai.explain(model, gray).layer == "inner.features.10"
    assert model.calls == 2  # one trace to find the layer, one forward-backward
    assert xai.explain(model, gray[:1], method="hirescam").layer == "inner.features.10"
    assert xai.GradCAM(model)(gray).layer == "inner.features.10"
    assert model.calls == 4  # no new trace: the layer is cached across calls and explainers
    assert xai.explain(model, torch.rand(1, 1, 12, 20)).layer == "inner.features.10"
    assert model.calls == 6  # another input shape: traced once more
    # The cache does not keep the model alive.
    import gc
    import weakref

    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("method", xai.methods())
def test_the_registry_says_truly_which_methods_depend_on_the_class(method):
    # The CLI labels class-agnostic maps as such; the flag must match what the method does
    # (on a trained model: an untrained one can give all-zero maps for every class).
    model = xai.models.pretrained()
    images = xai.models.sample_batch()[0][:4]
    fewer = {"num_samples": 4} if method in ("sscam", "iscam") else {}  # not 35 and 10
    first = xai.explain(model, images, method=method, target=0, **fewer).maps
    second = xai.explain(model, images, method=method, target=9, **fewer).maps
    if xai.registry.get(method).class_specific:
        assert not torch.allclose(first, second, atol=1e-3)
    else:
        torch.testing.assert_close(first, second, rtol=0, atol=0)
