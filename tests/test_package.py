"""Packaging promises: light imports, the console script, the models."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import xai

HEAVY = ("shap", "captum", "matplotlib", "cv2")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_import_xai_and_listing_methods_import_nothing_heavy():
    loaded = _modules_after("import xai; xai.methods()")
    assert not {m for m in loaded if m.split(".")[0] in (*HEAVY, "torch")}


def test_explaining_imports_torch_but_not_shap_captum_matplotlib_or_cv2():
    loaded = _modules_after(
        "import torch, xai\n"
        "xai.explain(xai.models.GAPCNN(), torch.rand(1, 1, 28, 28), method='scorecam')"
    )
    assert "torch" in loaded
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


@pytest.mark.parametrize("argv", [["--help"], ["methods"]])
def test_cli_help_and_methods_import_no_torch(argv):
    code = (
        "import sys\nfrom xai.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    )
    loaded = _modules_after(code)
    assert not {m for m in loaded if m.split(".")[0] in (*HEAVY, "torch")}


def _console_script() -> str:
    """The installed ``xai`` script of the interpreter running the tests."""
    script = Path(sys.executable).parent / "xai"
    found = str(script) if script.exists() else shutil.which("xai")
    assert found, "the xai console script is not installed; pip install -e ."
    return found


def test_console_script_lists_methods():
    xai_cmd = _console_script()
    out = subprocess.run([xai_cmd, "methods"], check=True, capture_output=True, text=True).stdout
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(xai.methods())
    assert "Zhou et al. 2016" in lines[0]
    version = subprocess.run([xai_cmd, "--version"], check=True, capture_output=True, text=True)
    assert version.stdout.strip() == f"xai-toolkit {xai.__version__}"


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        xai.nope


# -------------------------------------------------------------------------- models


def test_gapcnn_default_shape_and_layout():
    model = xai.models.GAPCNN()
    out = model(torch.rand(2, 1, 28, 28))
    assert out.shape == (2, 10)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == 6 and len(pools) == 2
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert model.features(torch.rand(1, 1, 28, 28)).shape == (1, 64, 7, 7)
    assert sum(p.numel() for p in model.parameters()) < 100_000  # trains in minutes on a CPU
    assert isinstance(model.pool, nn.AdaptiveAvgPool2d) and isinstance(model.head, nn.Linear)


def test_gapcnn_is_configurable():
    model = xai.models.GAPCNN(
        in_channels=3,
        num_classes=4,
        channels=(8, 16),
        convs_per_block=1,
        kernel_size=5,
        batch_norm=False,
        dropout=0.5,
    )
    assert model(torch.rand(2, 3, 20, 20)).shape == (2, 4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in model.modules())
    assert [m.kernel_size for m in model.modules() if isinstance(m, nn.Conv2d)] == [(5, 5)] * 2


def test_gapcnn_pool_blocks_sets_the_map_resolution():
    x = torch.rand(1, 1, 28, 28)
    for pools, size in ((0, 28), (1, 14), (2, 7)):
        model = xai.models.GAPCNN(pool_blocks=pools)
        assert model.features(x).shape == (1, 64, size, size)
        assert model.config["pool_blocks"] == pools
        assert xai.explain(model, x, method="cam").raw.shape == (1, size, size)
    rebuilt = xai.models.build("gapcnn", xai.models.GAPCNN(pool_blocks=1).config)
    assert rebuilt.features(x).shape == (1, 64, 14, 14)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel_size": 4}, "odd"),
        ({"channels": ()}, "non-empty"),
        ({"dropout": 1.0}, "dropout"),
        ({"mean": 0.5}, "both mean and std"),
        ({"convs_per_block": 0}, "convs_per_block must be a positive int; got 0"),
        ({"pool_blocks": 3}, "pool_blocks must be between 0 and 2"),
    ],
)
def test_gapcnn_rejects_bad_configurations(kwargs, message):
    with pytest.raises(ValueError, match=message):
        xai.models.GAPCNN(**kwargs)


def test_normalisation_inside_the_model():
    torch.manual_seed(0)
    plain = xai.models.GAPCNN(channels=(4, 4), convs_per_block=1).eval()
    normed = xai.models.GAPCNN(channels=(4, 4), convs_per_block=1, mean=0.3, std=0.2).eval()
    normed.load_state_dict(
        plain.state_dict()
        | {k: v for k, v in normed.state_dict().items() if k.startswith("normalize")}
    )
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(normed(x), plain((x - 0.3) / 0.2))
    assert set(normed.state_dict()) >= {"normalize.mean", "normalize.std"}
    rgb = xai.models.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    y = rgb(torch.ones(1, 3, 2, 2))
    torch.testing.assert_close(
        y[0, :, 0, 0],
        (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]),
    )
    with pytest.raises(ValueError, match="std must be positive"):
        xai.models.Normalize(0.0, 0.0)


def test_mlp_baseline():
    mlp = xai.models.MLP(in_features=784, hidden=(32, 16), dropout=0.1)
    assert mlp(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [32, 16, 10]
    logistic = xai.models.MLP(in_features=12, hidden=())
    assert logistic(torch.rand(2, 3, 2, 2)).shape == (2, 10)
    with pytest.raises(ValueError, match="expects 784 input features after flattening; got 3072"):
        mlp(torch.rand(1, 3, 32, 32))
