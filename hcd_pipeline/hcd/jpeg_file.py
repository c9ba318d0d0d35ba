"""HCD in the JPEG file itself: optimise the stored file's quantised DCT coefficients for the upscaler.

Decoding a baseline JPEG is linear in its coefficients (dequantise, inverse DCT, chroma upsampling, colour
conversion); only the final rounding of coefficients to integers is discrete. So the coefficients of the LR's JPEG
are optimised as real numbers through a torch model of the decoder (:func:`decode_coefficients`), each iterate is
rounded, written as a JPEG with exactly those coefficients (``jpeglib``, libjpeg's Python envelope), decoded by the
real decoder and judged; the best file is stored byte for byte. Pixel-domain HCD cannot do this: the encoder's
quantisation throws most of its change away (``benchmarks/lr_formats.py``).

The file's coefficients are read and written by :mod:`hcd_pipeline.jpeg.coefficients`, decoded differentiably by
:mod:`hcd_pipeline.jpeg.decoder`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from hcd_pipeline.hcd.descent import BarzilaiBorwein, Evaluation, TextbookAdam, descend
from hcd_pipeline.io.lr_formats import decode_lr, encode_lr
from hcd_pipeline.jpeg.coefficients import read_coefficients, write_coefficients
from hcd_pipeline.jpeg.decoder import decode_coefficients
from hcd_pipeline.jpeg.transform import chroma, luma

__all__ = [
    "JpegResult",
    "bits_proxy",
    "optimise_jpeg",
    "JPEG_OPTIMIZERS",
    "ADAM_STEP",
    "CHROMA_WEIGHT",
    "RATE_WEIGHT",
    "optimizer_constants",
]

JPEG_OPTIMIZERS = ("bb", "adam")
"""Coefficient optimisers of :func:`optimise_jpeg` (``HCDSettings.optimizer``; its ``pgd`` means ``bb`` here)."""
ADAM_STEP = 0.5
"""Adam's learning rate in quantisation steps (picked among 0.25, 0.5 and 1.0 on the crops below, 32 steps). Adam moves
every coefficient from the first step, so it needs more steps than the preset's 8: at 8 it loses 0.44 dB to ``bb``
at equal bytes (``benchmarks/jpeg_optimizers.py``)."""
CHROMA_WEIGHT = 0.1
"""With ``adam``: weight of the reconstruction's chroma error (BT.601 Cb and Cr, mean squared) beside its luma error.
A luma-only loss let Adam buy Y-PSNR with colour: on Set5 butterfly (x2, q90, 32 steps) Y 34.47 dB but RGB 26.05
against the plain file's 29.48, the served LR visibly speckled. Weight 0.1: Y 34.17, RGB 30.52 (0.25: 34.02 / 31.06,
0.5: 33.91 / 31.26, 1.0: 33.77 / 31.31; ``bb``'s 32 steps: 34.11 / 29.40; a ``/tmp`` probe). On 5 Set14 crops 0.1
kept Y above ``bb``'s 32 steps at fewer bytes and RGB above the plain file's, 0.2 lost Y to ``bb``
(``benchmarks/jpeg_optimizers.py`` has 0 / 0.1 / 0.2 / 0.5)."""
RATE_WEIGHT = 0.2
"""Weight of :func:`bits_proxy` (relative to the start file's) against the loss (relative to the start's) with
``adam``. On 5 Set14 crops (x2, q90, irn-x2-jpeg-joint, 32 steps, chroma weight 0.1), against ``bb`` at equal bytes
(its curve over q85-q93): weight 0 -0.17 dB (Adam's gain over ``bb`` at q90 bought with 10 % more bytes), 0.05
-0.02, 0.2 +0.16 (2 % fewer bytes than ``bb``), 0.5 +0.24 (12 % fewer; less dB at q90). Measured by
``benchmarks/jpeg_optimizers.py`` (docs/eval/jpeg_optimizers.json); on whole images see docs/hcd.md."""


def optimizer_constants(optimizer: str) -> dict[str, float]:
    """The module constants that shape ``optimizer``'s files (sidecars record them beside the settings: they are not
    user settings, but a release that changes one changes the stored bytes). ``bb`` has none."""
    return {"adam_step": ADAM_STEP, "chroma_weight": CHROMA_WEIGHT, "rate_weight": RATE_WEIGHT} if optimizer == "adam" else {}


@dataclass
class JpegResult:
    """What :func:`optimise_jpeg` chose: the file to store and its decode (1, 3, h, w), the start file's decode, the
    judge's dB of both, and diagnostics (loss per step, iterates judged, coefficients changed by the last one)."""

    data: bytes
    lr: torch.Tensor
    start_lr: torch.Tensor
    start_db: float
    stored_db: float
    kept_start: bool
    losses: list[float]
    judged: int
    coefficients_changed_last: int


