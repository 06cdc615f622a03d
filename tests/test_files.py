"""Atomic writes: whole files or none, with the permissions a plain open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from xai._files import atomic_write, atomic_write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_gets_the_umask_permissions_not_the_temporary_files(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "hello")
        with open(tmp_path / "b.txt", "w") as plain:
            plain.write("hello")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == _mode(tmp_path / "b.txt") == 0o640
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_replaced_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    os.chmod(target, 0o604)
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert _mode(target) == 0o604


def test_a_failed_write_leaves_nothing(tmp_path):
    def fail(temporary: str) -> None:
        with open(temporary, "w") as handle:
            handle.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(tmp_path / "x.png", fail)
    assert list(tmp_path.iterdir()) == []
