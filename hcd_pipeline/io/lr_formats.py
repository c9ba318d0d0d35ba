"""Stored LR formats: PNG (lossless, the default), JPEG and WebP (lossy, what archives and websites serve).

With a lossy format the LR that users get is the decoded file, not the optimised image: the no-harm judge, the
keep-best choice and the metric rows all look at ``decode(encode(lr))`` (:func:`roundtrip`), so an optimised LR
is stored only when *its file* reconstructs better than the plain LR's file at the same format and quality.
Encoding is Pillow's (libjpeg / libwebp) with fixed settings, so the same LR gives the same bytes.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.io.images import encode_png

__all__ = ["LR_FORMATS", "LR_EXTENSIONS", "DEFAULT_QUALITY", "encode_lr", "decode_lr", "roundtrip", "check_format"]

LR_FORMATS = ("png", "jpeg", "webp")
LR_EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
DEFAULT_QUALITY = 90
"""Quality of lossy LR files when none is given (libjpeg / libwebp scale, 1-100)."""


def check_format(fmt: str, quality: int) -> None:
    if fmt not in LR_FORMATS:
        raise SettingsError(f"LR format {fmt!r}: expected one of {LR_FORMATS}")
    if not 1 <= quality <= 100:
        raise SettingsError(f"LR quality must be between 1 and 100, got {quality}")


def _pil(lr: torch.Tensor, alpha: torch.Tensor | None) -> Image.Image:
    arr = torch.round(lr.detach().clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    if alpha is None:
        return Image.fromarray(np.ascontiguousarray(arr), "RGB")
    a = torch.round(alpha.detach().clamp(0, 1) * 255).to(torch.uint8)[0].cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(np.dstack([arr, a])), "RGBA")


def encode_lr(lr: torch.Tensor, alpha: torch.Tensor | None, fmt: str, quality: int = DEFAULT_QUALITY) -> bytes:
    """The file bytes of an LR (3, h, w) in [0, 1] (rounded to 8 bits) with optional alpha (1, h, w).

    JPEG: baseline, 4:2:0 chroma subsampling (libjpeg's default, what the web serves), no alpha (refused).
    WebP: lossy with ``quality``, alpha kept. PNG: lossless (``quality`` unused).
    """
    if fmt == "png":
        return encode_png(lr, alpha)
    buf = io.BytesIO()
    if fmt == "jpeg":
        if alpha is not None:
            raise SettingsError("JPEG has no alpha channel: store this image with --lr-format png or webp")
        _pil(lr, None).save(buf, format="JPEG", quality=quality, subsampling=2, optimize=False)
    elif fmt == "webp":
        _pil(lr, alpha).save(buf, format="WEBP", quality=quality, method=4)
    else:
        raise SettingsError(f"LR format {fmt!r}: expected one of {LR_FORMATS}")
    return buf.getvalue()


def decode_lr(data: bytes) -> torch.Tensor:
    """The RGB pixels of an LR file as float (3, h, w) in [0, 1] (8-bit levels)."""
    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255


def roundtrip(lr: torch.Tensor, fmt: str, quality: int = DEFAULT_QUALITY) -> torch.Tensor:
    """``decode(encode(lr))`` for every item of (B, 3, h, w) (or one (3, h, w)): what users get from the file.
    PNG is exact (the LR rounded to 8 bits)."""
    if fmt == "png":
        return torch.round(lr.clamp(0, 1) * 255) / 255
    items = lr if lr.dim() == 4 else lr.unsqueeze(0)
    out = torch.stack([decode_lr(encode_lr(x, None, fmt, quality)) for x in items]).to(lr.device, lr.dtype)
    return out if lr.dim() == 4 else out[0]
