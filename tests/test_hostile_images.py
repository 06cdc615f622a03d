"""Hostile image files: each ends in one ``XAIError`` naming the file, in bounded time and
memory, or is read exactly.

* Decompression bombs (a 390 KB PNG of 20,000 x 20,000 pixels, a 600-byte JPEG claiming
  11,691 x 30,000) are refused from their headers in milliseconds, allocating nothing.
* Damage the decoder reports (a JPEG cut mid-scan, a PNG with too much image data) is
  refused with the decoder's own words, or read with a ``DamagedImageWarning`` when
  ``allow_damaged=True``; the decoder's messages are caught reliably, threads or not.
* No ``cv2.error`` and no ``MemoryError`` escapes: OpenCV's size assertion, a failed
  allocation, odd bit depths, 12-bit and 2-component JPEGs all become one error.

The files are built by ``tests/corpus/make_images.py``.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image as Pillow

import xai.cli
import xai.images
from tests.corpus.make_images import (
    base_files,
    cmyk_jpeg,
    cut_scan,
    hostile_files,
    ihdr,
    jpeg_bomb,
    jpeg_bytes,
    jpeg_segments,
    png_bomb,
    png_bytes,
    png_chunks,
    png_from_chunks,
    with_size,
)
from tests.corpus.reference import opencv_cmyk_to_rgb
from xai.core.errors import XAIOSError, XAITypeError, XAIValueError
from xai.images import MAX_PIXELS, DamagedImageWarning, read_image

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    paths = {}
    for name, data in {**hostile_files(), **base_files()}.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _photo(height: int = 200, width: int = 200) -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (height, width, 3), np.uint8)


def _run_python(code: str, timeout: int = 120) -> dict:
    """Run ``code`` in a fresh interpreter (its own peak memory); its printed JSON."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- 1. decompression bombs ------------------------------------------------------------


