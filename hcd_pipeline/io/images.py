"""Reading and writing images: every common format and mode in, lossless PNG out, atomically.

Policy (documented in docs/outputs.md, "Image policy"):

* colour: grayscale stays one channel (``"L"``), everything else becomes RGB (palette, CMYK, YCbCr,
  1-bit). Rescaling models work on RGB; a grayscale image is replicated to RGB for the model and the
  result's mean over channels is kept (see :mod:`hcd_pipeline.downscaler`).
* alpha: split off into ``alpha`` (1, H, W) and resized separately with plain MATLAB bicubic; palette
  images with a transparency entry get an alpha channel.
* bit depth: 8-bit sources give ``bit_depth = 8``, 16-bit sources (PNG, TIFF; gray or colour) give
  ``bit_depth = 16`` with the full 16-bit precision in ``pixels``; nothing is truncated silently.
* EXIF orientation is applied, so ``pixels`` is upright as a viewer shows it.

All decoding errors raise :class:`~hcd_pipeline.core.errors.ImageReadError` with ``"<name>: <reason>"``.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from hcd_pipeline.core.errors import ImageReadError, ImageWriteError
from hcd_pipeline.io.metadata import SourceMetadata, read_metadata
from hcd_pipeline.io.png16 import check_image_data_size, decode_png16, encode_png16, png_header

__all__ = [
    "DecodedImage",
    "IMAGE_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "list_images",
    "read_image",
    "decode_image",
    "encode_png",
    "write_png",
    "atomic_write_bytes",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
DEFAULT_MAX_PIXELS = 100_000_000
"""Largest accepted width x height; larger inputs are refused as likely decompression bombs."""


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image.

    Attributes:
        pixels: float32 (C, H, W) in [0, 1], C = 1 (gray) or 3 (RGB).
        alpha: float32 (1, H, W) in [0, 1], or None when the source has no transparency.
        bit_depth: 8 or 16, the precision of the source samples.
        source_mode: the Pillow mode of the file as stored (e.g. ``"P"``, ``"CMYK"``, ``"I;16"``).
        name: where it came from (path or key), used in messages.
        metadata: the source's ICC profile and EXIF (:mod:`.metadata`), or None.
    """

    pixels: torch.Tensor
    alpha: torch.Tensor | None
    bit_depth: int
    source_mode: str
    name: str
    metadata: SourceMetadata | None = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[-2])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[-1])


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted by path; raises if the folder is missing."""
    root = Path(folder)
    if not root.is_dir():
        raise ImageReadError(f"{root}: not a folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _to_tensor(arr: np.ndarray, peak: float) -> torch.Tensor:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32) / peak).permute(2, 0, 1).contiguous()


def _split(arr: np.ndarray, peak: float, has_alpha: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    t = _to_tensor(arr, peak)
    if has_alpha:
        return t[:-1].contiguous(), t[-1:].contiguous()
    return t, None


def decode_image(data: bytes, name: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode image bytes (PNG, JPEG, WebP, BMP, TIFF). ``name`` is only used in error messages."""
    if not data:
        raise ImageReadError(f"{name}: empty file")
    head = png_header(data)
    if head is not None:
        _check_size(name, head[0], head[1], max_pixels)  # before any decoding
    if head is not None and head[2] == 16 and head[3] in (2, 4, 6):
        try:
            arr = _decode_png16(data)
        except (ValueError, zlib.error, struct.error, RuntimeError) as exc:
            raise ImageReadError(f"{name}: corrupt 16-bit PNG ({exc})") from exc
        alpha = head[3] in (4, 6)
        pixels, a = _split(arr, 65535.0, alpha)
        mode = {2: "RGB;16", 4: "LA;16", 6: "RGBA;16"}[head[3]]
        return DecodedImage(pixels, a, 16, mode, name, _metadata_of(data))
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        tiff16 = _decode_tiff16(data, name, max_pixels)
        if tiff16 is not None:
            return replace(tiff16, metadata=_metadata_of(data))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            _check_size(name, im.width, im.height, max_pixels)
            frames = int(getattr(im, "n_frames", 1))
            if frames > 1:
                # One LR per file: silently keeping the first frame would lose the rest without a word.
                raise ImageReadError(f"{name}: {frames} frames (animated or multi-page); only single images are read")
            mode = im.mode
            im.load()
            meta = read_metadata(im)  # before the orientation is applied (and removed from the image's EXIF)
            im = ImageOps.exif_transpose(im)
    except ImageReadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"{name}: not a recognised image format") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"{name}: image too large ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, TypeError) as exc:
        raise ImageReadError(f"{name}: truncated or corrupt image data ({exc})") from exc
    return replace(_from_pil(im, mode, name), metadata=meta)


