"""``xai.viz.report`` and ``xai report``: the per-class means equal numpy's means of the
zarr arrays, the confident samples equal a sort of the stored probabilities, the figures
are real pictures, and bad stores are refused in one sentence."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import torch
import zarr
from matplotlib.image import imread

import xai
from tests.conftest import make_gapcnn
from xai.cli import report as cli_report
from xai.core.errors import XAIError, XAIValueError
from xai.viz.report import class_mean_maps, confident_rows, write_report

N, BATCH = 40, 7
METHODS = ["gradcam", "cam"]


def _model() -> xai.models.GAPCNN:
    model = make_gapcnn(4, num_classes=3)
    with torch.no_grad():  # sharper logits: the 40 samples are predicted as all 3 classes
        model.head.weight.mul_(10.0)
    return model


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    x = torch.rand(N, 1, 16, 16, generator=g)
    ramp = torch.linspace(0.0, 1.0, 16)
    x[0::3] *= ramp[None, None, :, None]
    x[1::3] *= ramp[None, None, None, :]
    return x, torch.randint(0, 3, (N,), generator=g)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A complete store with labels (40 samples, chunks of 7: the last one short)."""
    x, y = _inputs()
    path = tmp_path_factory.mktemp("report") / "s.zarr"
    xai.explain_dataset(
        _model(), x, METHODS, labels=y, store=path, batch_size=BATCH, progress=False
    )
    return path, x, y


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    x, _ = _inputs()
    path = tmp_path_factory.mktemp("report") / "u.zarr"
    xai.explain_dataset(_model(), x, "gradcam", store=path, batch_size=BATCH, progress=False)
    return path


