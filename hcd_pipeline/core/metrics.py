"""Image-quality metrics under the super-resolution evaluation protocol.

Conventions (the field's, as in IRN / BasicSR and the tables in ``shared/reference/published.md``):

* inputs are 8-bit images, as float tensors holding integer values in [0, 255], shape (C, H, W);
  use :func:`to_uint8_levels` on a [0, 1] reconstruction first (rounding is part of the protocol);
* Y is BT.601 luma with MATLAB ``rgb2ycbcr`` coefficients, kept as a float (not rounded);
* ``crop`` pixels (usually the scale) are removed from every border before measuring;
* SSIM uses an 11x11 Gaussian window with sigma 1.5, population (not sample) covariance,
  C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, averaged over the valid region (equal to
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)``); over channels it is the channel mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["rgb_to_y", "to_uint8_levels", "psnr", "ssim", "Scores", "score_pair", "score_levels", "psnr_gain"]

_Y_COEFFS = (65.481, 128.553, 24.966)


def to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float image -> float64 tensor of rounded 8-bit levels in [0, 255]."""
    return torch.round(x.detach().double().clamp(0, 1) * 255.0)


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) or (B, 3, H, W) 8-bit-valued RGB -> Y in [16, 235] with shape (1, H, W) / (B, 1, H, W).

    A one-channel input is returned unchanged: a grayscale image is its own luma.
    """
    if x.shape[-3] == 1:
        return x
    if x.shape[-3] != 3:
        raise ValueError(f"rgb_to_y expects 1 or 3 channels, got shape {tuple(x.shape)}")
    r, g, b = x.unbind(-3)
    y = 16.0 + (_Y_COEFFS[0] * r + _Y_COEFFS[1] * g + _Y_COEFFS[2] * b) / 255.0
    return y.unsqueeze(-3)


def _crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    return x[..., crop:-crop, crop:-crop] if crop > 0 else x


def psnr(a: torch.Tensor, b: torch.Tensor, crop: int = 0) -> float:
    """PSNR in dB of two 8-bit-valued images (data range 255); ``inf`` when identical."""
    if a.shape != b.shape:
        raise ValueError(f"psnr needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    mse = torch.mean((_crop(a.double(), crop) - _crop(b.double(), crop)) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - size // 2) ** 2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, crop: int = 0) -> float:
    """Mean SSIM of two 8-bit-valued images of shape (C, H, W), averaged over channels."""
    if a.shape != b.shape:
        raise ValueError(f"ssim needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    x = _crop(a.double(), crop).unsqueeze(0)
    y = _crop(b.double(), crop).unsqueeze(0)
    c = x.shape[1]
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"ssim needs at least 11x11 pixels after cropping, got {tuple(x.shape[-2:])}")
    g = _gaussian_1d()
    # The 2-D Gaussian window is separable: two 1-D passes ("valid" region only).
    wv, wh = g.view(1, 1, 11, 1).expand(c, 1, 11, 1), g.view(1, 1, 1, 11).expand(c, 1, 1, 11)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, wv, groups=c), wh, groups=c)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x**2
    syy = filt(y * y) - mu_y**2
    sxy = filt(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean().item()


@dataclass(frozen=True)
class Scores:
    """PSNR (dB) and SSIM on Y and on all channels (RGB, or the one gray channel)."""

    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    ssim_rgb: float


def score_pair(hr: torch.Tensor, sr: torch.Tensor, crop: int) -> Scores:
    """Scores of a reconstruction ``sr`` against ground truth ``hr``, both (C, H, W) in [0, 1].

    Both are rounded to 8-bit levels first; ``crop`` border pixels are ignored.
    """
    return score_levels(to_uint8_levels(hr), to_uint8_levels(sr), crop)


def score_levels(h8: torch.Tensor, s8: torch.Tensor, crop: int) -> Scores:
    """:func:`score_pair` on images already rounded to 8-bit levels (any dtype holding 0..255, (C, H, W)).

    The pipeline's CPU stage scores from ``uint8`` arrays that the model stage sent it; the result equals
    :func:`score_pair` on the float images they were rounded from.
    """
    h8, s8 = h8.double(), s8.double()
    hy, sy = rgb_to_y(h8), rgb_to_y(s8)
    return Scores(
        psnr_y=psnr(hy, sy, crop),
        ssim_y=ssim(hy, sy, crop),
        psnr_rgb=psnr(h8, s8, crop),
        ssim_rgb=ssim(h8, s8, crop),
    )


def psnr_gain(optimised: float, plain: float) -> float:
    """PSNR gain in dB, defined where the difference is not: two perfect reconstructions (both ``inf``) gain 0.

    A perfect reconstruction has PSNR ``inf``; ``inf - inf`` would be NaN. The other cases follow arithmetic:
    perfect over imperfect is ``+inf``, the reverse ``-inf``. Means over images leave infinite values out and
    count them (``hcd report``, the run summary).
    """
    if math.isinf(optimised) and math.isinf(plain) and optimised == plain:
        return 0.0
    return optimised - plain