def bits_proxy(coefficients: list[torch.Tensor]) -> torch.Tensor:
    """A differentiable stand-in for a JPEG's entropy-coded size: sum of log2(1 + |c|) over quantised coefficients.

    A coefficient of magnitude m costs about log2(m) + 1 bits of amplitude plus its run/size code, and a zero is
    nearly free: the gradient (largest near zero) pulls small coefficients to zero, which is where bytes are saved.
    """
    return sum(torch.log2(1 + c.abs()).sum() for c in coefficients)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of (B, 3, H, W) (the judge's channel; chroma errors would dominate an RGB loss after 4:2:0)."""
    return luma(x[:, 0], x[:, 1], x[:, 2])


def _chroma_mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared BT.601 Cb plus Cr difference of two (B, 3, H, W) images in [0, 1]."""
    d = x - y
    cb, cr = chroma(d[:, 0], d[:, 1], d[:, 2])
    return torch.mean(cb**2) + torch.mean(cr**2)


def optimise_jpeg(
    upscale: Callable[[torch.Tensor], torch.Tensor],
    hr: torch.Tensor,
    start: torch.Tensor,
    quality: int,
    judge: Callable[[torch.Tensor], float],
    *,
    steps: int = 8,
    first_step: float = 1.0,
    radius: float = 10.0,
    judge_every: int = 2,
    optimizer: str = "bb",
    numerics: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> JpegResult:
    """Optimise the JPEG (at ``quality``) of the LR ``start`` (1, 3, h, w) for ``upscale``.

    ``upscale(lr) -> (1, 3, H, W)`` (the model with its z), ``hr`` (1, 3, H, W) the target, ``judge(decoded lr) -> dB``
    the no-harm judge of a decoded file. Coefficients move by at most ``radius`` quantisation steps from the start
    file's; Barzilai-Borwein steps (the first moves the largest coefficient by ``first_step`` steps); every
    ``judge_every``-th iterate and the last are rounded, written and judged; the start file wins ties. The loss is on
    BT.601 luma (the judge's channel): with an RGB loss the optimiser spent itself on the chroma that 4:2:0
    subsampling lost, which a Y judge does not see, and in our trials nothing survived the rounding.

    ``optimizer``: ``"bb"`` (Barzilai-Borwein on the loss alone; best at the preset's 8 steps) or ``"adam"`` (Adam
    at :data:`ADAM_STEP` quantisation steps on the luma loss plus :data:`CHROMA_WEIGHT` x the chroma error, plus
    :data:`RATE_WEIGHT` x :func:`bits_proxy`, both terms relative to the start file's; it needs more steps than
    ``bb``: ``docs/hcd.md``). ``numerics()``: the context of the model's forward and backward (the precision
    policy); the judge runs outside it.
    """
    if optimizer not in JPEG_OPTIMIZERS:
        raise ValueError(f"JPEG optimizer must be one of {JPEG_OPTIMIZERS}, got {optimizer!r}")
    dev = start.device
    c0 = read_coefficients(encode_lr(start[0].cpu(), None, "jpeg", quality))
    qy, qc = (torch.from_numpy(t).to(dev) for t in (c0.qt_luma, c0.qt_chroma))
    # The Y, Cb and Cr planes, each with a batch dimension of one (the loop's items).
    base = [torch.from_numpy(a.astype(np.float32)).to(dev).unsqueeze(0) for a in (c0.y, c0.cb, c0.cr)]

    def files(parts: list[torch.Tensor]) -> tuple[bytes, torch.Tensor]:
        ints = [torch.round(p[0]).detach().cpu().numpy() for p in parts]
        data = write_coefficients(c0, *ints)
        return data, decode_lr(data).unsqueeze(0).to(dev)

    start_lr = decode_lr(c0._template).unsqueeze(0).to(dev)
    start_val = judge(start_lr)
    scale: list[float] = []  # with adam: the start file's loss and bits, so that RATE_WEIGHT means the same on any image

    def evaluate(points: list[torch.Tensor]) -> Evaluation:
        # Real-valued coefficients; the judged iterates are rounded. (Rounding inside the loss with a straight-through
        # gradient, and greedy +-1 steps on the largest gradients, were tried and gained nothing.)
        planes = [p[0] for p in points]
        rec = upscale(decode_coefficients(*planes, qy, qc, c0.size)).float()
        loss = torch.mean((_luma(rec) - _luma(hr)) ** 2)
        if optimizer != "adam":
            return Evaluation(loss.reshape(1), points)
        full = loss + CHROMA_WEIGHT * _chroma_mse(rec, hr)
        if not scale:
            scale.extend((max(full.item(), 1e-12), max(float(bits_proxy([b[0] for b in base])), 1.0)))
        return Evaluation(loss.reshape(1), points, full / scale[0] + RATE_WEIGHT * bits_proxy(planes) / scale[1])

    def make_optimizer(points: list[torch.Tensor]) -> torch.optim.Optimizer:
        return TextbookAdam(points, ADAM_STEP) if optimizer == "adam" else BarzilaiBorwein(points, first_step)

    losses: list[list[float]] = [[]]
    got = descend(
        base, steps, make_optimizer, evaluate,
        lambda points: [torch.max(torch.min(p, b + radius), b - radius) for p, b in zip(points, base, strict=True)],
        best=(torch.tensor([start_val], dtype=torch.float64), base), losses=losses, judge_every=judge_every,
        score=lambda planes: torch.tensor([judge(files(planes)[1])], dtype=torch.float64),  # type: ignore[arg-type]
        candidate=lambda points: points, numerics=numerics,
    )  # fmt: skip
    stored_val = float(got.value[0])  # type: ignore[index]
    kept_start = not stored_val > start_val  # the start file wins ties: no iterate beat it
    data, lr = (c0._template, start_lr) if kept_start else files(got.chosen)  # type: ignore[arg-type]
    changed = sum(int((torch.round(a) != b).sum()) for a, b in zip(got.final, base, strict=True))
    return JpegResult(data, lr, start_lr, start_val, stored_val, kept_start, losses[0], got.judged, changed)