BOMBS = {
    "bomb-20000x20000.png": "20,000 x 20,000 = 400,000,000 pixels",
    "bomb-11691x30000.jpg": "11,691 x 30,000 = 350,730,000 pixels",
    "bomb-progressive-30000x30000.jpg": "30,000 x 30,000 = 900,000,000 pixels",
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_bomb_is_refused_from_its_header_in_milliseconds(hostile, name):
    path = hostile[name]
    assert path.stat().st_size < 400_000  # a small file...
    began = time.perf_counter()
    with pytest.raises(XAIValueError) as caught:
        read_image(path)  # ...claiming a huge picture
    assert time.perf_counter() - began < 1.0
    message = str(caught.value)
    assert message.startswith(str(path))
    assert BOMBS[name] in message
    assert "more than max_pixels = 89,478,485" in message
    assert "raise max_pixels" in message


def test_bombs_and_files_too_small_for_their_size_allocate_nothing(hostile):
    """In a fresh interpreter: the peak memory does not grow while they are refused."""
    names = [
        *BOMBS,
        "claims-9000x9000.png",  # under the cap, but 31 bytes of data for 81 M pixels
        "claims-9000x9000.jpg",
        "scans-600.jpg",
    ]
    paths = {name: str(hostile[name]) for name in names}
    report = _run_python(
        f"""
        import json, resource, time
        from xai.core.errors import XAIError
        from xai.images import read_image
        read_image({str(hostile["rgb8.png"])!r}); read_image({str(hostile["baseline.jpg"])!r})
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        before, out = peak(), {{}}
        for name, path in {paths!r}.items():
            began = time.perf_counter()
            try:
                read_image(path)
                out[name] = ["read", 0]
            except XAIError as error:
                out[name] = [str(error), time.perf_counter() - began]
        print(json.dumps({{"grew_mb": peak() - before, "results": out}}))
        """
    )
    assert report["grew_mb"] < 16, report
    for name, (message, seconds) in report["results"].items():
        assert message.startswith(paths[name]), (name, message)
        assert seconds < 0.5, (name, seconds)
    results = report["results"]
    assert "cannot hold 9,000 x 9,000 pixels" in results["claims-9000x9000.png"][0]
    assert "cannot hold 9,000 x 9,000 pixels" in results["claims-9000x9000.jpg"][0]
    assert "more than 500 scans" in results["scans-600.jpg"][0]


def test_max_pixels_moves_the_cap_and_has_no_unlimited_setting(tmp_path):
    path = _write(tmp_path, "g.png", png_bytes(np.zeros((100, 100), np.uint8)))
    assert read_image(path, max_pixels=10_000).size == (100, 100)
    with pytest.raises(XAIValueError, match=r"100 x 100 = 10,000 pixels .* max_pixels = 9,999"):
        read_image(path, max_pixels=9_999)
    bomb = _write(tmp_path, "bomb.png", png_bomb(20000, 20000))
    with pytest.raises(XAIValueError, match="more than max_pixels = 399,999,999"):
        read_image(bomb, max_pixels=399_999_999)
    assert xai.images.MAX_PIXELS == MAX_PIXELS == 89_478_485  # Pillow's


def test_max_pixels_refuses_none_zero_and_non_integers(tmp_path):
    path = _write(tmp_path, "g.png", png_bytes(np.zeros((2, 2), np.uint8)))
    with pytest.raises(XAITypeError, match=r"^read_image: max_pixels must be a positive int; got"):
        read_image(path, max_pixels=None)  # no silent "no limit"
    with pytest.raises(XAITypeError, match="no setting without a limit"):
        read_image(path, max_pixels=None)
    with pytest.raises(
        XAIValueError, match=r"^read_image: max_pixels must be a positive int; got 0"
    ):
        read_image(path, max_pixels=0)
    for bad in (True, 1.5, "100"):
        with pytest.raises(XAITypeError, match=r"^read_image: max_pixels must be"):
            read_image(path, max_pixels=bad)
    with pytest.raises(XAITypeError, match=r"^read_image: allow_damaged must be a bool"):
        read_image(path, allow_damaged=1)


# -- 2. damage the decoder reports -----------------------------------------------------


def test_a_jpeg_cut_mid_scan_is_refused_quoting_the_decoder(tmp_path):
    photo = jpeg_bytes(_photo())
    path = _write(tmp_path, "cut.jpg", cut_scan(photo, 0.6))
    with pytest.raises(XAIValueError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path} is a damaged JPEG: the decoder reported ")
    assert "'Corrupt JPEG data: premature end of data segment'" in message
    assert "allow_damaged=True" in message

    with pytest.warns(DamagedImageWarning, match="premature end of data segment") as caught:
        image = read_image(path, allow_damaged=True)
    assert caught[0].filename == __file__  # attributed to the caller
    whole = read_image(_write(tmp_path, "whole.jpg", photo)).pixels
    wrong_rows = int(np.any(image.pixels != whole, axis=(1, 2)).sum())
    assert wrong_rows > 50  # what used to be explained as a picture


def test_a_jpeg_without_its_end_is_refused_or_read_as_damaged(tmp_path):
    photo = jpeg_bytes(_photo(64, 64))
    path = _write(tmp_path, "short.jpg", photo[: len(photo) // 2])
    with pytest.raises(XAIValueError, match="truncated JPEG: it has no end-of-image marker"):
        read_image(path)
    with pytest.warns(DamagedImageWarning, match="truncated JPEG.*premature end of data"):
        assert read_image(path, allow_damaged=True).size == (64, 64)  # the rest made up


def test_too_much_or_extra_png_image_data_is_refused_quoting_libpng(hostile, tmp_path):
    with pytest.raises(XAIValueError) as caught:
        read_image(hostile["too-much-data.png"])
    assert "the decoder reported 'libpng warning: IDAT: Too much image data'" in str(caught.value)

    chunks = png_chunks(png_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4)))
    body = next(body for kind, body in chunks if kind == b"IDAT") + b"junk"
    extra = [(kind, body if kind == b"IDAT" else b) for kind, b in chunks]
    path = _write(tmp_path, "extra.png", png_from_chunks(extra))
    with pytest.raises(XAIValueError, match="IDAT: Extra compressed data"):
        read_image(path)
    with pytest.warns(DamagedImageWarning, match="Extra compressed data"):
        image = read_image(path, allow_damaged=True)
    np.testing.assert_array_equal(image.pixels, np.arange(12).reshape(3, 4))


def test_metadata_warnings_do_not_refuse_a_file(tmp_path, capfd):
    """libpng warns about a broken ICC profile or text chunk: the pixels do not depend on
    them (OpenCV uses neither), so the file reads, quietly."""
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    extra = [(b"iCCP", b"icc\x00\x00" + zlib.compress(b"not a profile")), (b"tEXt", b"")]
    path = _write(tmp_path, "meta.png", png_bytes(pixels, extra=extra))
    np.testing.assert_array_equal(read_image(path).pixels, pixels)
    assert capfd.readouterr().err == ""


def test_a_bad_transparency_chunk_is_damage(tmp_path):
    """tRNS becomes alpha: when libpng drops a bad one, the pixels change."""
    rgb = np.full((2, 2, 3), 7, np.uint8)
    path = _write(tmp_path, "t.png", png_bytes(rgb, transparency=b"\x00" * 7))
    with pytest.raises(XAIValueError, match="'libpng warning: tRNS: invalid'"):
        read_image(path)


def test_the_decoders_messages_are_told_from_other_output(tmp_path, monkeypatch, capfd):
    """Whatever else writes to standard error while a file decodes (another thread) is
    passed on and not taken for the decoder's; what looks like libpng's is."""
    path = _write(tmp_path, "g.png", png_bytes(np.zeros((4, 4), np.uint8)))
    real = cv2.imdecode

    def noisy(line: bytes):
        def imdecode(*args):
            os.write(2, line)
            return real(*args)

        return imdecode

    monkeypatch.setattr(cv2, "imdecode", noisy(b"another thread's progress: 50%\n"))
    assert read_image(path).size == (4, 4)
    assert capfd.readouterr().err == "another thread's progress: 50%\n"
    monkeypatch.setattr(cv2, "imdecode", noisy(b"libpng warning: IDAT: Too much image data\n"))
    with pytest.raises(XAIValueError, match="IDAT: Too much image data"):
        read_image(path)
    assert capfd.readouterr().err == ""


def test_reading_from_many_threads_keeps_each_verdict_and_standard_error(hostile, capfd):
    """Captures overlapping in time used to restore each other's descriptor, leaving
    standard error pointing at a deleted temporary file; now they take turns."""
    cases = [
        (hostile["rgb8.png"], None),
        (hostile["baseline.jpg"], None),
        (hostile["cut-mid-scan.jpg"], "premature end of data segment"),
        (hostile["too-much-data.png"], "IDAT: Too much image data"),
    ]
    before = os.fstat(2)
    start = threading.Barrier(8)
    wrong: list[str] = []
    chatter_done = threading.Event()

    def chatter() -> None:  # another thread printing meanwhile
        for i in range(200):
            os.write(2, f"chatter {i}\n".encode())
            time.sleep(0.0005)
        chatter_done.set()

    def work(index: int) -> None:
        start.wait()
        for round_ in range(25):
            path, damage = cases[(index + round_) % len(cases)]
            try:
                read_image(path)
                if damage:
                    wrong.append(f"{path.name} read")
            except XAIValueError as error:
                if not damage or damage not in str(error):
                    wrong.append(f"{path.name}: {error}")

    talker = threading.Thread(target=chatter)
    talker.start()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    talker.join()
    assert wrong == []
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    err = capfd.readouterr().err
    # No decoder message leaks out, and the other thread's output is passed on (a line
    # written while a capture holds the descriptor is written back when it ends; under
    # load one may be split at a capture's edge, so count the numbers that arrive whole).
    assert "libpng" not in err and "Corrupt JPEG" not in err
    arrived = {int(n) for n in re.findall(r"chatter (\d+)\n", err)}
    assert len(arrived) >= 190, err


# -- 3. no cv2.error, no MemoryError ----------------------------------------------------


def test_opencvs_size_assertion_and_failed_allocations_become_xai_errors(tmp_path):
    """Past the cap (max_pixels raised): OpenCV's own limit (2**30 pixels) and a real
    allocation failure, in an interpreter with little address space."""
    huge = _write(tmp_path, "huge.png", png_bomb(65535, 65535))  # 4.2 MB of zeros' data
    wide = _write(tmp_path, "wide.png", png_bomb(20000, 20000))
    tall = _write(tmp_path, "tall.jpg", jpeg_bomb(11691, 30000, padding=200_000))
    report = _run_python(
        f"""
        import json, resource
        from xai.images import read_image
        read_image({str(_write(tmp_path, "ok.jpg", jpeg_bytes(_photo(16, 16))))!r})
        with open("/proc/self/status") as status:
            size = next(int(l.split()[1]) for l in status if l.startswith("VmSize")) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size + (200 << 20), resource.RLIM_INFINITY))
        out = {{}}
        for path in ({str(huge)!r}, {str(wide)!r}, {str(tall)!r}):
            try:
                read_image(path, max_pixels=2**33, allow_damaged=True)
                out[path] = "read"
            except Exception as error:
                out[path] = [type(error).__name__, str(error)]
        print(json.dumps(out))
        """
    )
    kind, message = report[str(huge)]
    assert kind == "XAIValueError", message
    assert message.startswith(f"{huge} is a PNG of 65,535 x 65,535 pixels that OpenCV cannot")
    assert "OpenCV reads at most 2**30 pixels" in message
    for path in (wide, tall):
        kind, message = report[str(path)]
        assert kind == "XAIOSError", message
        assert message.startswith(f"{path}: not enough memory to decode its ")
        assert "Failed to allocate" in message


@pytest.mark.parametrize(
    ("failure", "error", "message"),
    [
        (MemoryError(), XAIOSError, "not enough memory to decode its 4 x 3 pixels"),
        (cv2.error("bad"), XAIValueError, r"x\.png is a PNG of 4 x 3 pixels that OpenCV cannot"),
    ],
)
def test_decoder_failures_become_xai_errors(tmp_path, monkeypatch, failure, error, message):
    path = _write(tmp_path, "x.png", png_bytes(np.zeros((3, 4), np.uint8)))

    def fail(*args):
        raise failure

    monkeypatch.setattr(cv2, "imdecode", fail)
    with pytest.raises(error, match=message) as caught:
        read_image(path)
    assert str(caught.value).startswith(str(path))
    assert caught.value.__suppress_context__  # one line: no chained traceback


def test_a_memory_error_while_compositing_is_an_xai_error(tmp_path, monkeypatch):
    path = _write(tmp_path, "a.png", png_bytes(np.zeros((3, 4, 4), np.uint8)))

    def fail(*args):
        raise MemoryError

    monkeypatch.setattr(xai.images, "_composite", fail)
    with pytest.raises(XAIOSError, match=r"a\.png: not enough memory to convert its 4 x 3"):
        read_image(path)


def test_running_out_of_memory_in_to_input_is_an_xai_error(monkeypatch):
    def out_of_memory(*args, **kwargs):
        error = cv2.error("Insufficient memory")
        error.code = cv2.Error.StsNoMem
        raise error

    monkeypatch.setattr(cv2, "resize", out_of_memory)
    with pytest.raises(XAIOSError, match=r"^to_input: not enough memory to make a 1 x 9 x 8"):
        xai.images.to_input(np.zeros((3, 4), np.uint8), 1, (9, 8))

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(cv2, "cvtColor", no_memory)
    with pytest.raises(XAIOSError, match=r"not enough memory .* of 3 x 4 pixels"):
        xai.images.to_input(np.zeros((3, 4, 3), np.uint8), 1)


def _png_with_header(width, height, depth, colour, interlace=0, data=b"\x00") -> bytes:
    chunks = [(b"IHDR", ihdr(width, height, depth, colour, interlace))]
    return png_from_chunks([*chunks, (b"IDAT", zlib.compress(data)), (b"IEND", b"")])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_png_with_header(1, 1, 3, 0), "colour type 0 with 3-bit samples, which PNG does not"),
        (_png_with_header(1, 1, 4, 2), "colour type 2 with 4-bit samples"),
        (_png_with_header(1, 1, 8, 5), "colour type 5 with 8-bit samples"),
        (_png_with_header(0, 5, 8, 0), "its header says 0 x 5 pixels"),
        (_png_with_header(1, 1, 8, 0, interlace=2), "interlace method 2"),
        (_png_with_header(2**31, 1, 8, 0), "its header says 2147483648 x 1 pixels"),
        (
            png_from_chunks([(b"IDAT", b""), (b"IHDR", ihdr(1, 1, 8, 0)), (b"IEND", b"")]),
            "must begin with a 13-byte IHDR chunk and begins with a 0-byte 'IDAT' chunk",
        ),
        (
            png_from_chunks(
                [(b"IHDR", ihdr(1, 1, 8, 0)), (b"IHDR", ihdr(9, 9, 8, 0)), (b"IEND", b"")]
            ),
            "second IHDR chunk",
        ),
        (
            with_size(jpeg_bytes(_photo(8, 8)), 8, 0),
            "0 pixels .a height given later by a DNL marker is not supported",
        ),
    ],
)
def test_impossible_headers_are_refused_before_decoding(tmp_path, data, message):
    with pytest.raises(XAIValueError, match=message):
        read_image(_write(tmp_path, "x.bin", data))


