"""Reading image files and converting them to model inputs: every pixel checked."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
import torch

from xai.images import find_images, read_image, to_input


def _png(path, pixels):
    """Write with OpenCV, which takes BGR(A): ``pixels`` are given as RGB(A) here."""
    if pixels.ndim == 3:
        order = [2, 1, 0, 3][: pixels.shape[2]]
        pixels = pixels[:, :, order]
    assert cv2.imwrite(str(path), pixels)
    return path


RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def test_rgb_png_reads_as_rgb_not_bgr(tmp_path):
    pure_red = np.zeros((2, 3, 3), np.uint8)
    pure_red[..., 0] = 255
    image = read_image(_png(tmp_path / "red.png", pure_red))
    assert image.mode == "rgb"
    assert image.pixels[0, 0].tolist() == [255, 0, 0]
    np.testing.assert_array_equal(read_image(_png(tmp_path / "x.png", RGB)).pixels, RGB)


def test_gray_16_bit_and_rgba_composited_on_the_background(tmp_path):
    gray = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
    image = read_image(_png(tmp_path / "g.png", gray))
    assert (image.mode, image.bits) == ("gray", 8)
    np.testing.assert_array_equal(image.pixels, gray)

    deep = RNG.integers(0, 65536, (4, 6), dtype=np.uint16)
    image = read_image(_png(tmp_path / "d.png", deep))
    assert (image.mode, image.bits) == ("gray", 16)
    np.testing.assert_array_equal(image.pixels, deep)
    # 16-bit scales by 65535, so 65535 -> 1.0 and 257 * k -> k / 255 exactly
    x = to_input(image, 1)
    np.testing.assert_allclose(x[0].numpy(), deep / 65535.0, rtol=0, atol=1e-7)

    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 0] = [200, 100, 50, 255]  # opaque: kept
    rgba[0, 1] = [200, 100, 50, 0]  # transparent: the background
    rgba[0, 2] = [200, 100, 50, 128]  # half: mixed
    path = _png(tmp_path / "a.png", rgba)
    on_black = read_image(path).pixels
    assert on_black[0, 0].tolist() == [200, 100, 50]
    assert on_black[0, 1].tolist() == [0, 0, 0]
    assert on_black[0, 2].tolist() == [round(200 * 128 / 255), round(100 * 128 / 255), 25]
    on_white = read_image(path, background=255).pixels
    assert on_white[0, 1].tolist() == [255, 255, 255]
    assert read_image(path).mode == "rgba"


def test_jpeg_reads_close_to_its_source(tmp_path):
    smooth = np.zeros((32, 32, 3), np.uint8)
    smooth[..., 0], smooth[..., 2] = 220, 30
    cv2.imwrite(str(tmp_path / "s.jpg"), smooth[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    image = read_image(tmp_path / "s.jpg")
    assert image.mode == "rgb"
    assert np.abs(image.pixels.astype(int) - smooth).max() <= 3  # red stays red


def test_to_input_gray_luma_resize_and_invert():
    x = to_input(RGB, 1)
    luma = (0.299 * RGB[..., 0] + 0.587 * RGB[..., 1] + 0.114 * RGB[..., 2]) / 255
    np.testing.assert_allclose(x[0].numpy(), luma, atol=1e-6)
    assert x.dtype == torch.float32
    assert x.shape == (1, 5, 7)

    three = to_input(RGB, 3)
    np.testing.assert_allclose(three.numpy(), RGB.transpose(2, 0, 1) / 255, atol=1e-7)
    gray = RGB[..., 0]
    np.testing.assert_allclose(to_input(gray, 3).numpy(), np.stack([gray / 255] * 3), atol=1e-7)

    inverted = to_input(gray, 1, invert=True)
    np.testing.assert_allclose(inverted[0].numpy(), 1 - gray / 255, atol=1e-7)

    # shrinking a 4x4 by 2 with area averaging: each output is the mean of a 2x2 block
    block = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    small = to_input(block, 1, (2, 2))[0].numpy() * 255
    expected = block.reshape(2, 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(small, expected, atol=1e-4)
    assert to_input(block, 1, (8, 6)).shape == (1, 8, 6)  # any size, stretched


def test_to_input_refuses_what_it_cannot_convert():
    with pytest.raises(ValueError, match=r"expected 1 .*gray.* or 3"):
        to_input(RGB, 4)
    with pytest.raises(ValueError, match="uint8/uint16 pixels; got float64"):
        to_input(RGB.astype(float), 1)


def _chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    out, position = [], 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        out.append((position, data[position + 4 : position + 8], length))
        position += 12 + length
    return out


@pytest.fixture
def png_bytes(tmp_path) -> bytes:
    return _png(tmp_path / "ok.png", RGB).read_bytes()


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("text", lambda d: b"hello, not an image", "not a PNG or JPEG image"),
        ("empty", lambda d: b"", "the file empty"),
        ("half", lambda d: d[: len(d) // 2], "truncated PNG"),
        ("no-end", lambda d: d[:-12], "truncated PNG: it ends before its IEND"),
        ("bit-flip", lambda d: d[:-20] + bytes([d[-20] ^ 1]) + d[-19:], "checksum"),
        ("jpeg-cut", lambda d: b"\xff\xd8\xff\xe0" + b"\0" * 50, "truncated JPEG"),
    ],
)
def test_damaged_files_get_a_clear_error(tmp_path, png_bytes, name, damage, message, capfd):
    path = tmp_path / f"{name}.png"
    path.write_bytes(damage(png_bytes))
    with pytest.raises(ValueError, match=message):
        read_image(path)
    assert capfd.readouterr().err == ""  # the decoder printed nothing


def test_a_bad_checksum_in_the_middle_is_found(tmp_path, png_bytes):
    position, _kind, length = next(c for c in _chunks(png_bytes) if c[1] == b"IDAT")
    data = bytearray(png_bytes)
    data[position + 8] ^= 0xFF  # first byte of the compressed data
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt PNG: the checksum of its 'IDAT'"):
        read_image(tmp_path / "bad.png")
    # and a right checksum over wrong data still fails in the decoder, quietly
    crc = zlib.crc32(bytes(data[position + 4 : position + 8 + length]))
    data[position + 8 + length : position + 12 + length] = struct.pack(">I", crc)
    (tmp_path / "bad2.png").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        read_image(tmp_path / "bad2.png")


def test_find_images_files_folders_globs_in_order(tmp_path):
    for name in ("b.png", "a.jpg", "c.JPEG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"x")
    assert [p.name for p in find_images([tmp_path])] == ["a.jpg", "b.png", "c.JPEG"]
    found = find_images([str(tmp_path / "b.png"), str(tmp_path / "**" / "*.png")])
    assert [p.name for p in found] == ["b.png", "d.png"]  # listed once, in order given
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        find_images([tmp_path / "missing.png"])
    with pytest.raises(FileNotFoundError, match="no file matches the pattern"):
        find_images([str(tmp_path / "*.gif")])
    (tmp_path / "sub" / "nothing-here").mkdir()
    with pytest.raises(ValueError, match="has no PNG or JPEG images"):
        find_images([tmp_path / "sub" / "nothing-here"])
