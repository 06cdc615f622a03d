"""Hostile model files and output paths: each ends in one refusal, early, in bounded time
and memory, with nothing written.

* Zip bombs: a PyTorch file is a zip archive. Its declared sizes are checked against a cap
  before anything is unpacked, and the tensors it declares against the architecture
  they are meant for, before any tensor is materialised.
* A plain pickle is named as such and refused without ``--trust-pickle``.
* ``xai layers`` / ``xai classes`` with an input size that does not fit the model, and
  ``xai train`` / ``--out`` destinations that cannot be written, are refused in one line
  before any work.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import pytest
import torch
from torch import nn

import xai
from tests._forkserver import run_xai
from tests._synthetic import write_idx_dataset
from xai._files import check_writable_dir
from xai.core.errors import (
    XAIError,
    XAIFileNotFoundError,
    XAIPermissionError,
    XAIValueError,
)
from xai.models.loading import load_model

XAI = str(Path(sys.executable).parent / "xai")
SAMPLE = str(dict(xai.models.sample_images())["Bag"])
MiB, GiB = 1 << 20, 1 << 30


def run(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``xai ARGS`` in a process of its own, forked from one with torch and xai imported
    (tests/_forkserver.py)."""
    return run_xai(*args, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess[str], pattern: str) -> str:
    import re

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr  # no traceback, no warning
    assert lines[0].startswith("xai: error: "), lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- building hostile PyTorch archives by hand ----------------------------------------
#
# A torch.save file is a zip archive: NAME/data.pkl (the pickled structure, whose tensors
# point at storages by key) and NAME/data/KEY (each storage's raw bytes). The builders
# below write such archives with any declared sizes, without ever holding the data.

_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    """a * b modulo the CRC-32 polynomial (bit-reflected), as zlib's crc32_combine."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if a & (m - 1) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


def _crc_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of A + B from those of A and of B (B ``length2`` bytes long)."""
    power, base = 1 << 31, 1 << 23  # x^0 and x^8
    while length2:
        if length2 & 1:
            power = _multmodp(base, power)
        base = _multmodp(base, base)
        length2 >>= 1
    return _multmodp(power, crc1) ^ crc2


def deflated_zeros(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``size`` zero bytes (a multiple of 1 MiB) and its CRC-32,
    made in milliseconds: 1 MiB of zeros compresses to about 1 KB, and after a full flush
    the compressor starts afresh, so the stream is that block repeated."""
    assert size % MiB == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc_block = zlib.crc32(bytes(MiB))
    crc, count = 0, size // MiB
    for _ in range(count):  # 4096 combines for 4 GiB: a few milliseconds
        crc = _crc_combine(crc, crc_block, MiB)
    return block * count + compressor.flush(), crc


def write_zip(path: Path, entries: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip archive of ``(name, payload, method, crc, size)`` entries: the payload is
    written as given (already deflated when ``method`` is 8), ``size`` is declared as its
    unpacked size (with ZIP64 extra fields where it needs more than 32 bits)."""
    body, central = bytearray(), bytearray()
    for name, payload, method, crc, size in entries:
        raw = name.encode()
        zip64 = size >= 0xFFFFFFFF or len(payload) >= 0xFFFFFFFF
        extra = struct.pack("<HHQQ", 1, 16, size, len(payload)) if zip64 else b""
        sizes = (0xFFFFFFFF, 0xFFFFFFFF) if zip64 else (len(payload), size)
        offset = len(body)
        body += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 45, 0, method, 0, 0x21, crc, *sizes, len(raw), len(extra)
        )
        body += raw + extra + payload
        central += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            45,
            45,
            0,
            method,
            0,
            0x21,
            crc,
            *sizes,
            len(raw),
            len(extra),
            0,
            0,
            0,
            0,
            offset,
        )
        central += raw + extra
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(body), 0
    )
    path.write_bytes(bytes(body + central + end))
    return path