def _frame_edit(data: bytes, offset: int, value: int) -> bytes:
    start = next(s for s, marker, _ in jpeg_segments(data) if marker == 0xC0)
    return data[: start + offset] + bytes([value]) + data[start + offset + 1 :]


def test_jpegs_opencv_cannot_read_are_refused_with_the_reason(tmp_path):
    photo = jpeg_bytes(_photo(16, 16))
    cases = {
        "twelve.jpg": (_frame_edit(photo, 4, 12), "is a 12-bit JPEG; only 8-bit JPEGs can be read"),
        "two.jpg": (_frame_edit(photo, 9, 2), "JPEG with 2 colour components; expected 1"),
        "sampling.jpg": (_frame_edit(photo, 11, 0x55), r"sampling factors \[\(5, 5\)"),
    }
    for name, (data, message) in cases.items():
        with pytest.raises(XAIValueError, match=message):
            read_image(_write(tmp_path, name, data))


def test_broken_palette_and_interlaced_data_is_refused_quoting_libpng(tmp_path):
    rng = np.random.default_rng(3)
    indices = rng.integers(0, 4, (5, 6))
    palette = rng.integers(0, 256, (4, 3))
    for interlace in (False, True):
        data = png_bytes(indices, colour=3, depth=2, palette=palette, interlace=interlace)
        chunks = png_chunks(data)
        raw = bytearray(zlib.decompress(next(body for kind, body in chunks if kind == b"IDAT")))
        raw[0] = 9  # no such filter
        edited = [(k, zlib.compress(bytes(raw)) if k == b"IDAT" else b) for k, b in chunks]
        with pytest.raises(XAIValueError, match="'libpng error: bad adaptive filter value'"):
            read_image(_write(tmp_path, "p.png", png_from_chunks(edited)))
    no_palette = [(k, b) for k, b in png_chunks(data) if k != b"PLTE"]
    with pytest.raises(XAIValueError, match=r"cannot be decoded .*PLTE"):
        read_image(_write(tmp_path, "np.png", png_from_chunks(no_palette)))


