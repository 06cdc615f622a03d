"""Cross-validation: folds partition the data, stratification keeps class shares, leave-one-
out, seeded runs repeat exactly, and a tiny model on separable data scores as expected."""

from __future__ import annotations

import numpy as np
import pytest

import xai
from xai.core.errors import XAIError
from xai.data import Dataset
from xai.training import cross_validate, fold_indices


def separable(per_class: int = 20, seed: int = 0, classes: int = 3) -> Dataset:
    """8 x 8 noise with a bright pair of columns at a place that is the class."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    images = rng.integers(0, 30, (len(labels), 8, 8)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, :, 2 * c : 2 * c + 2] = 220
    order = rng.permutation(len(labels))
    names = tuple("abcdefgh"[:classes])
    return Dataset("separable", "train", images[order], labels[order], names)


def mlp():
    return xai.models.MLP(in_features=64, num_classes=3, hidden=(16,))


TRAINING = {"epochs": 2, "lr": 1e-2, "batch_size": 16}


def assert_partition(folds, n):
    joined = np.concatenate(folds)
    assert len(joined) == n  # no index twice
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))  # every index once


@pytest.mark.parametrize("stratified", [True, False])
@pytest.mark.parametrize(("n", "k"), [(60, 5), (23, 4), (10, 3), (7, 7)])
def test_folds_partition_the_indices(n, k, stratified):
    labels = np.random.default_rng(n).integers(0, 3, n)
    folds = fold_indices(labels, k, stratified=stratified, seed=1)
    assert len(folds) == k
    assert_partition(folds, n)
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("k", [2, 3, 5, 7])
def test_stratified_folds_keep_class_proportions_within_one_sample(k):
    labels = np.r_[np.zeros(31), np.ones(12), np.full(7, 2)].astype(int)
    np.random.default_rng(0).shuffle(labels)
    folds = fold_indices(labels, k, stratified=True, seed=3)
    for c in range(3):
        counts = [int((labels[f] == c).sum()) for f in folds]
        assert max(counts) - min(counts) <= 1, (c, counts)
        assert sum(counts) == int((labels == c).sum())
        assert min(counts) == int((labels == c).sum()) // k


def test_plain_folds_are_seeded_and_differ_from_stratified():
    labels = np.repeat(np.arange(3), 10)
    a = fold_indices(labels, 5, stratified=False, seed=0)
    b = fold_indices(labels, 5, stratified=False, seed=0)
    c = fold_indices(labels, 5, stratified=False, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_leave_one_out_gives_n_folds_of_one():
    labels = np.arange(9) % 3
    for folds in ("loo", 9):
        parts = fold_indices(labels, folds)
        assert [p.tolist() for p in parts] == [[i] for i in range(9)]


def test_cross_validation_on_separable_data_is_exact_and_seeded():
    data = separable()
    first = cross_validate(mlp, data, folds=5, seed=0, **TRAINING)
    again = cross_validate(mlp, data, folds=5, seed=0, **TRAINING)
    assert_partition(first.test_indices, 60)
    assert [f.test for f in first.folds] == [12] * 5
    assert all(f.train + f.val + f.test == 60 for f in first.folds)
    assert all(f.val == 6 for f in first.folds)  # a tenth of the 54 training samples
    # The classes are a bright column pair: a small MLP gets (nearly) all of them.
    assert first.mean("accuracy") >= 0.95
    assert first.pooled.macro_roc_auc >= 0.99
    # Pooled accuracy is the fold accuracies weighted by their sizes.
    weighted = sum(f.accuracy * f.test for f in first.folds) / 60
    assert first.pooled.accuracy == pytest.approx(weighted)
    assert first.mean("accuracy") == pytest.approx(np.mean([f.accuracy for f in first.folds]))
    assert first.std("accuracy") == pytest.approx(np.std([f.accuracy for f in first.folds]))
    # Seeded: the same folds and the same out-of-fold probabilities, bit for bit.
    np.testing.assert_array_equal(first.pooled.probabilities, again.pooled.probabilities)
    assert [f.accuracy for f in first.folds] == [f.accuracy for f in again.folds]
    table = first.table()
    assert table.count("\n| ") == 6  # five folds and the mean
    assert f"| {first.mean('accuracy'):.4f} ± {first.std('accuracy'):.4f} |" in table
    record = first.to_dict()
    assert record["mean"]["accuracy"] == first.mean("accuracy")
    assert sorted(i for fold in record["test_indices"] for i in fold) == list(range(60))


def test_cross_validation_with_chance_labels_is_near_chance():
    """The same pipeline on labels unrelated to the images stays near 1/3: the scores are
    held-out, never the training data's."""
    data = separable()
    rng = np.random.default_rng(5)
    noise = Dataset("noise", "train", data.images, rng.permutation(data.labels), data.class_names)
    result = cross_validate(mlp, noise, folds=3, seed=0, **TRAINING)
    assert result.pooled.accuracy < 0.6


def test_leave_one_out_cross_validation():
    data = separable(per_class=4)
    result = cross_validate(mlp, data, folds="loo", seed=0, epochs=1, lr=1e-2)
    assert len(result.folds) == 12
    assert all(f.test == 1 for f in result.folds)
    assert all(np.isnan(f.macro_auc) for f in result.folds)  # one sample: undefined
    assert not np.isnan(result.pooled.macro_roc_auc)
    assert "12 folds (leave-one-out" in result.table()


@pytest.mark.parametrize(
    ("folds", "message"),
    [(1, "between 2 and the number of samples"), (61, "between 2"), ("three", "or 'loo'")],
)
def test_bad_folds_are_refused(folds, message):
    with pytest.raises(XAIError, match=message):
        cross_validate(mlp, separable(), folds=folds, **TRAINING)
