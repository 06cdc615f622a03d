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
import re
import struct
import sys
import tempfile
import threading
import warnings
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

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

#: The most scans a JPEG may have. A progressive JPEG has about ten; each scan is a pass
#: over the whole picture, so a small file with thousands of them would take minutes.
#: libjpeg-turbo stops its own fuzzers at the same number.
MAX_JPEG_SCANS = 500


class DamagedImageWarning(UserWarning):
    """``read_image(..., allow_damaged=True)`` read a file its decoder reported damaged."""


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_START = b"\xff\xd8\xff"
_GLOB_CHARACTERS = frozenset("*?[")

# PNG: the bit depths each colour type allows, and its samples per pixel.
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_DECODED_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}
# Adam7 interlacing: (first column, first row, column step, row step) of each pass.
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
# Deflate turns one byte into at most 1,032 (a 258-byte match in 2 bits).
_DEFLATE_MAX_RATIO = 1032

# JPEG: the frame header (SOFn) markers, and those whose scans are Huffman coded (each
# 8 x 8 block then takes at least one bit; arithmetic coding can take less).
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_HUFFMAN_FRAMES = frozenset({0xC0, 0xC1, 0xC2})
_JPEG_PROGRESSIVE_FRAMES = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
# The segments libjpeg reads or skips besides frames and scans: DHT, DAC, DQT, DRI, DNL,
# APP0..APP15 and COM.
_JPEG_SEGMENTS = frozenset({0xC4, 0xCC, 0xDB, 0xDD, 0xDC, *range(0xE0, 0xF0), 0xFE})
_JPEG_SOS = b"\xff\xda"
# In a scan's data 0xFF is followed by 0x00 (a stuffed byte) or a restart marker; else a
# marker begins there and the scan has ended.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")

# A file larger than an uncompressed image of max_pixels 16-bit RGBA pixels (8 bytes
# each) plus this much metadata is not an image xai would decode.
_METADATA_ALLOWANCE = 64 << 20

# What the decoders print. libpng prefixes its lines; these are libjpeg-turbo's warnings
# (jerror.h, JWRN_*): its errors are not printed, OpenCV catches them.
_LIBJPEG_WARNINGS = (
    "Corrupt JPEG data",
    "Premature end of JPEG file",
    "Invalid SOS parameters for sequential JPEG",
    "Inconsistent progression sequence",
    "Application transferred too many scanlines",
    "Unknown Adobe color transform code",
    "Warning: unknown JFIF revision number",
    "Warning: thumbnail image size does not match data length",
)
_OPENCV_LOG = re.compile(r"\[\s*(?:FATAL|ERROR|WARN|INFO|DEBUG|VERBOSE)\b")
# Warnings about what does not reach the pixels: libjpeg's about JFIF metadata and ICC
# profiles, libpng's about an ancillary chunk (a lower-case first letter) other than the
# transparency chunk tRNS, which OpenCV turns into alpha.
_HARMLESS_LIBJPEG = (
    "Warning: unknown JFIF revision number",
    "Warning: thumbnail image size does not match data length",
    "Corrupt JPEG data: bad ICC marker",
)
_HARMLESS_LIBPNG = re.compile(r"libpng warning: (?!tRNS)[a-z][A-Za-z]{3}: ")
# At most this much of the decoder's output is read back.
_MESSAGE_BYTES = 1 << 16
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


@dataclass(frozen=True)
class _Header:
    """What a file's header claims, read before decoding."""

    kind: str  # "PNG" or "JPEG"
    width: int
    height: int
    channels: int  # as decoded (a CMYK JPEG decodes 4)
    bits: int  # per decoded sample: 8 or 16

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def memory(self) -> str:
        """The memory its decoded pixels take, in words."""
        size = self.pixels * self.channels * self.bits // 8
        return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


def _check_size(header: _Header, name: str, max_pixels: int) -> None:
    if header.pixels > max_pixels:
        raise XAIValueError(
            f"{name} is a {header.kind} of {header.width:,} x {header.height:,} = "
            f"{header.pixels:,} pixels ({header.memory()} decoded), more than max_pixels = "
            f"{max_pixels:,}; it was not decoded (a small file claiming a huge picture is a "
            f"decompression bomb). If you trust it, raise max_pixels (xai explain "
            f"--max-pixels)"
        )


