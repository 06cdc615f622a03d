"""Loading models from spec strings: every kind gives the same network, and nothing is
unpickled without the trust flag."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import xai
from xai.models.loading import load_model

X = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def reference():
    return xai.models.pretrained()


def _same(loaded, reference):
    torch.testing.assert_close(loaded.model(X), reference(X), rtol=0, atol=0)
    assert not loaded.model.training


def test_builtin(reference):
    loaded = load_model()
    assert (loaded.spec, loaded.kind) == ("builtin:fashion-mnist", "builtin")
    assert loaded.class_names[7] == "Sneaker"
    assert loaded.input_size == (1, 28, 28)
    _same(loaded, reference)
    with pytest.raises(FileNotFoundError, match="available: builtin:fashion-mnist"):
        load_model("builtin:imagenet")


def test_state_dict_with_arch_infers_the_gapcnn_configuration(tmp_path, reference):
    path = tmp_path / "w.pt"
    torch.save(reference.state_dict(), path)
    with pytest.raises(ValueError, match=r"state_dict.*--arch"):
        load_model(str(path))
    loaded = load_model(str(path), arch="gapcnn")
    assert loaded.kind == "state_dict"
    assert loaded.details["config"]["pool_blocks"] == 1
    assert loaded.details["config"]["channels"] == [16, 32, 64]
    _same(loaded, reference)
    assert loaded.class_names is None  # no card: names unknown


def test_state_dict_with_a_card_beside_it(tmp_path, reference):
    path = tmp_path / "w.pt"
    torch.save({"epoch": 3, "model_state_dict": reference.state_dict()}, path)  # checkpoint
    card = {
        "architecture": {"name": "gapcnn", "config": reference.config},
        "class_names": list(reference.class_names),
        "input_size": [1, 28, 28],
    }
    (tmp_path / "w.pt.json").write_text(json.dumps(card))
    loaded = load_model(str(path))
    _same(loaded, reference)
    assert loaded.class_names == reference.class_names
    assert loaded.details["card"].endswith("w.pt.json")


def test_other_architectures_and_a_config_that_does_not_fit(tmp_path):
    torch.manual_seed(0)
    mlp = xai.models.MLP(in_features=64, hidden=(32, 16), num_classes=3).eval()
    torch.save(mlp.state_dict(), tmp_path / "m.pt")
    loaded = load_model(str(tmp_path / "m.pt"), arch="mlp")
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(loaded.model(x), mlp(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"do not fit gapcnn.*--config"):
        load_model(str(tmp_path / "m.pt"), arch="gapcnn")
    with pytest.raises(ValueError, match="do not fit mlp"):
        load_model(str(tmp_path / "m.pt"), arch="mlp", config={"in_features": 64})


def test_a_pickled_model_needs_the_trust_flag(tmp_path, reference):
    path = tmp_path / "whole.pt"
    torch.save(reference, path)
    with pytest.raises(PermissionError, match=r"pickled Python object.*--trust-pickle"):
        load_model(str(path))
    loaded = load_model(str(path), trust_pickle=True)
    assert loaded.kind == "pickle"
    _same(loaded, reference)


def test_the_trust_flag_is_what_stands_between_a_file_and_its_code(tmp_path):
    # A pickle whose loading would run code: refused without the flag, and nothing ran.
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"weights": torch.ones(1), "payload": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(PermissionError):
        load_model(str(tmp_path / "evil.pt"))
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_loads_and_predicts(tmp_path, reference):
    path = tmp_path / "s.pt"
    torch.jit.save(torch.jit.script(reference), str(path))
    loaded = load_model(str(path))
    assert loaded.kind == "torchscript"
    _same(loaded, reference)


def test_factories_from_a_module_and_from_a_file(tmp_path, monkeypatch, reference):
    (tmp_path / "mynets.py").write_text(
        "import xai\n"
        "def build():\n"
        "    return xai.models.pretrained()\n"
        "def broken():\n"
        "    raise RuntimeError('no weights here')\n"
        "def not_a_model():\n"
        "    return 42\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    loaded = load_model("mynets:build")
    assert loaded.kind == "factory"
    assert loaded.class_names == reference.class_names  # from the model's attribute
    _same(loaded, reference)
    _same(load_model(f"{tmp_path / 'mynets.py'}:build"), reference)
    with pytest.raises(ValueError, match=r"broken\(\) failed \(RuntimeError: no weights here\)"):
        load_model("mynets:broken")
    with pytest.raises(ValueError, match=r"returned a int; it must return a torch\.nn\.Module"):
        load_model("mynets:not_a_model")
    with pytest.raises(ValueError, match="has no function nope"):
        load_model("mynets:nope")
    with pytest.raises(FileNotFoundError, match="cannot import nosuchmodule"):
        load_model("nosuchmodule:build")
    with pytest.raises(ValueError, match="name the function"):
        load_model(str(tmp_path / "mynets.py"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"just text", "not a PyTorch model file"),
        (b"", "not a PyTorch model file"),
        (b"\x80\x02garbage", "not a readable PyTorch file"),
    ],
)
def test_files_that_are_not_models(tmp_path, content, message):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_model(str(path))


def test_a_saved_non_model_and_a_folder(tmp_path):
    torch.save({"lr": 0.1, "epochs": 3}, tmp_path / "d.pt")
    with pytest.raises(ValueError, match="holds a dict, not a model's state_dict"):
        load_model(str(tmp_path / "d.pt"))
    with pytest.raises(ValueError, match="is a folder"):
        load_model(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(str(tmp_path / "missing.pt"))
