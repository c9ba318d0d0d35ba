"""Differentiable MATLAB-compatible bicubic ``imresize`` in torch.

MATLAB's ``imresize(x, [rows, cols], 'bicubic')`` resizes one dimension at a time with a cubic
convolution kernel (Keys, a = -0.5). When shrinking with antialiasing (MATLAB's default) the kernel is
stretched by ``1 / scale`` so that it acts as a low-pass filter. Out-of-range taps are mirrored
("symmetric" padding that repeats the edge sample), taps whose weights are all zero are dropped, and
the dimension with the smallest scale is resized first.

The implementation gathers the taps of every output sample and takes a weighted sum, so its cost is
linear in the number of pixels, it works on any batch shape ``(..., H, W)`` and it is differentiable
with respect to the input. It matches the MATLAB outputs in ``shared/reference/matlab_imresize.json``
to 1e-6 in float64 (see ``tests/test_resize.py``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

__all__ = ["imresize", "cubic_kernel", "pad_symmetric"]


def cubic_kernel(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB ``cubic``); support [-2, 2]."""
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=256)
def _contributions(in_len: int, out_len: int, scale: float, antialiasing: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Tap indices (out_len, P) and float64 weights (out_len, P) of one resized dimension."""
    kernel_width = 4.0
    aa = antialiasing and scale < 1
    if aa:
        kernel_width /= scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    # Output sample x maps to input position u (1-based, MATLAB convention).
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left.unsqueeze(1) + torch.arange(taps, dtype=torch.float64).unsqueeze(0)
    dist = u.unsqueeze(1) - idx
    weights = scale * cubic_kernel(dist * scale) if aa else cubic_kernel(dist)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Mirror indices into [1, in_len]: MATLAB's aux = [1:in, in:-1:1].
    aux = torch.cat([torch.arange(1, in_len + 1), torch.arange(in_len, 0, -1)])
    idx_int = aux[torch.remainder(idx.long() - 1, 2 * in_len)] - 1
    keep = (weights != 0).any(dim=0)
    return idx_int[:, keep].contiguous(), weights[:, keep].contiguous()


def _resize_dim(x: torch.Tensor, dim: int, out_len: int, scale: float, antialiasing: bool) -> torch.Tensor:
    in_len = x.shape[dim]
    idx, w = _contributions(in_len, out_len, scale, antialiasing)
    idx = idx.to(x.device)
    w = w.to(device=x.device, dtype=x.dtype)
    x_last = x.movedim(dim, -1)
    taps = x_last[..., idx]  # (..., out_len, P)
    out = (taps * w).sum(dim=-1)
    return out.movedim(-1, dim)


def imresize(
    x: torch.Tensor,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    antialiasing: bool = True,
) -> torch.Tensor:
    """Resize the last two dimensions of ``x`` like MATLAB ``imresize(x, ..., 'bicubic')``.

    Args:
        x: float tensor of shape ``(..., H, W)`` (float32 or float64); values are not clamped, so
            callers that need [0, 1] clamp themselves.
        scale: factor applied to both sides (``0.5`` halves them); output size is ``ceil(H * scale)``
            as in MATLAB. Give either ``scale`` or ``size``.
        size: output ``(rows, cols)``; the per-dimension scale is then ``rows / H`` and ``cols / W``.
        antialiasing: stretch the kernel when shrinking (MATLAB's default, ``True``).

    Returns:
        Tensor of shape ``(..., rows, cols)`` with the dtype and device of ``x``.
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"imresize expects a floating-point tensor, got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"imresize expects at least 2 dimensions (..., H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2], x.shape[-1]
    if (scale is None) == (size is None):
        raise ValueError("imresize needs exactly one of scale= or size=")
    if size is not None:
        rows, cols = int(size[0]), int(size[1])
        if rows < 1 or cols < 1:
            raise ValueError(f"imresize output size must be positive, got {size}")
        scales = (rows / h, cols / w)
    else:
        assert scale is not None
        if not scale > 0:
            raise ValueError(f"imresize scale must be positive, got {scale}")
        rows, cols = int(math.ceil(h * scale)), int(math.ceil(w * scale))
        scales = (float(scale), float(scale))
    if h < 1 or w < 1:
        raise ValueError(f"imresize input must be at least 1x1, got {h}x{w}")
    out_sizes = (rows, cols)
    # MATLAB resizes the dimension with the smallest scale first (stable for ties: rows first).
    order = sorted(range(2), key=lambda d: scales[d])
    for d in order:
        x = _resize_dim(x, x.dim() - 2 + d, out_sizes[d], scales[d], antialiasing)
    return x


def _mirror_index(n: int, total: int) -> torch.Tensor:
    """Indices 0..total-1 into a length-n axis, mirrored with the edge repeated (MATLAB symmetric)."""
    i = torch.arange(total) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def pad_symmetric(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom and right of (..., H, W) up to multiples of ``multiple`` by mirroring."""
    h, w = x.shape[-2:]
    ph, pw = math.ceil(h / multiple) * multiple, math.ceil(w / multiple) * multiple
    if (ph, pw) == (h, w):
        return x
    return x[..., _mirror_index(h, ph), :][..., _mirror_index(w, pw)]
