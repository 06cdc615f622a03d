"""``--device auto|cpu|cuda|mps`` on the commands that run a model: which device ``auto``
picks, the one-line refusal of a device this machine lacks, and the device recorded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import xai
from xai.cli import main
from xai.cli._common import choose_device, resolve_device
from xai.core.errors import XAIValueError

SAMPLE = str(dict(xai.models.sample_images())["Sneaker"])
HAS_CUDA = torch.cuda.is_available()
HAS_MPS = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def test_auto_takes_cuda_then_mps_then_the_cpu():
    assert choose_device("auto", cuda=True, mps=True) == "cuda"
    assert choose_device("auto", cuda=True, mps=False) == "cuda"
    assert choose_device("auto", cuda=False, mps=True) == "mps"
    assert choose_device("auto", cuda=False, mps=False) == "cpu"
    for name in ("cpu", "cuda", "cuda:1", "mps"):  # a named device is kept, present or not
        for cuda in (True, False):
            assert choose_device(name, cuda=cuda, mps=not cuda) == name


def test_auto_here_is_the_best_device_this_machine_has():
    best = "cuda" if HAS_CUDA else "mps" if HAS_MPS else "cpu"
    assert resolve_device("auto") == torch.device(best)
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_refused_naming_the_fix():
    for name in ("cuda", "cuda:1"):
        with pytest.raises(XAIValueError, match=rf"--device {name}: this machine has no CUDA "):
            resolve_device(name)
    with pytest.raises(XAIValueError, match=r"use --device cpu, or auto"):
        resolve_device("cuda")


@pytest.mark.skipif(HAS_MPS, reason="this machine has MPS")
def test_mps_without_apple_gpu_is_refused():
    with pytest.raises(XAIValueError, match=r"--device mps: MPS \(Apple's GPU\) is not available"):
        resolve_device("mps")


def _one_line(status: int, err: str, pattern: str) -> None:
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("xai: error: "), err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA device")
@pytest.mark.parametrize(
    "argv",
    [
        ["explain", SAMPLE, "--out", "{tmp}/out"],
        ["train", "--model", "mlp", "--out", "{tmp}/m.pt"],
        ["explain-dataset", SAMPLE, "--store", "{tmp}/s.zarr"],
    ],
    ids=["explain", "train", "explain-dataset"],
)
def test_every_command_refuses_a_missing_gpu_in_one_line_writing_nothing(argv, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv] + ["--device", "cuda"]
    status = main(argv)
    _one_line(status, capsys.readouterr().err, r"--device cuda: this machine has no CUDA device")
    assert list(tmp_path.iterdir()) == []


def test_ray_takes_no_gpu_device(tmp_path, capsys):
    status = main(
        ["explain-dataset", SAMPLE, "--store", str(tmp_path / "s.zarr"), "--engine", "ray"]
        + ["--device", "cuda"]
    )
    _one_line(status, capsys.readouterr().err, r"--device cuda applies to --engine local")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_device_is_argparse_s_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["explain", SAMPLE, "--device", "tpu"])
    assert stop.value.code == 2
    _one_line(2, capsys.readouterr().err, r"expected one of auto, cpu, cuda, mps .*'tpu'")


def test_the_manifest_records_the_device(tmp_path):
    assert main(["explain", SAMPLE, "--out", str(tmp_path), "--device", "cpu", "-q"]) == 0
    manifest = json.loads((tmp_path / "7-sneaker.png" / "manifest.json").read_text())
    assert manifest["model"]["device"] == "cpu"


def test_the_store_records_the_device(tmp_path):
    store = tmp_path / "s.zarr"
    samples = str(Path(SAMPLE).parent)
    argv = ["explain-dataset", samples, "--store", str(store), "--device", "cpu", "-q"]
    assert main(argv) == 0
    assert xai.open_store(store).attrs["model"]["device"] == "cpu"


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device here")
def test_explain_on_cuda_gives_the_cpu_maps(tmp_path):
    """Model and inputs on the GPU: the same prediction and maps as on the CPU."""
    for device in ("cpu", "cuda"):
        argv = ["explain", SAMPLE, "-m", "gradcam,cam", "--out", str(tmp_path / device)]
        assert main([*argv, "--device", device, "-q"]) == 0
    folders = {d: tmp_path / d / "7-sneaker.png" for d in ("cpu", "cuda")}
    manifests = {d: json.loads((f / "manifest.json").read_text()) for d, f in folders.items()}
    assert manifests["cuda"]["model"]["device"] == "cuda"
    assert [p["index"] for p in manifests["cuda"]["prediction"]] == [
        p["index"] for p in manifests["cpu"]["prediction"]
    ]
    for method in ("gradcam", "cam"):
        on = {d: np.load(f / f"{method}_raw.npy") for d, f in folders.items()}
        # TF32 convolutions on the GPU: equal to about 1e-3 of the map's peak
        np.testing.assert_allclose(on["cuda"], on["cpu"], rtol=0, atol=3e-3 * on["cpu"].max())