class _Storage:
    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _Tensor:
    """Pickles exactly as torch.save pickles a float tensor of this shape and stride."""

    def __init__(self, storage: _Storage, shape: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.shape, self.stride = storage, shape, stride

    def __reduce__(self):
        args = (self.storage, 0, self.shape, self.stride, False, collections.OrderedDict())
        return (torch._utils._rebuild_tensor_v2, args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride, step = [], 1
    for size in reversed(shape):
        stride.append(step)
        step *= size
    return tuple(reversed(stride))


def torch_archive(
    path: Path,
    tensors: dict[str, tuple[str, tuple[int, ...], tuple[int, ...] | None]],
    storages: dict[str, tuple[int, bytes, int, int, int]],
) -> Path:
    """A torch.save file of a state_dict whose tensors are ``name -> (storage key, shape,
    stride or None for contiguous)``, and whose storages are ``key -> (float elements
    declared in data.pkl, payload, method, crc, unpacked size of the record)``."""
    objects = {key: _Storage(key, numel) for key, (numel, *_) in storages.items()}
    state = collections.OrderedDict(
        (name, _Tensor(objects[key], shape, stride or contiguous(shape)))
        for name, (key, shape, stride) in tensors.items()
    )
    buffer = __import__("io").BytesIO()
    _Pickler(buffer, protocol=2).dump(state)
    pkl = buffer.getvalue()
    entries = [("archive/data.pkl", pkl, 0, zlib.crc32(pkl), len(pkl))]
    entries.append(("archive/byteorder", b"little", 0, zlib.crc32(b"little"), 6))
    for key, (_, payload, method, crc, size) in storages.items():
        entries.append((f"archive/data/{key}", payload, method, crc, size))
    entries.append(("archive/version", b"3\n", 0, zlib.crc32(b"3\n"), 2))
    return write_zip(path, entries)


def stored(data: bytes) -> tuple[bytes, int, int, int]:
    return data, 0, zlib.crc32(data), len(data)


def card_for(path: Path, model: nn.Module, name: str = "gapcnn") -> None:
    card = {"architecture": {"name": name, "config": model.config}, "input_size": [1, 28, 28]}
    path.with_name(path.name + ".json").write_text(json.dumps(card))


@pytest.fixture(scope="module")
def gapcnn() -> nn.Module:
    torch.manual_seed(0)
    return xai.models.GAPCNN(channels=(4, 8), convs_per_block=1, batch_norm=False).eval()


@pytest.fixture
def no_torch_load(monkeypatch):
    """Refusals must come before any tensor is read: torch.load must not be reached."""

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load was called on a file that should have been refused")

    monkeypatch.setattr(torch, "load", forbidden)


# -- 1. zip bombs ----------------------------------------------------------------------


def test_the_zip_bomb_builder_makes_a_real_bomb(tmp_path):
    # The builder's archives are what they claim: zipfile unpacks a small one whole, with
    # the declared size and a matching CRC.
    payload, crc = deflated_zeros(8 * MiB)
    path = write_zip(tmp_path / "b.zip", [("archive/data/0", payload, 8, crc, 8 * MiB)])
    import zipfile

    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.read("archive/data/0") == bytes(8 * MiB)


def test_a_zip_bomb_state_dict_is_refused_from_its_declared_sizes(tmp_path, gapcnn):
    # 4 MB on disk, 4 GiB unpacked: one "head.weight" of 2**30 zero floats, with a model
    # card naming the architecture beside it. It used to take 4.3 GB and 15 s to end in
    # "the weights do not fit".
    payload, crc = deflated_zeros(4 * GiB)
    numel = GiB  # float32 elements: 4 GiB
    path = torch_archive(
        tmp_path / "bomb.pt",
        {"head.weight": ("0", (numel,), None)},
        {"0": (numel, payload, 8, crc, 4 * numel)},
    )
    card_for(path, gapcnn)
    assert path.stat().st_size < 5 * MiB
    before, start = peak_rss_mb(), time.perf_counter()
    with pytest.raises(XAIValueError, match=r"zip bomb.*4\.0 GiB.*PyTorch never compresses"):
        load_model(str(path))
    assert time.perf_counter() - start < 1.0
    assert peak_rss_mb() - before < 100  # memory flat: nothing was unpacked


def test_a_zip_bomb_is_one_line_in_the_cli(tmp_path, gapcnn):
    payload, crc = deflated_zeros(2 * GiB)
    path = torch_archive(
        tmp_path / "bomb.pt",
        {"w": ("0", (GiB // 2,), None)},
        {"0": (GiB // 2, payload, 8, crc, 2 * GiB)},
    )
    start = time.perf_counter()
    result = run("classes", "--model", path)
    one_line_error(result, r"bomb\.pt .*zip bomb")
    assert time.perf_counter() - start < 30  # a fresh interpreter importing torch, no more


def test_declared_sizes_over_the_cap_are_refused_and_the_cap_is_configurable(tmp_path, gapcnn):
    path = tmp_path / "w.pt"
    torch.save(gapcnn.state_dict(), path)
    card_for(path, gapcnn)
    from xai.models.loading import DEFAULT_MAX_BYTES

    assert 4 * GiB == DEFAULT_MAX_BYTES
    with pytest.raises(XAIValueError, match=r"w\.pt is 4\.\d KiB, more than the limit of 1\.0 KiB"):
        load_model(str(path), max_bytes=1024)
    assert load_model(str(path)).kind == "state_dict"  # the default admits it
    result = run("classes", "--model", path, "--max-model-size", "1K")
    one_line_error(result, r"more than the limit of 1\.0 KiB.*--max-model-size")
    assert run("classes", "--model", path, "--max-model-size", "1G").returncode == 0


def test_an_archive_unpacking_to_more_than_the_cap_is_refused_before_unpacking(
    tmp_path, no_torch_load
):
    # 32 KiB on disk, 32 MiB unpacked: too little to be called a bomb, too much for a
    # limit of 16 MiB. The declared sizes alone are refused.
    payload, crc = deflated_zeros(32 * MiB)
    path = torch_archive(
        tmp_path / "big.pt",
        {"w": ("0", (8 * MiB,), None)},
        {"0": (8 * MiB, payload, 8, crc, 32 * MiB)},
    )
    assert path.stat().st_size < 64 * 1024
    with pytest.raises(XAIValueError, match=r"unpacks to 32\.0 MiB, more than the limit of 16\.0"):
        load_model(str(path), arch="mlp", max_bytes=16 * MiB)


def test_declared_tensors_that_do_not_fit_the_architecture_are_refused_unread(
    tmp_path, gapcnn, no_torch_load
):
    # Stored, not compressed, so no bomb: but "head.weight" declares 1000 x 8 where the
    # card's architecture has 10 x 8. Refused from data.pkl alone.
    tensors, storages = {}, {}
    for index, (name, value) in enumerate(gapcnn.state_dict().items()):
        shape = (1000, 8) if name == "head.weight" else tuple(value.shape)
        numel = int(torch.Size(shape).numel())
        tensors[name] = (str(index), shape, None)
        storages[str(index)] = (numel, *stored(bytes(4 * numel)))
    path = torch_archive(tmp_path / "w.pt", tensors, storages)
    card_for(path, gapcnn)
    with pytest.raises(
        XAIValueError,
        match=r"do not fit gapcnn .*size mismatch for head\.weight: the file declares "
        r"\(1000, 8\), the architecture has \(10, 8\)",
    ):
        load_model(str(path))


def test_a_card_describing_a_huge_network_is_refused_before_building_it(tmp_path, gapcnn):
    # Small genuine weights beside a card whose configuration would build a 64 GB network.
    path = tmp_path / "w.pt"
    torch.save(gapcnn.state_dict(), path)
    config = dict(gapcnn.config, channels=[4, 8, 65536, 65536])
    card = {"architecture": {"name": "gapcnn", "config": config}}
    (tmp_path / "w.pt.json").write_text(json.dumps(card))
    before, start = peak_rss_mb(), time.perf_counter()
    with pytest.raises(XAIValueError, match=r"do not fit gapcnn.*--config"):
        load_model(str(path))
    assert time.perf_counter() - start < 1.0
    assert peak_rss_mb() - before < 100


def test_tensors_larger_than_their_storage_are_refused(tmp_path, no_torch_load):
    # A 65536 x 65536 x 3 x 3 convolution declared over one float (stride 0): with
    # --arch alone, the configuration read off these shapes would build a 150 GB network.
    huge = (65536, 65536, 3, 3)
    tensors = {
        "features.0.weight": ("0", huge, (0, 0, 0, 0)),
        "head.weight": ("1", (10, 65536), (0, 0)),
    }
    storages = {"0": (1, *stored(bytes(4))), "1": (1, *stored(bytes(4)))}
    path = torch_archive(tmp_path / "w.pt", tensors, storages)
    with pytest.raises(
        XAIValueError,
        match=r"features\.0\.weight .*38654705664 elements\) over a storage of only 1 element",
    ):
        load_model(str(path), arch="gapcnn")


def test_reading_a_configuration_off_the_weights_is_bounded(tmp_path, no_torch_load):
    # 300 tiny convolutions (a 60 KB file): reading a GAPCNN configuration off them
    # would try networks for 47 s. Refused at once, asking for --config.
    tensors, storages = {}, {}
    for index in range(300):
        shape = (4, 1 if index == 0 else 4, 3, 3)
        numel = int(torch.Size(shape).numel())
        tensors[f"features.{index}.weight"] = (str(index), shape, None)
        storages[str(index)] = (numel, *stored(bytes(4 * numel)))
    path = torch_archive(tmp_path / "w.pt", tensors, storages)
    start = time.perf_counter()
    with pytest.raises(XAIValueError, match=r"declares 300 convolution weights.*--config"):
        load_model(str(path), arch="gapcnn")
    assert time.perf_counter() - start < 1.0


def test_genuine_files_are_checked_before_loading(tmp_path, gapcnn, monkeypatch):
    # The declarations of a genuine file are read (the pre-checks run, not skipped).
    from xai.models import loading

    seen = []
    check = loading.check_against_architecture
    monkeypatch.setattr(
        loading, "check_against_architecture", lambda *a: seen.append(a[3]) or check(*a)
    )
    path = tmp_path / "w.pt"
    torch.save({"epoch": 2, "model_state_dict": gapcnn.state_dict()}, path)
    load_model(str(path), arch="gapcnn")
    assert list(seen[0]) == list(gapcnn.state_dict())


def test_a_storage_declared_larger_than_its_record_is_refused(tmp_path, no_torch_load):
    tensors = {"w": ("0", (1024,), None)}
    storages = {"0": (1024, *stored(bytes(16)))}  # 4096 bytes declared in data.pkl, 16 held
    path = torch_archive(tmp_path / "w.pt", tensors, storages)
    with pytest.raises(XAIValueError, match=r"storage 0 .*4096 bytes.*holds 16"):
        load_model(str(path), arch="mlp")


def test_a_damaged_zip_directory_is_one_error(tmp_path):
    # An end record pointing at a central directory that is not there.
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, 46, 0, 0)
    (tmp_path / "d.pt").write_bytes(end)
    with pytest.raises(XAIValueError, match=r"d\.pt is a damaged zip archive"):
        load_model(str(tmp_path / "d.pt"))
    # One declaring a million entries is refused before zipfile reads them all.
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0, 0, 0)
    zip64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 10**6, 10**6, 46 * 10**6, 0)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, 0, 1)
    (tmp_path / "many.pt").write_bytes(zip64 + locator + end)
    with pytest.raises(XAIValueError, match=r"many\.pt is a zip archive of 1,000,000 entries"):
        load_model(str(tmp_path / "many.pt"))


def test_genuine_files_still_load(tmp_path, gapcnn):
    path = tmp_path / "w.pt"
    torch.save({"epoch": 2, "model_state_dict": gapcnn.state_dict()}, path)
    card_for(path, gapcnn)
    loaded = load_model(str(path))
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(loaded.model(x), gapcnn(x), rtol=0, atol=0)
    bare = tmp_path / "bare.pt"
    torch.save(gapcnn.state_dict(), bare)
    torch.testing.assert_close(
        load_model(str(bare), arch="gapcnn").model(x), gapcnn(x), rtol=0, atol=0
    )


# -- 2. plain pickles ------------------------------------------------------------------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_plain_pickle_is_named_and_refused_without_the_trust_flag(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"weights": _Payload(marker)}, protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "Detected pickle protocol 4" warning: none
        with pytest.raises(
            XAIPermissionError,
            match=r"evil\.pkl is a plain Python pickle.*can run any code.*names "
            r"(posix|os)\.system.*--trust-pickle",
        ):
            load_model(str(path))
    assert not marker.exists()
    result = run("classes", "--model", path)
    one_line_error(result, r"plain Python pickle.*refused without --trust-pickle")
    assert "Warning" not in result.stderr
    assert not marker.exists()


def test_a_plain_pickle_of_a_model_loads_with_the_trust_flag(tmp_path, gapcnn):
    path = tmp_path / "whole.pkl"
    path.write_bytes(pickle.dumps(gapcnn))
    with pytest.raises(XAIPermissionError, match="plain Python pickle"):
        load_model(str(path))
    loaded = load_model(str(path), trust_pickle=True)
    assert loaded.kind == "pickle"
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(loaded.model(x), gapcnn(x), rtol=0, atol=0)


def test_a_damaged_pickle_and_a_legacy_torch_file(tmp_path, gapcnn):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"\x80\x02garbage")
    with pytest.raises(XAIValueError, match="not a readable PyTorch file"):
        load_model(str(path))
    legacy = tmp_path / "legacy.pt"
    torch.save(gapcnn.state_dict(), legacy, _use_new_zipfile_serialization=False)
    assert load_model(str(legacy), arch="gapcnn").kind == "state_dict"


# -- 3. an input size that does not fit the model -------------------------------------


NETS = (
    "from torch import nn\n"
    "def grey():\n"
    "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),\n"
    "                         nn.Flatten(), nn.Linear(4, 3))\n"
    "def flat():\n"
    "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(),\n"
    "                         nn.Linear(4 * 26 * 26, 3))\n"
)


@pytest.mark.parametrize("command", ["layers", "classes"])
def test_a_channel_mismatch_is_one_line_naming_the_fix(tmp_path, command):
    (tmp_path / "nets.py").write_text(NETS)
    result = run(command, "--model", "nets.py:grey", "--input-size", "3,28,28", cwd=tmp_path)
    one_line_error(
        result,
        r"--input-size 3,28,28: the model's first convolution expects 1 input channel, "
        r"not 3; pass --input-size 1,28,28",
    )
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["layers", "classes"])
def test_a_size_the_model_cannot_take_is_one_line(tmp_path, command):
    (tmp_path / "nets.py").write_text(NETS)
    result = run(command, "--model", "nets.py:flat", "--input-size", "1,20,20", cwd=tmp_path)
    one_line_error(result, r"cannot take inputs of shape \(1, 20, 20\) .*--input-size C,H,W")
    assert run(command, "--model", "nets.py:flat", "--input-size", "1,28,28",
               cwd=tmp_path).returncode == 0  # fmt: skip


# -- 4. and 5. output destinations, checked before any work ----------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_idx_dataset(tmp_path_factory.mktemp("data") / "fashion", per_class=3)


def _train(data: Path, out: object) -> subprocess.CompletedProcess[str]:
    return run("train", "--data", data, "--model", "mlp", "--epochs", "1", "--quiet", "--out", out)


def test_train_refuses_a_folder_as_out_before_training(tmp_path, data):
    (tmp_path / "models").mkdir()
    result = _train(data, tmp_path / "models")
    one_line_error(result, r"--out .*models is a folder; name a file in it, e.g. .*models/mlp\.pt")
    assert result.stdout == ""  # nothing trained
    assert list((tmp_path / "models").iterdir()) == []


def test_train_refuses_a_folder_where_its_card_goes(tmp_path, data):
    (tmp_path / "m.pt.json").mkdir()
    result = _train(data, tmp_path / "m.pt")
    one_line_error(result, r"m\.pt\.json is a folder")
    assert result.stdout == ""
    assert not (tmp_path / "m.pt").exists()


def test_train_refuses_an_unwritable_folder_before_training(data):
    # /proc takes no new files, not even from root (a chmod'ed folder would not stop root).
    result = _train(data, "/proc/xai-model.pt")
    one_line_error(result, r"--out: cannot write to the folder /proc\b.*choose")
    assert result.stdout == ""


def test_train_refuses_a_dangling_symlink_and_a_device(tmp_path, data):
    (tmp_path / "link.pt").symlink_to(tmp_path / "nowhere" / "m.pt")
    result = _train(data, tmp_path / "link.pt")
    one_line_error(result, r"link\.pt is a symbolic link to .*nowhere/m\.pt, which does not exist")
    assert result.stdout == ""
    from xai._files import check_writable_file

    with pytest.raises(XAIValueError, match=r"/dev/null is not a regular file"):
        check_writable_file("/dev/null", "--out")


def test_a_dangling_symlink_out_folder_is_refused_up_front(tmp_path):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "missing" / "target")
    for args in (["explain", SAMPLE, "--out", link], ["samples", "--out", link]):
        result = run(*args)
        one_line_error(
            result,
            r"--out: .*out is a symbolic link to .*missing/target, which does not exist; "
            r"create .* or name another folder",
        )
        assert result.stdout == ""
    with pytest.raises(XAIFileNotFoundError, match="symbolic link"):
        check_writable_dir(link / "below")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(XAIFileNotFoundError, match=r"loop is a symbolic link .*leads nowhere"):
        check_writable_dir(loop)
    assert not (tmp_path / "missing").exists()


