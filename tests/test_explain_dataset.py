"""``xai.explain_dataset`` and its zarr store: every value equals ``xai.explain`` on the
same batch, every data kind, resume after SIGKILL, torn chunks, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader, Dataset

import xai
import xai.runner
from tests._synthetic import write_idx_dataset
from tests.conftest import fashion_mnist_installed, make_gapcnn
from xai.core.errors import XAIValueError

ROOT = Path(__file__).resolve().parents[1]


def _data(n: int = 23, seed: int = 0, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g), torch.randint(0, 5, (n,), generator=g)


def _model() -> torch.nn.Module:
    return make_gapcnn(seed=2)


def _reference(model, x, method, b, **kwargs):
    """``xai.explain`` batch by batch, the top-5 from the model's own softmax."""
    parts = [xai.explain(model, x[i : i + b], method=method, **kwargs) for i in range(0, len(x), b)]
    with torch.no_grad():
        p = torch.softmax(model(x).double(), dim=1)
    top = p.topk(min(5, p.shape[1]), dim=1)
    return parts, top


def _arrays(path: Path) -> dict[str, np.ndarray]:
    g = zarr.open_group(str(path), mode="r")
    out = {}
    for name, array in g.arrays():
        out[name] = np.asarray(array[:])
    for name, sub in g.groups():
        for kind, array in sub.arrays():
            out[f"{name}/{kind}"] = np.asarray(array[:])
    return out


