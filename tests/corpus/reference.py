"""The pixels ``read_image`` must return for a file, by a second decoder: Pillow.

How much the two decoders can be held to agree, and so what the fuzz test demands:

* **PNG** is lossless: ``"exact"`` equality wherever Pillow represents the image (gray of
  1 to 16 bits, 8-bit gray+alpha, RGB, RGBA and palette images), composited onto the
  background by ``read_image``'s formula. OpenCV ignores a tRNS chunk in a gray image and
  turns it into alpha in RGB and palette images; the reference does the same.
* **16-bit colour PNG**: Pillow keeps the high byte of each sample only. Without alpha the
  high bytes must be equal (``"msb"``); with alpha (16-bit RGBA or gray+alpha, 16-bit RGB
  with tRNS) compositing mixes in the low bytes, so only the shape and mode are compared
  (``"shape"``).
* **JPEG**: OpenCV and Pillow both decode with libjpeg-turbo, with its default settings
  (integer DCT, fancy upsampling), so gray and colour JPEGs decode to identical pixels:
  ``"exact"``. A CMYK JPEG is turned into RGB by OpenCV's formula, applied here to the
  CMYK values Pillow decodes. The rule holds only while both link compatible builds, which
  ``tests/test_image_fuzz.py`` checks on every unmutated base file first: a base file the
  two decode differently is compared by shape and mode only.

``reference`` raises whatever Pillow raises for a file it cannot decode.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Expected:
    """What ``read_image`` must return: ``pixels`` compared as ``rule`` says."""

    rule: str  # "exact", "msb" (the high bytes of 16-bit samples) or "shape"
    mode: str  # "gray", "rgb" or "rgba", as Image.mode
    pixels: np.ndarray


def composite(colour: np.ndarray, alpha: np.ndarray, background: int, top: float) -> np.ndarray:
    """``read_image``'s compositing: RGB colour over a gray background by its alpha."""
    a = alpha[:, :, None].astype(np.float64) / top
    mixed = colour.astype(np.float64) * a + background * (top / 255.0) * (1 - a)
    return np.round(mixed).astype(np.uint16 if top > 255 else np.uint8)


def opencv_cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    """OpenCV's CMYK -> RGB for the values libjpeg decodes (Adobe's inverted CMYK):
    each of C, M, Y becomes ``k - ((255 - c) * k >> 8)``."""
    values = cmyk.astype(np.int64)
    k = values[:, :, 3:]
    return (k - (((255 - values[:, :, :3]) * k) >> 8)).astype(np.uint8)


def _png_header(data: bytes) -> tuple[int, int, bool]:
    """(bit depth, colour type, whether a tRNS chunk comes before the image data)."""
    depth, colour = data[24], data[25]
    position, transparency = 8, False
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind == b"IDAT":
            break
        transparency |= kind == b"tRNS"
        position += 12 + length
    return depth, colour, transparency


def reference(data: bytes, background: int = 0) -> Expected:
    """The pixels Pillow decodes from ``data``, as ``read_image`` returns them."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own bomb warning: read_image checked
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            picture = Image.open(io.BytesIO(data))
            tile_mode = picture.tile[0][3][0] if picture.tile else ""
            picture.load()
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    if picture.format == "PNG":
        return _png(data, picture, background)
    if picture.format == "JPEG":
        return _jpeg(picture, tile_mode)
    raise ValueError(f"Pillow reads it as {picture.format}, not PNG or JPEG")


def _png(data: bytes, picture, background: int) -> Expected:
    depth, colour, transparency = _png_header(data)
    if colour == 0:  # gray; OpenCV ignores tRNS
        gray = picture.convert("L") if picture.mode == "1" else picture
        array = np.asarray(gray)
        return Expected("exact", "gray", array.astype(np.uint16 if depth == 16 else np.uint8))
    alpha = colour in (4, 6) or transparency
    if depth == 16:
        if alpha:
            shape = np.zeros((picture.height, picture.width, 3), np.uint16)
            return Expected("shape", "rgba", shape)
        return Expected("msb", "rgb", np.asarray(picture.convert("RGB")))
    if not alpha:
        return Expected("exact", "rgb", np.asarray(picture.convert("RGB")))
    rgba = np.asarray(picture.convert("RGBA"))
    return Expected("exact", "rgba", composite(rgba[:, :, :3], rgba[:, :, 3], background, 255.0))


def _jpeg(picture, tile_mode: str) -> Expected:
    array = np.asarray(picture)
    if picture.mode == "L":
        return Expected("exact", "gray", array)
    if picture.mode == "CMYK":
        raw = 255 - array if tile_mode.endswith(";I") else array  # libjpeg's values
        return Expected("exact", "rgb", opencv_cmyk_to_rgb(raw))
    return Expected("exact", "rgb", np.asarray(picture.convert("RGB")))


def agrees(expected: Expected, mode: str, pixels: np.ndarray) -> str | None:
    """``None`` if ``read_image``'s result agrees with the reference, else why not."""
    if mode != expected.mode:
        return f"mode {mode}, the reference says {expected.mode}"
    if pixels.shape != expected.pixels.shape:
        return f"shape {pixels.shape}, the reference says {expected.pixels.shape}"
    if expected.rule == "exact" and (
        pixels.dtype != expected.pixels.dtype or not np.array_equal(pixels, expected.pixels)
    ):
        wrong = int(np.count_nonzero(pixels != expected.pixels))
        return f"{wrong} of {pixels.size} samples differ from the reference"
    if expected.rule == "msb" and not np.array_equal(pixels >> 8, expected.pixels):
        return "the high bytes differ from the reference"
    return None
