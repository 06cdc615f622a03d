"""Reading image files and turning them into model inputs.

PNG and JPEG, grayscale, RGB or RGBA, 8 or 16 bits, any size. Files are checked before
they are decoded (a PNG's chunks and checksums, a JPEG's start and end markers), so a
corrupt or truncated file gets a clear error instead of a half-decoded picture, and the
decoder's own complaints never reach the terminal. OpenCV is imported on first use.
"""

from __future__ import annotations

import glob
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xai.core.errors import XAIFileNotFoundError, XAIValueError
from xai.core.validate import Boolean, Constraint, Integer, check_each, validate

if TYPE_CHECKING:
    import torch

__all__ = [
    "IMAGE_SUFFIXES",
    "Image",
    "find_images",
    "read_image",
    "to_input",
]

#: File name endings searched for in a folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_START = b"\xff\xd8\xff"
_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True, eq=False)
class Image:
    """A decoded image.

    Attributes:
        pixels: ``(H, W)`` gray or ``(H, W, 3)`` RGB (never BGR), uint8 or uint16; an
            alpha channel is composited onto ``background`` when the file is read.
        path: where it was read from.
        mode: what the file held: ``"gray"``, ``"rgb"`` or ``"rgba"``.
        bits: 8 or 16.
    """

    pixels: np.ndarray
    path: Path
    mode: str
    bits: int

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    def rgb(self) -> np.ndarray:
        """The pixels as ``(H, W, 3)`` uint8 RGB, for drawing."""
        from xai.viz.overlay import to_rgb

        return to_rgb(self.pixels)


