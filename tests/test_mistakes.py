"""The gallery of wrong samples: exactly the first misclassified ones, their top-3 text as
the probabilities say, and the maps xai.explain gives for the true and predicted classes."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import xai
from tests.conftest import make_gapcnn
from xai.viz.mistakes import find_mistakes, plot_mistakes

NAMES = ("zero", "one", "two", "three", "four")


@pytest.fixture(scope="module")
def case():
    """A seeded 5-class GAPCNN, random 16 x 16 images and random labels: many mistakes."""
    model = make_gapcnn(seed=5)
    torch.manual_seed(4)
    x = torch.rand(40, 1, 16, 16)
    y = torch.randint(0, 5, (40,))
    return model, x, y


def reference(model, x, y):
    with torch.no_grad():
        probabilities = torch.softmax(model(x).double(), 1).numpy()
    predicted = probabilities.argmax(1)
    return probabilities, predicted, np.flatnonzero(predicted != y.numpy())


def test_the_chosen_samples_are_the_first_misclassified(case):
    model, x, y = case
    probabilities, predicted, wrong = reference(model, x, y)
    assert 6 <= len(wrong) < 40  # some right, many wrong
    found = find_mistakes(model, (x, y), count=5)
    np.testing.assert_array_equal(found.indices, wrong[:5])
    np.testing.assert_array_equal(found.true, y.numpy()[wrong[:5]])
    np.testing.assert_array_equal(found.predicted, predicted[wrong[:5]])
    assert (found.true != found.predicted).all()
    assert found.total == len(wrong) and found.seen == 40
    np.testing.assert_array_equal(found.top[:, 0], found.predicted)
    for row, i in enumerate(found.indices):
        order = np.argsort(-probabilities[i])[:3]
        np.testing.assert_array_equal(found.top[row], order)
        np.testing.assert_allclose(found.top_probabilities[row], probabilities[i][order])
    assert len(find_mistakes(model, (x, y), count=1000)) == len(wrong)  # all there are


def test_the_gallery_shows_top3_and_the_explained_maps(case, tmp_path):
    from xai.viz.grids import save_figure

    model, x, y = case
    probabilities, predicted, wrong = reference(model, x, y)
    fig = plot_mistakes(model, (x, y), 4, class_names=NAMES, method="gradcam")
    chosen = wrong[:4]
    differ = 0
    assert fig.mistakes.indices.tolist() == chosen.tolist()
    axes = np.array(fig.axes).reshape(4, 4)
    true_maps = xai.explain(model, x[chosen], "gradcam", target=y[chosen].tolist()).maps
    predicted_maps = xai.explain(
        model, x[chosen], "gradcam", target=predicted[chosen].tolist()
    ).maps
    for row, i in enumerate(chosen):
        true, guess = NAMES[int(y[i])], NAMES[int(predicted[i])]
        assert axes[row, 0].get_title() == f"image #{i}\ntrue: {true}"
        # the image itself, then the two maps over it
        np.testing.assert_allclose(axes[row, 0].images[0].get_array(), x[i, 0].numpy())
        shown_true = np.asarray(axes[row, 1].images[1].get_array())
        shown_predicted = np.asarray(axes[row, 2].images[1].get_array())
        np.testing.assert_allclose(shown_true, true_maps[row].numpy())
        np.testing.assert_allclose(shown_predicted, predicted_maps[row].numpy())
        differ += not np.allclose(shown_true, shown_predicted)
        assert axes[row, 1].get_title().endswith(true)
        assert axes[row, 2].get_title().endswith(guess)
        text = axes[row, 3].texts[0].get_text().splitlines()
        assert text[:2] == [f"true: {true}", f"predicted: {guess}"]
        listed = [re.fullmatch(r"(\d)\. (\w+)  (0\.\d{3})", line) for line in text[4:]]
        assert all(listed) and len(listed) == 3
        order = np.argsort(-probabilities[i])[:3]
        for rank, (match, c) in enumerate(zip(listed, order, strict=True), 1):
            assert match.groups() == (str(rank), NAMES[c], f"{probabilities[i, c]:.3f}")
        assert listed[0].group(2) == guess
    assert differ >= 2  # the true and predicted classes' maps are not the same picture
    assert fig._suptitle.get_text().startswith(f"{len(wrong)} of 40 samples misclassified")
    assert save_figure(fig, tmp_path / "mistakes.png").stat().st_size > 20_000


def test_no_mistakes_says_so(case):
    model, x, _ = case
    _, predicted, _ = reference(model, x, torch.zeros(40, dtype=torch.long))
    fig = plot_mistakes(model, (x, torch.from_numpy(predicted)), 3)
    assert len(fig.mistakes) == 0
    assert "no mistakes in 40 samples" in [t.get_text() for t in fig.axes[0].texts]
