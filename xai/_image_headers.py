"""What an image file's header claims, checked before it is decoded.

A PNG's signature, chunks, checksums and header (IHDR); a JPEG's markers, segments,
frame header (SOFn) and scans up to its end marker. The size a header claims is checked
against the pixel cap and against what the file can hold (deflate expands at most
1,032 to 1; a Huffman-coded JPEG spends at least one bit per 8 x 8 block), so a
decompression bomb is refused before any memory is allocated for its pixels. Used by
``xai.images.read_image``.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from xai.core.errors import XAIValueError

__all__ = ["JPEG_START", "MAX_JPEG_SCANS", "PNG_SIGNATURE", "Header", "check_jpeg", "check_png"]

#: The most scans a JPEG may have. A progressive JPEG has about ten; each scan is a pass
#: over the whole picture, so a small file with thousands of them would take minutes.
#: libjpeg-turbo stops its own fuzzers at the same number.
MAX_JPEG_SCANS = 500

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START = b"\xff\xd8\xff"

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


@dataclass(frozen=True)
class Header:
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


def _check_size(header: Header, name: str, max_pixels: int) -> None:
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


def _png_header(kind: bytes, body: bytes, name: str) -> tuple[Header, int]:
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
    header = Header("PNG", width, height, _PNG_DECODED_CHANNELS[colour], 16 if depth == 16 else 8)
    return header, _png_raw_size(width, height, _PNG_SAMPLES[colour] * depth, interlace == 1)


def check_png(data: bytes, name: str, max_pixels: int) -> Header:
    """Walk the chunks: IHDR first and within the cap, each chunk complete with its right
    checksum, ending with IEND, with enough image data for the size IHDR claims."""
    view = memoryview(data)
    position = len(PNG_SIGNATURE)
    header: Header | None = None
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


def _jpeg_frame(data: bytes, position: int, marker: int, name: str) -> tuple[Header, int]:
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
    header = Header("JPEG", width, height, count, 8)
    return header, blocks if marker in _JPEG_HUFFMAN_FRAMES else 0


def check_jpeg(
    data: bytes, name: str, max_pixels: int, allow_damaged: bool
) -> tuple[Header, list[str], bool]:
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
    header: Header | None = None
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
