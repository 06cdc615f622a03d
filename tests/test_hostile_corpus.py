"""Issue 14's hostile command lines, all at once (tests/corpus/hostile_cli.py): each ends
in one line on standard error and exit status 2, within bounded time and memory, with
nothing written. The same corpus, run against the code before the issue (86013a6), held in
5 of 18 cases: the two image bombs were killed by the kernel at 23 GB, the zip bomb took
4.3 GB, damaged images and a duplicated coalition were accepted, the rest ended in
tracebacks or several lines."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests._background import Job, Scheduler, job

ROOT = Path(__file__).resolve().parent.parent


@job("hostile_cli")
def _corpus(folder: Path) -> Job:
    # its own table: one row per case, then "N of M cases ended in one line and exit 2..."
    return Job([sys.executable, "-m", "tests.corpus.hostile_cli"], cwd=ROOT)


@pytest.mark.slow
@pytest.mark.background("hostile_cli")
def test_every_hostile_command_line_is_one_line_exit_2_within_bounds(background: Scheduler):
    result = background.result("hostile_cli")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 18, result.stdout
    assert all(row.rstrip().endswith("| yes |") for row in rows), result.stdout
    assert "18 of 18 cases ended in one line and exit 2 within bounds" in result.stdout
