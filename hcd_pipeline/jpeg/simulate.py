"""A differentiable stand-in for baseline JPEG (4:2:0), for training models whose LR will be stored as JPEG.

The real encoder (libjpeg through Pillow) has no gradient. This model of it follows libjpeg's steps in torch:
RGB -> YCbCr (JFIF, full range), edges replicated to whole 16 x 16 MCUs, 4:2:0 chroma subsampling (2 x 2 means),
level shift, 8 x 8 DCT-II per block, quantisation with libjpeg's standard tables scaled by its quality formula
(``jpeg_quality_scaling``, baseline), dequantisation, inverse DCT, chroma upsampling (bilinear with half-pixel
centres, which is libjpeg's "fancy" triangle filter), back to RGB, rounded to 8 bits. Both roundings (of the
coefficients and of the decoded pixels) are straight-through: the forward value is rounded, the gradient passes as
if it were not.

The forward value is close to libjpeg's decode, not equal (libjpeg computes its DCTs in integers, and rounds the
colour conversion in tables): ``tests/test_codec_sim.py`` bounds the difference against Pillow. Training
(:mod:`hcd_pipeline.training.train`, ``codec = "jpeg"``) uses it between downscaler and upscaler; validation and every
benchmark use the real codec.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hcd_pipeline.jpeg import transform
from hcd_pipeline.jpeg.transform import blocks, dct_blocks, dct_matrix, idct_blocks, luma, unblocks, ycbcr_to_rgb

__all__ = ["SIMULATED_CODECS", "jpeg_sim", "quant_tables"]

SIMULATED_CODECS = ("none", "jpeg")
"""What training can put between downscaler and upscaler (``hcd train --codec``): nothing, or :func:`jpeg_sim`."""

_LUMA = torch.tensor(
    [[16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
     [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
     [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float32)  # fmt: skip
_CHROMA = torch.tensor(
    [[17, 18, 24, 47, 99, 99, 99, 99], [18, 21, 26, 66, 99, 99, 99, 99], [24, 26, 56, 99, 99, 99, 99, 99],
     [47, 66, 99, 99, 99, 99, 99, 99]] + [[99] * 8] * 4, dtype=torch.float32)  # fmt: skip
"""ITU T.81 Annex K tables (libjpeg's defaults), row-major in natural (not zig-zag) order."""


def quant_tables(quality: int) -> tuple[torch.Tensor, torch.Tensor]:
    """libjpeg's (luminance, chrominance) 8 x 8 tables at ``quality`` 1..100 (``jpeg_quality_scaling``, baseline)."""
    q = min(100, max(1, int(quality)))
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return tuple(torch.clamp(torch.floor((t * scale + 50) / 100), 1, 255) for t in (_LUMA, _CHROMA))  # type: ignore[return-value]


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _code(plane: torch.Tensor, tables: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Planes (N, H, W) in 0..255 and tables (N, 8, 8) -> the planes after DCT, quantisation and inverse DCT."""
    coef = dct_blocks(blocks(plane - 128.0), d)
    t = tables[:, None, None]
    return unblocks(idct_blocks(_round_ste(coef / t) * t, d)) + 128.0


def _tables(quality: int | torch.Tensor | list[int], batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    qs = [int(quality)] * batch if isinstance(quality, int) else [int(q) for q in quality]
    if len(qs) != batch:
        raise ValueError(f"jpeg_sim: {len(qs)} qualities for a batch of {batch}")
    pairs = [quant_tables(q) for q in qs]
    return torch.stack([p[0] for p in pairs]).to(like), torch.stack([p[1] for p in pairs]).to(like)


def jpeg_sim(x: torch.Tensor, quality: int | torch.Tensor | list[int]) -> torch.Tensor:
    """Differentiable JPEG (baseline, 4:2:0) of ``x`` (B, 3, h, w) in [0, 1] -> (B, 3, h, w) in [0, 1], 8-bit levels.

    ``quality``: one libjpeg quality (1..100) for the batch, or one per image (a list or a (B,) tensor).
    """
    b, c, h, w = x.shape
    if c != 3:
        raise ValueError(f"jpeg_sim needs RGB (B, 3, h, w), got {tuple(x.shape)}")
    luma_t, chroma_t = _tables(quality, b, x)
    ph, pw = -h % 16, -w % 16
    v = (F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x) * 255.0
    r, g, bl = v[:, 0], v[:, 1], v[:, 2]
    y = luma(r, g, bl)
    cb, cr = transform.chroma(r, g, bl, offset=128.0)
    d = dct_matrix(x.device, x.dtype)
    y = _code(y, luma_t, d)
    chroma = F.avg_pool2d(torch.stack([cb, cr], 1), 2)  # (B, 2, H/2, W/2)
    hc, wc = chroma.shape[-2:]
    chroma = _code(chroma.reshape(b * 2, hc, wc), chroma_t.repeat_interleave(2, 0), d).reshape(b, 2, hc, wc)
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    cb, cr = chroma[:, 0] - 128.0, chroma[:, 1] - 128.0
    rgb = ycbcr_to_rgb(y, cb, cr, dim=1)
    rgb = _round_ste(rgb.clamp(0, 255)) / 255.0
    return rgb[..., :h, :w]
