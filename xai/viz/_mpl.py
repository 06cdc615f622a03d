"""matplotlib, with the Agg backend unless a display backend was chosen already."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot``; selects Agg when pyplot has not been imported yet."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
