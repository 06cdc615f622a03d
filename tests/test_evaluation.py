"""ROC AUC, ROC and precision-recall curves of ``Evaluation``: against a pairwise
rank-statistic reference written here, hand-computed cases and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xai.core.errors import XAIValueError
from xai.training import Evaluation, evaluate, rank_auc


def pairwise_auc(scores, positive) -> float:
    """The Mann-Whitney statistic by its definition: over every (positive, negative)
    pair, 1 if the positive scores higher, 1/2 if tied, 0 otherwise; O(n+ n-)."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    total = 0.0
    for a in pos:
        for b in neg:
            total += 1.0 if a > b else 0.5 if a == b else 0.0
    return total / (len(pos) * len(neg))


def tied_probabilities(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities rounded to one decimal (many ties), labels every class present."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.arange(k), rng.integers(0, k, n - k)]
    probabilities = rng.dirichlet(np.ones(k), n).round(1)
    return probabilities, labels


@pytest.mark.parametrize(
    ("scores", "positive", "expected"),
    [
        ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),  # perfect ranking
        ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0),  # reversed
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),  # all tied
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),  # 3 of 4 pairs in order
        ([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1], 0.875),  # one pair tied: (3 + 1/2) / 4
        ([0.3, 0.3, 0.3, 0.7, 0.3], [1, 0, 0, 1, 0], 0.75),  # (3 * 1/2 + 3) / 6
    ],
)
def test_rank_auc_hand_computed(scores, positive, expected):
    assert rank_auc(np.array(scores), np.array(positive, bool)) == pytest.approx(expected)
    assert pairwise_auc(scores, positive) == pytest.approx(expected)


def test_rank_auc_is_undefined_without_both_classes():
    assert np.isnan(rank_auc(np.array([0.1, 0.2]), np.array([True, True])))
    assert np.isnan(rank_auc(np.array([0.1, 0.2]), np.array([False, False])))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_per_class_equals_the_pairwise_reference(seed):
    probabilities, labels = tied_probabilities(30, 4, seed)
    e = Evaluation.from_probabilities(probabilities, labels, ["a", "b", "c", "d"])
    expected = [pairwise_auc(probabilities[:, c], labels == c) for c in range(4)]
    np.testing.assert_allclose(e.roc_auc, expected, rtol=0, atol=1e-12)
    assert e.macro_roc_auc == pytest.approx(np.mean(expected))
    for c in range(4):  # the trapezoidal area under the ROC points is the AUC, ties included
        fpr, tpr, _ = e.roc_curve(c)
        area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
        assert area == pytest.approx(expected[c], abs=1e-12)


def test_roc_and_pr_curves_by_hand():
    # class 1 scores: 0.9 (pos), 0.8 (neg), 0.8 (pos), 0.3 (neg)
    probabilities = np.array([[0.1, 0.9], [0.2, 0.8], [0.2, 0.8], [0.7, 0.3]])
    labels = np.array([1, 0, 1, 0])
    e = Evaluation.from_probabilities(probabilities, labels, ["no", "yes"])
    fpr, tpr, thresholds = e.roc_curve(1)
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.8, 0.3])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    assert e.roc_auc[1] == pytest.approx(0.875)  # pairs: (0.9>0.8) (0.9>0.3) tie (0.8>0.3)
    precision, recall, thresholds = e.pr_curve(1)
    np.testing.assert_allclose(thresholds, [0.3, 0.8, 0.9])
    np.testing.assert_allclose(precision, [2 / 4, 2 / 3, 1, 1])
    np.testing.assert_allclose(recall, [1, 1, 0.5, 0])
    # AP = sum (R_n - R_{n-1}) P_n, from recall 0: 0.5 * 1 + 0.5 * 2/3
    assert e.average_precision[1] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert e.confusion.tolist() == [[1, 1], [0, 2]]  # argmax: 0.8 > 0.2 -> class 1


