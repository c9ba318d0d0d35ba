"""The MATLAB bicubic pair as a rescaler: bicubic (antialiased) down, bicubic up, no latent."""

from __future__ import annotations

import torch
from torch import nn

from hcd_pipeline.core.resize import imresize

__all__ = ["BicubicRescaler"]


class BicubicRescaler(nn.Module):
    """``downscale``: MATLAB ``imresize(hr, 1/scale)``; ``upscale``: ``imresize(lr, scale)``.

    Both are differentiable, so HCD can optimise the LR image for the bicubic upscaler too.
    Works on (B, C, H, W) for any C; H and W must be multiples of ``scale``.
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        if scale < 2:
            raise ValueError(f"bicubic scale must be an integer >= 2, got {scale}")
        self._scale = int(scale)

    @property
    def scale(self) -> int:
        return self._scale

    @property
    def z_std(self) -> float:
        return 0.0

    def z_shape(self, lr_shape: torch.Size | tuple[int, ...]) -> None:
        return None

    def downscale(self, hr: torch.Tensor) -> tuple[torch.Tensor, None]:
        h, w = hr.shape[-2:]
        if h % self.scale or w % self.scale:
            raise ValueError(f"bicubic x{self.scale} needs sides divisible by {self.scale}, got {h}x{w}")
        return imresize(hr, 1.0 / self.scale), None

    def upscale(
        self,
        lr: torch.Tensor,
        z: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        z_scale: float | None = None,
    ) -> torch.Tensor:
        return imresize(lr, float(self.scale))
