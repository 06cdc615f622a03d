"""The docs run as written, CI runs the README's own test command, ruff and mypy pass."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import xai

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def _readme_command(comment: str) -> str:
    for block in _blocks(ROOT / "README.md", "bash"):
        lines = block.strip().splitlines()
        if lines[0] == f"# {comment}":
            return lines[1]
    raise AssertionError(f"README has no bash block starting with '# {comment}'")


def test_ci_runs_exactly_the_readme_test_command():
    command = _readme_command("install with the test tools, and run the tests")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in ci
    assert "python3 -m venv .venv" in ci  # a fresh environment, as the README says


def test_readme_main_command_runs(tmp_path):
    command = _readme_command(
        "install, and explain the shipped Fashion-MNIST samples with the embedded model"
    )
    install, _, rest = command.partition(" && ")
    assert install.startswith("pip install -c constraints.txt -e .")  # done by the set-up
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run(
        rest, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("image "))
    rows = lines[header + 1 : header + 11]
    assert len(rows) == 10
    for row in rows:  # every sample is predicted as the class its file is named after
        name, predicted, *_ = re.split(r"\s{2,}", row)
        assert predicted.rsplit(" ", 1)[0] == xai.models.model_card()["class_names"][int(name[0])]
    assert "wrote 10 images x 1 method to xai-out/" in out
    assert len(list((tmp_path / "xai-out").glob("*/gradcam_overlay.png"))) == 10


@pytest.mark.parametrize(
    ("path", "index"),
    [(p, i) for p in DOCS for i in range(len(_blocks(p, "python")))],
    ids=lambda v: v.name if isinstance(v, Path) else str(v),
)
def test_python_blocks_in_the_docs_run_as_written(path, index, tmp_path):
    code = _blocks(path, "python")[index]
    if "xai.data." in code:
        from xai.data import find_root

        try:
            find_root("fashion-mnist")
        except FileNotFoundError:
            pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=300)


def _tool(name: str) -> str:
    found = Path(sys.executable).parent / name
    tool = str(found) if found.exists() else shutil.which(name)
    if tool is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return tool


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff_clean(args):
    result = subprocess.run([_tool("ruff"), *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_clean():
    """The package's type hints are consistent (configuration in pyproject.toml)."""
    result = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_page_runs_as_written(tmp_path):
    # Every command in docs/cli.md's bash blocks, in order, in one fresh folder; the
    # shell finds `xai` beside this interpreter, as an activated environment would.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for block in _blocks(ROOT / "docs" / "cli.md", "bash"):
        for line in block.strip().splitlines():
            result = subprocess.run(
                line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert result.returncode == 0, f"{line}\n{result.stderr}"
    assert (tmp_path / "maps" / "7-sneaker" / "manifest.json").is_file()
    assert (tmp_path / "housing.png").is_file()
    assert len(list((tmp_path / "maps-all").glob("*/comparison.png"))) == 10


def test_the_per_class_example_runs_fast(tmp_path):
    out = tmp_path / "grid.png"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "cam_per_class.py"), "--fast", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    import cv2

    picture = cv2.imread(str(out))
    assert picture is not None
    assert picture.shape[0] > picture.shape[1] > 500  # ten rows of three panels
