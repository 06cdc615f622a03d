"""The docs run as written, CI runs the README's own test command, ruff and mypy pass."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import xai
from tests._forkserver import ForkServer, needs_fresh, shared

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
    command = _readme_command(
        "install with the test and docs tools, and run the tests (they build the docs site too)"
    )
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
def test_python_blocks_in_the_docs_run_as_written(path, index, tmp_path, forks):
    code = _blocks(path, "python")[index]
    if "xai.data." in code or "fashion-mnist:" in code:
        from xai.data import find_root

        try:
            find_root("fashion-mnist")
        except FileNotFoundError:
            pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    if needs_fresh(code):  # it looks at what importing xai imports: a new interpreter
        subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=300)
        return
    result = forks.run(code=code, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def forks():
    """A process with torch, numpy, matplotlib and xai imported, forking a fresh child
    per block and per `xai` command (tests/_forkserver.py): each still runs in its own
    process, without the second and a half of imports."""
    return shared()


# A command line the shell would treat specially: run by the shell itself.
_SHELL = re.compile(r"[|&;<>$`\\(){}*?~]")


def _run_line(line: str, cwd: Path, env: dict[str, str], forks: ForkServer) -> Any:
    words = shlex.split(line)
    unquoted = re.sub(r'"[^"$`\\]*"', "", line)  # a glob in quotes is the command's own
    if words[0] == "xai" and not _SHELL.search(unquoted):
        return forks.run(argv=words[1:], cwd=cwd, env=env)
    return subprocess.run(line, shell=True, cwd=cwd, env=env, capture_output=True, text=True)


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


def _examples_run_fast_by_tests() -> set[str]:
    """The example scripts whose ``--fast`` mode some test runs."""
    found = set()
    for test in (ROOT / "tests").glob("test_*.py"):
        text = test.read_text()
        if "--fast" in text:
            found |= set(re.findall(r"\b(\w+\.py)\b", text))
    return {name for name in found if (ROOT / "examples" / name).is_file()}


def _setup_lines() -> set[str]:
    # Lines the CI itself runs on a fresh clone (.ci/run), and the README's install.
    return {line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()} | {
        "pip install -c constraints.txt -e ."
    }


def _fashion_mnist() -> bool:
    from xai.data import find_root

    try:
        find_root("fashion-mnist")
    except FileNotFoundError:
        return False
    return True


BASH_PAGES = [p for p in DOCS if p.name != "README.md" and _blocks(p, "bash")]


@pytest.mark.parametrize("path", BASH_PAGES, ids=lambda p: p.name)
def test_bash_blocks_in_the_docs_run_as_written(path, tmp_path, forks):
    # Every command of a page's bash blocks, in order, in one fresh folder; the shell
    # finds `xai` beside this interpreter, as an activated environment would. The set-up
    # lines (.ci/run's own) are run by CI itself; `python examples/NAME.py` lines name an
    # example whose --fast mode a test runs.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    setup, fast = _setup_lines(), _examples_run_fast_by_tests()
    for block in _blocks(path, "bash"):
        for line in block.strip().splitlines():
            if line in setup:
                continue
            if line.startswith("python examples/"):
                assert line.split()[1].removeprefix("examples/") in fast, line
                continue
            if "fashion-mnist:" in line and not _fashion_mnist():
                break  # this and what follows need dataset-fashion-mnist (CI installs it)
            result = _run_line(line, tmp_path, env, forks)
            assert result.returncode == 0, f"{line}\n{result.stderr}"
    if path.name == "cli.md":
        assert (tmp_path / "maps" / "7-sneaker.png" / "manifest.json").is_file()
        assert (tmp_path / "housing.png").is_file()
        assert len(list((tmp_path / "maps-all").glob("*/comparison.png"))) == 2


def test_every_example_is_run_by_a_test_and_draws_a_docs_figure():
    pages = "\n".join(p.read_text() for p in DOCS)
    for example in sorted((ROOT / "examples").glob("*.py")):
        assert example.name in _examples_run_fast_by_tests(), f"no test runs {example.name}"
        default = re.search(r'default=Path\("(docs/images/[\w-]+\.png)"\)', example.read_text())
        assert default, f"{example.name}: its --out should default to a docs figure"
        figure = default.group(1)
        assert (ROOT / figure).is_file(), f"{figure} is missing: run {example.name}"
        assert figure.removeprefix("docs/") in pages, f"no page shows {figure}"


def test_the_docs_site_builds_strictly(tmp_path):
    """mkdocs build --strict: every page in the nav, every link and API name resolves."""
    pytest.importorskip("mkdocs")
    result = subprocess.run(
        [_tool("mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "api" / "index.html").is_file()
    page = (tmp_path / "site" / "concepts" / "index.html").read_text()
    assert 'class="arithmatex"' in page  # the equations are rendered to MathML at build time


def test_every_docs_page_is_in_the_site():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f" {page.name}" in nav, f"{page.name} is not in mkdocs.yml's nav"


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


def test_the_readme_figure_example_runs_fast(tmp_path):
    out = tmp_path / "methods.png"
    printed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "readme_figure.py"), "--fast", "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    assert printed.strip() == f"wrote {out}"
    import cv2

    picture = cv2.imread(str(out))
    assert picture is not None
    assert picture.shape[0] > picture.shape[1] > 800  # ten rows of nine panels