def test_the_store_holds_what_explain_gives_batch_by_batch(tmp_path):
    model, (x, y) = _model(), _data()
    store = xai.explain_dataset(
        model,
        x,
        ["gradcam", "scorecam"],
        labels=y,
        store=tmp_path / "s.zarr",
        batch_size=7,
        progress=False,
    )
    assert store.complete and store.methods == ("gradcam", "scorecam") and len(store) == 23
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")  # plain zarr reads it
    assert g["gradcam/maps"].chunks == (7, 16, 16) and g["done"].shape == (4,)
    for method in ("gradcam", "scorecam"):
        parts, top = _reference(model, x, method, 7)
        maps = torch.cat([e.maps for e in parts])
        raw = torch.cat([e.raw for e in parts])
        np.testing.assert_array_equal(g[f"{method}/maps"][:], maps.numpy())
        np.testing.assert_array_equal(g[f"{method}/raw"][:], raw.numpy())
        np.testing.assert_array_equal(g["targets"][:], torch.cat([e.targets for e in parts]))
        np.testing.assert_array_equal(g["scores"][:], torch.cat([e.scores for e in parts]))
    np.testing.assert_array_equal(g["top5"][:], top.indices.numpy())
    np.testing.assert_allclose(g["top5_probabilities"][:], top.values.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(g["labels"][:], y.numpy())
    np.testing.assert_array_equal(g["ids"][:], np.arange(23))
    assert (g["gradcam/raw"][:].reshape(23, -1).max(1) > 0).all()  # no empty map to compare
    with torch.no_grad():  # the targets are the top-1 classes, the scores their logits
        logits = model(x)
    np.testing.assert_array_equal(g["targets"][:], logits.argmax(1).numpy())
    np.testing.assert_allclose(g["scores"][:], logits.max(1).values.numpy(), rtol=1e-5)
    attrs = g.attrs["xai"]
    assert attrs["layers"] == {"gradcam": "features.10", "scorecam": "features.10"}
    assert attrs["model"]["sha256"] == xai.runner.model_sha256(model)
    assert attrs["input_shape"] == [1, 16, 16] and attrs["n"] == 23 and attrs["complete"]
    assert set(attrs["versions"]) >= {"xai", "torch", "zarr", "numpy"}
    e = store.explanation(slice(7, 14), "gradcam")  # the typed view
    np.testing.assert_array_equal(e.maps.numpy(), parts_maps(model, x[7:14]))


def parts_maps(model, x):
    return xai.explain(model, x, method="gradcam").maps.numpy()


def test_targets_label_an_int_and_one_per_sample(tmp_path):
    model, (x, y) = _model(), _data(12)
    for target, expected in (("label", y), (2, torch.full((12,), 2)), (y.flip(0), y.flip(0))):
        path = tmp_path / f"t{len(list(tmp_path.iterdir()))}.zarr"
        s = xai.explain_dataset(
            model, x, labels=y, target=target, store=path, batch_size=5, progress=False
        )
        np.testing.assert_array_equal(s.targets, expected.numpy())
        parts = [
            xai.explain(model, x[i : i + 5], target=expected[i : i + 5].tolist())
            for i in range(0, 12, 5)
        ]
        np.testing.assert_array_equal(s.maps()[:], torch.cat([e.maps for e in parts]).numpy())
    with pytest.raises(XAIValueError, match="no labels"):
        xai.explain_dataset(model, x, target="label", store=tmp_path / "n.zarr", progress=False)


def test_float16_maps_and_the_store_refuses_what_it_is_not(tmp_path):
    model, (x, _) = _model(), _data(9)
    s = xai.explain_dataset(
        model, x, store=tmp_path / "h.zarr", map_dtype="float16", batch_size=4, progress=False
    )
    assert s.maps().dtype == np.float16
    parts = [xai.explain(model, x[i : i + 4]).maps for i in range(0, 9, 4)]
    np.testing.assert_array_equal(s.maps()[:], torch.cat(parts).numpy().astype(np.float16))
    (tmp_path / "file.zarr").write_text("not a store")
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    for path, words in ((tmp_path / "file.zarr", "is a file"), (other, "holds something else")):
        with pytest.raises(XAIValueError, match=words):
            xai.explain_dataset(model, x, store=path, progress=False)
    assert (other / "keep.txt").read_text() == "mine"  # left as it was
    with pytest.raises(XAIValueError, match="already holds a complete"):
        xai.explain_dataset(model, x, store=tmp_path / "h.zarr", progress=False)
    with pytest.raises(XAIValueError, match="not an xai explanation store"):
        xai.open_store(other)


def test_overwrite_starts_again(tmp_path):
    model, (x, _) = _model(), _data(6)
    xai.explain_dataset(model, x, store=tmp_path / "o.zarr", method="cam", progress=False)
    s = xai.explain_dataset(model, x, store=tmp_path / "o.zarr", overwrite=True, progress=False)
    assert s.methods == ("gradcam",) and not (tmp_path / "o.zarr" / "cam").exists()


class Items(Dataset):
    """Items ``(x, label)``; item ``bad`` (if any) has the wrong shape."""

    def __init__(self, x, y, bad=None):
        self.x, self.y, self.bad = x, y, bad

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if i == self.bad:
            return self.x[i][:, :8], int(self.y[i])
        return self.x[i], int(self.y[i])


def test_datasets_and_loaders_equal_the_tensor(tmp_path):
    model, (x, y) = _model(), _data(17)
    ref = xai.explain_dataset(
        model, x, labels=y, store=tmp_path / "r.zarr", batch_size=6, progress=False
    )
    for i, data in enumerate((Items(x, y), DataLoader(Items(x, y), batch_size=3))):
        s = xai.explain_dataset(
            model, data, store=tmp_path / f"d{i}.zarr", batch_size=6, progress=False
        )
        np.testing.assert_array_equal(s.maps()[:], ref.maps()[:])
        np.testing.assert_array_equal(s.labels, y.numpy())
    with pytest.raises(XAIValueError, match="shuffle=False"):
        xai.explain_dataset(
            model, DataLoader(Items(x, y), shuffle=True), store=tmp_path / "sh.zarr", progress=False
        )


def test_a_bad_item_is_named_and_the_chunks_before_it_are_kept(tmp_path):
    model, (x, y) = _model(), _data(20)
    path = tmp_path / "bad.zarr"
    with pytest.raises(XAIValueError, match=r"item 13 .*shape \(1, 8, 16\)"):
        xai.explain_dataset(model, Items(x, y, bad=13), store=path, batch_size=4, progress=False)
    g = zarr.open_group(str(path), mode="r")
    np.testing.assert_array_equal(g["done"][:], [True, True, True, False, False])
    assert not g.attrs["xai"]["complete"]
    s = xai.explain_dataset(
        model, Items(x, y), store=path, batch_size=4, resume=True, progress=False
    )  # the fixed dataset: resumed, complete
    ref = xai.explain_dataset(model, x, store=tmp_path / "ref.zarr", batch_size=4, progress=False)
    np.testing.assert_array_equal(s.maps()[:], ref.maps()[:])


def test_a_nan_pixel_is_refused_naming_its_samples_and_the_chunks_before_it_are_kept(tmp_path):
    model, (x, _) = _model(), _data(20)
    x[13, 0, 3, 3] = float("nan")
    path = tmp_path / "nan.zarr"
    with pytest.raises(XAIValueError, match=r"samples 12\.\.15 .*sample 1 holds nan"):
        xai.explain_dataset(model, x, store=path, batch_size=4, progress=False)
    assert xai.open_store(path).missing_chunks() == [3, 4]


def test_resume_refuses_another_run_naming_the_difference(tmp_path):
    model, (x, _) = _model(), _data(8)
    path = tmp_path / "r.zarr"
    xai.explain_dataset(model, x, store=path, batch_size=4, progress=False)
    other = make_gapcnn(seed=5)
    cases = [
        ({"model": other}, "model \\(SHA-256 of its weights\\)"),
        ({"batch_size": 3}, "batch size"),
        ({"method": "cam"}, "methods"),
        ({"target": 1}, "target"),
        ({"x": x[:7]}, "number of samples"),
        ({"x": torch.rand(8, 1, 20, 20)}, "input shape"),
    ]
    for change, words in cases:
        kwargs = {"model": model, "x": x, "batch_size": 4, **change}
        with pytest.raises(XAIValueError, match=f"another run.*{words}"):
            xai.explain_dataset(
                kwargs.pop("model"),
                kwargs.pop("x"),
                store=path,
                resume=True,
                progress=False,
                **kwargs,
            )


def test_a_torn_chunk_is_computed_again_and_a_done_one_is_not(tmp_path, monkeypatch):
    model, (x, _) = _model(), _data(16)
    ref = xai.explain_dataset(model, x, store=tmp_path / "ref.zarr", batch_size=4, progress=False)
    path = tmp_path / "torn.zarr"
    xai.explain_dataset(model, x, store=path, batch_size=4, progress=False)
    # Chunk 2 as a run killed while writing it leaves it: not done, its maps file torn.
    done_file = path / "done" / "c" / "2"
    done_file.unlink()
    maps_file = path / "gradcam" / "maps" / "c" / "2" / "0" / "0"
    maps_file.write_bytes(maps_file.read_bytes()[:100])
    computed = []
    original = xai.runner.explain_chunk

    def spy(explainers, plan, index):
        computed.append(index)
        return original(explainers, plan, index)

    monkeypatch.setattr(xai.runner, "explain_chunk", spy)
    s = xai.explain_dataset(model, x, store=path, batch_size=4, resume=True, progress=False)
    assert computed == [2]
    a, b = _arrays(path), _arrays(tmp_path / "ref.zarr")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert s.complete and ref.complete


KILLED_RUN = """
import sys, time, torch, xai, xai.runner
sys.path.insert(0, {root!r})
from tests.conftest import make_gapcnn

class Slow(torch.utils.data.Dataset):
    def __init__(self, x): self.x = x
    def __len__(self): return len(self.x)
    def __getitem__(self, i):
        time.sleep(0.004)
        return self.x[i]

computed = []
explain_chunk = xai.runner.explain_chunk
xai.runner.explain_chunk = lambda e, plan, i: computed.append(i) or explain_chunk(e, plan, i)
g = torch.Generator().manual_seed(0)
x = torch.rand(400, 1, 16, 16, generator=g)
xai.explain_dataset(make_gapcnn(seed=2), Slow(x) if sys.argv[1] == "slow" else x,
                    store=sys.argv[2], batch_size=10, progress=False,
                    resume=sys.argv[3] == "resume")
print(*computed)
"""


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN.format(root=str(ROOT)))
    path = tmp_path / "killed.zarr"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), "slow", str(path), "new"], env=env)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:  # kill it mid-run
            done = path / "done" / "c"
            if done.is_dir() and len(list(done.iterdir())) >= 5:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = np.asarray(zarr.open_group(str(path), mode="r")["done"][:])
    assert 5 <= before.sum() < 40, before.sum()
    again = subprocess.run(
        [sys.executable, str(script), "slow", str(path), "resume"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    computed = [int(i) for i in again.stdout.split()]
    assert computed == np.flatnonzero(~before).tolist()  # only the missing chunks
    x = torch.rand(400, 1, 16, 16, generator=torch.Generator().manual_seed(0))  # the same
    whole = tmp_path / "whole.zarr"
    xai.explain_dataset(make_gapcnn(seed=2), x, store=whole, batch_size=10, progress=False)
    a, b = _arrays(path), _arrays(whole)
    for key in b:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert xai.open_store(path).complete


def test_folders_and_idx_files(tmp_path):
    import cv2

    model = xai.models.pretrained()
    folder = write_idx_dataset(tmp_path / "idx", per_class=2, gz=False)
    images = folder / "t10k-images-idx3-ubyte"
    s = xai.explain_dataset(model, images, store=tmp_path / "i.zarr", progress=False)
    raw = xai.data.read_idx(images)
    x = torch.from_numpy(raw.astype(np.float32) / 255)[:, None]
    np.testing.assert_array_equal(s.maps()[:], xai.explain(model, x).maps.numpy())
    np.testing.assert_array_equal(s.labels, xai.data.read_idx(folder / "t10k-labels-idx1-ubyte"))
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i in (2, 0, 1):
        cv2.imwrite(str(pictures / f"p{i}.png"), raw[i])
    f = xai.explain_dataset(model, pictures, store=tmp_path / "f.zarr", progress=False)
    assert f.ids.tolist() == ["p0.png", "p1.png", "p2.png"] and f.labels is None
    np.testing.assert_array_equal(f.maps()[:], xai.explain(model, x[:3]).maps.numpy())
    assert f.attrs["data"]["kind"] == "folder"


def test_plain_zarr_reads_the_store_without_xai(tmp_path):
    model, (x, y) = _model(), _data(5)
    xai.explain_dataset(model, x, labels=y, store=tmp_path / "z.zarr", progress=False)
    code = textwrap.dedent(f"""
        import sys, zarr
        g = zarr.open_group({str(tmp_path / "z.zarr")!r}, mode="r")
        print(g["gradcam/maps"].shape, g["labels"][:].tolist(), g.attrs["xai"]["methods"])
        assert "xai" not in sys.modules and "torch" not in sys.modules
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.split("\n")[0] == f"(5, 16, 16) {y.tolist()} ['gradcam']"


def test_xarray_and_dask_read_the_store(tmp_path):
    xarray = pytest.importorskip("xarray")
    dask_array = pytest.importorskip("dask.array")
    model, (x, y) = _model(), _data(10)
    s = xai.explain_dataset(
        model, x, labels=y, store=tmp_path / "x.zarr", batch_size=4, progress=False
    )
    maps = xarray.open_zarr(tmp_path / "x.zarr", group="gradcam", consolidated=False)["maps"]
    assert maps.dims == ("sample", "y", "x") and maps.shape == (10, 16, 16)
    np.testing.assert_array_equal(maps.values, s.maps()[:])
    root = xarray.open_zarr(tmp_path / "x.zarr", consolidated=False)
    np.testing.assert_array_equal(root["labels"].values, y.numpy())
    lazy = dask_array.from_zarr(str(tmp_path / "x.zarr"), component="gradcam/raw")
    assert lazy.chunks[0] == (4, 4, 2)
    np.testing.assert_array_equal(lazy.compute(), s.raw()[:])
    np.testing.assert_allclose(lazy.mean(axis=0).compute(), s.raw()[:].mean(axis=0), rtol=1e-6)


def test_the_progress_bar_shows_images_per_second(tmp_path, capsys):
    model, (x, _) = _model(), _data(9)
    xai.explain_dataset(model, x, store=tmp_path / "p.zarr", batch_size=4)
    err = capsys.readouterr().err
    assert "9/9" in err and "img/s" in err


def test_explanations_carry_the_models_logits():
    model, (x, _) = _model(), _data(4)
    with torch.no_grad():
        logits = model(x)
    for method in ("gradcam", "scorecam", "cam", "guided-backprop", "eigencam"):
        e = xai.explain(model, x, method=method)
        torch.testing.assert_close(e.logits, logits, rtol=1e-5, atol=1e-6)
        assert e[1:3].logits.shape == (2, 5)


@pytest.mark.slow
def test_bounded_memory_on_a_70000_image_run(tmp_path):
    """70,000 generated images: the run's peak resident memory grows by far less than the
    inputs (220 MB) or the maps (220 MB) of the whole run would take."""
    code = textwrap.dedent(f"""
        import resource, sys, torch, xai
        sys.path.insert(0, {str(ROOT)!r})
        from tests.conftest import make_gapcnn

        class Generated(torch.utils.data.Dataset):
            def __init__(self, n): self.n = n
            def __len__(self): return self.n
            def __getitem__(self, i):
                return torch.full((1, 28, 28), (i % 251) / 251.0) + torch.linspace(0, 0.1, 28)

        model = make_gapcnn(seed=1, channels=(2, 2, 2))
        xai.explain_dataset(model, Generated(6000), store={str(tmp_path / "warm.zarr")!r},
                            batch_size=1000, progress=False)  # 6 batches: the steady state
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        s = xai.explain_dataset(model, Generated(70_000),
                                store={str(tmp_path / "big.zarr")!r}, batch_size=1000,
                                progress=False)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(len(s), s.complete, (after - before) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n, complete, grew_mb = out.stdout.split()
    assert n == "70000" and complete == "True"
    assert float(grew_mb) < 60, out.stdout


@pytest.mark.slow
@pytest.mark.skipif(not fashion_mnist_installed(), reason="needs dataset-fashion-mnist")
def test_a_newcomer_explains_the_fashion_mnist_test_set_with_one_command(tmp_path):
    from xai.cli import main

    store = tmp_path / "test.zarr"
    assert main(["explain-dataset", "fashion-mnist:test", "--store", str(store), "-q"]) == 0
    s = xai.open_store(store)
    assert len(s) == 10_000 and s.complete and s.class_names[0] == "T-shirt/top"
    accuracy = float((s.top5[:, 0] == s.labels).mean())
    card = xai.models.model_card()
    assert abs(accuracy - card["test_accuracy"]) < 1e-3, (accuracy, card["test_accuracy"])
    first = xai.data.load("fashion-mnist", split="test").tensors()[0][:256]
    e = xai.explain(xai.models.pretrained(), first)
    np.testing.assert_array_equal(s.maps()[:256], e.maps.numpy())
    assert json.dumps(s.attrs["data"]) == json.dumps(
        {
            "kind": "named",
            "name": "fashion-mnist:test",
            "preprocessing": "uint8 pixels / 255 -> float32 in [0, 1], shape (N, 1, H, W)",
        }
    )
