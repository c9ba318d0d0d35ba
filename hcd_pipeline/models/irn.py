"""Invertible Rescaling Network (IRN; Xiao et al., ECCV 2020).

Per 2x level: a fixed Haar transform (C -> 4C channels at half the size) then ``blocks`` affine
coupling blocks. The first 3 channels of the output are the LR image, the rest are the latent z.
Parameter names and shapes equal the original implementation's (``operations.K.haar_weights``,
``operations.K.{F,G,H}.conv{1..5}``), so the original ``IRN_x2.pth`` / ``IRN_x4.pth`` load strictly
(see :mod:`hcd_pipeline.models.weights`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hcd_pipeline.models.reversible import ParamGrads, reversible_chain, trainable, vjp

__all__ = ["IRN", "IRNConfig", "LRRestorer", "quantize_ste"]


@dataclass(frozen=True)
class IRNConfig:
    """Architecture of an IRN.

    Attributes:
        scale: total downscaling factor, a power of two (2 -> one Haar level, 4 -> two).
        blocks: coupling blocks per level (original: 8).
        width: growth channels of each dense-block subnetwork (original: 32).
        clamp: coupling clamp of the affine scale (original: 1.0).
        channels: image channels (3; the LR branch keeps the first 3 channels).
        z_std: standard deviation of the latent prior the weights were trained with (the original IRN:
            1.0, z ~ N(0, 1); our shipped models: 0.0, trained for z = 0). Draws of z use it.
        restore_blocks: residual blocks of the LR restorer that ``upscale`` applies before the inverse chain
            (0: none, the plain invertible IRN). Codec-robust models (``irn-x2-jpeg``) learn in it to undo what a
            lossy codec did to the stored LR; it makes the upscaler no longer the exact inverse of the downscaler.
        restore_width: channels of the restorer's convolutions.
    """

    scale: int = 2
    blocks: int = 8
    width: int = 32
    clamp: float = 1.0
    channels: int = 3
    z_std: float = 1.0
    restore_blocks: int = 0
    restore_width: int = 64

    def __post_init__(self) -> None:
        if self.scale < 2 or self.scale & (self.scale - 1):
            raise ValueError(f"IRN scale must be a power of two >= 2, got {self.scale}")
        if self.blocks < 1 or self.width < 1:
            raise ValueError(f"IRN needs blocks >= 1 and width >= 1, got {self.blocks}, {self.width}")
        if self.restore_blocks < 0 or self.restore_width < 1:
            raise ValueError(f"IRN restorer needs blocks >= 0, width >= 1, got {self.restore_blocks}, {self.restore_width}")

    @property
    def levels(self) -> int:
        return int(math.log2(self.scale))

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


class _Round(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.round(x.clamp(0, 1) * 255.0) / 255.0

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def quantize_ste(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8-bit levels; the gradient passes straight through."""
    return _Round.apply(x)


