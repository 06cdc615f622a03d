"""The embedded Fashion-MNIST model: offline, honest card, right on its own samples."""

from __future__ import annotations

import hashlib
import socket

import cv2
import numpy as np
import pytest
import torch

import xai
from xai.models.pretrained import _weights_dir


@pytest.fixture(scope="module")
def model():
    return xai.models.pretrained("fashion-mnist")


@pytest.fixture(scope="module")
def card():
    return xai.models.model_card("fashion-mnist")


def test_loads_offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access during pretrained()")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    m = xai.models.pretrained("Fashion-MNIST")
    assert isinstance(m, xai.models.GAPCNN)
    assert not m.training
    assert m.class_names[0] == "T-shirt/top"
    assert m.class_names[9] == "Ankle boot"
    assert m.input_size == (1, 28, 28)
    assert isinstance(m.normalize, xai.models.Normalize)  # takes images in [0, 1]
    assert xai.models.available() == ("fashion-mnist",)
    with pytest.raises(ValueError, match="unknown pretrained model 'imagenet'"):
        xai.models.pretrained("imagenet")


def test_weights_are_a_plain_state_dict_matching_the_card(card):
    path = _weights_dir() / card["weights"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card["weights_sha256"]
    state = torch.load(path, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert (
        sum(
            v.numel()
            for k, v in state.items()
            if "running" not in k and "num_batches" not in k and "normalize" not in k
        )
        == card["parameters"]
    )


def test_the_card_reports_what_the_issue_asks(card):
    assert card["test_accuracy"] >= 0.91
    assert set(card["per_class_accuracy"]) == set(card["class_names"])
    assert card["data"]["test"] == 10_000
    assert card["command"].startswith("python scripts/train_pretrained.py")
    assert card["training"]["seconds"] > 0
    assert isinstance(card["seed"], int)
    assert card["cam_mass_on_item"]["mean_share"] > 0.5
    assert card["cam_mass_on_item"]["mean_share"] > card["cam_mass_on_item"]["mean_item_area"]
    assert len(card["samples"]) == 10


def _read(path) -> torch.Tensor:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None
    assert image.shape == (28, 28)
    assert image.dtype == np.uint8
    return torch.from_numpy(image).float()[None, None] / 255


def test_predicts_its_shipped_sample_images(model):
    samples = xai.models.sample_images()
    assert [name for name, _ in samples] == list(model.class_names)
    images = torch.cat([_read(path) for _, path in samples])
    with torch.no_grad():
        predicted = model(images).argmax(1)
    assert predicted.tolist() == list(range(10))
    batch, labels = xai.models.sample_batch()
    torch.testing.assert_close(batch, images)
    assert labels.tolist() == list(range(10))


def test_cam_on_the_samples_lies_on_the_garment(model):
    images = torch.cat([_read(path) for _, path in xai.models.sample_images()])
    maps = xai.explain(model, images, method="cam").maps
    item = images[:, 0] > 0.05
    share = (maps * item).sum((1, 2)) / maps.sum((1, 2))
    assert float(share.mean()) > 0.5
    assert float((share > item.float().mean((1, 2))).float().mean()) >= 0.8  # beats uniform


@pytest.mark.slow
def test_full_test_accuracy_matches_the_card(model, card):
    data = pytest.importorskip("xai.data")
    try:
        test = data.load("fashion-mnist", split="test")
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    evaluation = xai.training.evaluate(model, test)
    assert evaluation.accuracy >= 0.91
    assert evaluation.accuracy == pytest.approx(card["test_accuracy"], abs=1e-4)
    for name, accuracy in evaluation.per_class_accuracy().items():
        assert accuracy == pytest.approx(card["per_class_accuracy"][name], abs=1e-4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_built_in_models_compile_to_torchscript(model, tmp_path):
    # Users deploy TorchScript; the metadata attributes must not stop scripting, and a
    # saved script must reload (as `xai explain --model FILE.pt` does) with equal outputs.
    x = torch.rand(3, 1, 28, 28)
    for net in (model, xai.models.MLP(in_features=784, num_classes=10).eval()):
        path = tmp_path / "net.pt"
        torch.jit.save(torch.jit.script(net), str(path))
        loaded = torch.jit.load(str(path))
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=1e-6)
