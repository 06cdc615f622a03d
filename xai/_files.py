"""Writing files whole or not at all: through a temporary file in the same folder, then
an atomic rename. An interrupted or failed write leaves no half-written file behind."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xai.core.errors import (
    XAIFileNotFoundError,
    XAINotADirectoryError,
    XAIPermissionError,
    XAIValueError,
)

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable_dir",
    "check_writable_file",
]


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
        XAIFileNotFoundError: the folder, or a parent still to be made, is a symbolic link
            to nothing (``mkdir`` would fail on it with "File exists" once the work is done).
        XAINotADirectoryError: a file stands where the folder (or one of its parents) should
            be.
        XAIPermissionError: the folder cannot be written (the reason says why).
        Each is one sentence naming the folder, the reason and the fix.
    """
    path = Path(path)
    existing = path
    while not existing.exists():  # exists() follows links: False for a dangling one
        if existing.is_symlink():
            raise XAIFileNotFoundError(
                f"{what}: {existing} is a symbolic link to {_link_target(existing)}; create "
                f"the folder it points to, remove the link, or name another folder"
            )
        if existing == existing.parent:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise XAINotADirectoryError(f"{what}: {existing} is a file, not a folder; name a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".xai-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise XAIPermissionError(
            f"{what}: cannot write to the folder {path} ({_unwritable(existing, error)})"
        ) from None
    return path


def _link_target(link: Path) -> str:
    """What a dangling link points to, for a message: ``X, which does not exist`` or, for
    a chain that loops, ``X, which leads nowhere (the links loop)``."""
    target = os.readlink(link)
    try:
        os.path.realpath(link, strict=True)
    except FileNotFoundError:
        return f"{target}, which does not exist"
    except OSError as error:
        if error.errno != errno.ELOOP:
            return f"{target}, which cannot be reached ({(error.strerror or '').lower()})"
    return f"{target}, which leads nowhere (the links loop)"


def _unwritable(folder: Path, error: OSError) -> str:
    """Why the folder cannot be written, and the fix, in words rather than an errno."""
    if error.errno == errno.EROFS:
        return f"{folder} is on a read-only file system; choose a folder on a writable disk"
    if error.errno in (errno.EACCES, errno.EPERM):
        return (
            f"no permission to write in {folder}; choose a folder you can write to or make "
            f"it writable (chmod u+w {folder})"
        )
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk holding {folder} is full; free some space or choose another folder"
    reason = (error.strerror or type(error).__name__).lower()
    return f"{folder} takes no new files: {reason}; choose a writable folder"


def check_writable_file(
    path: str | os.PathLike[str], what: str = "--out", example: str = "model.pt"
) -> Path:
    """Prove that a file can be written at ``path`` (made or replaced whole, as
    ``atomic_write`` does) before any work is done for it; nothing is created. ``example``
    is the file name the message suggests when ``path`` is a folder.

    Raises:
        XAIValueError: ``path`` is a folder, or something other than a regular file (a
            device such as ``/dev/null``, which the rename would replace).
        XAIFileNotFoundError: ``path`` is a symbolic link to nothing, or its folder does
            not exist.
        XAINotADirectoryError, XAIPermissionError: as ``check_writable_dir`` for its
            folder.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise XAIFileNotFoundError(
            f"{what}: {path} is a symbolic link to {_link_target(path)}; remove the link "
            f"or name another file"
        )
    if path.is_dir():
        raise XAIValueError(f"{what} {path} is a folder; name a file in it, e.g. {path / example}")
    if path.exists() and not path.is_file():
        raise XAIValueError(
            f"{what} {path} is not a regular file (a device, pipe or socket), which writing "
            f"would replace; name a file"
        )
    folder = path.parent
    if not folder.exists() and not folder.is_symlink():
        raise XAIFileNotFoundError(
            f"{what}: folder {folder} does not exist; create it first (mkdir -p {folder})"
        )
    check_writable_dir(folder, what)
    return path