def test_samples_refuses_a_folder_in_place_of_a_sample_before_writing(tmp_path):
    out = tmp_path / "samples"
    (out / "9-ankle-boot.png").mkdir(parents=True)
    result = run("samples", "--out", out)
    one_line_error(result, r"--out .*9-ankle-boot\.png is a folder")
    assert result.stdout == ""
    assert [p.name for p in out.iterdir()] == ["9-ankle-boot.png"]  # nothing written


@pytest.mark.parametrize(
    ("code", "pattern"),
    [
        (errno.EROFS, r"ro is on a read-only file system; choose a folder on a writable disk"),
        (
            errno.EACCES,
            r"no permission to write in .*ro; choose a folder you can write to or "
            r"make it writable \(chmod u\+w .*ro\)",
        ),
        (errno.ENOSPC, r"the disk holding .*ro is full"),
    ],
)
def test_an_unwritable_folder_names_the_folder_and_the_fix(tmp_path, monkeypatch, code, pattern):
    (tmp_path / "ro").mkdir()

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "ro" / ".xai-probe-x"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(XAIPermissionError) as caught:
        check_writable_dir(tmp_path / "ro" / "sub")
    message = str(caught.value)
    assert message.startswith(f"--out: cannot write to the folder {tmp_path / 'ro' / 'sub'} (")
    assert "Errno" not in message
    import re

    assert re.search(pattern, message), message