def _decode_png16(data: bytes) -> np.ndarray:
    """16-bit colour PNG -> uint16 (H, W, C): libpng through ``imagecodecs`` (the ``[formats]`` extra; 0.01 s against
    0.37 s per megapixel here, and interlaced files too), else this package's own decoder (:mod:`.png16`,
    non-interlaced). Pillow would keep only the high byte of each sample. The header's size was checked before."""
    try:
        import imagecodecs
    except ImportError:
        return decode_png16(data)
    check_image_data_size(data)  # libpng would read what the header allows and ignore a bomb's rest: refuse it as ours does
    try:
        arr = imagecodecs.png_decode(data)
    except Exception as exc:  # noqa: BLE001 - imagecodecs raises its own error types
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    return arr if arr.ndim == 3 else arr[:, :, None]


def _metadata_of(data: bytes) -> SourceMetadata | None:
    """ICC profile and EXIF of a file decoded by another codec (16-bit PNG, TIFF): Pillow reads only the headers."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return read_metadata(im)
    except Exception:  # noqa: BLE001 - metadata Pillow cannot read is dropped, never a failed image
        return None


_ORIENT = {  # EXIF/TIFF orientation -> (transpose, flip rows, flip columns) applied to (H, W, C)
    1: (False, False, False), 2: (False, False, True), 3: (False, True, True), 4: (False, True, False),
    5: (True, False, False), 6: (True, True, False), 7: (True, True, True), 8: (True, False, True),
}  # fmt: skip


def _decode_tiff16(data: bytes, name: str, max_pixels: int) -> DecodedImage | None:
    """16-bit colour TIFF (RGB / RGBA, 3 or 4 samples) at full precision, or None for Pillow to decode.

    Pillow reads 16-bit colour TIFF as 8 bits (the high byte); ``tifffile`` reads the samples as stored.
    The orientation tag is applied as Pillow's ``exif_transpose`` would.
    """
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tf:
            if len(tf.pages) > 1:
                raise ImageReadError(f"{name}: {len(tf.pages)} frames (animated or multi-page); only single images are read")
            page = tf.pages[0]
            shape, dtype = page.shape, page.dtype
            if dtype != np.uint16 or len(shape) != 3 or page.samplesperpixel not in (3, 4):
                return None
            h, w = (shape[0], shape[1]) if shape[-1] in (3, 4) else (shape[1], shape[2])
            _check_size(name, w, h, max_pixels)
            arr = page.asarray()
            tag = page.tags.get("Orientation")
            orient = int(tag.value) if tag is not None else 1
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for damaged files
        if "imagecodecs" in str(exc):  # LZW / Deflate / JPEG-compressed 16-bit TIFF: the codec is an optional package
            raise ImageReadError(f"{name}: compressed 16-bit TIFF needs imagecodecs: pip install 'hcd_pipeline[formats]'") from exc
        raise ImageReadError(f"{name}: truncated or corrupt TIFF ({type(exc).__name__}: {exc})") from exc
    if arr.shape[-1] not in (3, 4):  # planar (C, H, W) -> (H, W, C)
        arr = np.moveaxis(arr, 0, -1)
    transpose, flip_rows, flip_cols = _ORIENT.get(orient, _ORIENT[1])
    if flip_rows:
        arr = arr[::-1]
    if flip_cols:
        arr = arr[:, ::-1]
    if transpose:
        arr = arr.transpose(1, 0, 2)
    alpha = arr.shape[-1] == 4
    pixels, a = _split(np.ascontiguousarray(arr), 65535.0, alpha)
    return DecodedImage(pixels, a, 16, "RGBA;16" if alpha else "RGB;16", name)


def _check_size(name: str, w: int, h: int, max_pixels: int) -> None:
    if w < 1 or h < 1:
        raise ImageReadError(f"{name}: image has zero size ({w}x{h})")
    if w * h > max_pixels:
        raise ImageReadError(f"{name}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} (decompression bomb?)")


def _from_pil(im: Image.Image, source_mode: str, name: str) -> DecodedImage:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im).astype(np.uint16)
        return DecodedImage(_to_tensor(arr, 65535.0), None, 16, source_mode, name)
    if mode == "I":
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageReadError(f"{name}: 32-bit integer samples outside 0..65535 are not supported")
        return DecodedImage(_to_tensor(arr.astype(np.uint16), 65535.0), None, 16, source_mode, name)
    if mode == "F":
        raise ImageReadError(f"{name}: floating-point images are not supported")
    if mode in ("P", "PA"):
        has_t = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_t else "RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode == "LA":
        pass
    elif mode not in ("L", "RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in mode else "RGB")
    arr = np.asarray(im)
    alpha = im.mode in ("RGBA", "LA")
    pixels, a = _split(arr, 255.0, alpha)
    return DecodedImage(pixels, a, 8, source_mode, name)


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Read an image file; see :func:`decode_image`."""
    p = Path(path)
    if p.is_dir():
        raise ImageReadError(f"{p}: is a directory, not an image")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    return decode_image(data, str(p), max_pixels=max_pixels)


