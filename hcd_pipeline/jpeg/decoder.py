"""A differentiable baseline 4:2:0 JPEG decoder: quantised coefficients -> RGB, linear in the coefficients (what HCD in
the JPEG file optimises through)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hcd_pipeline.jpeg.transform import dct_matrix, idct_blocks, unblocks, ycbcr_to_rgb

__all__ = ["decode_coefficients"]


def _plane(coef: torch.Tensor, qt: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """(by, bx, 8, 8) quantised coefficients -> the decoded plane (by*8, bx*8) in 0..255."""
    return unblocks(idct_blocks(coef * qt, d) + 128.0)


def decode_coefficients(y: torch.Tensor, cb: torch.Tensor, cr: torch.Tensor, qt_luma: torch.Tensor, qt_chroma: torch.Tensor,
                        size: tuple[int, int]) -> torch.Tensor:  # fmt: skip
    """A differentiable baseline 4:2:0 JPEG decoder: coefficients -> RGB (1, 3, h, w) in [0, 1].

    libjpeg's decoder differs by rounding (integer IDCT) and clamping: about one level; the judge uses libjpeg.
    """
    d = dct_matrix(y.device, torch.float32)
    lum = _plane(y, qt_luma, d)
    chroma = torch.stack([_plane(cb, qt_chroma, d), _plane(cr, qt_chroma, d)])[None]
    # Chroma planes cover whole MCUs (twice their size in luma pixels), which may reach past the luma plane.
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)[0, :, : lum.shape[0], : lum.shape[1]] - 128.0
    rgb = ycbcr_to_rgb(lum, chroma[0], chroma[1])
    h, w = size
    return (rgb[:, :h, :w] / 255.0).clamp(0, 1).unsqueeze(0)
