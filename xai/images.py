"""Reading image files and turning them into model inputs.

PNG and JPEG, grayscale, RGB or RGBA, 8 or 16 bits, up to ``MAX_PIXELS`` pixels unless
told otherwise. A file is checked before it is decoded, without decoding it: a PNG's
chunks, checksums and header, a JPEG's markers, segments and scans up to its end marker.
The size a header claims is checked against the pixel cap and against what the file can
hold, so a decompression bomb (a small file claiming a huge picture) is refused in
milliseconds, before any memory is allocated for its pixels.

While OpenCV decodes, what its decoders print on the process's standard error (libpng's
and libjpeg's warnings) is caught and read: a warning that the pixel data is damaged
("Corrupt JPEG data: premature end of data segment", "IDAT: Too much image data") refuses
the file with the decoder's own words, unless ``allow_damaged=True`` reads it with a
``DamagedImageWarning``. Warnings about metadata the pixels do not depend on (an ICC
profile, a text chunk) pass quietly. Every failure of the decoder, running out of memory
included, is an ``XAIValueError`` or ``XAIOSError`` naming the file. Decoding is
serialised (one image at a time in a process), because the decoder's messages can only be
caught on the process's file descriptor 2. OpenCV is imported on first use.
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xai._decoder_log import damage, decoder_messages
from xai._image_headers import (
    JPEG_START,
    MAX_JPEG_SCANS,
    PNG_SIGNATURE,
    Header,
    check_jpeg,
    check_png,
)
from xai.core.errors import (
    XAIFileNotFoundError,
    XAIOSError,
    XAIPermissionError,
    XAITypeError,
    XAIValueError,
)
from xai.core.validate import Boolean, Constraint, Integer, check_each, validate

if TYPE_CHECKING:
    import torch

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_JPEG_SCANS",
    "MAX_PIXELS",
    "DamagedImageWarning",
    "Image",
    "find_images",
    "read_image",
    "to_input",
]

#: File name endings searched for in a folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

#: The most pixels (height x width) ``read_image`` decodes unless given ``max_pixels``:
#: Pillow's ``Image.MAX_IMAGE_PIXELS``, about 9,459 x 9,459 (268 MB as 8-bit RGB).
MAX_PIXELS = 89_478_485

# A file larger than an uncompressed image of max_pixels 16-bit RGBA pixels (8 bytes
# each) plus this much metadata is not an image xai would decode.
_METADATA_ALLOWANCE = 64 << 20


class DamagedImageWarning(UserWarning):
    """``read_image(..., allow_damaged=True)`` read a file its decoder reported damaged."""


_GLOB_CHARACTERS = frozenset("*?[")
# Compositing onto the background works on this many pixels at a time.
_BLOCK_PIXELS = 1 << 18


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


def _decode(data: bytes, header: Header, name: str) -> tuple[np.ndarray, list[str]]:
    """OpenCV's pixels (BGR order) and the decoder's messages saying they are damaged."""
    import cv2

    messages: list[str] = []
    try:
        with decoder_messages() as messages:
            pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except MemoryError:
        raise XAIOSError(
            f"{name}: not enough memory to decode its {header.width:,} x {header.height:,} "
            f"pixels ({header.memory()})"
        ) from None
    except cv2.error as error:
        what = " ".join(str(error.err or error).split())
        if error.code == cv2.Error.StsNoMem:
            raise XAIOSError(
                f"{name}: not enough memory to decode its {header.width:,} x "
                f"{header.height:,} pixels ({header.memory()}): {what}"
            ) from None
        if "CV_IO_MAX_IMAGE" in what:  # OpenCV's own cap, set by environment variables
            what = (
                f"{what}: OpenCV reads at most 2**30 pixels and 2**20 a side unless "
                f"CV_IO_MAX_IMAGE_PIXELS, _WIDTH and _HEIGHT say otherwise"
            )
        said = f"; the decoder said {'; '.join(messages)!r}" if messages else ""
        raise XAIValueError(
            f"{name} is a {header.kind} of {header.width:,} x {header.height:,} pixels that "
            f"OpenCV cannot decode ({what}){said}"
        ) from None
    if pixels is None or pixels.size == 0:
        said = f" (the decoder said {'; '.join(messages)!r})" if messages else ""
        raise XAIValueError(f"{name} is a corrupt {header.kind}: it cannot be decoded{said}")
    if pixels.shape[:2] != (header.height, header.width):
        raise XAIValueError(
            f"{name} is a corrupt {header.kind}: its header says {header.width} x "
            f"{header.height} pixels and it decodes to {pixels.shape[1]} x {pixels.shape[0]}"
        )
    return pixels, damage(messages)


def _composite(bgra: np.ndarray, background: int) -> np.ndarray:
    """RGB pixels: BGRA colour over a gray ``background`` (0..255) by its alpha, a block
    of rows at a time (float64 temporaries of the whole picture would take 7 times its
    memory)."""
    top = 65535.0 if bgra.dtype == np.uint16 else 255.0
    out = np.empty((*bgra.shape[:2], 3), bgra.dtype)
    rows = max(1, _BLOCK_PIXELS // bgra.shape[1])
    for start in range(0, bgra.shape[0], rows):
        block = bgra[start : start + rows]
        alpha = block[:, :, 3:].astype(np.float64) / top
        colour = block[:, :, 2::-1].astype(np.float64)
        mixed = colour * alpha + background * (top / 255.0) * (1 - alpha)
        out[start : start + rows] = np.round(mixed)
    return out


def _read_bytes(path: Path, name: str, max_pixels: int) -> bytes:
    """The file's bytes; one larger than any PNG or JPEG of ``max_pixels`` pixels is
    refused without being read."""
    limit = max_pixels * 8 + _METADATA_ALLOWANCE
    size, data = 0, b""
    try:
        size = path.stat().st_size
        if size <= limit:
            with path.open("rb") as file:
                data = file.read(size + 1)  # read(n) allocates n bytes first
                if len(data) > size:  # it grew, or does not know its size
                    parts = [data]
                    while size <= limit and (part := file.read(1 << 20)):
                        parts.append(part)
                        size += len(part)
                    data = b"".join(parts)
            size = len(data)
    except PermissionError:
        raise XAIPermissionError(f"{name} cannot be read: permission denied") from None
    except MemoryError:
        raise XAIOSError(f"{name}: not enough memory to read its {size:,} bytes") from None
    except OSError as error:
        raise XAIOSError(f"{name} cannot be read: {error.strerror or error}") from None
    if size > limit:
        raise XAIValueError(
            f"{name} is {size:,} bytes, more than a PNG or JPEG of max_pixels = "
            f"{max_pixels:,} pixels can need ({limit:,}); if you trust it, raise max_pixels "
            f"(xai explain --max-pixels)"
        )
    return data


# The constraints of each function's options, declared once (``to_input``'s channels
# must also be 1 or 3).
_READ_IMAGE: dict[str, Sequence[Constraint]] = {
    "background": [Integer(0, 255)],
    "max_pixels": [Integer(1)],
    "allow_damaged": [Boolean()],
}
_TO_INPUT: dict[str, Sequence[Constraint]] = {
    "channels": [Integer(1)],
    "size": [Integer(1)],  # each of (H, W)
    "invert": [Boolean()],
}


def read_image(
    path: str | os.PathLike[str],
    background: int = 0,
    *,
    max_pixels: int = MAX_PIXELS,
    allow_damaged: bool = False,
) -> Image:
    """Read a PNG or JPEG file, checking it first.

    Args:
        path: the file.
        background: the gray level (0..255) that transparent pixels are composited onto.
            Black suits MNIST-family models, which see light objects on black.
        max_pixels: the most pixels (height x width) to decode; ``MAX_PIXELS`` (89,478,485,
            Pillow's limit) by default. A file whose header claims more is refused before
            it is decoded: a 390 KB PNG can hold 20,000 x 20,000 pixels (0.4 GB gray,
            1.2 GB RGB). There is no setting without a limit (``None`` and 0 are refused):
            to read a larger image you trust, pass a larger number. OpenCV's own limit,
            2**30 pixels, still applies above it.
        allow_damaged: read a damaged file with a ``DamagedImageWarning`` instead of
            refusing it: one whose decoder reports damaged pixel data (a JPEG cut short or
            with corrupt data, a PNG with too much image data), or a JPEG whose markers
            after its frame header are broken or missing (its end marker is then put back,
            so that OpenCV decodes what there is). The missing pixels are what the decoder
            makes up (gray, for a JPEG). A file that cannot be decoded at all, whose header
            is broken, or larger than ``max_pixels``, is refused all the same.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a PNG or JPEG; corrupt, truncated or damaged (the message says
            which, quoting the decoder); larger than ``max_pixels``.
        OSError: the file cannot be read, or there is not enough memory to decode it.

    All of them are ``XAIError``s naming the file. Threads may call it at once, but they
    decode one at a time: the decoders' messages are caught on the process's standard
    error, which only one decode at a time can have.
    """
    if max_pixels is None:
        raise XAITypeError(
            "read_image: max_pixels must be a positive int; got None. There is no setting "
            f"without a limit: pass the most pixels you trust (the default is {MAX_PIXELS:,})."
        )
    options = validate(
        "read_image",
        _READ_IMAGE,
        background=background,
        max_pixels=max_pixels,
        allow_damaged=allow_damaged,
    )
    background, max_pixels = options["background"], options["max_pixels"]
    allow_damaged = options["allow_damaged"]
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise XAIFileNotFoundError(f"{name}: no such file")
    data = _read_bytes(path, name, max_pixels)
    damage: list[str] = []  # what says the pixels may be wrong
    if data.startswith(PNG_SIGNATURE):
        header = check_png(data, name, max_pixels)
    elif data.startswith(JPEG_START):
        header, damage, ended = check_jpeg(data, name, max_pixels, allow_damaged)
        if not ended:  # OpenCV decodes nothing of a JPEG without its end marker
            data += b"\xff\xd9"
    else:
        kind = "empty" if not data else f"starts with {data[:8]!r}"
        raise XAIValueError(f"{name} is not a PNG or JPEG image (the file {kind})")
    pixels, reported = _decode(data, header, name)
    del data
    if reported:
        damage.append(f"the decoder reported {'; '.join(reported)!r}")
    if damage:
        said = "; ".join(damage)
        if not allow_damaged:
            raise XAIValueError(
                f"{name} is a damaged {header.kind}: {said}, so some of its pixels are wrong "
                f"or made up. Pass allow_damaged=True (xai explain --allow-damaged) to read "
                f"it anyway"
            )
        warnings.warn(
            f"{name} is a damaged {header.kind} ({said}): some of its pixels are wrong or made up",
            DamagedImageWarning,
            stacklevel=2,
        )
    try:
        return _image(pixels, path, background, name)
    except MemoryError:
        raise XAIOSError(
            f"{name}: not enough memory to convert its {header.width:,} x {header.height:,} pixels"
        ) from None


def _image(pixels: np.ndarray, path: Path, background: int, name: str) -> Image:
    """An ``Image`` from OpenCV's pixels: gray, BGR turned RGB in place, or BGRA
    composited onto the background."""
    import cv2

    if pixels.dtype not in (np.uint8, np.uint16):
        raise XAIValueError(f"{name} has {pixels.dtype} pixels; expected 8 or 16 bits")
    bits = 16 if pixels.dtype == np.uint16 else 8
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2:
        mode = "gray"
    elif pixels.shape[2] == 3:
        mode = "rgb"
        cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=pixels)
    elif pixels.shape[2] == 4:
        mode = "rgba"
        pixels = _composite(pixels, background)
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
    try:
        scaled = _scaled(pixels, channels, size, invert)
    except (MemoryError, cv2.error) as error:
        if isinstance(error, cv2.error) and error.code != cv2.Error.StsNoMem:
            raise
        height, width = size or pixels.shape[:2]
        raise XAIOSError(
            f"to_input: not enough memory to make a {channels} x {height} x {width} float32 "
            f"input of {pixels.shape[0]} x {pixels.shape[1]} pixels"
        ) from None
    tensor = torch.from_numpy(scaled)
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def _scaled(
    pixels: np.ndarray, channels: int, size: tuple[int, int] | None, invert: bool
) -> np.ndarray:
    """``to_input``'s ``(H, W)`` or ``(H, W, 3)`` float32 array."""
    import cv2

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
    return np.ascontiguousarray(scaled, dtype=np.float32)
