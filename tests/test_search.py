"""Hyper-parameter search: the grid is the exact product, random draws are seeded and stay
in the space, a results file resumes a search and refuses another, bad spaces are named."""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
import pytest
import torch

import xai
from xai.core.errors import XAIValueError
from xai.data import Dataset, Splits
from xai.training import fit, search, trials_of


def separable(per_class: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_class)
    images = rng.integers(0, 30, (len(labels), 8, 8)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, :, 2 * c : 2 * c + 2] = 220
    return Dataset("separable", "train", images, labels, ("a", "b", "c"))


@pytest.fixture(scope="module")
def splits() -> Splits:
    return Splits(separable(12, 0), separable(4, 1), separable(4, 2))


def test_grid_is_the_exact_product_in_order():
    space = {"channels": [[4], [4, 8]], "kernel_size": [3, 5], "lr": [1e-3, 3e-3, 1e-2]}
    expected = [
        {"model": "gapcnn", "channels": c, "kernel_size": k, "lr": lr}
        for c, k, lr in itertools.product(*space.values())
    ]
    assert trials_of(space) == expected
    assert len(expected) == 12
    assert trials_of(space, trials=5) == expected[:5]


def test_keys_a_model_does_not_take_are_dropped_and_repeats_run_once():
    space = {"model": ["gapcnn", "mlp"], "kernel_size": [3, 5], "optimizer": ["adam", "sgd"]}
    trials = trials_of(space)
    assert trials == [
        {"model": "gapcnn", "kernel_size": 3, "optimizer": "adam"},
        {"model": "gapcnn", "kernel_size": 3, "optimizer": "sgd"},
        {"model": "gapcnn", "kernel_size": 5, "optimizer": "adam"},
        {"model": "gapcnn", "kernel_size": 5, "optimizer": "sgd"},
        {"model": "mlp", "optimizer": "adam"},
        {"model": "mlp", "optimizer": "sgd"},
    ]
    # Sub-spaces are searched one after the other.
    both = trials_of([{"channels": [[4]]}, {"model": ["mlp"], "hidden": [[8], []]}])
    assert both == [
        {"model": "gapcnn", "channels": [4]},
        {"model": "mlp", "hidden": [8]},
        {"model": "mlp", "hidden": []},
    ]


def test_random_draws_are_seeded_within_the_space_and_without_repeats():
    space = {"channels": [[4], [8], [4, 8]], "batch_norm": [True, False], "lr": [0.1, 0.01]}
    grid = trials_of(space)
    a = trials_of(space, "random", 6, seed=4)
    assert a == trials_of(space, "random", 6, seed=4)
    assert a != trials_of(space, "random", 6, seed=5)
    assert all(t in grid for t in a)
    assert len({json.dumps(t) for t in a}) == 6
    assert trials_of(space, "random", 3, seed=4) == a[:3]  # more trials extend the list
    assert len(trials_of(space, "random", 100, seed=4)) == len(grid)  # at most the grid

    ranged = {
        "lr": {"log_uniform": [1e-4, 1e-2]},
        "dropout": {"uniform": [0.0, 0.5]},
        "optimizer": ["adam", "sgd"],
    }
    draws = trials_of(ranged, "random", 40, seed=0)
    assert draws == trials_of(ranged, "random", 40, seed=0)
    lrs = np.array([t["lr"] for t in draws])
    assert ((lrs >= 1e-4) & (lrs <= 1e-2)).all()
    assert all(0.0 <= t["dropout"] <= 0.5 for t in draws)
    assert {t["optimizer"] for t in draws} == {"adam", "sgd"}
    # log-uniform: about half the draws below the geometric middle 1e-3
    assert 10 <= int((lrs < 1e-3).sum()) <= 30


@pytest.mark.parametrize(
    ("space", "kwargs", "message"),
    [
        ({"filters": [[4]]}, {}, "unknown key 'filters'.*known keys: model"),
        ({"lr": []}, {}, r"space\['lr'\] is an empty list"),
        ({"lr": 0.001}, {}, r"space\['lr'\] must be a list of choices, such as \[0.001\]"),
        ({"lr": ["fast"]}, {}, r"space\['lr'\]\[0\] must be a finite number > 0"),
        ({"lr": [-1.0]}, {}, r"space\['lr'\]\[0\] must be"),
        ({"channels": [10, 20]}, {}, r"write \[\[10, 20, 40\]\] for one choice"),
        ({"kernel_size": [4]}, {}, "must be a positive odd int"),
        ({"optimizer": ["rmsprop"]}, {}, "'adam' or 'sgd'"),
        ({"model": ["gapcnn"], "hidden": [[8]]}, {}, "argument of none of its models.*mlp"),
        ({"lr": {"log_uniform": [1e-4, 1e-2]}}, {}, "a grid search needs a list"),
        ({"lr": {"log_uniform": [1e-2, 1e-4]}}, {"strategy": "random", "trials": 2}, "low < high"),
        ({"lr": [0.1]}, {"strategy": "random"}, "needs trials"),
        ({"lr": [0.1]}, {"strategy": "bayes"}, "strategy must be 'grid' or 'random'"),
        ([], {}, "non-empty list"),
        ("lr", {}, "expected a mapping"),
    ],
)
def test_bad_spaces_are_one_clear_value_error(space, kwargs, message):
    with pytest.raises(XAIValueError, match=message):
        trials_of(space, **kwargs)


def test_fixed_options_are_checked_before_any_training(splits):
    with pytest.raises(XAIValueError, match="given both in the space and as a fixed"):
        search({"lr": [0.1]}, splits, lr=0.01)
    with pytest.raises(XAIValueError, match=r"unknown training option.*momentum"):
        search({"lr": [0.1]}, splits, momentum=0.9)


