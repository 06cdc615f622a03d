"""A dependency-free text progress bar for training loops."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``[#####.....] 512/1000  loss 0.412`` redrawn in place on a terminal.

    On a stream that is not a terminal (a CI log, a file) it writes one line when the
    bar completes instead of redrawing, so logs stay readable.
    """

    def __init__(
        self,
        total: int,
        label: str = "",
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        width: int = 30,
    ) -> None:
        self.total = max(1, int(total))
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.width = width
        self.count = 0
        self.start = time.perf_counter()
        self._drawn = 0.0
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, step: int = 1, note: str = "") -> None:
        self.count = min(self.total, self.count + step)
        now = time.perf_counter()
        if (
            self.enabled
            and self.interactive
            and (now - self._drawn > 0.1 or self.count == self.total)
        ):
            self._drawn = now
            self.stream.write("\r" + self._line(note))
            self.stream.flush()

    def close(self, note: str = "") -> None:
        if not self.enabled:
            return
        self.stream.write(("\r" if self.interactive else "") + self._line(note) + "\n")
        self.stream.flush()

    def _line(self, note: str) -> str:
        done = int(self.width * self.count / self.total)
        elapsed = time.perf_counter() - self.start
        bar = "#" * done + "." * (self.width - done)
        text = f"{self.label} [{bar}] {self.count}/{self.total} {elapsed:.0f}s"
        return f"{text}  {note}" if note else text
