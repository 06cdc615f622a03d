"""The benchmark scripts run, and their ResNets are torchvision's shapes.

The benchmarks time nothing here: these only keep the scripts from rotting, check that
the peers' maps the tables compare agree where they should, and prove the hand-built
ResNets have torchvision's exact architecture (parameter counts, feature-map sizes).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import resnets  # noqa: E402


@pytest.mark.parametrize(
    ("build", "parameters", "channels"),
    [(resnets.resnet18, 11_689_512, 512), (resnets.resnet50, 25_557_032, 2048)],
)
def test_resnets_have_torchvisions_shapes(build, parameters, channels):
    # torchvision.models.resnet18/50: 11,689,512 and 25,557,032 parameters; layer4 gives
    # (C, 7, 7) maps at 224 x 224, pooled into a 1000-way linear head.
    model = build()
    assert sum(p.numel() for p in model.parameters()) == parameters
    seen = {}
    handle = model.layer4.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 224, 224))
    handle.remove()
    assert out.shape == (1, 1000)
    assert seen["shape"] == (1, channels, 7, 7)
    assert not model.training


def _run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_bench_peers_runs_and_captum_agrees():
    out = _run("benchmarks/bench_peers.py", "--cases", "gapcnn-b1", "--rounds", "1", "--no-memory")
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")]
    cells = {(r[0].strip(), r[1].strip()): [c.strip() for c in r] for r in rows}
    for method in ("gradcam", "gradcam++", "scorecam"):
        assert float(cells[(method, "xai")][2]) > 0
    # captum's LayerGradCam, finished by the same resize and min-max, gives our maps
    assert cells[("gradcam", "captum")][6].startswith("yes ("), cells[("gradcam", "captum")]


def test_bench_peers_memory_worker_reports_a_peak():
    out = _run("benchmarks/bench_peers.py", "--worker", "gapcnn-b1", "gradcam", "xai")
    peak = json.loads(out.strip().splitlines()[-1])["peak_mb"]
    assert 0 <= peak < 500


@pytest.mark.slow
def test_bench_shapley_quick_agrees_with_shap():
    out = _run("benchmarks/bench_shapley.py", "--quick")
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| 1")]
    assert [r[0].strip() for r in rows] == ["10", "12"]
    for row in rows:
        assert float(row[9]) < 1e-10  # max |xai - shap|
        assert abs(float(row[10])) < 1e-10  # efficiency gap
