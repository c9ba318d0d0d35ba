"""PSNR / SSIM / Y against scikit-image and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from hcd_pipeline.core.metrics import psnr, rgb_to_y, score_pair, ssim, to_uint8_levels


def _pair(seed: int, c: int = 3, h: int = 40, w: int = 36):
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 256, (c, h, w), generator=g).double()
    b = (a + torch.randint(-20, 21, (c, h, w), generator=g)).clamp(0, 255)
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_matches_skimage(seed):
    a, b = _pair(seed)
    ours = ssim(a, b)
    ref = structural_similarity(
        a.permute(1, 2, 0).numpy(),
        b.permute(1, 2, 0).numpy(),
        channel_axis=2,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert abs(ours - ref) < 1e-4
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    ref_y = structural_similarity(
        ya[0].numpy(), yb[0].numpy(), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert abs(ssim(ya, yb) - ref_y) < 1e-4


def test_psnr_matches_skimage_and_crop():
    a, b = _pair(3)
    ref = peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=255)
    assert abs(psnr(a, b) - ref) < 1e-9
    ref_c = peak_signal_noise_ratio(a[:, 2:-2, 2:-2].numpy(), b[:, 2:-2, 2:-2].numpy(), data_range=255)
    assert abs(psnr(a, b, crop=2) - ref_c) < 1e-9
    assert psnr(a, a) == math.inf


def test_y_uses_matlab_coefficients_unrounded():
    white = torch.full((3, 1, 1), 255.0)
    black = torch.zeros(3, 1, 1)
    assert rgb_to_y(white).item() == pytest.approx(235.0, abs=1e-9)
    assert rgb_to_y(black).item() == pytest.approx(16.0)
    mid = torch.tensor([100.0, 50.0, 200.0], dtype=torch.float64).view(3, 1, 1)
    expected = 16 + (65.481 * 100 + 128.553 * 50 + 24.966 * 200) / 255
    assert rgb_to_y(mid).item() == pytest.approx(expected, abs=1e-12)
    assert expected != round(expected)  # the float, not the MATLAB-rounded integer


def test_score_pair_rounds_to_8_bits():
    g = torch.Generator().manual_seed(5)
    hr = torch.round(torch.rand(3, 32, 32, generator=g) * 255) / 255
    # A perturbation below half an 8-bit step disappears after rounding.
    sc = score_pair(hr, hr + 0.4 / 255, crop=2)
    assert sc.psnr_y == math.inf and sc.psnr_rgb == math.inf
    assert to_uint8_levels(torch.tensor([1.2, -0.1, 0.5])).tolist() == [255.0, 0.0, 128.0]


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        psnr(torch.zeros(3, 4, 4), torch.zeros(3, 4, 5))
    with pytest.raises(ValueError):
        ssim(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))
    assert np.isfinite(ssim(torch.zeros(1, 12, 12), torch.ones(1, 12, 12)))
