"""Ctrl-C and SIGTERM at safe points only, for the command line.

A ``KeyboardInterrupt`` raised in the middle of importing a compiled module (matplotlib,
OpenCV, torch) can leave it half initialised; seen once in 13 tries: an ``ImportError``,
then the interpreter aborting at exit ("Fatal Python error", status 134).
``deferred_interrupts`` holds SIGINT and SIGTERM for the body and delivers them as soon
as it ends, as ``KeyboardInterrupt`` and ``Terminated``. ``terminate_as_exception``
turns SIGTERM into ``Terminated`` for a whole command, so ``finally`` blocks (removing a
partial output folder) run on ``kill`` as they do on Ctrl-C.

Signal handlers can only be set in the main thread; elsewhere both are no-ops.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Terminated", "deferred_interrupts", "terminate_as_exception"]


class Terminated(BaseException):
    """SIGTERM received (raised where the process was, so cleanup runs)."""


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT/SIGTERM during the body; deliver them when it ends."""
    if not _main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if signal.SIGTERM in pending:
            raise Terminated()
        if signal.SIGINT in pending:
            raise KeyboardInterrupt()


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def terminate_as_exception() -> Iterator[None]:
    """Raise ``Terminated`` on SIGTERM during the body (the default handler would end
    the process at once, skipping every ``finally``)."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
