"""A JPEG file's quantised DCT coefficients, read and written exactly (``jpeglib``, libjpeg's Python envelope; the
``[jpeg]`` extra).

Layout: ``jpeglib`` gives each component's coefficients as (block rows, block cols, 8, 8) in natural (row-major)
order and the quantisation tables as (tables, 8, 8); Pillow writes 4:2:0 (luma blocks twice the chroma blocks in
each direction), and the image is padded to whole MCUs (16 x 16).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np

from hcd_pipeline.core.errors import SettingsError

__all__ = ["JpegCoefficients", "read_coefficients", "write_coefficients", "jpeglib_module"]


@dataclass
class JpegCoefficients:
    """A baseline 4:2:0 JPEG's quantised coefficients (int, natural order) and tables; ``size`` = (h, w)."""

    y: np.ndarray  # (by, bx, 8, 8)
    cb: np.ndarray  # (by/2, bx/2, 8, 8)
    cr: np.ndarray
    qt_luma: np.ndarray  # (8, 8)
    qt_chroma: np.ndarray
    size: tuple[int, int]
    _template: bytes


def jpeglib_module():  # noqa: ANN201 - the module
    try:
        import jpeglib
    except ImportError as exc:  # an optional dependency (the [jpeg] extra): one line where it is missing
        raise SettingsError(
            "HCD in the JPEG file (--lr-format jpeg) needs the jpeglib package: pip install 'hcd_pipeline[jpeg]' (PNG and WebP LRs do not)"
        ) from exc
    return jpeglib


def read_coefficients(data: bytes) -> JpegCoefficients:
    """The coefficients of a JPEG file's bytes (written by :func:`~hcd_pipeline.io.lr_formats.encode_lr`: 4:2:0)."""
    jl = jpeglib_module()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "in.jpg")
        with open(path, "wb") as fh:
            fh.write(data)
        im = jl.read_dct(path)
        im.load()
        qt = np.asarray(im.qt)
        tbl = np.asarray(im.quant_tbl_no)
        return JpegCoefficients(np.array(im.Y), np.array(im.Cb), np.array(im.Cr), qt[tbl[0]].astype(np.float32),
                                qt[tbl[1]].astype(np.float32), (int(im.height), int(im.width)), data)  # fmt: skip


def write_coefficients(c: JpegCoefficients, y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> bytes:
    """A JPEG file with the same header and tables as ``c`` and these integer coefficients."""
    jl = jpeglib_module()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.jpg"), os.path.join(tmp, "out.jpg")
        with open(src, "wb") as fh:
            fh.write(c._template)
        im = jl.read_dct(src)
        im.load()
        im.Y, im.Cb, im.Cr = y.astype(np.int16), cb.astype(np.int16), cr.astype(np.int16)
        im.write_dct(dst)
        with open(dst, "rb") as fh:
            return fh.read()
