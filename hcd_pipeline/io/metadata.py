"""What a stored LR keeps of its source's metadata: the ICC colour profile and EXIF (rights, date, camera).

Policy (``metadata`` setting; documented in docs/outputs.md, "Image policy"):

- ``keep`` (default): the ICC profile and EXIF are carried into the LR file, PNG, JPEG or WebP. The orientation has
  been applied to the pixels when the source was read, so the LR's orientation tag is reset to 1 (top-left); GPS
  position is dropped (an LR is often published; where a photo was taken is not the thumbnail's to give away); the
  EXIF thumbnail (IFD1, a picture of the full-size source) is dropped.
- ``all``: the same with the GPS position kept.
- ``none``: nothing of the source's metadata is written.

The pixels, and so every score and the no-harm judgement, never depend on it: metadata is spliced into the encoded
file as PNG chunks, JPEG APP segments or WebP RIFF chunks, without re-encoding (an LR made inside the JPEG file stays
byte for byte that file, plus the segments). Colour values are not converted: the LR holds the source's values in the
source's colour space, which the carried profile names.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from PIL import Image

__all__ = ["METADATA_POLICIES", "SourceMetadata", "read_metadata", "embed_metadata"]

METADATA_POLICIES = ("keep", "all", "none")

_ORIENTATION, _GPS_IFD, _EXIF_IFD = 0x0112, 0x8825, 0x8769
# Tags named in the sidecar when present (what users look for: rights, authorship, date, camera).
_NAMED = {0x013B: "Artist", 0x8298: "Copyright", 0x0132: "DateTime", 0x010F: "Make", 0x0110: "Model", 0x010E: "ImageDescription",
          0x0131: "Software"}  # fmt: skip
_NAMED_EXIF_IFD = {0x9003: "DateTimeOriginal", 0x9004: "DateTimeDigitized", 0xA434: "LensModel"}


@dataclass(frozen=True)
class SourceMetadata:
    """Metadata read from a source file (as stored, before any policy).

    Attributes:
        icc: the ICC profile bytes, or None.
        exif: the EXIF block as a TIFF structure (starting ``II*\\0`` or ``MM\\0*``), or None.
    """

    icc: bytes | None = None
    exif: bytes | None = None

    def __bool__(self) -> bool:
        return bool(self.icc or self.exif)


def read_metadata(im: Image.Image) -> SourceMetadata:
    """The ICC profile and EXIF of an opened Pillow image (call before ``exif_transpose``; no pixel decoding)."""
    icc = im.info.get("icc_profile") or None
    exif = None
    try:
        raw = im.getexif().tobytes() if len(im.getexif()) else b""
    except Exception:  # noqa: BLE001 - damaged EXIF is dropped, never a failed image
        raw = b""
    if raw:
        exif = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    return SourceMetadata(icc=bytes(icc) if icc else None, exif=exif)


def _policy_exif(exif: bytes, policy: str) -> tuple[bytes | None, dict[str, object]]:
    """EXIF after the policy (TIFF structure or None) and what the sidecar says of it."""
    e = Image.Exif()
    try:
        e.load(b"Exif\x00\x00" + exif)
        sub = dict(e.get_ifd(_EXIF_IFD))  # loads the Exif sub-IFD so that tobytes writes it back
    except Exception:  # noqa: BLE001 - unreadable EXIF is dropped
        return None, {"exif": "dropped (unreadable)"}
    had_gps = _GPS_IFD in e
    if policy != "all" and had_gps:
        del e[_GPS_IFD]
    if _ORIENTATION in e:
        e[_ORIENTATION] = 1  # applied to the pixels when the source was read
    kept = sorted({name for tag, name in _NAMED.items() if tag in e} | {name for tag, name in _NAMED_EXIF_IFD.items() if tag in sub})
    try:
        out = e.tobytes()
    except Exception:  # noqa: BLE001 - tags Pillow cannot write back (odd types): drop EXIF, keep the image
        return None, {"exif": "dropped (could not be rewritten)"}
    gps = "none" if not had_gps else ("kept" if policy == "all" else "dropped")
    return out[6:] if out.startswith(b"Exif\x00\x00") else out, {"exif": kept or "kept", "gps": gps}


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _embed_png(data: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    end_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR body, CRC
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
    if exif:
        extra += _png_chunk(b"eXIf", exif)
    return data[:end_ihdr] + extra + data[end_ihdr:]


def _embed_jpeg(data: bytes, icc: bytes | None, exif: bytes | None) -> bytes:
    pos = 2  # after SOI; after a JFIF APP0 if there is one (APP1 Exif conventionally follows it)
    if data[2:4] == b"\xff\xe0":
        pos = 4 + struct.unpack(">H", data[4:6])[0]
    segs = b""
    if exif:
        body = b"Exif\x00\x00" + exif
        if len(body) + 2 <= 0xFFFF:  # larger EXIF does not fit one APP1 segment: dropped
            segs += b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    if icc:
        size = 65519  # per ICC.1 Annex B: 65535 - 2 (length) - 14 (ICC_PROFILE\0 + sequence + count)
        chunks = [icc[i : i + size] for i in range(0, len(icc), size)]
        for n, chunk in enumerate(chunks, 1):
            body = b"ICC_PROFILE\x00" + bytes([n, len(chunks)]) + chunk
            segs += b"\xff\xe2" + struct.pack(">H", len(body) + 2) + body
    return data[:pos] + segs + data[pos:]


def _riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


def _embed_webp(data: bytes, icc: bytes | None, exif: bytes | None, width: int, height: int) -> bytes:
    chunks: list[tuple[bytes, bytes]] = []
    pos = 12
    while pos + 8 <= len(data):
        kind, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.append((kind, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size % 2)
    flags = 0
    if chunks[0][0] == b"VP8X":
        flags = chunks[0][1][0]
        chunks = chunks[1:]
    chunks = [c for c in chunks if c[0] not in (b"ICCP", b"EXIF")]
    if any(k == b"ALPH" for k, _ in chunks) or (chunks and chunks[0][0] == b"VP8L" and _vp8l_alpha(chunks[0][1])):
        flags |= 0x10
    flags = (flags | (0x20 if icc else 0) | (0x08 if exif else 0)) & ~0x02  # no animation in an LR
    vp8x = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = _riff_chunk(b"VP8X", vp8x)
    if icc:
        body += _riff_chunk(b"ICCP", icc)
    body += b"".join(_riff_chunk(k, v) for k, v in chunks)
    if exif:
        body += _riff_chunk(b"EXIF", exif)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def _vp8l_alpha(body: bytes) -> bool:
    """The alpha_is_used bit of a VP8L (lossless) header."""
    return len(body) >= 5 and bool((int.from_bytes(body[1:5], "little") >> 28) & 1)


def embed_metadata(
    data: bytes, fmt: str, meta: SourceMetadata | None, policy: str, size: tuple[int, int]
) -> tuple[bytes, dict[str, object]]:
    """``data`` (an encoded LR file of ``fmt`` png / jpeg / webp, ``size`` = (width, height)) with the source's
    metadata under ``policy`` spliced in -> (file bytes, what the sidecar records). The pixel data are unchanged."""
    if policy not in METADATA_POLICIES:
        raise ValueError(f"metadata policy {policy!r}: expected one of {METADATA_POLICIES}")
    if policy == "none" or not meta:
        return data, {"policy": policy, "icc_profile": False, "exif": None}
    exif, said = _policy_exif(meta.exif, policy) if meta.exif else (None, {"exif": None})
    if fmt == "png":
        out = _embed_png(data, meta.icc, exif)
    elif fmt == "jpeg":
        out = _embed_jpeg(data, meta.icc, exif)
    elif fmt == "webp":
        out = _embed_webp(data, meta.icc, exif, *size)
    else:
        raise ValueError(f"LR format {fmt!r}")
    return out, {"policy": policy, "icc_profile": meta.icc is not None, **said}