SPACE = [
    {"model": ["mlp"], "hidden": [[8], [16]], "optimizer": ["adam", "sgd"]},
    {"name": ["tiny cnn"], "channels": [[4]], "convs_per_block": [1]},
]


def test_search_trains_ranks_and_resumes_from_its_file(splits, tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    first = search(SPACE, splits, trials=2, results=path, epochs=1, lr=0.05)
    assert len(first.trials) == 2
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 2  # the header, then one line per finished trial
    assert json.loads(lines[0])["format"] == "xai-search/1"

    calls = []
    original = fit

    def counting_fit(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(sys.modules["xai.training.fit"], "fit", counting_fit)
    full = search(SPACE, splits, results=path, epochs=1, lr=0.05)
    assert len(full.trials) == 5
    assert len(calls) == 3  # the two finished trials were read back, not trained
    assert sum(t.resumed for t in full.trials) == 2
    assert len(path.read_text().splitlines()) == 1 + 5
    # What was read back is what was trained.
    by_index = {t.index: t for t in full.trials}
    for t in first.trials:
        assert by_index[t.index].val_accuracy == t.val_accuracy
        assert by_index[t.index].config == t.config
    # Best first by validation accuracy, then test accuracy, then size.
    keys = [(-t.val_accuracy, -t.test_accuracy, t.parameters) for t in full.trials]
    assert keys == sorted(keys)
    # The options reached fit: SGD trials asked for it.
    assert sorted(c.get("optimizer", "adam") for c in calls).count("sgd") >= 1
    table = full.table().splitlines()
    assert len(table) == 2 + 5
    assert "| tiny cnn | gapcnn channels=4 convs_per_block=1 |" in full.table()

    calls.clear()
    again = search(SPACE, splits, results=path, epochs=1, lr=0.05)
    assert calls == [] and all(t.resumed for t in again.trials)


def test_an_interrupted_last_line_is_dropped_and_the_trial_rerun(splits, tmp_path):
    path = tmp_path / "results.jsonl"
    search(SPACE[:1], splits, trials=2, results=path, epochs=1)
    with open(path, "a") as handle:
        handle.write('{"config": {"model": "mlp", "hid')  # killed mid-write
    result = search(SPACE[:1], splits, trials=3, results=path, epochs=1)
    assert [t.resumed for t in sorted(result.trials, key=lambda t: t.index)] == [
        True,
        True,
        False,
    ]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_a_results_file_of_another_search_is_refused(splits, tmp_path):
    path = tmp_path / "results.jsonl"
    search(SPACE[:1], splits, trials=1, results=path, epochs=1)
    before = path.read_text()
    with pytest.raises(XAIValueError, match="holds a search with a different space"):
        search({"model": ["mlp"], "hidden": [[32]]}, splits, results=path, epochs=1)
    with pytest.raises(XAIValueError, match="different settings"):
        search(SPACE[:1], splits, trials=1, results=path, epochs=2)
    other = Splits(separable(12, 9), separable(4, 1), separable(4, 2))
    with pytest.raises(XAIValueError, match="different data"):
        search(SPACE[:1], other, trials=1, results=path, epochs=1)
    assert path.read_text() == before  # untouched
    (tmp_path / "notes.jsonl").write_text("hello\n")
    with pytest.raises(XAIValueError, match="not an xai search results file"):
        search(SPACE[:1], splits, results=tmp_path / "notes.jsonl", epochs=1)


def test_fit_takes_sgd_with_momentum():
    x = torch.rand(12, 1, 8, 8)
    y = torch.arange(12) % 3
    weights = {}
    for optimizer in ("adam", "sgd"):
        torch.manual_seed(0)
        model = xai.models.MLP(in_features=64, num_classes=3, hidden=(4,))
        fit(model, (x, y), (x, y), epochs=1, optimizer=optimizer, progress=False, lr=0.1)
        weights[optimizer] = model.head.weight.detach().clone()
    assert not torch.allclose(weights["adam"], weights["sgd"])
    # One SGD step from the same start, by hand: w - lr * grad (momentum has no history).
    torch.manual_seed(0)
    model = xai.models.MLP(in_features=64, num_classes=3, hidden=(4,))
    start = model.head.weight.detach().clone()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    expected = start - 0.1 * model.head.weight.grad  # one full batch: the order is moot
    torch.testing.assert_close(weights["sgd"], expected)
    with pytest.raises(XAIValueError, match="optimizer must be 'adam' or 'sgd'"):
        fit(model, (x, y), (x, y), optimizer="rmsprop")


def test_plot_search(splits, tmp_path):
    from xai.viz.grids import save_figure
    from xai.viz.training import plot_search

    result = search(SPACE, splits, epochs=1, lr=0.05)
    fig = plot_search(result, "tiny")
    bars, scatter = fig.axes
    labels = [t.get_text() for t in bars.get_yticklabels()]
    assert labels == [
        f"{rank}. {'tiny cnn' if t.config['model'] == 'gapcnn' else t.describe()}"
        for rank, t in enumerate(result.trials, 1)
    ]
    assert "tiny cnn" in labels[[t.config["model"] for t in result.trials].index("gapcnn")]
    ranks = [text.get_text() for text in scatter.texts]
    assert sorted(ranks, key=int) == [str(r) for r in range(1, len(result.trials) + 1)]
    widths = [p.get_width() for p in bars.patches]
    assert widths[: len(result.trials)] == [t.val_accuracy for t in result.trials]
    assert bars.get_xlabel() == "accuracy"
    assert scatter.get_xlabel().startswith("parameters")
    assert save_figure(fig, tmp_path / "search.png").stat().st_size > 20_000
