"""Training beats chance, early stopping restores the best epoch, metrics are right."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import xai
from tests._synthetic import patterns, write_idx_dataset
from xai.data import Dataset
from xai.training import evaluate, fit
from xai.training.progress import ProgressBar

NAMES = tuple(f"c{i}" for i in range(10))


def dataset(per_class: int, seed: int) -> Dataset:
    images, labels = patterns(per_class, seed)
    return Dataset("synthetic", "train", images, labels.astype(np.int64), NAMES)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = xai.models.GAPCNN(channels=(8, 16), convs_per_block=1, mean=0.2, std=0.3)
    result = fit(
        model,
        dataset(40, 0),
        dataset(10, 1),
        epochs=5,
        lr=3e-3,
        batch_size=32,
        patience=0,
        progress=False,
    )
    return model, result


def test_training_on_a_tiny_set_beats_chance_clearly(trained):
    model, result = trained
    test = evaluate(model, dataset(20, 2))
    assert test.accuracy > 0.4  # four times chance (0.1); 0.67 when measured
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert not model.training


def test_early_stopping_restores_the_best_epoch():
    """Validation labels are random, so validation accuracy wanders; whatever it does,
    the model ends with the weights of its best epoch, and stops after `patience`."""
    torch.manual_seed(1)
    model = xai.models.MLP(in_features=784, hidden=(32,))
    val = dataset(10, 3)
    rng = np.random.default_rng(0)
    val = Dataset("noise", "val", val.images, rng.integers(0, 10, len(val)), NAMES)
    result = fit(model, dataset(20, 0), val, epochs=30, patience=2, lr=1e-2, progress=False)
    accuracies = [r.val_accuracy for r in result.history]
    assert result.best_epoch == int(np.argmax(accuracies))
    assert result.best_val_accuracy == max(accuracies)
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + 1 + 2
    assert evaluate(model, val).accuracy == pytest.approx(result.best_val_accuracy)
    assert result.best_epoch < result.epochs_run - 1  # a later epoch was worse, and undone


def test_fit_options_and_errors(trained):
    model = xai.models.MLP(in_features=784, hidden=(8,))
    x, y = dataset(5, 0).tensors()
    result = fit(
        model, (x, y), (x, y), epochs=2, patience=0, schedule="onecycle", flip=True, progress=False
    )
    assert result.epochs_run == 2
    assert f"best epoch {result.best_epoch + 1} of 2 " in result.summary()  # counted from 1
    for kwargs, message in [
        ({"epochs": 0}, "epochs must be"),
        ({"lr": -1}, "lr must be"),
        ({"schedule": "cosine"}, "schedule must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            fit(model, (x, y), (x, y), **kwargs)
    with pytest.raises(TypeError, match=r"must be an xai\.data\.Dataset or an"):
        fit(model, x, (x, y))


class Fixed(nn.Module):
    """Predicts the class written in the first pixel of each image."""

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float()


def test_metrics_by_hand():
    # true:      0 0 0 1 1 2
    # predicted: 0 0 1 1 0 1   (class 2 is never predicted)
    true = torch.tensor([0, 0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 0, 1, 1, 0, 1])
    x = predicted.float().reshape(6, 1, 1, 1)
    e = evaluate(Fixed(), (x, true), class_names=["a", "b", "c"])
    assert e.confusion.tolist() == [[2, 1, 0], [1, 1, 0], [0, 1, 0]]
    assert e.accuracy == pytest.approx(3 / 6)
    np.testing.assert_allclose(e.precision, [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(e.recall, [2 / 3, 1 / 2, 0])
    np.testing.assert_allclose(e.f1, [2 / 3, 0.4, 0])  # 2pr/(p+r) for b: (2/6)/(5/6)
    assert e.macro_f1 == pytest.approx((2 / 3 + 0.4) / 3)
    assert e.per_class_accuracy() == {"a": pytest.approx(2 / 3), "b": 0.5, "c": 0.0}
    assert "macro" in e.table()


def test_compare_cnn_and_dnn_and_plot_them(tmp_path):
    from xai.data import Splits
    from xai.viz.training import plot_comparison, plot_confusion, plot_history

    s = Splits(dataset(10, 0), dataset(3, 1), dataset(3, 2))
    c = xai.training.compare(s, epochs=2, patience=0, progress=False)
    assert [r.model for r in c.rows] == ["GAPCNN", "MLP"]
    assert c.rows[0].parameters == sum(p.numel() for p in c.models["GAPCNN"].parameters())
    assert all(r.epochs_run == 2 for r in c.rows)
    assert "| GAPCNN |" in c.table()
    assert c.models["GAPCNN"].config["mean"] == pytest.approx(s.train.images.mean() / 255, rel=1e-5)
    fig = plot_comparison(c)
    fig.savefig(tmp_path / "compare.png")
    assert (tmp_path / "compare.png").stat().st_size > 20_000
    titles = [ax.get_title() for ax in fig.axes]
    assert "GAPCNN loss" in titles
    assert any(t.startswith("MLP (test accuracy") for t in titles)
    for column in (0, 1):  # loss panels share a y-range, and so do accuracy panels
        assert fig.axes[column].get_ylim() == fig.axes[3 + column].get_ylim()
    one = plot_confusion(c.evaluations["MLP"])
    ax = one.axes[0]
    assert ax.get_xlabel() == "predicted class"
    assert [t.get_text() for t in ax.get_yticklabels()] == list(NAMES)
    assert plot_history(c.results["MLP"]).axes[1].get_ylabel() == "accuracy"


def test_progress_bar_in_a_log_writes_one_line_per_epoch():
    """Not a terminal: nothing while it runs (no carriage returns in a log), then tqdm's
    one summary line with the count, the unit's rate and the note."""
    stream = io.StringIO()
    bar = ProgressBar(4, "epoch 1/1", stream=stream, unit="batch")
    for _ in range(3):
        bar.update(1, "loss 1.0")
    assert stream.getvalue() == ""
    bar.update(5, "loss 1.0")  # counted up to the total, not past it
    bar.close("done")
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("epoch 1/1: 100%|##########| 4/4 [")
    assert "batch/s" in lines[0]
    assert lines[0].endswith(", done]")