def _png_raw_size(width: int, height: int, bits_per_pixel: int, interlaced: bool) -> int:
    """The bytes a PNG's image data inflate to: each row of each pass, with its filter byte."""
    total = 0
    for x0, y0, dx, dy in _ADAM7 if interlaced else ((0, 0, 1, 1),):
        columns = max(0, width - x0 + dx - 1) // dx
        rows = max(0, height - y0 + dy - 1) // dy
        if columns and rows:
            total += rows * (1 + (columns * bits_per_pixel + 7) // 8)
    return total


def _png_header(kind: bytes, body: bytes, name: str) -> tuple[_Header, int]:
    """The header and the inflated size of the image data, from the IHDR chunk."""
    if kind != b"IHDR" or len(body) != 13:
        raise XAIValueError(
            f"{name} is a corrupt PNG: it must begin with a 13-byte IHDR chunk and begins "
            f"with a {len(body)}-byte {kind.decode('latin-1')!r} chunk"
        )
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", body
    )
    if not (0 < width < 1 << 31 and 0 < height < 1 << 31):
        raise XAIValueError(f"{name} is a corrupt PNG: its header says {width} x {height} pixels")
    if depth not in _PNG_DEPTHS.get(colour, ()):
        raise XAIValueError(
            f"{name} is a corrupt PNG: its header says colour type {colour} with {depth}-bit "
            f"samples, which PNG does not have"
        )
    if compression or filtering or interlace > 1:
        raise XAIValueError(
            f"{name} is a corrupt PNG: its header says compression method {compression}, "
            f"filter method {filtering} and interlace method {interlace}; PNG has 0, 0 and "
            f"0 or 1"
        )
    header = _Header("PNG", width, height, _PNG_DECODED_CHANNELS[colour], 16 if depth == 16 else 8)
    return header, _png_raw_size(width, height, _PNG_SAMPLES[colour] * depth, interlace == 1)


