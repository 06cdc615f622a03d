"""The decoders' own messages: caught while OpenCV decodes, and read.

libpng and libjpeg write their warnings to the process's file descriptor 2, not to
``sys.stderr``, so ``decoder_messages`` points the descriptor at a temporary file for the
block and sorts what was written: the decoders' lines are returned, anything else
(another thread printing) is written back to standard error. ``damage`` keeps the
messages that say the pixels may be wrong. Used by ``xai.images.read_image``.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import IO

__all__ = ["damage", "decoder_messages"]

# What the decoders print. libpng prefixes its lines; these are libjpeg-turbo's warnings
# (jerror.h, JWRN_*): its errors are not printed, OpenCV catches them.
_LIBJPEG_WARNINGS = (
    "Corrupt JPEG data",
    "Premature end of JPEG file",
    "Invalid SOS parameters for sequential JPEG",
    "Inconsistent progression sequence",
    "Application transferred too many scanlines",
    "Unknown Adobe color transform code",
    "Warning: unknown JFIF revision number",
    "Warning: thumbnail image size does not match data length",
)
_OPENCV_LOG = re.compile(r"\[\s*(?:FATAL|ERROR|WARN|INFO|DEBUG|VERBOSE)\b")
# Warnings about what does not reach the pixels: libjpeg's about JFIF metadata and ICC
# profiles, libpng's about an ancillary chunk (a lower-case first letter) other than the
# transparency chunk tRNS, which OpenCV turns into alpha.
_HARMLESS_LIBJPEG = (
    "Warning: unknown JFIF revision number",
    "Warning: thumbnail image size does not match data length",
    "Corrupt JPEG data: bad ICC marker",
)
_HARMLESS_LIBPNG = re.compile(r"libpng warning: (?!tRNS)[a-z][A-Za-z]{3}: ")
# At most this much of the decoder's output is read back.
_MESSAGE_BYTES = 1 << 16


def _from_decoder(line: str) -> bool:
    """Whether a line on standard error is libpng's, libjpeg's or OpenCV's."""
    return line.startswith(("libpng ", *_LIBJPEG_WARNINGS)) or bool(_OPENCV_LOG.match(line))


def damage(messages: Sequence[str]) -> list[str]:
    """The decoder's messages that say the pixels may be wrong."""
    return [
        line
        for line in messages
        if not line.startswith(_HARMLESS_LIBJPEG) and not _HARMLESS_LIBPNG.match(line)
    ]


_STDERR_LOCK = threading.Lock()


@contextmanager
def decoder_messages() -> Iterator[list[str]]:
    """Catch what the decoders (libpng, libjpeg, OpenCV) print while the block runs.

    C libraries write to the process's file descriptor 2, not to ``sys.stderr``, so the
    descriptor is pointed at a temporary file meanwhile. One capture at a time (a lock):
    two overlapping captures would each restore the other's descriptor, leaving standard
    error pointing at a deleted file, and mix their messages. The list holds the
    decoders' lines only; what anything else printed meanwhile (another thread) is written
    to standard error afterwards, so it is neither lost nor taken for a decoder's message.
    """
    messages: list[str] = []
    with _STDERR_LOCK:
        if sys.stderr is not None:
            with suppress(OSError, ValueError):
                sys.stderr.flush()  # Python's pending text is not the decoder's
        try:
            saved = os.dup(2)
        except OSError:  # no descriptor 2: nothing to catch either
            yield messages
            return
        try:
            try:
                sink = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
            except OSError:  # nowhere to put the messages: nothing to catch
                yield messages
                return
            with sink:
                os.dup2(sink.fileno(), 2)
                try:
                    yield messages
                finally:
                    os.dup2(saved, 2)
                    _sort_output(sink, messages)
        finally:
            os.close(saved)


def _sort_output(sink: IO[bytes], messages: list[str]) -> None:
    """The decoders' lines from ``sink`` into ``messages``; the rest (and anything past
    the first ``_MESSAGE_BYTES``) written to standard error as it was."""
    sink.seek(0)
    others = []
    for line in sink.read(_MESSAGE_BYTES).splitlines(keepends=True):
        text = line.decode("utf-8", "replace").strip()
        if text and _from_decoder(text):
            messages.append(text)
        else:
            others.append(line)
    with suppress(OSError):
        rest = b"".join(others)
        while rest or (rest := sink.read(_MESSAGE_BYTES)):
            rest = rest[os.write(2, rest) :]
