"""Baseline JPEG's maths in torch, once: the JFIF colour transform (full-range BT.601 YCbCr), the orthonormal 8 x 8
DCT-II and its inverse, and the cutting of planes into blocks. The codec simulation (:mod:`.simulate`, training) and
the coefficient decoder (:mod:`.decoder`, HCD in the JPEG file) both use these.

The metrics' luma (:func:`hcd_pipeline.core.metrics.rgb_to_y`) is another quantity: the field's studio-range Y
(16..235) that PSNR-Y is defined on; JPEG's Y here is full range (0..255), as libjpeg codes it.
"""

from __future__ import annotations

import math

import torch

__all__ = ["luma", "chroma", "ycbcr_to_rgb", "dct_matrix", "dct_blocks", "idct_blocks", "blocks", "unblocks"]


def luma(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """JFIF Y of the colour planes (any shape, any range: Y has the planes' range)."""
    return 0.299 * r + 0.587 * g + 0.114 * b


def chroma(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor, offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """JFIF (Cb, Cr) of the colour planes, plus ``offset`` (128 for 8-bit levels as JPEG stores them; 0: centred)."""
    cb = offset - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = offset + 0.5 * r - 0.418688 * g - 0.081312 * b
    return cb, cr


def ycbcr_to_rgb(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """RGB from Y and centred Cb / Cr planes (JFIF), stacked along ``dim``."""
    return torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim)


def dct_matrix(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal 8 x 8 DCT-II matrix D (computed in float64): a block's coefficients are ``D @ block @ D.T``."""
    k = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(device, dtype)


def dct_blocks(b: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """DCT of 8 x 8 blocks (..., 8, 8) (level-shifted samples) with :func:`dct_matrix` ``d``."""
    return d @ b @ d.T


def idct_blocks(coef: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Inverse DCT of dequantised coefficients (..., 8, 8) with :func:`dct_matrix` ``d``."""
    return d.T @ coef @ d


def blocks(x: torch.Tensor) -> torch.Tensor:
    """Planes (N, H, W), H and W multiples of 8 -> blocks (N, H/8, W/8, 8, 8)."""
    n, h, w = x.shape
    return x.reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)


def unblocks(b: torch.Tensor) -> torch.Tensor:
    """Blocks (..., by, bx, 8, 8) -> planes (..., by * 8, bx * 8)."""
    *lead, by, bx, _, _ = b.shape
    return b.transpose(-3, -2).reshape(*lead, by * 8, bx * 8)
