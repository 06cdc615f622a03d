"""The command line's habits: each option's default in ``--help``, help texts that tell
``xai train --model`` (an architecture) from ``xai explain --model`` (a trained model),
one rule for when ``--input-size`` is needed, and a fast ``xai --help``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xai.cli import _parser, explain, explain_dataset, inspect, main, report, train
from xai.cli._common import PROBE_SIZE

ROOT = Path(__file__).resolve().parents[1]
XAI = str(Path(sys.executable).parent / "xai")
COMMANDS = sorted(_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def _help(command: str, capsys: pytest.CaptureFixture[str], monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def _options(text: str) -> dict[str, str]:
    """``--option`` -> its help text on one line, from argparse's help output."""
    found: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        start = re.match(r"^  (-\S.*?)(?:  +(\S.*))?$", line)
        if start:
            names = re.findall(r"(--[a-z][a-z0-9-]*)", start[1])
            current = names[0] if names else None
            if current:
                found[current] = start[2] or ""
        elif current and re.match(r"^ {6,}\S", line):
            found[current] = (found[current] + " " + line.strip()).strip()
        else:
            current = None
    return found


@pytest.mark.parametrize(
    ("command", "defaults"),
    [
        (
            "explain",
            {
                "--out": "xai-out",
                "--alpha": "0.5",
                "--batch-size": "32",
                "--method": "gradcam",
                "--colormap": "jet",
                "--target": None,  # says "the default" in its own words
                "--device": "auto",
            },
        ),
        (
            "train",
            {
                "--epochs": "20",
                "--lr": "0.001",
                "--batch-size": "128",
                "--patience": "3",
                "--seed": "0",
                "--fraction": "1.0",
                "--dataset": "fashion-mnist",
                "--device": "auto",
            },
        ),
        (
            "explain-dataset",
            {
                "--batch-size": "256",
                "--engine": "local",
                "--map-dtype": "float32",
                "--device": "auto",
            },
        ),
        ("samples", {"--out": "samples"}),
        ("shapley", {"--kind": "waterfall", "--max-features": None}),
    ],
)
def test_help_shows_each_options_default(command, defaults, capsys, monkeypatch):
    options = _options(_help(command, capsys, monkeypatch))
    for option, value in defaults.items():
        text = options[option]
        if value is None:
            assert "default" in text, (option, text)
        else:
            assert text.endswith(f"(default: {value})"), (option, text)


@pytest.mark.parametrize("command", COMMANDS)
def test_no_command_shows_an_empty_or_doubled_default(command, capsys, monkeypatch):
    text = _help(command, capsys, monkeypatch)
    assert "(default: None)" not in text and "(default: False)" not in text
    for option, words in _options(text).items():
        assert words.count("(default") <= 1, option


@pytest.mark.parametrize(
    ("command", "epilog"),
    [
        ("explain", explain.EXAMPLES),
        ("explain-dataset", explain_dataset.EXAMPLES),
        ("train", train.HELP),
        ("report", report.HELP),
        ("layers", inspect.LAYERS_HELP),
    ],
)
def test_the_examples_keep_their_layout(command, epilog, capsys, monkeypatch):
    assert epilog.strip() in _help(command, capsys, monkeypatch)  # not re-wrapped


def test_train_and_explain_say_what_their_model_option_takes(capsys, monkeypatch):
    train_help = _help("train", capsys, monkeypatch)
    assert "--arch" not in train_help  # the card beside the weights names the architecture
    assert "`xai explain --model OUT`" in train_help
    trained = _options(train_help)["--model"]
    assert trained.startswith("the architecture to build and train: gapcnn or mlp")
    assert "`xai explain --model`" in trained
    assert re.search(r"--model ARCH\b", train_help)
    explained = _options(_help("explain", capsys, monkeypatch))
    assert explained["--model"].startswith("the trained model to use")
    assert "`xai train --model` instead names an architecture" in explained["--model"]
    assert "not needed when its card" in explained["--arch"]


# ------------------------------------------------------------------- --input-size


def test_input_size_has_one_text_and_the_docs_give_the_same_rule(capsys, monkeypatch):
    texts = {
        c: _options(_help(c, capsys, monkeypatch))["--input-size"] for c in COMMANDS_WITH_MODEL
    }
    assert len(set(texts.values())) == 1, texts
    text = texts["classes"]
    assert "each image's own size" in text and f"{PROBE_SIZE[0]}x{PROBE_SIZE[1]}" in text
    docs = " ".join((ROOT / "docs" / "cli.md").read_text().split())
    assert (
        f"the size is each image's own in `xai explain`, and {PROBE_SIZE[0]} × {PROBE_SIZE[1]} "
        "in `xai layers` and `xai classes`" in docs
    )


COMMANDS_WITH_MODEL = ("explain", "explain-dataset", "layers", "classes")

NETS = """
import torch, xai

def gap():  # says neither its input size nor its classes
    torch.manual_seed(0)
    return xai.models.GAPCNN(in_channels=1).eval()

def mlp():  # no convolution to take the channels from
    torch.manual_seed(0)
    return xai.models.build("mlp", {"in_features": 784}).eval()
"""


@pytest.fixture
def nets(tmp_path, monkeypatch) -> str:
    (tmp_path / "help_nets.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    return "help_nets.py"


def test_classes_and_explain_need_no_input_size_where_the_model_gives_channels(
    nets, tmp_path, capsys
):
    assert main(["classes", "--model", f"{nets}:gap"]) == 0
    assert "has 10 outputs and no class names" in capsys.readouterr().out
    sample = str(next(iter(dict(__import__("xai").models.sample_images()).values())))
    assert main(["explain", sample, "--model", f"{nets}:gap", "--out", "o", "-q"]) == 0
    manifest = json.loads(next((tmp_path / "o").glob("*/manifest.json")).read_text())
    assert manifest["input_size"] == [1, 28, 28]  # the image's own size
    assert main(["layers", "--model", f"{nets}:gap"]) == 0
    assert f"(traced with one 1x{PROBE_SIZE[0]}x{PROBE_SIZE[1]} input" in capsys.readouterr().out


def test_a_model_without_convolution_or_size_needs_input_size(nets, capsys):
    assert main(["classes", "--model", f"{nets}:mlp"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("xai: error: the input size of help_nets.py:mlp is unknown")
    assert error.endswith("pass --input-size C,H,W")
    assert main(["classes", "--model", f"{nets}:mlp", "--input-size", "1,28,28"]) == 0
    assert "has 10 outputs" in capsys.readouterr().out


# ------------------------------------------------------------------------ xai --help


def test_xai_help_is_fast_and_imports_no_tqdm_or_rich():
    code = (
        "import sys\nfrom xai.cli import main\ntry:\n    main(['--help'])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('tqdm', 'rich', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    seconds = []
    for _ in range(5):  # the fastest of five: what it costs, without the machine's hiccups
        began = time.perf_counter()
        subprocess.run([XAI, "--help"], capture_output=True, check=True)
        seconds.append(time.perf_counter() - began)
    assert min(seconds) < 0.2, seconds