def _as_ordinary_user(call) -> str:
    """``call()``'s refusal message, run with an ordinary user's permissions: in a forked
    child that drops root (root writes into read-only folders), or here when not root."""
    if os.geteuid() != 0:
        try:
            call()
        except XAIError as error:
            return str(error)
        return ""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        message = ""
        try:
            os.setgid(65534)
            os.setuid(65534)  # nobody
            call()
        except XAIError as error:
            message = str(error)
        except BaseException as error:
            message = f"unexpected {type(error).__name__}: {error}"
        finally:
            os.write(write, message.encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(child, 0)
    return message


def test_a_read_only_folder_for_an_ordinary_user():
    # A real chmod 555 folder, for a user without root's privileges.
    top = Path(tempfile.mkdtemp(prefix="xai-ro-", dir="/tmp"))
    try:
        top.chmod(0o755)
        folder = top / "ro"
        folder.mkdir(mode=0o555)
        folder.chmod(0o555)
        message = _as_ordinary_user(lambda: check_writable_dir(folder / "maps"))
        assert message == (
            f"--out: cannot write to the folder {folder / 'maps'} (no permission to write in "
            f"{folder}; choose a folder you can write to or make it writable (chmod u+w "
            f"{folder}))"
        )
        from xai._files import check_writable_file

        message = _as_ordinary_user(lambda: check_writable_file(folder / "m.pt"))
        assert f"no permission to write in {folder}" in message
    finally:
        (top / "ro").chmod(0o755)
        (top / "ro").rmdir()
        top.rmdir()
