"""Progress bars for training loops and ``xai explain``: tqdm's, on standard error.

tqdm is imported when a bar is made, never at ``import xai`` or ``xai --help``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """A tqdm bar redrawn in place on a terminal.

    On a stream that is not a terminal (a CI log, a file) nothing is drawn while it runs;
    :meth:`close` writes tqdm's one summary line, so logs stay readable::

        epoch 1/3: 100%|##########| 47/47 [00:02<00:00, 21.4step/s, loss 0.412 ...]
    """

    def __init__(
        self,
        total: int,
        label: str = "",
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        unit: str = "it",
    ) -> None:
        self.total = max(1, int(total))
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.unit = unit
        self.count = 0
        self.start = time.perf_counter()
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: Any = None
        if enabled and self.interactive:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total,
                desc=label,
                unit=unit,
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0.1,
                leave=True,
            )

    def update(self, step: int = 1, note: str = "") -> None:
        """Count ``step`` more done; ``note`` (a loss, say) shows after the rate."""
        step = min(step, self.total - self.count)
        self.count += step
        if self._bar is not None:
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(step)

    def close(self, note: str = "") -> None:
        """Finish the bar with ``note``: the terminal's bar stays, a log gets one line."""
        if not self.enabled:
            return
        if self._bar is not None:
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.close()
            return
        from tqdm import tqdm

        line = tqdm.format_meter(
            self.count,
            self.total,
            time.perf_counter() - self.start,
            prefix=self.label,
            ascii=True,
            unit=self.unit,
            postfix=note or None,
        )
        self.stream.write(line + "\n")
        self.stream.flush()
