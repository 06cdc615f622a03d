"""`xai search` and `xai train --cv`: what they print and write, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests._synthetic import write_idx_dataset
from xai.cli import main


def _xai() -> str:
    return str(Path(sys.executable).parent / "xai")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("idx") / "data", per_class=6)


CONFIG = {
    "space": {"model": ["mlp"], "hidden": [[8], [16]]},
    "training": {"epochs": 1, "patience": 0},
    "val_fraction": 0.2,
}


def test_search_prints_the_table_writes_the_file_and_resumes(tmp_path, data, capsys):
    config = tmp_path / "space.json"
    config.write_text(json.dumps(CONFIG))
    out = tmp_path / "results.jsonl"
    command = ["search", str(config), "--data", str(data), "--out", str(out)]
    assert main([*command, "--plot", str(tmp_path / "search.png")]) == 0
    first = capsys.readouterr().out
    assert first.startswith("2 trials (grid); fashion-mnist: 50 train, 10 validation")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["space"] == [{"model": ["mlp"], "hidden": [[8], [16]]}]
    assert [r["config"]["hidden"] for r in rows[1:]] == [[8], [16]]
    table = [line for line in first.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 2
    for row in rows[1:]:  # each trial's line in the table is its file's numbers
        assert any(
            f"| {row['val_accuracy']:.4f} | {row['test_accuracy']:.4f} |" in line for line in table
        )
    assert (tmp_path / "search.png").stat().st_size > 10_000
    assert main(command) == 0
    again = capsys.readouterr().out
    assert again.count(": read back") == 2
    # read back, the same table: every number (the time too) comes from the file
    assert [line for line in again.splitlines() if line.startswith("| ")] == table
    assert len(out.read_text().splitlines()) == 3  # nothing trained twice


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"space": {"lr": [0.1]}, "epochs": 3}, "unknown key 'epochs'; the keys are space,"),
        ({"strategy": "grid"}, 'the key "space" is missing'),
        ({"space": {"lr": []}}, r"space\['lr'\] is an empty list; give at least one choice"),
        ({"space": {"lr": [0.1]}, "trials": "3"}, "'trials' must be a positive int.*got str"),
        ({"space": {"lr": [0.1]}, "fraction": True}, "'fraction' must be a number"),
        ({"space": {"learning_rate": [0.1]}}, "unknown key 'learning_rate' in space"),
        ({"space": {"lr": ["fast"]}}, r"space\['lr'\]\[0\] must be a finite number > 0"),
        ({"space": {"lr": [0.1]}, "training": {"epoch": 2}}, "unknown training option.*epoch"),
        ({"space": {"hidden": [[8]]}}, "argument of none of its models"),
        ("[1, 2]", "expected a JSON object"),
        ("{oops", "not valid JSON"),
    ],
)
def test_bad_configs_are_one_line_exit_2(tmp_path, capsys, config, message):
    import re

    path = tmp_path / "space.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    out = tmp_path / "results.jsonl"
    assert main(["search", str(path), "--out", str(out), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"xai: error: {path}: ")
    assert re.search(message, err[0]), err[0]
    assert not out.exists()


def test_search_needs_a_config_file(tmp_path, capsys):
    assert main(["search", str(tmp_path / "none.json"), "--out", str(tmp_path / "r")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_train_cv_prints_the_folds_and_writes_their_json(tmp_path, data):
    out = tmp_path / "mlp.pt"
    result = subprocess.run(
        [_xai(), "train", "--data", str(data), "--model", "mlp", "--cv", "3", "--epochs", "1"]
        + ["--quiet", "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    record = json.loads((tmp_path / "mlp.pt.cv.json").read_text())
    cv = record["cross_validation"]
    assert len(cv["folds"]) == 3
    tested = sorted(i for fold in cv["test_indices"] for i in fold)
    assert tested == list(range(60))  # each image tested once
    accuracies = [f["accuracy"] for f in cv["folds"]]
    assert cv["mean"]["accuracy"] == pytest.approx(np.mean(accuracies))
    assert cv["std"]["accuracy"] == pytest.approx(np.std(accuracies))
    line = f"| {np.mean(accuracies):.4f} ± {np.std(accuracies):.4f} |"
    assert line in result.stdout
    assert result.stdout.count("\n| ") == 1 + 3 + 1  # header, three folds, mean ± std
    assert not out.exists()  # cross-validation saves no weights


def test_train_cv_bad_folds_is_one_line(tmp_path, data, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--model", "mlp", "--cv", "1", "--out", str(tmp_path / "m.pt")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cv: expected a number of folds >= 2" in err[0]


def test_the_help_example_and_the_classic_config_are_valid(tmp_path):
    from xai.cli.search import HELP, load_config
    from xai.training.search import check_search

    block = HELP.split("for instance (a grid of 2 x 2 GAPCNN trials, then an MLP):\n")[1]
    example = block.split("\n\n")[0]
    path = tmp_path / "space.json"
    path.write_text(example)
    config = load_config(path)
    trials = check_search(config["space"], config["strategy"], None, 0, config["training"])
    assert len(trials) == 2 * 2 + 1
    root = Path(__file__).resolve().parents[1]
    classic = load_config(root / "examples" / "classic_cnns.json")
    trials = check_search(classic["space"], "grid", None, 0, classic["training"])
    assert [t["name"][0] for t in trials] == ["A", "B", "C", "D", "M"]
    assert classic["fraction"] == 0.1