def _group_means(path, method: str, by: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    maps = np.asarray(zarr.open_group(str(path), mode="r")[f"{method}/maps"][:], np.float64)
    means = np.stack([maps[by == c].mean(axis=0) for c in range(3)])
    return means, np.bincount(by, minlength=3)


def test_class_means_are_the_numpy_means_by_label(run):
    path, _, y = run
    labels = np.asarray(zarr.open_group(str(path), mode="r")["labels"][:])
    np.testing.assert_array_equal(labels, y.numpy())
    assert (np.bincount(labels, minlength=3) > 0).all()
    for method in METHODS:
        means, counts = class_mean_maps(path, method)
        expected, expected_counts = _group_means(path, method, labels)
        assert means.shape == (3, 16, 16)
        np.testing.assert_array_equal(counts, expected_counts)
        np.testing.assert_allclose(means, expected, rtol=0, atol=1e-12)
        assert not np.allclose(means[0], means[1])  # a real per-class difference


def test_without_labels_the_means_group_by_the_predicted_class(unlabelled):
    group = zarr.open_group(str(unlabelled), mode="r")
    assert "labels" not in group
    predicted = np.asarray(group["top5"][:, 0])
    assert len(set(predicted.tolist())) == 3  # the three classes are all predicted
    means, counts = class_mean_maps(unlabelled)
    expected, expected_counts = _group_means(unlabelled, "gradcam", predicted)
    np.testing.assert_array_equal(counts, expected_counts)
    np.testing.assert_allclose(means, expected, rtol=0, atol=1e-12)


def test_maps_are_read_one_chunk_at_a_time(run):
    """The means stream: no read of the maps spans more than one chunk."""
    store = xai.open_store(run[0])
    reads: list[int] = []

    class Counting:
        def __init__(self, array):
            self.array, self.shape = array, array.shape

        def __getitem__(self, key):
            reads.append(len(range(*key.indices(self.array.shape[0]))))
            return self.array[key]

    original = store.maps
    store.maps = lambda method=None: Counting(original(method))  # type: ignore[method-assign]
    class_mean_maps(store, "cam")
    assert sum(reads) == N and max(reads) <= BATCH and len(reads) == -(-N // BATCH)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_confident_rows_are_a_sort_of_the_probabilities(run, k):
    group = zarr.open_group(str(run[0]), mode="r")
    predicted = np.asarray(group["top5"][:, 0])
    confidence = np.asarray(group["top5_probabilities"][:, 0])
    picks = confident_rows(run[0], k)
    assert len(picks) == 3
    for c, (most, least) in enumerate(picks):
        rows = np.flatnonzero(predicted == c)
        by_confidence = sorted(rows.tolist(), key=lambda r: -confidence[r])
        assert most.tolist() == by_confidence[:k]
        rest = sorted(set(rows.tolist()) - set(most.tolist()), key=lambda r: confidence[r])
        assert least.tolist() == rest[:k]
        assert set(most) | set(least) <= set(rows.tolist()) and not set(most) & set(least)
        if len(least):
            assert confidence[most].min() >= confidence[least].max()


def _picture(path) -> np.ndarray:
    pixels = imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 200
    assert pixels[..., :3].std() > 0.1  # not blank: text, images and colours
    return pixels


def test_write_report_writes_pictures_and_a_true_summary(run, tmp_path):
    path, x, y = run
    out = tmp_path / "new" / "report"
    written = write_report(path, out, per_class=2)
    assert [p.name for p in written] == ["class_means.png", "confident.png", "summary.json"]
    maps_only = _picture(out / "class_means.png")
    _picture(out / "confident.png")
    summary = json.loads((out / "summary.json").read_text())
    store = xai.open_store(path)
    predicted = store.top5[:, 0]
    assert summary["accuracy"] == pytest.approx(float((predicted == y.numpy()).mean()))
    assert [c["count"] for c in summary["classes"]] == np.bincount(y.numpy(), minlength=3).tolist()
    assert [c["predicted"] for c in summary["classes"]] == np.bincount(predicted).tolist()
    assert summary["figures"] == ["class_means.png", "confident.png"]
    assert "images=" in summary["images"]  # a tensor run: the maps alone, and why

    with_images = tmp_path / "with"
    write_report(path, with_images, images=x)
    pixels = _picture(with_images / "class_means.png")
    assert pixels.shape[1] > maps_only.shape[1]  # one more column: the mean image
    summary = json.loads((with_images / "summary.json").read_text())
    assert summary["methods"] == METHODS and summary["images"] == "shown"
    with pytest.raises(XAIValueError, match="images"):
        write_report(path, tmp_path / "bad", images=x[:5])


def test_an_incomplete_store_is_refused_naming_its_chunks(run, tmp_path):
    copy = tmp_path / "copy.zarr"
    shutil.copytree(run[0], copy)
    zarr.open_group(str(copy), mode="r+")["done"][2] = False
    for call in (lambda: write_report(copy, tmp_path / "r"), lambda: class_mean_maps(copy, "cam")):
        with pytest.raises(XAIValueError, match=r"1 of its 6 chunks are missing \(2\).*resume"):
            call()
    assert not (tmp_path / "r").exists()


def _cli(argv):
    parser = argparse.ArgumentParser(prog="xai")
    cli_report.add_parser(parser.add_subparsers(dest="command"))
    return cli_report.run(parser.parse_args(argv))


def test_cli_writes_the_report_and_says_so(run, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        _cli(["report", str(run[0]), "--out", str(out), "--per-class", "2", "--method", "cam"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    names = ("class_means.png", "confident.png", "summary.json", "index.html")
    assert lines[:4] == [f"wrote {out / name}" for name in names]
    assert len(lines) == 5 and lines[4].startswith(f"report: {N} samples, 3 classes, accuracy")
    assert lines[4].endswith(f"methods cam -> {out}")
    assert json.loads((out / "summary.json").read_text())["methods"] == ["cam"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--per-class", "0"], "--per-class must be a whole number"),
        (["--method", "scorecam"], "not 'scorecam'"),
    ],
)
def test_cli_refuses_bad_options_in_one_sentence(run, tmp_path, argv, words):
    with pytest.raises(XAIError, match=words):
        _cli(["report", str(run[0]), "--out", str(tmp_path / "o"), *argv])


def test_cli_refuses_a_folder_that_is_no_store(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(XAIValueError, match="not an xai explanation store"):
        _cli(["report", str(bad), "--out", str(tmp_path / "o")])


def test_cli_refuses_a_file_as_the_output_folder(run, tmp_path):
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(XAIError, match=r"--out: .*notes\.txt is a file, not a folder"):
        _cli(["report", str(run[0]), "--out", str(tmp_path / "notes.txt")])


def test_main_refuses_a_folder_that_is_no_store_in_one_line(tmp_path, capsys):
    import xai.cli

    bad = tmp_path / "bad"
    bad.mkdir()
    out = tmp_path / "out"
    assert xai.cli.main(["report", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("xai: error: ")
    assert "is not an xai explanation store" in err[0]
    assert not out.exists()
    assert xai.cli.main(["report", str(tmp_path / "nowhere.zarr"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("xai: error: ")
