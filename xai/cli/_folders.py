"""Writing a folder whole or not at all, and naming the folders of a run.

``write_folder(dest, fill)`` lets ``fill`` write into a hidden partial folder beside
``dest`` (``.NAME.partial``), then renames it onto ``dest``; a folder already at ``dest``
(an earlier run's) is moved aside first and removed after, so ``dest`` is always either
the old folder whole or the new one whole. An exception or Ctrl-C inside ``fill``
removes the partial folder; a process killed outright (SIGKILL) leaves only the hidden
partial folder, which the next write of that name removes.

``folder_names`` names each input's folder after its file name, extension included
(``x.png`` -> ``x.png``, ``x.jpg`` -> ``x.jpg``): the same input always gets the same
folder, whatever else is in the run. Two inputs of one run that would share a folder
(the same file name in two folders) are refused before anything is written.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from xai.core.errors import XAIValueError

__all__ = ["folder_names", "write_folder"]


def _safe(name: str) -> str:
    """A file name as a folder name: control characters become ``_``; never empty or
    hidden (a leading dot would hide the folder and collide with partial folders)."""
    cleaned = "".join("_" if ord(c) < 32 or c == "\x7f" else c for c in name)
    if not cleaned or cleaned.startswith("."):
        cleaned = "_" + cleaned
    return cleaned


def folder_names(paths: Sequence[Path]) -> list[str]:
    """One folder name per input (see the module doc); an error if two would clash."""
    names = [_safe(path.name) for path in paths]
    seen: dict[str, Path] = {}
    for name, path in zip(names, paths, strict=True):
        key = name.casefold()  # case-insensitive file systems (macOS, Windows) clash too
        other = seen.get(key)
        if other is not None:
            raise XAIValueError(
                f"{other} and {path} would both be written to the folder {name!r} under "
                f"--out: each image's folder is named after its file name so that reruns "
                f"find it. Explain them in separate runs (different --out), or rename one."
            )
        seen[key] = path
    return names


def write_folder(dest: Path, fill: Callable[[Path], None]) -> bool:
    """Fill a fresh folder and put it at ``dest`` in one rename (see the module doc).

    Returns whether an existing folder at ``dest`` was replaced.
    """
    partial = dest.parent / f".{dest.name}.partial"
    aside = dest.parent / f".{dest.name}.old"
    for leftover in (partial, aside):  # from a process killed mid-write
        if leftover.exists() or leftover.is_symlink():
            _remove(leftover)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial.mkdir()
    try:
        fill(partial)
        replaced = dest.exists() or dest.is_symlink()
        if replaced:
            os.rename(dest, aside)
        os.rename(partial, dest)
    except BaseException:
        _remove(partial)
        if aside.exists() and not dest.exists():
            os.rename(aside, dest)  # put the earlier run's folder back
        raise
    if replaced:
        _remove(aside)
    return replaced


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
