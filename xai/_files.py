"""Writing files whole or not at all: through a temporary file in the same folder, then
an atomic rename. An interrupted or failed write leaves no half-written file behind."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xai.core.errors import XAINotADirectoryError, XAIPermissionError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "check_writable_dir"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], Any]) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file onto ``path``.

    The temporary file keeps ``path``'s suffix, so writers that choose a format by the
    file name (matplotlib's ``savefig``, OpenCV's ``imwrite``, ``numpy.save``) work. The
    file gets the permissions a plain ``open(path, "w")`` would give it (those of the file
    it replaces, else 0o666 less the umask), not the temporary file's private 0o600.
    """
    path = Path(path)
    mode = _mode_for(path)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
    )
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)  # reading the umask means setting it; restored at once
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda temporary: Path(temporary).write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_writable_dir(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """Prove that the folder ``path`` can be written to (or made, in its nearest existing
    parent) by writing a probe file; nothing is created.

    ``os.access`` is not enough: it says yes to root on a read-only file system.

    Raises:
        XAINotADirectoryError: a file stands where the folder (or one of its parents) should
            be.
        XAIPermissionError: the folder cannot be written (the reason says why).
        Each is one sentence naming the folder, the reason and the fix.
    """
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise XAINotADirectoryError(f"{what}: {existing} is a file, not a folder; name a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".xai-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise XAIPermissionError(
            f"{what}: cannot write to the folder {path} ({reason.lower()}); choose a "
            f"writable folder"
        ) from None
    return path