def _check_png(data: bytes, name: str, max_pixels: int) -> _Header:
    """Walk the chunks: IHDR first and within the cap, each chunk complete with its right
    checksum, ending with IEND, with enough image data for the size IHDR claims."""
    view = memoryview(data)
    position = len(_PNG_SIGNATURE)
    header: _Header | None = None
    raw_size = compressed = 0
    seen_data = False
    while True:
        if position + 8 > len(data):
            raise XAIValueError(f"{name} is a truncated PNG: it ends before its IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > len(data):
            raise XAIValueError(
                f"{name} is a truncated PNG: its {kind.decode('latin-1')!r} chunk needs "
                f"{length} bytes and the file ends first"
            )
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(view[position + 4 : end - 4]) != crc:
            raise XAIValueError(
                f"{name} is a corrupt PNG: the checksum of its {kind.decode('latin-1')!r} "
                f"chunk is wrong"
            )
        if header is None:
            header, raw_size = _png_header(kind, bytes(view[position + 8 : end - 4]), name)
            _check_size(header, name, max_pixels)
        elif kind == b"IHDR":
            raise XAIValueError(f"{name} is a corrupt PNG: it has a second IHDR chunk")
        elif kind == b"IDAT":
            seen_data = True
            compressed += length
        elif kind == b"IEND":
            break
        position = end
    if not seen_data:
        raise XAIValueError(f"{name} is a corrupt PNG: it holds no image data")
    if raw_size > compressed * _DEFLATE_MAX_RATIO + 1024:
        raise XAIValueError(
            f"{name} is a truncated PNG: its {compressed:,} bytes of image data cannot hold "
            f"{header.width:,} x {header.height:,} pixels (they inflate to {raw_size:,} "
            f"bytes, deflate packs at most {_DEFLATE_MAX_RATIO:,} into one)"
        )
    assert header is not None  # the loop read IHDR first
    return header


def _ceil(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _jpeg_frame(data: bytes, position: int, marker: int, name: str) -> tuple[_Header, int]:
    """The header and the fewest 8 x 8 blocks a component has, from the frame header
    (SOFn) segment whose length field is at ``position``."""
    (length,) = struct.unpack_from(">H", data, position)
    if length < 8:
        raise XAIValueError(f"{name} is a corrupt JPEG: its frame header is {length} bytes long")
    precision, height, width, count = struct.unpack_from(">BHHB", data, position + 2)
    if precision != 8:
        raise XAIValueError(
            f"{name} is a {precision}-bit JPEG; only 8-bit JPEGs can be read (save it with "
            f"8 bits, or as a 16-bit PNG)"
        )
    if width == 0 or height == 0:
        later = " (a height given later by a DNL marker is not supported)" if height == 0 else ""
        raise XAIValueError(
            f"{name} is a corrupt JPEG: its frame header says {width} x {height} pixels{later}"
        )
    if count not in (1, 3, 4):
        raise XAIValueError(
            f"{name} is a JPEG with {count} colour components; expected 1 (gray), 3 (colour) "
            f"or 4 (CMYK)"
        )
    if length != 8 + 3 * count:
        raise XAIValueError(
            f"{name} is a corrupt JPEG: its frame header is {length} bytes long and "
            f"{8 + 3 * count} for {count} components"
        )
    sampling = [
        (data[position + 9 + 3 * i] >> 4, data[position + 9 + 3 * i] & 15) for i in range(count)
    ]
    if any(not (1 <= h <= 4 and 1 <= v <= 4) for h, v in sampling):
        raise XAIValueError(
            f"{name} is a corrupt JPEG: its sampling factors {sampling} are not all in 1..4"
        )
    h_max = max(h for h, _ in sampling)
    v_max = max(v for _, v in sampling)
    blocks = min(
        _ceil(_ceil(width * h, h_max), 8) * _ceil(_ceil(height * v, v_max), 8) for h, v in sampling
    )
    header = _Header("JPEG", width, height, count, 8)
    return header, blocks if marker in _JPEG_HUFFMAN_FRAMES else 0


def _check_jpeg(
    data: bytes, name: str, max_pixels: int, allow_damaged: bool
) -> tuple[_Header, list[str], bool]:
    """Walk the markers: the frame header's size within the cap and within what the file
    can hold, not too many scans, only markers libjpeg takes, each segment and scan whole,
    up to the end-of-image marker. The header, the damage found after the frame header
    when ``allow_damaged`` (else it is refused), and whether the end-of-image marker was
    reached.

    The walk stops at the end-of-image marker, so data after it (a motion photo's video)
    is left alone. OpenCV stops reading a one-scan JPEG after the scan, so what follows
    is checked here: libjpeg (and Pillow) would fail at an unknown marker there.
    """
    if not allow_damaged and b"\xff\xd9" not in data:
        raise XAIValueError(f"{name} is a truncated JPEG: it has no end-of-image marker")
    header: _Header | None = None
    progressive = ended = False
    scans = covered = 0  # scans so far, and the components they code
    position = 2
    problem = ""
    while not problem and scans <= MAX_JPEG_SCANS:
        where = "after its frame header" if header else "before its frame header (SOF marker)"
        if position + 2 > len(data):
            problem = f"truncated JPEG: it ends {where}"
            break
        if data[position] != 0xFF:
            problem = (
                f"corrupt JPEG: byte {position} should begin a marker (0xFF) and is "
                f"0x{data[position]:02X}"
            )
            break
        marker = data[position + 1]
        position += 1 if marker == 0xFF else 2  # 0xFF: a fill byte before a marker
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue  # no segment follows these
        if marker == 0xD9 and header is not None:
            ended = True  # the end of the image
            break
        if header is not None and marker in _JPEG_FRAMES:
            problem = f"corrupt JPEG: it has a second frame header (0xFF{marker:02X})"
        elif marker not in _JPEG_SEGMENTS | _JPEG_FRAMES and not (marker == 0xDA and header):
            problem = f"corrupt JPEG: it has a 0xFF{marker:02X} marker {where}"
        elif position + 2 > len(data):
            problem = "truncated JPEG: it ends inside a marker"
        if problem:
            break
        (length,) = struct.unpack_from(">H", data, position)
        if length < 2 or position + length > len(data):
            problem = f"corrupt JPEG: its 0xFF{marker:02X} segment of {length} bytes " + (
                "needs more bytes than the file has" if length >= 2 else "is too short"
            )
        elif header is None and marker in _JPEG_FRAMES:
            header, blocks = _jpeg_frame(data, position, marker, name)
            _check_size(header, name, max_pixels)
            if 8 * len(data) < blocks:
                raise XAIValueError(
                    f"{name} is a truncated JPEG: its {len(data):,} bytes cannot hold "
                    f"{header.width:,} x {header.height:,} pixels (each of the {blocks:,} "
                    f"8 x 8 blocks of a component takes at least a bit)"
                )
            progressive = marker in _JPEG_PROGRESSIVE_FRAMES
        elif marker == 0xDA and header is not None:
            count = data[position + 2] if length > 2 else 0
            scans, covered = scans + 1, covered + count
            if not 1 <= count <= 4 or length != 6 + 2 * count:
                problem = f"corrupt JPEG: a scan header of {length} bytes for {count} components"
            elif not progressive and covered > header.channels:
                problem = (
                    f"corrupt JPEG: its scans code {covered} components and its frame has "
                    f"{header.channels} (a sequential JPEG codes each once)"
                )
            found = _JPEG_MARKER.search(data, position + length)  # the scan's data ends
            position = found.start() if found else len(data)
            continue
        position += length
    if header is None:  # nothing to decode
        raise XAIValueError(f"{name} is a {problem}")
    if problem:  # libjpeg may find more scans in what follows
        scans += data.count(_JPEG_SOS, position)
    if scans > MAX_JPEG_SCANS:
        raise XAIValueError(
            f"{name} is a JPEG with more than {MAX_JPEG_SCANS} scans, the most read (each "
            f"scan is a pass over the whole picture; progressive JPEGs have about ten)"
        )
    if problem and not allow_damaged:
        raise XAIValueError(
            f"{name} is a {problem}. Pass allow_damaged=True (xai explain --allow-damaged) "
            f"to read what the decoder makes of it"
        )
    return header, [problem] if problem else [], ended


def _from_decoder(line: str) -> bool:
    """Whether a line on standard error is libpng's, libjpeg's or OpenCV's."""
    return line.startswith(("libpng ", *_LIBJPEG_WARNINGS)) or bool(_OPENCV_LOG.match(line))


def _damage(messages: Sequence[str]) -> list[str]:
    """The decoder's messages that say the pixels may be wrong."""
    return [
        line
        for line in messages
        if not line.startswith(_HARMLESS_LIBJPEG) and not _HARMLESS_LIBPNG.match(line)
    ]


_STDERR_LOCK = threading.Lock()


@contextmanager
def _quiet_stderr() -> Iterator[list[str]]:
    """Catch what the decoders (libpng, libjpeg, OpenCV) print while the block runs.

    C libraries write to the process's file descriptor 2, not to ``sys.stderr``, so the
    descriptor is pointed at a temporary file meanwhile. One capture at a time (a lock):
    two overlapping captures would each restore the other's descriptor, leaving standard
    error pointing at a deleted file, and mix their messages. The list holds the
    decoders' lines only; what anything else printed meanwhile (another thread) is written
    to standard error afterwards, so it is neither lost nor taken for a decoder's message.
    """
    messages: list[str] = []
    with _STDERR_LOCK:
        if sys.stderr is not None:
            with suppress(OSError, ValueError):
                sys.stderr.flush()  # Python's pending text is not the decoder's
        try:
            saved = os.dup(2)
        except OSError:  # no descriptor 2: nothing to catch either
            yield messages
            return
        try:
            try:
                sink = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
            except OSError:  # nowhere to put the messages: nothing to catch
                yield messages
                return
            with sink:
                os.dup2(sink.fileno(), 2)
                try:
                    yield messages
                finally:
                    os.dup2(saved, 2)
                    _sort_output(sink, messages)
        finally:
            os.close(saved)


def _sort_output(sink: IO[bytes], messages: list[str]) -> None:
    """The decoders' lines from ``sink`` into ``messages``; the rest (and anything past
    the first ``_MESSAGE_BYTES``) written to standard error as it was."""
    sink.seek(0)
    others = []
    for line in sink.read(_MESSAGE_BYTES).splitlines(keepends=True):
        text = line.decode("utf-8", "replace").strip()
        if text and _from_decoder(text):
            messages.append(text)
        else:
            others.append(line)
    with suppress(OSError):
        rest = b"".join(others)
        while rest or (rest := sink.read(_MESSAGE_BYTES)):
            rest = rest[os.write(2, rest) :]


def _decode(data: bytes, header: _Header, name: str) -> tuple[np.ndarray, list[str]]:
    """OpenCV's pixels (BGR order) and the decoder's messages saying they are damaged."""
    import cv2

    messages: list[str] = []
    try:
        with _quiet_stderr() as messages:
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
    return pixels, _damage(messages)


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
    if data.startswith(_PNG_SIGNATURE):
        header = _check_png(data, name, max_pixels)
    elif data.startswith(_JPEG_START):
        header, damage, ended = _check_jpeg(data, name, max_pixels, allow_damaged)
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