def encode_png(pixels: torch.Tensor, alpha: torch.Tensor | None = None, *, bit_depth: int = 8) -> bytes:
    """Encode (C, H, W) in [0, 1] (C = 1 or 3), plus optional alpha (1, H, W), as a PNG.

    Values are clamped and rounded to ``bit_depth`` (8 or 16) levels.
    """
    if pixels.dim() != 3 or pixels.shape[0] not in (1, 3):
        raise ValueError(f"encode_png expects (1|3, H, W), got {tuple(pixels.shape)}")
    x = pixels if alpha is None else torch.cat([pixels, alpha], 0)
    peak = 255.0 if bit_depth == 8 else 65535.0
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    arr = torch.round(x.detach().double().clamp(0, 1) * peak).permute(1, 2, 0).cpu().numpy()
    if bit_depth == 16:
        return encode_png16(arr.astype(np.uint16))
    a8 = arr.astype(np.uint8)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[a8.shape[2]]
    buf = io.BytesIO()
    Image.fromarray(a8[:, :, 0] if mode == "L" else a8, mode=mode).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def atomic_write_bytes(path: str | Path, data: bytes | BinaryIO) -> None:
    """Write ``data`` (bytes, or a binary file read to its end) to a temporary file beside ``path``, fsync it,
    then rename it into place.

    A crash or a full disk never leaves a partial ``path``: either the old file (or nothing) or the
    complete new one.
    """
    dest = Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise ImageWriteError(f"{dest}: cannot write ({exc.strerror or exc})") from exc
    try:
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, bytes | bytearray | memoryview):
                fh.write(data)
            else:
                shutil.copyfileobj(data, fh, 1 << 20)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ImageWriteError(f"{dest}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_png(path: str | Path, pixels: torch.Tensor, alpha: torch.Tensor | None = None, *, bit_depth: int = 8) -> None:
    """Encode with :func:`encode_png` and write atomically with :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, encode_png(pixels, alpha, bit_depth=bit_depth))
