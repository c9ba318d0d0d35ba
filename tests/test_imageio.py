"""Image reading in every mode, 16-bit precision, atomic writes and the documented error."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from hcd_pipeline.core.errors import ImageReadError, ImageWriteError
from hcd_pipeline.io.images import decode_image, encode_png, read_image, write_png


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _rgb(w=20, h=14, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_lossless_formats_round_trip_rgb(fmt):
    arr = _rgb()
    kw = {"lossless": True} if fmt == "WEBP" else {}
    img = decode_image(_save(Image.fromarray(arr), fmt, **kw), f"x.{fmt.lower()}")
    assert img.pixels.shape == (3, 14, 20) and img.alpha is None and img.bit_depth == 8
    assert np.array_equal(np.round(img.pixels.permute(1, 2, 0).numpy() * 255).astype(np.uint8), arr)


def test_jpeg_gray_palette_cmyk_rgba():
    arr = _rgb()
    jpg = decode_image(_save(Image.fromarray(arr), "JPEG"), "x.jpg")
    assert jpg.pixels.shape == (3, 14, 20)
    gray = decode_image(_save(Image.fromarray(arr[:, :, 0]), "PNG"), "g.png")
    assert gray.pixels.shape == (1, 14, 20)
    pal = Image.fromarray(arr).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    p = decode_image(_save(pal, "PNG"), "p.png")
    assert p.pixels.shape == (3, 14, 20) and p.source_mode == "P"
    pal.info["transparency"] = 0
    pt = decode_image(_save(pal, "PNG", transparency=0), "pt.png")
    assert pt.alpha is not None
    cmyk = decode_image(_save(Image.fromarray(arr).convert("CMYK"), "JPEG"), "c.jpg")
    assert cmyk.pixels.shape == (3, 14, 20) and cmyk.source_mode == "CMYK"
    rgba = np.dstack([arr, np.full((14, 20), 77, np.uint8)])
    ra = decode_image(_save(Image.fromarray(rgba), "PNG"), "a.png")
    assert ra.alpha is not None and torch.allclose(ra.alpha, torch.full((1, 14, 20), 77 / 255))


def test_exif_orientation_is_applied():
    arr = _rgb(w=30, h=10)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW for display
    img = decode_image(_save(im, "JPEG", exif=exif), "o.jpg")
    assert img.pixels.shape == (3, 30, 10)


def test_16_bit_is_never_truncated(tmp_path):
    g = np.random.default_rng(1).integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    # 16-bit RGB: our encoder, then our decoder (Pillow would truncate it to 8 bits).
    t = torch.from_numpy(g.astype(np.float32) / 65535).permute(2, 0, 1)
    data = encode_png(t, bit_depth=16)
    back = decode_image(data, "rgb16.png")
    assert back.bit_depth == 16
    assert np.array_equal(np.round(back.pixels.permute(1, 2, 0).numpy() * 65535).astype(np.uint16), g)
    # 16-bit gray through Pillow.
    gray = Image.fromarray(g[:, :, 0])
    gb = decode_image(_save(gray, "PNG"), "g16.png")
    assert gb.bit_depth == 16 and np.array_equal(np.round(gb.pixels[0].numpy() * 65535).astype(np.uint16), g[:, :, 0])
    tif = decode_image(_save(gray, "TIFF"), "g16.tif")
    assert tif.bit_depth == 16
    # RGBA 16 with alpha, written to disk atomically and read back.
    write_png(tmp_path / "a16.png", t, t[:1], bit_depth=16)
    a16 = read_image(tmp_path / "a16.png")
    assert a16.alpha is not None and a16.bit_depth == 16
    assert torch.allclose(a16.alpha, torch.round(t[:1] * 65535) / 65535)


def test_16_bit_filtered_rows_decode(tmp_path):
    """Rows using the Sub/Up/Average/Paeth filters (as libpng writes them) decode exactly."""
    import struct
    import zlib

    from hcd_pipeline.io.png16 import decode_png16

    g = np.random.default_rng(2).integers(0, 65536, (5, 4, 3), dtype=np.uint16)
    rows = g.astype(">u2").reshape(5, -1).view(np.uint8).astype(np.int64)
    bpp = 6
    raw = b""
    prev = np.zeros(rows.shape[1], dtype=np.int64)
    for y, ftype in enumerate([0, 1, 2, 3, 4]):
        cur = rows[y]
        left = np.concatenate([np.zeros(bpp, np.int64), cur[:-bpp]])
        ul = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        if ftype == 0:
            f = cur
        elif ftype == 1:
            f = cur - left
        elif ftype == 2:
            f = cur - prev
        elif ftype == 3:
            f = cur - (left + prev) // 2
        else:
            p = left + prev - ul
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - ul)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, ul))
            f = cur - pred
        raw += bytes([ftype]) + (f % 256).astype(np.uint8).tobytes()
        prev = cur

    def chunk(k, b):
        return struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b) & 0xFFFFFFFF)

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 5, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    assert np.array_equal(decode_png16(png), g)


def test_bad_inputs_raise_one_error_type_naming_the_file(tmp_path):
    good = _save(Image.fromarray(_rgb(64, 64)), "PNG")
    jpg = _save(Image.fromarray(_rgb(64, 64)), "JPEG")
    cases = {
        "text.png": b"hello, not an image",
        "empty.png": b"",
        "trunc.png": good[: len(good) // 2],
        "trunc.jpg": jpg[: len(jpg) // 3],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageReadError, match=name):
            read_image(tmp_path / name)
    (tmp_path / "adir.png").mkdir()
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path / "adir.png")
    with pytest.raises(ImageReadError, match="cannot read"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="exceeds the limit"):
        decode_image(good, "big.png", max_pixels=100)


def test_decompression_bomb_header_refused_before_decoding():
    import struct
    import zlib

    def chunk(k, b):
        return struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b) & 0xFFFFFFFF)

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")
    with pytest.raises(ImageReadError, match="bomb"):
        decode_image(bomb, "bomb.png")


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    dest = tmp_path / "out.png"
    x = torch.rand(3, 8, 8)
    write_png(dest, x)
    before = dest.read_bytes()

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ImageWriteError, match="No space left"):
        write_png(dest, torch.zeros(3, 8, 8))
    assert dest.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    img = read_image(dest)
    assert torch.equal(torch.round(img.pixels * 255), torch.round(x * 255))


def test_written_files_get_normal_permissions(tmp_path):
    write_png(tmp_path / "p.png", torch.rand(3, 4, 4))
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "p.png").stat().st_mode & 0o777 == 0o666 & ~mask


def test_16bit_colour_tiff_at_full_precision_and_upright(tmp_path):
    import numpy as np
    import tifffile
    from PIL import Image, ImageOps

    from hcd_pipeline.io.images import read_image

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 65536, size=(5, 7, 3), dtype=np.uint16)
    arr[0, 0] = (750, 1, 65535)  # 750 is 2 in its high byte: an 8-bit read would give 2/255
    p = tmp_path / "c16.tif"
    tifffile.imwrite(p, arr, photometric="rgb")
    img = read_image(p)
    assert img.bit_depth == 16 and img.pixels.shape == (3, 5, 7) and img.alpha is None
    assert torch.equal(torch.round(img.pixels * 65535).to(torch.int64), torch.from_numpy(arr.astype(np.int64)).permute(2, 0, 1))
    rgba = rng.integers(0, 65536, size=(4, 6, 4), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a16.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    img = read_image(tmp_path / "a16.tif")
    assert img.alpha is not None and abs(float(img.alpha[0, 1, 2]) - rgba[1, 2, 3] / 65535) < 1e-7
    # The orientation tag turns the image as Pillow's exif_transpose turns an 8-bit one.
    a8 = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    for orient in range(1, 9):
        tifffile.imwrite(
            tmp_path / f"o{orient}.tif", a8.astype(np.uint16) * 257, photometric="rgb", extratags=[(274, "H", 1, orient, True)]
        )
        tifffile.imwrite(tmp_path / f"p{orient}.tif", a8, photometric="rgb", extratags=[(274, "H", 1, orient, True)])
        want = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / f"p{orient}.tif")))
        got = read_image(tmp_path / f"o{orient}.tif")
        assert got.bit_depth == 16
        assert np.array_equal(np.round(got.pixels.permute(1, 2, 0).numpy() * 255).astype(np.uint8), want), orient


def test_palette_and_cmyk_colours_are_the_right_values():
    """Values, not only shapes: a palette PNG decodes to its palette colours; a CMYK JPEG to RGB near the
    colour it encodes (JPEG is lossy: a few levels)."""
    arr = np.zeros((8, 8, 3), np.uint8)
    arr[:4] = (200, 30, 90)
    arr[4:] = (10, 220, 140)
    pal = Image.fromarray(arr).convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
    p = decode_image(_save(pal, "PNG"), "p.png")
    assert torch.equal(torch.round(p.pixels[:, 0, 0] * 255), torch.tensor([200.0, 30, 90]))
    assert torch.equal(torch.round(p.pixels[:, 7, 7] * 255), torch.tensor([10.0, 220, 140]))
    flat = np.full((16, 16, 3), (200, 30, 90), np.uint8)
    cmyk = decode_image(_save(Image.fromarray(flat).convert("CMYK"), "JPEG", quality=100), "c.jpg")
    assert (torch.round(cmyk.pixels[:, 8, 8] * 255) - torch.tensor([200.0, 30, 90])).abs().max() <= 3


@pytest.mark.parametrize("orientation,corner", [(3, (-1, -1)), (6, (0, -1)), (8, (-1, 0))])
def test_exif_rotation_direction(orientation, corner):
    """A red mark in the stored top-left corner ends where the EXIF orientation puts it for display:
    3 = 180 degrees (bottom right), 6 = 90 clockwise (top right), 8 = 90 counter-clockwise (bottom left)."""
    arr = np.full((24, 40, 3), 255, np.uint8)
    arr[:6, :6] = (255, 0, 0)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    img = decode_image(_save(im, "PNG", exif=exif), "o.png")
    y, x = corner
    h, w = img.pixels.shape[-2:]
    px = img.pixels[:, (h - 2) if y < 0 else 1, (w - 2) if x < 0 else 1]
    assert torch.allclose(px, torch.tensor([1.0, 0.0, 0.0])), (orientation, px)
    assert (h, w) == ((24, 40) if orientation == 3 else (40, 24))


@pytest.mark.parametrize("compression", ["lzw", "zlib"])
def test_compressed_16bit_colour_tiff_at_full_precision(tmp_path, compression):
    """Scans come as LZW or Deflate 16-bit TIFF: read through tifffile + imagecodecs (the [formats] extra), every
    sample as stored."""
    import tifffile

    arr = np.random.default_rng(2).integers(0, 65536, size=(9, 13, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "scan.tif", arr, photometric="rgb", compression=compression)
    img = read_image(tmp_path / "scan.tif")
    assert img.bit_depth == 16
    assert np.array_equal(np.round(img.pixels.permute(1, 2, 0).numpy() * 65535).astype(np.uint16), arr)


def test_16bit_png_through_libpng_equals_our_decoder():
    import imagecodecs

    from hcd_pipeline.io.png16 import decode_png16

    arr = np.random.default_rng(3).integers(0, 65536, size=(17, 23, 4), dtype=np.uint16)
    data = imagecodecs.png_encode(arr)
    img = decode_image(data, "rgba16.png")
    assert np.array_equal(decode_png16(data), arr)  # the fallback without the extra gives the same samples
    assert img.bit_depth == 16 and np.array_equal(np.round(img.pixels.permute(1, 2, 0).numpy() * 65535).astype(np.uint16), arr[..., :3])
    assert np.array_equal(np.round(img.alpha[0].numpy() * 65535).astype(np.uint16), arr[..., 3])
