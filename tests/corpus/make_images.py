"""PNG and JPEG files built byte by byte for the image reader's tests: valid files of every
mode the reader takes, and hostile ones (decompression bombs, damaged data) that stay
small on disk. Everything is deterministic; nothing is committed but this generator.

    python -m tests.corpus.make_images OUT_FOLDER     # writes every file, to look at

The PNG encoder is written here (struct, zlib, numpy) so that every field can be chosen:
bit depths 1 to 16, palettes, transparency, Adam7 interlacing and each of the five row
filters. JPEGs come from OpenCV's encoder (baseline, progressive, gray, restart markers)
and Pillow's (CMYK), with their frame headers edited for the bombs.
"""

from __future__ import annotations

import io
import itertools
import struct
import sys
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # samples per pixel of each PNG colour type
JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


# -- PNG -----------------------------------------------------------------------------


def chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body and the CRC of type and body."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """``(type, body)`` of each complete chunk, in order (a damaged tail is dropped)."""
    out, position = [], len(PNG_SIGNATURE)
    while position + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        if position + 12 + length > len(data):
            break
        out.append((kind, data[position + 8 : position + 8 + length]))
        position += 12 + length
    return out


def png_from_chunks(chunks: Iterable[tuple[bytes, bytes]]) -> bytes:
    return PNG_SIGNATURE + b"".join(chunk(kind, body) for kind, body in chunks)


def ihdr(width: int, height: int, depth: int, colour: int, interlace: int = 0) -> bytes:
    return struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)


def _pack(samples: np.ndarray, depth: int) -> np.ndarray:
    """A row's samples as bytes: big-endian for 16 bits, packed high bits first below 8."""
    if depth == 16:
        return np.frombuffer(samples.astype(">u2").tobytes(), np.uint8)
    if depth == 8:
        return samples.astype(np.uint8)
    per_byte = 8 // depth
    padded = np.zeros(-(-samples.size // per_byte) * per_byte, np.int64)
    padded[: samples.size] = samples
    shifts = depth * np.arange(per_byte - 1, -1, -1)
    return (padded.reshape(-1, per_byte) << shifts).sum(axis=1).astype(np.uint8)


def _filtered(kind: int, row: np.ndarray, previous: np.ndarray, step: int) -> np.ndarray:
    """``row`` under PNG filter ``kind`` (0 none, 1 sub, 2 up, 3 average, 4 Paeth); each
    filter predicts from the unfiltered neighbours, so it is one vector expression."""
    x = row.astype(np.int64)
    b = previous.astype(np.int64)
    a = np.concatenate([np.zeros(step, np.int64), x[:-step]])[: x.size]
    c = np.concatenate([np.zeros(step, np.int64), b[:-step]])[: x.size]
    if kind == 0:
        predicted = np.zeros_like(x)
    elif kind == 1:
        predicted = a
    elif kind == 2:
        predicted = b
    elif kind == 3:
        predicted = (a + b) // 2
    else:
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        predicted = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    return ((x - predicted) % 256).astype(np.uint8)


def png_raw(samples: np.ndarray, depth: int, interlace: bool, filters: Sequence[int]) -> bytes:
    """The image data before compression: each row of each pass, filter byte first.

    ``samples`` is ``(H, W, samples per pixel)``."""
    count = samples.shape[2]
    step = max(1, count * depth // 8)
    out = []
    number = 0
    for x0, y0, dx, dy in ADAM7 if interlace else ((0, 0, 1, 1),):
        part = samples[y0::dy, x0::dx]
        if part.size == 0:
            continue
        previous = np.zeros(-(-part.shape[1] * count * depth // 8), np.uint8)
        for row in part:
            packed = _pack(row.reshape(-1), depth)
            kind = filters[number % len(filters)]
            out.append(bytes([kind]) + _filtered(kind, packed, previous, step).tobytes())
            previous = packed
            number += 1
    return b"".join(out)


def png_bytes(
    samples: np.ndarray,
    *,
    colour: int | None = None,
    depth: int = 8,
    palette: np.ndarray | None = None,
    transparency: bytes | None = None,
    interlace: bool = False,
    filters: Sequence[int] = (0, 1, 2, 3, 4),
    extra: Sequence[tuple[bytes, bytes]] = (),
    idat_parts: int = 1,
) -> bytes:
    """A PNG of ``samples``: ``(H, W)`` or ``(H, W, C)`` sample values as the file stores
    them (palette indices for colour type 3; RGB(A) order). ``extra`` chunks go before
    the image data."""
    if samples.ndim == 2:
        samples = samples[:, :, None]
    if colour is None:
        colour = {1: 0, 2: 4, 3: 2, 4: 6}[samples.shape[2]]
    if SAMPLES[colour] != samples.shape[2]:
        raise ValueError(f"colour type {colour} takes {SAMPLES[colour]} samples per pixel")
    height, width = samples.shape[:2]
    compressed = zlib.compress(png_raw(samples, depth, interlace, filters), 9)
    cuts = np.linspace(0, len(compressed), idat_parts + 1).astype(int)
    chunks = [(b"IHDR", ihdr(width, height, depth, colour, int(interlace)))]
    if palette is not None:
        chunks.append((b"PLTE", np.asarray(palette, np.uint8).tobytes()))
    if transparency is not None:
        chunks.append((b"tRNS", transparency))
    chunks += list(extra)
    chunks += [(b"IDAT", compressed[a:b]) for a, b in itertools.pairwise(cuts)]
    chunks.append((b"IEND", b""))
    return png_from_chunks(chunks)


def zeros_zlib(count: int, block: int = 1 << 20) -> bytes:
    """A zlib stream of ``count`` zero bytes, built without compressing them all.

    After a full flush deflate forgets what came before, so the compressed form of one
    block of zeros can be repeated; the Adler-32 of n zeros is ``(n mod 65521) << 16 | 1``.
    20000 x 20001 zeros (a 20000 x 20000 gray PNG) take 2 ms and 390 KB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    whole, rest = divmod(count, block)
    segment = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert segment == again  # nothing carried over the flush
    tail = compressor.compress(bytes(rest)) + compressor.flush()
    adler = ((count % 65521) << 16) | 1
    return b"\x78\xda" + segment * whole + tail + struct.pack(">I", adler)


def png_raw_size(width: int, height: int, bits_per_pixel: int, interlace: bool = False) -> int:
    total = 0
    for x0, y0, dx, dy in ADAM7 if interlace else ((0, 0, 1, 1),):
        columns = max(0, width - x0 + dx - 1) // dx
        rows = max(0, height - y0 + dy - 1) // dy
        if columns and rows:
            total += rows * (1 + (columns * bits_per_pixel + 7) // 8)
    return total


def png_bomb(width: int, height: int, colour: int = 0, depth: int = 8) -> bytes:
    """A complete, valid PNG of ``width`` x ``height`` black pixels: its image data is
    all zeros (filter 0, value 0), about a thousandth of its decoded size on disk."""
    raw = png_raw_size(width, height, SAMPLES[colour] * depth)
    chunks = [(b"IHDR", ihdr(width, height, depth, colour))]
    if colour == 3:
        chunks.append((b"PLTE", bytes(3)))
    chunks += [(b"IDAT", zeros_zlib(raw)), (b"IEND", b"")]
    return png_from_chunks(chunks)


def png_claiming(width: int, height: int, colour: int = 0, depth: int = 8) -> bytes:
    """A small PNG whose header claims ``width`` x ``height``: its data is one row."""
    raw = zlib.compress(bytes(1 + width * SAMPLES[colour] * depth // 8))
    chunks = [(b"IHDR", ihdr(width, height, depth, colour)), (b"IDAT", raw), (b"IEND", b"")]
    return png_from_chunks(chunks)


# -- JPEG ----------------------------------------------------------------------------


def jpeg_bytes(
    pixels: np.ndarray,
    *,
    quality: int = 90,
    progressive: bool = False,
    sampling: str = "420",
    restart: int = 0,
) -> bytes:
    """OpenCV's JPEG of ``(H, W)`` gray or ``(H, W, 3)`` RGB pixels."""
    import cv2

    factors = {
        "420": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        "422": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
        "444": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    }
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factors[sampling]]
    if restart:
        params += [cv2.IMWRITE_JPEG_RST_INTERVAL, restart]
    bgr = pixels[:, :, ::-1] if pixels.ndim == 3 else pixels
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(bgr), params)
    assert ok
    return encoded.tobytes()


def cmyk_jpeg(cmyk: np.ndarray, quality: int = 90) -> bytes:
    """Pillow's (Adobe, inverted) CMYK JPEG of ``(H, W, 4)`` CMYK values."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(cmyk, "CMYK").save(out, "JPEG", quality=quality)
    return out.getvalue()


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """``(offset, marker, end)`` of each marker segment up to the end-of-image marker; a
    scan's segment (SOS) ends where its entropy-coded data ends, at the next marker
    other than a restart marker. Stops quietly at damage."""
    out, position = [], 2
    while position + 2 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if marker == 0xD9 or position + 4 > len(data):
            break
        (length,) = struct.unpack_from(">H", data, position + 2)
        end = position + 2 + length
        if marker == 0xDA:
            end = scan_end(data, end)
        out.append((position, marker, min(end, len(data))))
        position = end
    return out


def scan_end(data: bytes, position: int) -> int:
    """Where the entropy-coded data from ``position`` ends: at 0xFF followed by neither
    0x00 (a stuffed byte) nor a restart marker 0xD0..0xD7."""
    while True:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= len(data):
            return len(data)
        following = data[position + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            position += 2
        else:
            return position


def frame_header(data: bytes) -> int:
    """The offset of the frame header (SOFn) marker."""
    for position, marker, _end in jpeg_segments(data):
        if marker in JPEG_FRAMES:
            return position
    raise ValueError("no frame header")


def with_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header claiming ``width`` x ``height``."""
    position = frame_header(data)
    return data[: position + 5] + struct.pack(">HH", height, width) + data[position + 9 :]


def jpeg_bomb(
    width: int, height: int, *, progressive: bool = False, gray: bool = False, padding: int = 0
) -> bytes:
    """A JPEG of a few hundred bytes claiming ``width`` x ``height``: an 8 x 8 picture's
    data under an edited frame header (libjpeg makes up the rest, with a warning).
    ``padding`` bytes of comment segments make the file larger without more pixel data."""
    pixels = np.full((8, 8) if gray else (8, 8, 3), 128, np.uint8)
    data = with_size(jpeg_bytes(pixels, progressive=progressive), width, height)
    comments = b""
    while len(comments) < padding:
        size = min(65533, padding - len(comments))
        comments += b"\xff\xfe" + struct.pack(">H", size + 2) + bytes(size)
    return data[:2] + comments + data[2:]


def scan_bomb(scans: int, size: int = 16) -> bytes:
    """A progressive JPEG with its last scan repeated to make ``scans`` in all."""
    data = jpeg_bytes(np.full((size, size, 3), 100, np.uint8), progressive=True)
    sos = [(start, end) for start, marker, end in jpeg_segments(data) if marker == 0xDA]
    start, end = sos[-1]
    extra = data[start:end] * (scans - len(sos))
    return data[:end] + extra + data[end:]


def cut_scan(data: bytes, fraction: float) -> bytes:
    """The JPEG cut ``fraction`` of the way through its (first) scan's data, with an
    end-of-image marker put back: what a download cut short and "repaired" looks like."""
    sos = next((start, end) for start, marker, end in jpeg_segments(data) if marker == 0xDA)
    cut = sos[0] + int((sos[1] - sos[0]) * fraction)
    return data[:cut] + b"\xff\xd9"


# -- the corpus ------------------------------------------------------------------------


def _smooth(height: int, width: int, channels: int, seed: int, top: int = 255) -> np.ndarray:
    """A smooth picture with some noise (compresses like a photograph)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    planes = []
    for c in range(channels):
        wave = np.sin(x / (3 + c) + y / (5 + 2 * c)) + np.cos(y / (4 + c))
        planes.append((wave + 2) / 4 * top + rng.normal(0, top / 40, (height, width)))
    out = np.clip(np.stack(planes, axis=-1), 0, top).round()
    return out[:, :, 0] if channels == 1 else out


def base_files() -> dict[str, bytes]:
    """Valid files of each kind the reader takes, small (at most 48 x 40): the fuzz
    test's starting points."""
    rng = np.random.default_rng(2024)
    files: dict[str, bytes] = {}
    files["gray8.png"] = png_bytes(_smooth(13, 17, 1, 1).astype(np.uint8))
    files["rgb8.png"] = png_bytes(_smooth(19, 23, 3, 2).astype(np.uint8))
    alpha = rng.integers(0, 256, (16, 16, 1))
    files["rgba8.png"] = png_bytes(
        np.concatenate([_smooth(16, 16, 3, 3), alpha], axis=2).astype(np.uint8)
    )
    files["gray16.png"] = png_bytes(_smooth(9, 11, 1, 4, 65535).astype(np.uint16), depth=16)
    files["rgb16.png"] = png_bytes(_smooth(7, 9, 3, 5, 65535).astype(np.uint16), depth=16)
    files["gray1.png"] = png_bytes(rng.integers(0, 2, (5, 19)), depth=1, colour=0)
    files["gray-alpha8.png"] = png_bytes(rng.integers(0, 256, (6, 10, 2)).astype(np.uint8))
    palette = rng.integers(0, 256, (16, 3))
    files["palette4.png"] = png_bytes(
        rng.integers(0, 16, (11, 13)), colour=3, depth=4, palette=palette
    )
    files["palette8-trns.png"] = png_bytes(
        rng.integers(0, 16, (9, 12)),
        colour=3,
        depth=8,
        palette=palette,
        transparency=bytes(rng.integers(0, 256, 8).astype(np.uint8)),
    )
    files["rgb8-trns.png"] = png_bytes(
        rng.integers(0, 2, (6, 7, 3)).astype(np.uint8), transparency=b"\x00\x01\x00\x00\x00\x01"
    )
    files["interlaced-rgb8.png"] = png_bytes(
        _smooth(21, 17, 3, 6).astype(np.uint8), interlace=True, idat_parts=3
    )
    files["interlaced-gray16.png"] = png_bytes(
        _smooth(10, 9, 1, 7, 65535).astype(np.uint16), depth=16, interlace=True
    )
    files["baseline.jpg"] = jpeg_bytes(_smooth(29, 37, 3, 8).astype(np.uint8))
    files["gray.jpg"] = jpeg_bytes(_smooth(24, 24, 1, 9).astype(np.uint8))
    files["progressive.jpg"] = jpeg_bytes(_smooth(32, 40, 3, 10).astype(np.uint8), progressive=True)
    files["progressive-444.jpg"] = jpeg_bytes(
        _smooth(17, 23, 3, 11).astype(np.uint8), progressive=True, sampling="444"
    )
    files["restart.jpg"] = jpeg_bytes(_smooth(40, 48, 3, 12).astype(np.uint8), restart=2)
    files["cmyk.jpg"] = cmyk_jpeg(_smooth(16, 24, 4, 13).astype(np.uint8))
    return files


def hostile_files() -> dict[str, bytes]:
    """Small files that claim huge pictures, or hold damaged data."""
    rng = np.random.default_rng(11)
    photo = jpeg_bytes(rng.integers(0, 256, (200, 200, 3), np.uint8), quality=90)
    rgb = png_bytes(rng.integers(0, 256, (8, 8, 3), np.uint8))
    chunks = png_chunks(rgb)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    too_much = [(kind, body) for kind, body in chunks if kind != b"IDAT"]
    too_much.insert(1, (b"IDAT", zlib.compress(raw + bytes(100))))
    return {
        "bomb-20000x20000.png": png_bomb(20000, 20000),
        "bomb-11691x30000.jpg": jpeg_bomb(11691, 30000),
        "bomb-progressive-30000x30000.jpg": jpeg_bomb(30000, 30000, progressive=True),
        "claims-9000x9000.png": png_claiming(9000, 9000),
        "claims-9000x9000.jpg": jpeg_bomb(9000, 9000),
        "wide-2097152x1.png": png_claiming(1 << 21, 1),
        "scans-600.jpg": scan_bomb(600),
        "cut-mid-scan.jpg": cut_scan(photo, 0.6),
        "too-much-data.png": png_from_chunks(too_much),
    }


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.corpus.make_images OUT_FOLDER", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in {**base_files(), **hostile_files()}.items():
        (folder / name).write_bytes(data)
        print(f"{len(data):>9,} bytes  {folder / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
