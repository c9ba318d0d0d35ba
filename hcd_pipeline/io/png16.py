"""Minimal 16-bit PNG codec for the colour types Pillow truncates to 8 bits.

Pillow decodes 16-bit RGB, RGBA and gray+alpha PNGs as 8-bit images and cannot write 16-bit colour
PNGs. This module reads and writes those losslessly (non-interlaced; all five row filters). It is
only used for 16-bit colour PNGs; everything else goes through Pillow.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

import numpy as np

__all__ = ["png_header", "decode_png16", "encode_png16", "check_image_data_size"]

_SIG = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def png_header(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(width, height, bit_depth, colour_type, interlace) of PNG bytes, or None if not a PNG."""
    if len(data) < 33 or not data.startswith(_SIG) or data[12:16] != b"IHDR":
        return None
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return w, h, depth, ctype, interlace


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise ValueError(f"truncated PNG chunk {ctype!r}")
        crc = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]
        if zlib.crc32(ctype + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"PNG chunk {ctype!r} fails its CRC check")
        yield ctype, body
        pos += 12 + length
        if ctype == b"IEND":
            return
    raise ValueError("truncated PNG: no IEND chunk")


def _raw_size(w: int, h: int, bpp: int, interlace: int) -> int:
    """Bytes of filtered image data that a header allows: rows of ``w * bpp`` bytes plus a filter byte each, over
    the seven Adam7 passes when interlaced."""
    if not interlace:
        return h * (w * bpp + 1)
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    total = 0
    for x0, y0, dx, dy in passes:
        pw, ph = (w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy
        total += ph * (pw * bpp + 1) if pw > 0 and ph > 0 else 0
    return total


def _inflate_image_data(data: bytes, expected: int, w: int, h: int) -> bytes:
    """The IDAT data inflated, never more than ``expected`` bytes (what the header allows) plus one: a small file whose
    data inflates to gigabytes (a bomb) is refused here. Raises ValueError."""
    idat = b"".join(body for kind, body in _chunks(data) if kind == b"IDAT")
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(idat, expected + 1)
    except zlib.error as exc:
        raise ValueError(f"PNG image data is not valid zlib data ({exc})") from exc
    if len(raw) > expected or inflater.unconsumed_tail:
        raise ValueError(f"PNG image data inflates to more than the {expected} bytes its {w}x{h} header allows (decompression bomb?)")
    return raw


def check_image_data_size(data: bytes) -> None:
    """Refuse a 16-bit PNG whose image data inflate to more than its header allows (a decompression bomb: a
    small file that holds gigabytes of zeros), inflating at most one byte more than allowed. Raises ValueError."""
    head = png_header(data)
    if head is None:
        raise ValueError("not a PNG file")
    w, h, depth, ctype, interlace = head
    if ctype not in _CHANNELS:
        raise ValueError(f"unsupported PNG colour type {ctype}")
    _inflate_image_data(data, _raw_size(w, h, _CHANNELS[ctype] * depth // 8, interlace), w, h)


def _paeth_row(cur: bytearray, prev: bytes, bpp: int) -> None:
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        cur[i] = (cur[i] + pred) & 0xFF


def decode_png16(data: bytes) -> np.ndarray:
    """Decode a non-interlaced 16-bit PNG to a uint16 array (H, W, C). Raises ValueError if malformed."""
    head = png_header(data)
    if head is None:
        raise ValueError("not a PNG file")
    w, h, depth, ctype, interlace = head
    if depth != 16 or ctype not in _CHANNELS:
        raise ValueError(f"decode_png16 handles 16-bit gray/RGB/alpha PNGs, got depth {depth} type {ctype}")
    if interlace:
        raise ValueError("interlaced 16-bit PNGs are not supported")
    ch = _CHANNELS[ctype]
    bpp = 2 * ch
    stride = w * bpp
    expected = _raw_size(w, h, bpp, 0)
    raw = _inflate_image_data(data, expected, w, h)
    if len(raw) != expected:
        raise ValueError(f"PNG image data has {len(raw)} bytes, expected {expected}")
    out = np.empty((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(h):
        ftype = raw[y * (stride + 1)]
        row = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1)
        if ftype == 0:
            cur = row.copy()
        elif ftype == 1:  # Sub: running sum per byte lane
            cur = (row.reshape(w, bpp).astype(np.int64).cumsum(axis=0) & 0xFF).astype(np.uint8).reshape(-1)
        elif ftype == 2:
            cur = row + prev
        elif ftype == 3:
            buf = bytearray(row.tobytes())
            pb = prev.tobytes()
            for i in range(stride):
                left = buf[i - bpp] if i >= bpp else 0
                buf[i] = (buf[i] + ((left + pb[i]) >> 1)) & 0xFF
            cur = np.frombuffer(bytes(buf), dtype=np.uint8)
        elif ftype == 4:
            buf = bytearray(row.tobytes())
            _paeth_row(buf, prev.tobytes(), bpp)
            cur = np.frombuffer(bytes(buf), dtype=np.uint8)
        else:
            raise ValueError(f"PNG row {y} has unknown filter type {ftype}")
        out[y] = cur
        prev = cur
    return out.reshape(h, w * ch * 2).view(">u2").reshape(h, w, ch).astype(np.uint16)


def encode_png16(arr: np.ndarray) -> bytes:
    """Encode a uint16 array (H, W, C), C in {1, 2, 3, 4}, as a 16-bit PNG (filter 0, zlib level 6)."""
    if arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"encode_png16 needs uint16 (H, W, 1..4), got {arr.dtype} {arr.shape}")
    h, w, ch = arr.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[ch]
    rows = np.ascontiguousarray(arr.astype(">u2")).reshape(h, w * ch).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0)
    return _SIG + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
