"""Plain-text tables for the terminal and for ``.table()`` methods, drawn by rich.

One look everywhere: no borders, columns two spaces apart, the header as the first line,
numbers right-aligned where asked; plain ASCII with no colour or markup, so the text is
the same on a terminal, in a log and in a test. rich is imported when a table is drawn,
never at ``import xai`` or ``xai --help``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from xai.core.errors import XAIValueError

__all__ = ["text_table"]


def text_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[int] = (),
    show_header: bool = True,
) -> str:
    """The rows as aligned text; ``right`` are the indices of right-aligned columns.

    Cells are taken literally (a ``[`` is not rich markup) and never wrapped.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(
        box=None,
        show_header=show_header,
        header_style="",
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
    )
    for c, name in enumerate(header):
        table.add_column(Text(name), justify="right" if c in right else "left", no_wrap=True)
    for row in rows:
        if len(row) != len(header):
            raise XAIValueError(f"a table row has {len(row)} cells for {len(header)} columns")
        table.add_row(*(Text(cell) for cell in row))
    out = io.StringIO()
    console = Console(
        file=out,
        width=1_000_000,
        color_system=None,
        force_terminal=False,
        force_jupyter=False,  # in a notebook rich would display the table, not write it
        force_interactive=False,
        legacy_windows=False,
        highlight=False,
        markup=False,
        emoji=False,
    )
    console.print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())
