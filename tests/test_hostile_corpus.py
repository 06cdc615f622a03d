"""Issue 14's hostile command lines, all at once (tests/corpus/hostile_cli.py): each ends
in one line on standard error and exit status 2, within bounded time and memory, with
nothing written. The same corpus, run against the code before the issue (86013a6), held in
5 of 18 cases: the two image bombs were killed by the kernel at 23 GB, the zip bomb took
4.3 GB, damaged images and a duplicated coalition were accepted, the rest ended in
tracebacks or several lines."""

from __future__ import annotations

import sys

import pytest

from tests.corpus.hostile_cli import report, run_all


@pytest.mark.slow
def test_every_hostile_command_line_is_one_line_exit_2_within_bounds():
    outcomes = run_all(sys.executable, None)
    assert len(outcomes) == 18
    assert all(o.held for o in outcomes), report(outcomes)