def find_images(sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand files, folders (their PNG/JPEG files, not recursive) and glob patterns.

    The result keeps the order given (each folder's and pattern's files sorted by name)
    and lists no file twice.

    Raises:
        FileNotFoundError: a path that does not exist, or a pattern matching nothing.
        ValueError: a folder with no PNG or JPEG files in it.
    """
    found: dict[Path, None] = {}
    for source in sources:
        text = os.fspath(source)
        path = Path(text)
        if path.is_file():
            found[path] = None
        elif path.is_dir():
            files = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not files:
                raise XAIValueError(
                    f"the folder {text} has no PNG or JPEG images (looked for "
                    f"{', '.join(IMAGE_SUFFIXES)} files in it, not in subfolders)"
                )
            found.update(dict.fromkeys(files))
        elif _GLOB_CHARACTERS & set(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            matches = [m for m in matches if m.is_file()]
            if not matches:
                raise XAIFileNotFoundError(f"no file matches the pattern {text}")
            found.update(dict.fromkeys(matches))
        else:
            raise XAIFileNotFoundError(f"{text}: no such file or folder")
    return list(found)


def _check_png(data: bytes, name: str) -> None:
    """Walk the PNG chunks: each complete, each checksum right, ending with IEND."""
    position = len(_PNG_SIGNATURE)
    seen_data = False
    while True:
        if position + 8 > len(data):
            raise XAIValueError(f"{name} is a truncated PNG: it ends before its IEND chunk")
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 12 + length
        if end > len(data):
            raise XAIValueError(
                f"{name} is a truncated PNG: its {kind.decode('latin-1')!r} chunk needs "
                f"{length} bytes and the file ends first"
            )
        crc = struct.unpack(">I", data[end - 4 : end])[0]
        if zlib.crc32(data[position + 4 : end - 4]) != crc:
            raise XAIValueError(
                f"{name} is a corrupt PNG: the checksum of its {kind.decode('latin-1')!r} "
                f"chunk is wrong"
            )
        seen_data |= kind == b"IDAT"
        if kind == b"IEND":
            break
        position = end
    if not seen_data:
        raise XAIValueError(f"{name} is a corrupt PNG: it holds no image data")


def _check_jpeg(data: bytes, name: str) -> None:
    if b"\xff\xd9" not in data[-4096:]:
        raise XAIValueError(f"{name} is a truncated JPEG: it has no end-of-image marker")


@contextmanager
def _quiet_stderr() -> Iterator[list[str]]:
    """Catch what C libraries (libpng, libjpeg) print on file descriptor 2."""
    lines: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no usable descriptor 2: nothing to catch
        yield lines
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines += sink.read().decode("utf-8", "replace").splitlines()


# The constraints of each function's options, declared once (``to_input``'s channels
# must also be 1 or 3).
_READ_IMAGE: dict[str, Sequence[Constraint]] = {"background": [Integer(0, 255)]}
_TO_INPUT: dict[str, Sequence[Constraint]] = {
    "channels": [Integer(1)],
    "size": [Integer(1)],  # each of (H, W)
    "invert": [Boolean()],
}


def read_image(path: str | os.PathLike[str], background: int = 0) -> Image:
    """Read a PNG or JPEG file, checking it first.

    Args:
        path: the file.
        background: the gray level (0..255) that transparent pixels are composited onto.
            Black suits MNIST-family models, which see light objects on black.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a PNG or JPEG, or corrupt or truncated (the message says which).
    """
    import cv2

    background = validate("read_image", _READ_IMAGE, background=background)["background"]
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise XAIFileNotFoundError(f"{name}: no such file")
    data = path.read_bytes()
    if data.startswith(_PNG_SIGNATURE):
        _check_png(data, name)
    elif data.startswith(_JPEG_START):
        _check_jpeg(data, name)
    else:
        kind = "empty" if not data else f"starts with {data[:8]!r}"
        raise XAIValueError(f"{name} is not a PNG or JPEG image (the file {kind})")
    with _quiet_stderr() as complaints:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        why = f": {complaints[-1].strip()}" if complaints else ""
        raise XAIValueError(f"{name} is corrupt: it cannot be decoded{why}")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise XAIValueError(f"{name} has {pixels.dtype} pixels; expected 8 or 16 bits")
    bits = 16 if pixels.dtype == np.uint16 else 8
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2:
        mode = "gray"
    elif pixels.shape[2] == 3:
        mode, pixels = "rgb", pixels[:, :, ::-1]
    elif pixels.shape[2] == 4:
        mode = "rgba"
        top = 65535.0 if pixels.dtype == np.uint16 else 255.0
        alpha = pixels[:, :, 3:].astype(np.float64) / top
        colour = pixels[:, :, 2::-1].astype(np.float64)
        mixed = colour * alpha + background * (top / 255.0) * (1 - alpha)
        pixels = np.round(mixed).astype(pixels.dtype)
    else:
        raise XAIValueError(f"{name} has {pixels.shape[2]} channels; expected 1, 3 or 4")
    return Image(np.ascontiguousarray(pixels), path, mode, bits)


def to_input(
    image: Image | np.ndarray,
    channels: int,
    size: tuple[int, int] | None = None,
    *,
    invert: bool = False,
) -> torch.Tensor:
    """Convert an image to a ``(channels, H, W)`` float32 tensor scaled to [0, 1].

    Args:
        image: an ``Image``, or ``(H, W)`` / ``(H, W, 3)`` RGB uint8/uint16 pixels.
        channels: 1 (gray: ITU-R BT.601 luma, 0.299 R + 0.587 G + 0.114 B, as OpenCV
            computes it) or 3 (RGB; a gray image is repeated).
        size: ``(H, W)`` to resize to, or ``None`` to keep the image's size. The image is
            stretched to it (no cropping): area averaging when shrinking, bilinear when
            enlarging.
        invert: ``1 - x``, for dark-on-light pictures given to a model trained on
            light-on-dark ones (MNIST, Fashion-MNIST).
    """
    import cv2
    import torch

    options = validate("to_input", _TO_INPUT, channels=channels, invert=invert)
    channels, invert = options["channels"], options["invert"]
    if size is not None:
        height, width = check_each(size, _TO_INPUT["size"], "size", "to_input", length=2)
        size = (height, width)
    pixels = image.pixels if isinstance(image, Image) else np.asarray(image)
    if pixels.dtype not in (np.uint8, np.uint16) or pixels.ndim not in (2, 3):
        raise XAIValueError(
            f"expected (H, W) or (H, W, 3) uint8/uint16 pixels; got {pixels.dtype} {pixels.shape}"
        )
    if channels not in (1, 3):
        raise XAIValueError(
            f"models taking {channels}-channel images are not supported; expected 1 "
            f"(gray) or 3 (RGB)"
        )
    top = 65535.0 if pixels.dtype == np.uint16 else 255.0
    scaled: np.ndarray = pixels.astype(np.float32) / np.float32(top)
    if scaled.ndim == 3 and channels == 1:
        scaled = cv2.cvtColor(scaled, cv2.COLOR_RGB2GRAY)
    elif scaled.ndim == 2 and channels == 3:
        scaled = np.repeat(scaled[:, :, None], 3, axis=2)
    if size is not None and tuple(scaled.shape[:2]) != tuple(size):
        height, width = size
        shrinking = height * width < scaled.shape[0] * scaled.shape[1]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        scaled = cv2.resize(scaled, (width, height), interpolation=interpolation)
    if invert:
        scaled = 1.0 - scaled
    tensor = torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32))
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()
