"""matplotlib, with the Agg backend unless a display backend was chosen already."""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot``; selects Agg when pyplot has not been imported yet, unless
    ``MPLBACKEND`` names a ``module://`` backend: Jupyter's inline backend (which a
    kernel sets), so that figures show in the notebook, or ipympl's.

    The first import holds Ctrl-C until it is done (``deferred_interrupts``): an
    interrupt inside a compiled module's import could leave it half initialised."""
    if "matplotlib.pyplot" in sys.modules:
        return sys.modules["matplotlib.pyplot"]
    from xai.core.interrupts import deferred_interrupts

    with deferred_interrupts():
        import matplotlib

        if not os.environ.get("MPLBACKEND", "").startswith("module://"):
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

    return plt