class DenseBlock(nn.Module):
    """Five 3x3 convolutions with dense connections; the last one starts at zero (identity coupling)."""

    def __init__(self, c_in: int, c_out: int, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_in + width, width, 3, 1, 1)
        self.conv3 = nn.Conv2d(c_in + 2 * width, width, 3, 1, 1)
        self.conv4 = nn.Conv2d(c_in + 3 * width, width, 3, 1, 1)
        self.conv5 = nn.Conv2d(c_in + 4 * width, c_out, 3, 1, 1)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            nn.init.xavier_normal_(conv.weight)
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.conv5.weight)
        nn.init.zeros_(self.conv5.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = F.leaky_relu(self.conv1(x), 0.2)
        x2 = F.leaky_relu(self.conv2(torch.cat((x, x1), 1)), 0.2)
        x3 = F.leaky_relu(self.conv3(torch.cat((x, x1, x2), 1)), 0.2)
        x4 = F.leaky_relu(self.conv4(torch.cat((x, x1, x2, x3), 1)), 0.2)
        return self.conv5(torch.cat((x, x1, x2, x3, x4), 1))


class CouplingBlock(nn.Module):
    """Affine coupling: y1 = x1 + F(x2); y2 = x2 * exp(s(y1)) + G(y1), s = clamp * (2 sigmoid(H) - 1)."""

    def __init__(self, channels: int, split: int, width: int, clamp: float) -> None:
        super().__init__()
        self.split = split
        self.clamp = clamp
        self.F = DenseBlock(channels - split, split, width)
        self.G = DenseBlock(split, channels - split, width)
        self.H = DenseBlock(split, channels - split, width)

    def _log_scale(self, y1: torch.Tensor) -> torch.Tensor:
        return self.clamp * (torch.sigmoid(self.H(y1)) * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[:, : self.split], x[:, self.split :]
        y1 = x1 + self.F(x2)
        y2 = x2 * torch.exp(self._log_scale(y1)) + self.G(y1)
        return torch.cat((y1, y2), 1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = y[:, : self.split], y[:, self.split :]
        x2 = (y2 - self.G(y1)) * torch.exp(-self._log_scale(y1))
        x1 = y1 - self.F(x2)
        return torch.cat((x1, x2), 1)

    def vjp(self, x: torch.Tensor, y: torch.Tensor, grad_out: torch.Tensor, reverse: bool) -> tuple[torch.Tensor, ParamGrads]:
        """Back-propagate ``grad_out`` through this block, one subnetwork at a time (see ``reversible``).

        ``reverse=False``: the block was applied forward (``x`` in, ``y`` out, ``grad_out`` = dL/dy, returns dL/dx);
        ``reverse=True``: it was applied as ``inverse`` (``y`` in, ``x`` out, ``grad_out`` = dL/dx, returns dL/dy).
        Only one of F, G, H holds activations at any moment.
        """
        k = self.split
        x2, y1 = x[:, k:], y[:, :k]
        pg: ParamGrads = {}
        with torch.no_grad():
            es = torch.exp(self._log_scale(y1))
        if not reverse:
            # y1 = x1 + F(x2); y2 = x2 * exp(s(y1)) + G(y1)
            gy1, gy2 = grad_out[:, :k], grad_out[:, k:]
            gy1_g, p_g = vjp(self.G, y1, gy2, trainable(self.G))
            gy1_h, p_h = vjp(self._log_scale, y1, gy2 * x2 * es, trainable(self.H))
            gy1 = gy1 + gy1_g + gy1_h
            gx2_f, p_f = vjp(self.F, x2, gy1, trainable(self.F))
            for part in (p_g, p_h, p_f):
                pg.update(part)
            return torch.cat((gy1, gy2 * es + gx2_f), 1), pg
        # x2 = (y2 - G(y1)) * exp(-s(y1)); x1 = y1 - F(x2)
        gx1, gx2 = grad_out[:, :k], grad_out[:, k:]
        gx2_f, p_f = vjp(self.F, x2, -gx1, trainable(self.F))
        gx2 = gx2 + gx2_f
        gy2 = gx2 / es
        gy1_g, p_g = vjp(self.G, y1, -gy2, trainable(self.G))
        gy1_h, p_h = vjp(self._log_scale, y1, -gx2 * x2, trainable(self.H))
        for part in (p_f, p_g, p_h):
            pg.update(part)
        return torch.cat((gx1 + gy1_g + gy1_h, gy2), 1), pg


class LRRestorer(nn.Module):
    """Residual CNN on the LR: (B, 3, h, w) -> (B, 3, h, w), ``lr + body(lr)``.

    ``blocks`` residual blocks (conv 3x3, ReLU, conv 3x3) of ``width`` channels between a head and a tail
    convolution; the tail starts at zero, so a new restorer is the identity and a fine-tune starts from the
    model it was added to. Receptive field: 2 * blocks + 2 convolutions, 4 blocks + 5 LR pixels on each side
    (enough to see a whole 8 x 8 JPEG block around every pixel from 1 block up).
    """

    def __init__(self, blocks: int, width: int, channels: int = 3) -> None:
        super().__init__()
        self.head = nn.Conv2d(channels, width, 3, 1, 1)
        self.body = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(width, width, 3, 1, 1)) for _ in range(blocks)
        )
        self.tail = nn.Conv2d(width, channels, 3, 1, 1)
        for block in self.body:
            block[2].weight.data.mul_(0.1)  # residual branches start small (stable from the first step)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        h = self.head(lr)
        for block in self.body:
            h = h + block(h)
        return lr + self.tail(h)


class HaarDownsampling(nn.Module):
    """Orthogonal-up-to-scale 2x2 Haar transform: (B, C, H, W) -> (B, 4C, H/2, W/2).

    Output channel order is [all low-pass, all horizontal, all vertical, all diagonal], as in IRN.
    The filters are stored as a frozen parameter so the original checkpoints load strictly.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        w = torch.ones(4, 1, 2, 2)
        w[1, 0, 0, 1] = w[1, 0, 1, 1] = -1
        w[2, 0, 1, 0] = w[2, 0, 1, 1] = -1
        w[3, 0, 1, 0] = w[3, 0, 0, 1] = -1
        self.haar_weights = nn.Parameter(torch.cat([w] * channels, 0), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        out = F.conv2d(x, self.haar_weights, stride=2, groups=c) / 4.0
        return out.reshape(b, c, 4, h // 2, w // 2).transpose(1, 2).reshape(b, 4 * c, h // 2, w // 2)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        b, c4, h, w = y.shape
        c = c4 // 4
        out = y.reshape(b, 4, c, h, w).transpose(1, 2).reshape(b, c4, h, w)
        return F.conv_transpose2d(out, self.haar_weights, stride=2, groups=c)


class IRN(nn.Module):
    """Invertible rescaling network with explicit ``downscale`` / ``upscale``.

    ``downscale(hr)`` maps (B, 3, H, W) in [0, 1] (H, W multiples of ``scale``) to the continuous LR
    (B, 3, H/s, W/s) and the latent z (B, 3 (s^2 - 1), H/s, W/s). ``upscale(lr, z)`` inverts it;
    with the true z and an unrounded LR it reconstructs ``hr`` up to float error.
    """

    BACKWARDS = ("store", "recompute", "reversible")
    """How gradients flow through the chain (``backward`` attribute; see ``models.reversible``):
    ``store``: plain autograd, every activation kept (fastest, memory grows with depth and width);
    ``recompute``: the image-sized tensors between operations kept, each coupling block recomputed one
    subnetwork at a time in the backward pass (exact; a tenth of the memory of ``store``);
    ``reversible``: only the chain's output kept, each operation's input rebuilt from its output (memory
    independent of depth; one more pass; float drift of about 1e-2 in the gradient)."""

    def __init__(self, config: IRNConfig | None = None, *, backward: str = "store", channels_last: bool = True) -> None:
        super().__init__()
        self.config = config or IRNConfig()
        self.backward = backward
        # The inverse chain runs in channels_last memory format: measured 1.3x faster for an HCD LR step and 1.4x
        # for inference on the project's CPU (docs/results.md, "Speed"); the forward chain gained nothing there.
        self.channels_last = channels_last
        ops: list[nn.Module] = []
        c = self.config.channels
        for _ in range(self.config.levels):
            ops.append(HaarDownsampling(c))
            c *= 4
            for _ in range(self.config.blocks):
                ops.append(CouplingBlock(c, self.config.channels, self.config.width, self.config.clamp))
        self.operations = nn.ModuleList(ops)
        # Created after the chain so that the chain's initial weights (drawn from the global generator) are the
        # same with and without a restorer.
        self.restorer = (
            LRRestorer(self.config.restore_blocks, self.config.restore_width, self.config.channels) if self.config.restore_blocks else None
        )

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def z_std(self) -> float:
        """Std of the latent prior: draws of z are ``z_std * N(0, 1)``."""
        return self.config.z_std

    def _chained(self, x: torch.Tensor) -> bool:
        if self.backward not in self.BACKWARDS:
            raise ValueError(f"IRN.backward must be one of {self.BACKWARDS}, got {self.backward!r}")
        if self.backward == "store" or not torch.is_grad_enabled():
            return False
        return x.requires_grad or any(p.requires_grad for p in self.parameters())

    def z_shape(self, lr_shape: torch.Size | tuple[int, ...]) -> tuple[int, int, int, int]:
        b, _, h, w = lr_shape
        return (b, self.config.channels * (self.scale**2 - 1), h, w)

    def forward(self, hr: torch.Tensor) -> torch.Tensor:
        """Full forward transform: (B, 3, H, W) -> (B, 3 s^2, H/s, W/s) = cat(LR, z)."""
        if self._chained(hr):
            return reversible_chain(hr, self.operations, keep_inputs=self.backward == "recompute")
        x = hr
        for op in self.operations:
            x = op(x)
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse transform: cat(LR, z) -> HR."""
        if self.channels_last and y.dim() == 4:
            y = y.contiguous(memory_format=torch.channels_last)
        if self._chained(y):
            return reversible_chain(y, self.operations[::-1], reverse=True, keep_inputs=self.backward == "recompute")
        for op in reversed(self.operations):
            y = op.inverse(y)  # type: ignore[operator]
        return y

    def downscale(self, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """HR (B, 3, H, W) -> (LR (B, 3, H/s, W/s) continuous, unclamped; z)."""
        h, w = hr.shape[-2:]
        if h % self.scale or w % self.scale:
            raise ValueError(f"IRN x{self.scale} needs sides divisible by {self.scale}, got {h}x{w}")
        out = self.forward(hr)
        c = self.config.channels
        return out[:, :c], out[:, c:]

    def upscale(
        self,
        lr: torch.Tensor,
        z: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        z_scale: float | None = None,
        restore: bool | torch.Tensor = True,
    ) -> torch.Tensor:
        """LR (B, 3, h, w) -> HR (B, 3, h s, w s), unclamped.

        With a restorer (``config.restore_blocks``), the LR goes through it first where ``restore`` says so
        (a bool, or a (B,) bool mask: training passes the crops that skipped the codec around it).
        ``z`` defaults to ``z_scale * N(0, 1)`` drawn from ``generator``; ``z_scale`` defaults to the
        model's prior (``config.z_std``); ``z_scale = 0`` gives z = 0.
        """
        if z is None:
            shape = self.z_shape(lr.shape)
            if z_scale is None:
                z_scale = self.config.z_std
            if z_scale == 0:
                z = lr.new_zeros(shape)
            else:
                # Draw on the generator's device so a CPU generator gives the same z for a GPU model.
                dev = generator.device if generator is not None else lr.device
                z = torch.randn(shape, generator=generator, dtype=lr.dtype, device=dev).to(lr.device) * z_scale
        if self.restorer is not None:
            if isinstance(restore, torch.Tensor):
                lr = torch.where(restore.to(lr.device)[:, None, None, None], self.restorer(lr), lr)
            elif restore:
                lr = self.restorer(lr)
        return self.inverse(torch.cat((lr, z), 1))

    def without_restorer(self) -> IRN:
        """A view of this model that upscales without its restorer (sharing every other weight): what a lossless
        stored LR is upscaled with. The model itself when it has no restorer."""
        if self.restorer is None:
            return self
        view = copy.copy(self)
        view._modules = dict(self._modules)
        view._modules["restorer"] = None
        return view