@pytest.mark.parametrize("seed", [0, 3])
def test_curves_and_aucs_match_scikit_learn(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    probabilities, labels = tied_probabilities(40, 3, seed)
    probabilities = probabilities + 1e-3  # no zero rows
    probabilities /= probabilities.sum(1, keepdims=True)
    e = Evaluation.from_probabilities(probabilities, labels, ["a", "b", "c"])
    for c in range(3):
        positive, scores = labels == c, probabilities[:, c]
        assert e.roc_auc[c] == pytest.approx(metrics.roc_auc_score(positive, scores), abs=1e-12)
        fpr, tpr, thresholds = metrics.roc_curve(positive, scores, drop_intermediate=False)
        ours = e.roc_curve(c)
        np.testing.assert_allclose(ours[0], fpr)
        np.testing.assert_allclose(ours[1], tpr)
        np.testing.assert_array_equal(ours[2], thresholds)
        precision, recall, cut = metrics.precision_recall_curve(positive, scores)
        ours = e.pr_curve(c)
        np.testing.assert_allclose(ours[0], precision)
        np.testing.assert_allclose(ours[1], recall)
        np.testing.assert_array_equal(ours[2], cut)
        assert e.average_precision[c] == pytest.approx(
            metrics.average_precision_score(positive, scores), abs=1e-12
        )
    assert e.macro_roc_auc == pytest.approx(
        metrics.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"),
        abs=1e-12,
    )


def test_evaluate_keeps_the_softmax_of_the_model_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.rand(25, 1, 4, 4)
    y = torch.arange(25) % 3
    e = evaluate(model, (x, y), class_names=["a", "b", "c"], batch_size=7)
    with torch.no_grad():
        expected = torch.softmax(model(x).double(), 1).numpy()
    np.testing.assert_allclose(e.probabilities, expected, rtol=1e-6)
    np.testing.assert_array_equal(e.labels, y.numpy())
    assert e.accuracy == pytest.approx(float((expected.argmax(1) == y.numpy()).mean()))
    reference = [pairwise_auc(expected[:, c], y.numpy() == c) for c in range(3)]
    np.testing.assert_allclose(e.roc_auc, reference, atol=1e-12)


def test_table_has_an_aligned_auc_column():
    probabilities, labels = tied_probabilities(30, 3, 5)
    e = Evaluation.from_probabilities(probabilities, labels, ["T-shirt/top", "b", "c"])
    lines = e.table().splitlines()
    header, rows = lines[0], lines[1:-1]
    assert header.split() == ["class", "precision", "recall", "f1", "auc", "support"]
    end = header.index("auc") + len("auc")  # numbers are right-aligned under their header
    for row, auc in zip(rows, [*e.roc_auc, e.macro_roc_auc], strict=True):
        assert len(row) == len(header)  # every row as wide as the header
        assert row[:end].split()[-1] == f"{auc:.3f}" and row[end] == " "
    assert lines[-1] == f"accuracy {e.accuracy:.4f}"


def test_curves_need_probabilities_and_a_valid_class():
    bare = Evaluation(1.0, np.eye(2, dtype=int), np.ones(2), np.ones(2), np.ones(2), ("a", "b"))
    with pytest.raises(XAIValueError, match="holds no class probabilities"):
        bare.roc_curve(0)
    assert "auc" not in bare.table().splitlines()[0]  # the old table, unchanged
    e = Evaluation.from_probabilities(np.array([[0.6, 0.4], [0.3, 0.7]]), [0, 1], ["a", "b"])
    with pytest.raises(XAIValueError, match=r"class index must be an int in \[0, 1\]"):
        e.roc_curve(2)
    with pytest.raises(XAIValueError, match=r"probabilities must be \(N, k\)"):
        Evaluation.from_probabilities(np.ones((3, 2)), [0, 1], ["a", "b"])


def test_plot_curves_draws_each_class_with_its_auc(tmp_path):
    from xai.viz.grids import save_figure
    from xai.viz.training import plot_curves

    probabilities, labels = tied_probabilities(60, 3, 7)
    e = Evaluation.from_probabilities(probabilities, labels, ["Coat", "Bag", "Shirt"])
    fig = plot_curves(e, "test")
    roc, pr = fig.axes
    assert roc.get_xlabel().startswith("false positive rate")
    assert roc.get_ylabel().startswith("true positive rate")
    assert (pr.get_xlabel(), pr.get_ylabel()) == ("recall", "precision")
    legend = [t.get_text() for t in roc.get_legend().get_texts()]
    assert legend[:3] == [
        f"{n} (AUC {a:.3f})" for n, a in zip(e.class_names, e.roc_auc, strict=True)
    ]
    for c in range(3):  # the lines drawn are the curves
        fpr, tpr, _ = e.roc_curve(c)
        np.testing.assert_allclose(roc.lines[c].get_xdata(), fpr)
        np.testing.assert_allclose(roc.lines[c].get_ydata(), tpr)
    ap = [t.get_text() for t in pr.get_legend().get_texts()]
    assert ap == [
        f"{n} (AP {a:.3f})" for n, a in zip(e.class_names, e.average_precision, strict=True)
    ]
    path = save_figure(fig, tmp_path / "curves.png")
    assert path.stat().st_size > 20_000
