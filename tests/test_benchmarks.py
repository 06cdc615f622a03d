"""The benchmark scripts run, their ResNets are torchvision's shapes, their ViT timm's.

The benchmarks time nothing here: these only keep the scripts from rotting, check that
the peers' maps the tables compare agree where they should, and prove the hand-built
ResNets have torchvision's exact architecture (parameter counts, feature-map sizes) and
the hand-built ViT-B/16 timm's (parameter count, token shapes, module names).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests._background import Job, Scheduler, job

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import resnets  # noqa: E402
import vits  # noqa: E402


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


def test_vit_has_timms_shapes_and_names():
    # timm.create_model("vit_base_patch16_224"): 86,567,656 parameters; blocks.11.norm1
    # gives (N, 1 + 14*14, 768) tokens at 224 x 224; the head reads the class token.
    model = vits.vit_base_patch16_224()
    assert sum(p.numel() for p in model.parameters()) == 86_567_656
    modules = dict(model.named_modules())
    for name in ("patch_embed.proj", "blocks.11.attn.qkv", "blocks.11.attn.proj"):
        assert name in modules
    assert {"blocks.11.mlp.fc1", "blocks.11.mlp.act", "blocks.11.mlp.fc2", "norm"} < set(modules)
    assert modules["patch_embed.proj"].stride == (16, 16)
    assert modules["blocks.11.norm1"].eps == 1e-6
    assert tuple(model.cls_token.shape) == (1, 1, 768)
    assert tuple(model.pos_embed.shape) == (1, 197, 768)
    seen = {}
    handle = model.blocks[11].norm1.register_forward_hook(lambda m, i, o: seen.update(t=o.shape))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 224, 224))
    handle.remove()
    assert out.shape == (1, 1000)
    assert seen["t"] == (1, 197, 768)
    assert not model.training


@pytest.mark.slow
def test_vit_computes_what_timm_computes():
    # Where timm is installed (the benchmark environment): its state dict loads into ours
    # unchanged, key for key, and both give the same logits.
    timm = pytest.importorskip("timm")
    theirs = timm.create_model("vit_base_patch16_224", pretrained=False).eval()
    ours = vits.vit_base_patch16_224()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def _run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# The quick runs that take longest, started in the background (tests/_background.py)
QUICK = {
    "bench_new_methods": ["benchmarks/bench_new_methods.py", "--quick"],
    "bench_shapley": ["benchmarks/bench_shapley.py", "--quick"],
    "bench_dataset": ["benchmarks/bench_dataset.py", "--quick", "--no-ray", "--rounds", "1"],
    "bench_shapley_ray": ["benchmarks/bench_shapley_ray.py", "--quick"],
}
for _name, _args in QUICK.items():
    job(_name)(lambda folder, args=_args: Job([sys.executable, *args], cwd=ROOT))


def _quick(background: Scheduler, name: str) -> str:
    result = background.result(name)
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
    # Score-CAM's automatic chunk size gives the maps of a fixed chunk of 64
    assert cells[("scorecam", "xai-fixed")][6].startswith("yes ("), cells[("scorecam", "xai-fixed")]
    assert float(cells[("ablationcam", "xai")][2]) > 0


@pytest.mark.slow
@pytest.mark.background("bench_new_methods")
def test_bench_new_methods_quick_prints_every_row(background):
    out = _quick(background, "bench_new_methods")
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")]
    ours = {r[1].strip(): float(r[3]) for r in rows if r[2].strip() == "xai"}
    expected = {"gradcam-elementwise", "fullgrad", "gradcam aug_smooth", "iscam (4 steps)"}
    assert expected <= set(ours)
    assert all(t > 0 for t in ours.values())


def test_bench_peers_memory_worker_reports_a_peak():
    out = _run("benchmarks/bench_peers.py", "--worker", "gapcnn-b1", "gradcam", "xai")
    peak = json.loads(out.strip().splitlines()[-1])["peak_mb"]
    assert 0 <= peak < 500


@pytest.mark.slow
@pytest.mark.background("bench_shapley")
def test_bench_shapley_quick_agrees_with_shap(background):
    out = _quick(background, "bench_shapley")
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| 1")]
    assert [r[0].strip() for r in rows] == ["10"]
    for row in rows:
        assert float(row[9]) < 1e-10  # max |xai - shap|
        assert abs(float(row[10])) < 1e-10  # efficiency gap


def _tables(out: str) -> dict[str, list[list[str]]]:
    """Each ``### title`` of a report -> the cells of its markdown rows (headers too)."""
    tables: dict[str, list[list[str]]] = {}
    title = ""
    for line in out.splitlines():
        if line.startswith("### "):
            title = line[4:]
            tables[title] = []
        elif line.startswith("| ") and title:
            tables[title].append([c.strip() for c in line.split("|")[1:-1]])
    return tables


