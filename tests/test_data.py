"""Readers, data sets, subsampling and splits, on small generated files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

import xai.data as data
from tests._synthetic import idx_bytes, patterns, write_idx_dataset


def test_idx_round_trip_raw_and_gzipped(tmp_path):
    images, labels = patterns(3)
    for name, payload in (("a", idx_bytes(images)), ("b.gz", gzip.compress(idx_bytes(images)))):
        (tmp_path / name).write_bytes(payload)
        np.testing.assert_array_equal(data.read_idx(tmp_path / name), images)
    (tmp_path / "l").write_bytes(idx_bytes(labels))
    read = data.read_idx(tmp_path / "l")
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, labels)


def test_idx_other_types(tmp_path):
    values = np.arange(6, dtype=">i4").reshape(2, 3)
    header = bytes([0, 0, 0x0C, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    (tmp_path / "ints").write_bytes(header + values.tobytes())
    np.testing.assert_array_equal(data.read_idx(tmp_path / "ints"), np.arange(6).reshape(2, 3))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"\x08\x03" + b[2:], r"not an IDX file: magic number 08 03"),
        (lambda b: b[:2] + b"\x07" + b[3:], r"not an IDX file"),
        (lambda b: b[:-10], r"truncated IDX file: its header says \(30, 28, 28\)"),
        (lambda b: b + b"\x00" * 5, r"size mismatch: its header says \(30, 28, 28\)"),
        (lambda b: b[:6], r"truncated IDX header"),
        (lambda b: b[:3], r"truncated IDX file \(3 bytes, no header\)"),
    ],
)
def test_corrupt_idx_files_are_refused(tmp_path, mutate, message):
    images, _ = patterns(3)
    path = tmp_path / "bad"
    path.write_bytes(mutate(idx_bytes(images)))
    with pytest.raises(ValueError, match=message):
        data.read_idx(path)


def test_a_truncated_gzip_is_refused(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(idx_bytes(patterns(3)[0]))[:-20])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        data.read_idx(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        data.read_idx(tmp_path / "missing")


def test_kmnist_npz(tmp_path):
    images, labels = patterns(2)
    np.savez(tmp_path / "kmnist-train-imgs.npz", images)
    np.savez(tmp_path / "kmnist-train-labels.npz", labels)
    ds = data.load("kmnist", tmp_path, "train")
    np.testing.assert_array_equal(ds.images, images)
    assert ds.class_names[:4] == ("o", "ki", "su", "tsu")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"not a readable \.npz file"):
        data.read_npz(tmp_path / "broken.npz")


def test_load_a_folder_of_idx_files(tmp_path):
    for gz in (True, False):
        folder = write_idx_dataset(tmp_path / str(gz), per_class=6, gz=gz)
        train = data.load("fashion-mnist", folder, "train")
        test = data.load("fashion-mnist", folder, "test")
        assert len(train) == 60
        assert len(test) == 50
        assert train.images.shape == (60, 28, 28)
        assert train.class_names[0] == "T-shirt/top"
        assert train.class_names[-1] == "Ankle boot"
        x, y = train.tensors()
        assert x.shape == (60, 1, 28, 28)
        assert float(x.max()) <= 1.0
        assert y.dtype.is_floating_point is False
    assert data.load("mnist", folder).class_names == tuple("0123456789")


def test_images_and_labels_of_different_sizes(tmp_path):
    folder = write_idx_dataset(tmp_path, per_class=3, gz=False)
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(ValueError, match="size mismatch: train-images-idx3-ubyte holds 30 images"):
        data.load("fashion-mnist", folder)


def test_labels_out_of_range(tmp_path):
    folder = write_idx_dataset(tmp_path, per_class=3, gz=False)
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(30, 12, np.uint8)))
    with pytest.raises(ValueError, match=r"labels outside 0\.\.9"):
        data.load("fashion-mnist", folder)


def test_finding_the_data(tmp_path, monkeypatch):
    write_idx_dataset(tmp_path / "fashion-mnist", per_class=2)
    monkeypatch.setenv("XAI_DATA", str(tmp_path))
    assert data.find_root("Fashion_MNIST") == tmp_path / "fashion-mnist"
    monkeypatch.setenv("XAI_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(
        data.datasets, "DEFAULT_ROOTS", {**data.DEFAULT_ROOTS, "kmnist": (str(tmp_path / "no"),)}
    )
    with pytest.raises(FileNotFoundError, match=r"kmnist not found in .*pass the folder"):
        data.find_root("kmnist")
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        data.load("cifar")
    with pytest.raises(FileNotFoundError, match="no fashion-mnist test files"):
        data.load("fashion-mnist", tmp_path / "empty-folder", "test")


def test_stratified_subsample_keeps_the_class_balance():
    labels = np.repeat(np.arange(5), [100, 200, 50, 10, 40])
    picked = data.stratified_subsample(labels, 0.1, seed=3)
    assert np.bincount(labels[picked]).tolist() == [10, 20, 5, 1, 4]
    assert len(set(picked.tolist())) == len(picked)
    np.testing.assert_array_equal(picked, data.stratified_subsample(labels, 0.1, seed=3))
    assert not np.array_equal(picked, data.stratified_subsample(labels, 0.1, seed=4))
    assert len(data.stratified_subsample(labels, 1.0)) == len(labels)
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
            data.stratified_subsample(labels, bad)


def test_train_val_split_is_disjoint_stratified_and_seeded():
    labels = np.repeat(np.arange(4), 50)
    train, val = data.train_val_split(labels, 0.2, seed=1)
    assert not set(train) & set(val)
    assert len(train) + len(val) == 200
    assert np.bincount(labels[val]).tolist() == [10, 10, 10, 10]
    again = data.train_val_split(labels, 0.2, seed=1)
    np.testing.assert_array_equal(val, again[1])
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        data.train_val_split(labels, 1.0)


def test_splits(tmp_path):
    folder = write_idx_dataset(tmp_path, per_class=40)
    s = data.splits("fashion-mnist", folder, fraction=0.5, val_fraction=0.25, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (150, 50, 60)  # 13 per class -> 6
    assert s.val.split == "val"
    assert np.bincount(s.val.labels).tolist() == [5] * 10