def test_cmyk_and_progressive_jpegs(tmp_path):
    rng = np.random.default_rng(4)
    cmyk = rng.integers(0, 256, (16, 24, 4), np.uint8)
    data = cmyk_jpeg(cmyk)
    image = read_image(_write(tmp_path, "cmyk.jpg", data))
    decoded = np.asarray(Pillow.open(io.BytesIO(data)))
    assert image.mode == "rgb"
    np.testing.assert_array_equal(image.pixels, opencv_cmyk_to_rgb(255 - decoded))

    progressive = jpeg_bytes(_photo(48, 48), progressive=True)
    scans = [start for start, marker, _ in jpeg_segments(progressive) if marker == 0xDA]
    cut = progressive[: scans[2] + 40] + b"\xff\xd9"  # inside the third scan
    with pytest.raises(XAIValueError, match="damaged JPEG: the decoder reported"):
        read_image(_write(tmp_path, "cut.jpg", cut))


def test_a_sequential_jpeg_with_a_scan_twice_is_refused(tmp_path):
    """OpenCV stops after the scans it needs; libjpeg, read to the end, fails there."""
    photo = jpeg_bytes(_photo(16, 16))
    start, _, end = next(s for s in jpeg_segments(photo) if s[1] == 0xDA)
    twice = photo[:end] + photo[start:end] + photo[end:]
    with pytest.raises(XAIValueError, match="its scans code 6 components and its frame has 3"):
        read_image(_write(tmp_path, "twice.jpg", twice))
    with pytest.warns(DamagedImageWarning, match="scans code 6 components"):
        read_image(_write(tmp_path, "twice.jpg", twice), allow_damaged=True)


