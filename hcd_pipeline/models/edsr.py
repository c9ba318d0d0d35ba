"""The SR pair: MATLAB bicubic down, an EDSR-baseline super-resolution network up.

EDSR (Lim et al., CVPRW 2017), baseline size: a 3x3 head convolution to ``width`` channels, ``blocks`` residual
blocks (conv-ReLU-conv, residual scaled by ``res_scale``), a body convolution with a long skip, a pixel-shuffle
upsampler (one x2 stage per factor of two, or one x3 stage) and a 3x3 tail convolution. The network works on
[0, 255] values with the DIV2K mean subtracted (``sub_mean`` / ``add_mean``, fixed 1x1 convolutions), as the
original code does; :class:`SRRescaler` takes and gives [0, 1] images.

Parameter names and shapes are the original EDSR code's (``head.0``, ``body.K.body.{0,2}``, ``body.N``,
``tail.0.{0,2,...}``, ``tail.1``, ``sub_mean``, ``add_mean``), so its ``edsr_baseline_x2`` / ``_x4`` checkpoints
load strictly; BasicSR's key layout is mapped onto them (:mod:`hcd_pipeline.models.edsr_weights`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from hcd_pipeline.core.resize import imresize

__all__ = ["EDSRConfig", "EDSR", "SRRescaler", "DIV2K_MEAN"]

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
"""RGB mean of DIV2K that EDSR subtracts (in [0, 1]; times 255 inside the network)."""


@dataclass(frozen=True)
class EDSRConfig:
    """Architecture of an EDSR network.

    Attributes:
        scale: upscaling factor: a power of two or 3 (the original upsampler's choices).
        blocks: residual blocks (EDSR-baseline: 16; EDSR: 32).
        width: feature channels (baseline: 64; EDSR: 256).
        res_scale: factor on each block's residual (baseline: 1.0; EDSR: 0.1).
    """

    scale: int = 2
    blocks: int = 16
    width: int = 64
    res_scale: float = 1.0

    def __post_init__(self) -> None:
        s = self.scale
        if s < 2 or (s != 3 and s & (s - 1)):
            raise ValueError(f"EDSR scale must be 3 or a power of two >= 2, got {s}")
        if self.blocks < 1 or self.width < 1:
            raise ValueError(f"EDSR needs blocks >= 1 and width >= 1, got {self.blocks}, {self.width}")

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


class _MeanShift(nn.Conv2d):
    """Fixed 1x1 convolution that subtracts (``sign = -1``) or adds the DIV2K mean at [0, 255] range."""

    def __init__(self, sign: int) -> None:
        super().__init__(3, 3, kernel_size=1)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1)
        self.bias.data = sign * 255.0 * torch.tensor(DIV2K_MEAN)
        for p in self.parameters():
            p.requires_grad_(False)


class _ResBlock(nn.Module):
    def __init__(self, width: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(True), nn.Conv2d(width, width, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


def _upsampler(scale: int, width: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    if scale == 3:
        layers += [nn.Conv2d(width, 9 * width, 3, padding=1), nn.PixelShuffle(3)]
    else:
        for _ in range(scale.bit_length() - 1):
            layers += [nn.Conv2d(width, 4 * width, 3, padding=1), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    """EDSR on [0, 255] values: (B, 3, h, w) -> (B, 3, h * scale, w * scale)."""

    def __init__(self, config: EDSRConfig | None = None) -> None:
        super().__init__()
        self.config = config or EDSRConfig()
        c = self.config
        self.sub_mean = _MeanShift(-1)
        self.head = nn.Sequential(nn.Conv2d(3, c.width, 3, padding=1))
        self.body = nn.Sequential(*[_ResBlock(c.width, c.res_scale) for _ in range(c.blocks)], nn.Conv2d(c.width, c.width, 3, padding=1))
        self.tail = nn.Sequential(_upsampler(c.scale, c.width), nn.Conv2d(c.width, 3, 3, padding=1))
        self.add_mean = _MeanShift(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        return self.add_mean(self.tail(x + self.body(x)))


class SRRescaler(nn.Module):
    """The SR pair as a :class:`~hcd_pipeline.models.protocol.Rescaler`.

    ``downscale(hr)``: MATLAB ``imresize(hr, 1/scale)`` (antialiased bicubic), no latent: the thumbnail every other
    tool would make. ``upscale(lr)``: the EDSR network on ``lr`` in [0, 1] -> (B, 3, h * scale, w * scale),
    unclamped. HCD then optimises the thumbnail for this network; clients that already run it gain without change.
    """

    def __init__(self, config: EDSRConfig | None = None) -> None:
        super().__init__()
        self.net = EDSR(config)

    @property
    def config(self) -> EDSRConfig:
        return self.net.config

    @property
    def scale(self) -> int:
        return self.net.config.scale

    @property
    def z_std(self) -> float:
        return 0.0

    def z_shape(self, lr_shape: torch.Size | tuple[int, ...]) -> None:
        return None

    def downscale(self, hr: torch.Tensor) -> tuple[torch.Tensor, None]:
        h, w = hr.shape[-2:]
        if h % self.scale or w % self.scale:
            raise ValueError(f"SR pair x{self.scale} needs sides divisible by {self.scale}, got {h}x{w}")
        return imresize(hr, 1.0 / self.scale), None

    def upscale(
        self,
        lr: torch.Tensor,
        z: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        z_scale: float | None = None,
        restore: bool | torch.Tensor = True,
    ) -> torch.Tensor:
        return self.net(lr * 255.0) / 255.0