def test_progress_bar_disabled_writes_nothing_and_a_terminal_gets_tqdm():
    stream = io.StringIO()
    bar = ProgressBar(2, "x", stream=stream, enabled=False)
    bar.update(2)
    bar.close("done")
    assert stream.getvalue() == ""

    import fcntl
    import os
    import pty
    import select
    import struct
    import termios

    main, side = pty.openpty()  # a real terminal, 100 columns wide
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    with open(side, "w", encoding="utf-8", closefd=True) as screen:
        bar = ProgressBar(2, "epoch 2/5", stream=screen, unit="batch")
        bar.update(1, "loss 0.7")
        bar.update(1, "loss 0.5")
        bar.close("val acc 0.9")
    written = b""
    while select.select([main], [], [], 0.5)[0]:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # Linux: the other side is closed and everything was read
            break
        if not chunk:
            break
        written += chunk
    os.close(main)
    drawn = written.decode().replace("\r\n", "\n").split("\r")
    assert len(drawn) >= 3  # redrawn in place
    assert "epoch 2/5: 100%" in drawn[-1] and "2/2" in drawn[-1]
    assert drawn[-1].rstrip().endswith("val acc 0.9]")


def _xai() -> str:
    return str(Path(sys.executable).parent / "xai")


def test_cli_train_writes_weights_and_a_card_that_reload(tmp_path):
    folder = write_idx_dataset(tmp_path / "data", per_class=12)
    out = tmp_path / "model.pt"
    result = subprocess.run(
        [
            _xai(),
            "train",
            "--data",
            str(folder),
            "--model",
            "mlp",
            "--epochs",
            "2",
            "--quiet",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "saved" in result.stdout
    assert "accuracy" in result.stdout
    card = json.loads((tmp_path / "model.pt.json").read_text())
    assert card["architecture"]["name"] == "mlp"
    assert card["class_names"][1] == "Trouser"
    assert card["training"]["epochs_run"] <= 2
    from xai.cli._common import resolve_device

    assert card["training"]["device"] == str(resolve_device("auto"))  # weights saved on CPU
    model = xai.models.build(card["architecture"]["name"], card["architecture"]["config"])
    model.load_state_dict(torch.load(out, weights_only=True))
    images, labels = patterns(5, 1)
    accuracy = evaluate(
        model, Dataset("t", "test", images, labels.astype(np.int64), tuple(card["class_names"]))
    ).accuracy
    assert accuracy == pytest.approx(card["test_accuracy"], abs=0.5)  # loads, and predicts
    assert not list(tmp_path.glob(".model.pt*"))  # no temporary files left


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{tmp}/none", "--out", "{tmp}/m.pt"], "no fashion-mnist train files"),
        (["--data", "{data}", "--out", "{tmp}/missing/m.pt"], "--out: folder .* does not exist"),
        (["--data", "{data}", "--fraction", "2", "--out", "{tmp}/m.pt"], "fraction must be in"),
    ],
)
def test_cli_train_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    import re

    folder = write_idx_dataset(tmp_path / "data", per_class=3)
    args = [a.format(tmp=tmp_path, data=folder) for a in args]
    result = subprocess.run(
        [_xai(), "train", "--model", "mlp", "--quiet", *args], capture_output=True, text=True
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("xai: error: ")
    assert re.search(message, lines[0])
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "m.pt").exists()