@pytest.fixture(scope="module")
def bench_vit_quick() -> str:
    return _run("benchmarks/bench_vit.py", "--quick", "--no-memory")


def test_bench_vit_quick_prints_tables_and_xai_equals_the_reference(bench_vit_quick):
    tables = _tables(bench_vit_quick)
    assert [title.rsplit(", ", 1)[1] for title in tables] == ["batch 1", "batch 8"]
    assert bench_vit_quick.count("(timm's `blocks[-1].norm1` is `blocks.1.norm1`: yes)") == 2
    for rows in tables.values():
        cells = {(r[0], r[1].split(":")[0]): r for r in rows}
        assert float(cells[("plain forward", "`model(x)`, no grad")][2]) > 0
        assert float(cells[("gradcam", "xai")][2]) > 0
        assert float(cells[("gradcam", "xai")][3]) > 0  # × forward
        floor = cells[("gradcam", "hand-written")]
        assert floor[6].startswith("yes (")  # the hand-written floor makes the same maps
        reference = next(r for r in rows if r[0].startswith("xai vs the float64 reference"))
        assert float(reference[1]) < 1e-5  # raw maps, relative to their maximum
        assert float(reference[2]) < 1e-5  # final maps in [0, 1]


def _pytorch_grad_cam_imports() -> bool:
    try:
        import pytorch_grad_cam  # noqa: F401
    except Exception:  # not installed, or torchvision refusing this torch
        return False
    return True


@pytest.mark.skipif(not _pytorch_grad_cam_imports(), reason="pytorch-grad-cam not importable")
def test_bench_vit_quick_pytorch_grad_cam_agrees(bench_vit_quick):
    for rows in _tables(bench_vit_quick).values():
        timed = next(r for r in rows if r[1].startswith("pytorch-grad-cam:"))
        assert timed[6].startswith("yes ("), timed
        compared = next(r for r in rows if r[0] == "pytorch-grad-cam vs xai")
        assert float(compared[1]) < 1e-5  # raw maps: the same arithmetic
        assert float(compared[2]) < 1e-5  # final maps: OpenCV's and torch's bilinear agree


def test_bench_vit_memory_worker_reports_a_peak():
    out = _run("benchmarks/bench_vit.py", "--worker", "tiny-b1", "xai")
    peak = json.loads(out.strip().splitlines()[-1])["peak_mb"]
    assert 0 <= peak < 500


@pytest.mark.slow
@pytest.mark.background("bench_dataset")
def test_bench_dataset_quick_prints_the_throughput_table(background):
    out = _quick(background, "bench_dataset")
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| gradcam")]
    assert len(rows) == 1
    forward, explain, store = (float(c.strip().replace(",", "")) for c in rows[0][2:5])
    assert min(forward, explain, store) > 0
    assert "store on disk" in out


@pytest.mark.slow
@pytest.mark.background("bench_shapley_ray")
def test_bench_shapley_ray_quick_agrees_with_the_local_engine(background):
    out = _quick(background, "bench_shapley_ray")
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| 10 |")]
    assert rows and all(r[-1].strip() == "0.0e+00" for r in rows if len(r) == 10), out