def test_data_after_the_end_of_a_jpeg_is_left_alone(tmp_path):
    """A motion photo carries a video after the JPEG's end-of-image marker."""
    photo = jpeg_bytes(_photo(16, 16))
    video = b"ftypmp42" + b"\xff\xda\xff\xd8" * 2000  # not scans: past the end
    path = _write(tmp_path, "motion.jpg", photo + video)
    np.testing.assert_array_equal(
        read_image(path).pixels, read_image(_write(tmp_path, "p.jpg", photo)).pixels
    )


# -- the corpus and the command line ---------------------------------------------------


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize(
    ("depth", "channels"), [(1, 1), (2, 1), (4, 1), (8, 1), (8, 3), (16, 1), (16, 3)]
)
def test_the_corpus_png_encoder_round_trips(tmp_path, depth, channels, interlace):
    rng = np.random.default_rng(depth * 10 + channels)
    shape = (11, 13) if channels == 1 else (11, 13, channels)
    samples = rng.integers(0, 2**depth, shape)
    path = _write(tmp_path, "r.png", png_bytes(samples, depth=depth, interlace=interlace))
    image = read_image(path)
    expected = samples * (255 // (2**depth - 1)) if depth < 8 else samples
    np.testing.assert_array_equal(image.pixels, expected)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bomb-20000x20000.png", "more than max_pixels"),
        ("cut-mid-scan.jpg", "premature end of data segment"),
        ("scans-600.jpg", "more than 500 scans"),
    ],
)
def test_the_command_line_refuses_them_in_one_line(hostile, tmp_path, capsys, name, message):
    assert xai.cli.main(["explain", str(hostile[name]), "--out", str(tmp_path / "out")]) == 2
    _out, err = capsys.readouterr()
    assert err.startswith(f"xai: error: {hostile[name]}") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "out").exists()
