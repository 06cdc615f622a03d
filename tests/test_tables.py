"""The plain-text tables every ``.table()`` and the CLI print (xai/_tables.py, via rich)."""

from __future__ import annotations

import pytest

from xai._tables import text_table
from xai.core.errors import XAIValueError


def test_columns_two_spaces_apart_numbers_right_aligned_no_trailing_space():
    text = text_table(("name", "value", "note"), [("a", "1.5", "x"), ("longer", "-12.25", "")],
                      right=[1])  # fmt: skip
    assert text.splitlines() == [
        "name     value  note",
        "a          1.5  x",
        "longer  -12.25",
    ]


def test_cells_are_literal_text_not_markup():
    text = text_table(("feature", "value"), [("[bold]x[/bold]", "[1.0, 2.0]"), (":smile:", "1")])
    assert "[bold]x[/bold]" in text and "[1.0, 2.0]" in text and ":smile:" in text
    assert "\x1b" not in text


def test_the_environment_does_not_change_the_text(monkeypatch):
    rows = [("a" * 50, "1"), ("b", "22")]
    plain = text_table(("feature", "value"), rows, right=[1])
    for name, value in (("COLUMNS", "20"), ("FORCE_COLOR", "1"), ("TERM", "xterm-256color"),
                        ("JUPYTER_COLUMNS", "10"), ("TTY_COMPATIBLE", "1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    assert text_table(("feature", "value"), rows, right=[1]) == plain
    assert all(len(line) == len("a" * 50) + 2 + 5 for line in plain.splitlines())  # unwrapped


def test_a_ragged_row_is_refused():
    with pytest.raises(XAIValueError, match="2 cells for 3 columns"):
        text_table(("a", "b", "c"), [("1", "2")])
