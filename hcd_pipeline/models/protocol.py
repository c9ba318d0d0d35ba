"""The small protocol every rescaling model follows (IRN, the bicubic pair, a user's own model)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["Rescaler"]


@runtime_checkable
class Rescaler(Protocol):
    """A differentiable downscaler / upscaler pair with an integer ``scale``.

    * ``downscale(hr)``: (B, 3, H, W) in [0, 1], H and W multiples of ``scale`` ->
      ``(lr, z)`` with ``lr`` (B, 3, H/scale, W/scale), continuous (callers round it to 8 bits),
      and ``z`` the latent the upscaler needs to invert exactly, or None.
    * ``upscale(lr, z=None, *, generator=None, z_scale=None)``: LR -> HR (B, 3, H, W), unclamped.
      Models with a latent draw ``z_scale * N(0, 1)`` (default: their prior's std) when ``z`` is None.
    * ``z_shape(lr_shape)``: shape of the latent for an LR batch of ``lr_shape``, or None.
    * ``z_std`` (optional, default 1.0): std of the latent prior; HCD draws z as ``z_std * N(0, 1)``.

    Both directions must be differentiable with respect to their image input.
    """

    @property
    def scale(self) -> int: ...

    def downscale(self, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def upscale(
        self,
        lr: torch.Tensor,
        z: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        z_scale: float | None = None,
    ) -> torch.Tensor: ...

    def z_shape(self, lr_shape: torch.Size | tuple[int, ...]) -> tuple[int, ...] | None: ...
