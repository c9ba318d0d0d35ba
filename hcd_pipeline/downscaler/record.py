"""From a model call's result to files without the model: scores, sidecar and the LR file (:class:`Recorder`), and the
LR's distance from the standard bicubic thumbnail."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from hcd_pipeline._version import __version__
from hcd_pipeline.core.metrics import Scores, psnr, rgb_to_y, score_levels
from hcd_pipeline.core.resize import imresize, pad_symmetric
from hcd_pipeline.downscaler.settings import DownscaleSettings
from hcd_pipeline.io.images import DecodedImage
from hcd_pipeline.io.jsonfile import json_float
from hcd_pipeline.io.lr_formats import LR_EXTENSIONS, encode_lr
from hcd_pipeline.io.metadata import SourceMetadata, embed_metadata
from hcd_pipeline.models.registry import model_fingerprint, resolve_name


@dataclass(frozen=True)
class ImageInfo:
    """What :meth:`Downscaler.record` needs to know of the source besides its pixels."""

    name: str
    width: int
    height: int
    channels: int
    bit_depth: int
    source_mode: str
    metadata: SourceMetadata | None = None

    @classmethod
    def of(cls, image: DecodedImage) -> ImageInfo:
        return cls(image.name, image.width, image.height, int(image.pixels.shape[0]), image.bit_depth, image.source_mode, image.metadata)


@dataclass
class ModelResult:
    """The model stage's result for one image (CPU tensors): what :meth:`Downscaler.record` turns into files.

    Attributes:
        lr: the stored LR colour as 8-bit levels, uint8 (3, h, w).
        tile, memory: the layout used (0 = whole image) and the memory mode.
        changed, losses, seconds, stage_seconds: HCD diagnostics.
        kept, judged: ``"plain"`` or ``"optimised"``, and the no-harm judge's dB of the plain and the stored
            LR (empty when nothing was judged): see :class:`~hcd_pipeline.hcd.optimise.HCDResult`.
        plain_rec, rec: reconstructions of the plain and the stored LR in the source's channels, cropped to the
            source size and rounded to 8-bit levels (uint8 (C, H, W)); None when not scored. ``rec is plain_rec``
            when the stored LR is the plain one.
        device: :func:`~hcd_pipeline.core.device.device_record` of the device that made it; batch: images optimised
            together with it (1: alone).
        lr_file: the stored file itself when the optimisation made the file (JPEG coefficients, :mod:`~hcd_pipeline.hcd.jpeg_file`);
            None when the file is the encoding of ``lr``.
    """

    lr: torch.Tensor
    tile: int
    memory: str
    changed: int
    losses: list[float]
    seconds: float
    stage_seconds: dict[str, float]
    plain_rec: torch.Tensor | None
    rec: torch.Tensor | None
    kept: str = "plain"
    judged: dict[str, float] = field(default_factory=dict)
    device: dict[str, object] = field(default_factory=dict)
    batch: int = 1
    lr_file: bytes | None = None


@dataclass
class DownscaleOutput:
    """Result for one image.

    Attributes:
        lr: stored LR colour, float (3, h, w), multiples of 1/255.
        lr_alpha: LR alpha (1, h, w) or None.
        data: the LR file to store (PNG, JPEG or WebP by ``DownscaleSettings.lr_format``; 8-bit, RGB or RGBA); ``ext``
            its file extension (``.png``, ``.jpg``, ``.webp``). ``png`` is ``data`` (the name of earlier releases).
        sidecar: JSON-able record of settings, diagnostics and metrics.
        plain, optimised: metrics of the plain and optimised reconstructions (None when skipped or the
            image is too small to score).
    """

    lr: torch.Tensor
    lr_alpha: torch.Tensor | None
    data: bytes
    ext: str
    sidecar: dict[str, object]
    plain: Scores | None
    optimised: Scores | None

    @property
    def png(self) -> bytes:
        return self.data


class Recorder:
    """What turns a model call's result into files (:meth:`record`: scores, sidecar, the LR file) and describes the
    settings, without the model: the pipeline's write stage records on CPU workers that never load weights.

    ``scale``: the model's scale factor (the model stage that ran it knows it). The weights hash is the file's SHA-256.
    """

    def __init__(self, settings: DownscaleSettings, scale: int) -> None:
        self.settings = settings
        self.hcd = settings.hcd_settings()
        self.scale = int(scale)
        if settings.weights:
            self.model_name = settings.model or f"file:{Path(settings.weights).name}"
        else:
            self.model_name = resolve_name(settings.model, settings.scale)
        self.weights_hash = model_fingerprint(self.model_name, settings.weights)

    def describe(self) -> dict[str, object]:
        """The settings part of a sidecar."""
        return {
            "hcd_pipeline": __version__,
            "model": self.model_name,
            "scale": self.scale,
            "weights_sha256": self.weights_hash,
            "method": self.settings.method,
            "preset": self.settings.preset,
            "hcd": self.hcd.to_dict(),
            "seed": self.settings.seed,
            "threads": self.settings.threads,
            "lr_format": self.settings.lr_format,
            "lr_quality": self.settings.lr_quality if self.settings.lr_format != "png" else None,
            "codec_aware": self.settings.codec_aware and self.settings.lr_format == "jpeg",
            "jpeg_optimizer": self._jpeg_optimizer() if self._jpeg_file_mode() else None,
        }

    def _jpeg_optimizer_name(self) -> str:
        """The coefficient optimiser of JPEG file mode (:data:`~hcd_pipeline.hcd.jpeg_file.JPEG_OPTIMIZERS`; ``pgd`` means ``bb`` there)."""
        return "adam" if self.hcd.optimizer == "adam" else "bb"

    def _jpeg_optimizer(self) -> dict[str, object]:
        """The sidecar's record of the coefficient optimiser and the constants that shape its files."""
        from hcd_pipeline.hcd.jpeg_file import optimizer_constants

        name = self._jpeg_optimizer_name()
        return {"name": name, **optimizer_constants(name)}

    def _jpeg_file_mode(self) -> bool:
        """JPEG with ``codec_aware``: optimise the file's DCT coefficients (:mod:`~hcd_pipeline.hcd.jpeg_file`) instead of LR pixels."""
        return self.settings.lr_format == "jpeg" and self.settings.codec_aware and self.settings.method in ("lr", "hcd")

    def record(self, info: ImageInfo, opt: ModelResult, *, alpha: torch.Tensor | None, hr_levels: torch.Tensor | None) -> DownscaleOutput:
        """The CPU part of :meth:`process`: alpha, scores, sidecar and the PNG.

        ``alpha``: the source alpha (1, H, W) in [0, 1] or None; ``hr_levels``: the source rounded to 8-bit
        levels (uint8 (C, H, W)), needed only when ``opt`` carries reconstructions.
        """
        s = self.scale
        lr = opt.lr.float() / 255
        lr_alpha = None
        if alpha is not None:
            a = imresize(pad_symmetric(alpha.double(), s), 1.0 / s)
            lr_alpha = (torch.round(a.clamp(0, 1) * 255) / 255).float()
        plain_scores = opt_scores = None
        lr_vs_bicubic = None
        if opt.plain_rec is not None and opt.rec is not None and hr_levels is not None:
            plain_scores = score_levels(hr_levels, opt.plain_rec, s)
            opt_scores = plain_scores if opt.rec is opt.plain_rec else score_levels(hr_levels, opt.rec, s)
            lr_vs_bicubic = lr_fidelity(hr_levels, opt.lr, s)
        sidecar: dict[str, object] = {
            **self.describe(),
            "source": info.name,
            "source_size": [info.width, info.height],
            "source_mode": info.source_mode,
            "source_bit_depth": info.bit_depth,
            "channels": info.channels,
            "lr_size": [int(lr.shape[-1]), int(lr.shape[-2])],
            "decode_z": self.hcd.decode,
            "tile": opt.tile or None,
            "memory": opt.memory,
            "changed_values": opt.changed,
            "kept": opt.kept,
            "judge": self.hcd.judge,
            "judged": {k: json_float(v) for k, v in opt.judged.items()},
            "device": opt.device,
            "batch": opt.batch,
            "losses": [round(v, 10) for v in opt.losses],
            "seconds": round(opt.seconds, 4),
            "stage_seconds": {k: round(v, 4) for k, v in opt.stage_seconds.items()},
            "metrics": {
                "plain": _scores_json(plain_scores),
                "optimised": _scores_json(opt_scores),
                "lr_vs_bicubic_psnr_y": None if lr_vs_bicubic is None else json_float(lr_vs_bicubic),
            },
        }
        data = opt.lr_file or encode_lr(lr, lr_alpha, self.settings.lr_format, self.settings.lr_quality)
        # Spliced into the file, pixels untouched: the scores above hold for what is stored.
        size = (int(lr.shape[-1]), int(lr.shape[-2]))
        data, sidecar["metadata"] = embed_metadata(data, self.settings.lr_format, info.metadata, self.settings.metadata, size)
        sidecar["lr_bytes"] = len(data)
        return DownscaleOutput(
            lr=lr, lr_alpha=lr_alpha, data=data, ext=LR_EXTENSIONS[self.settings.lr_format], sidecar=sidecar, plain=plain_scores,
            optimised=opt_scores,
        )  # fmt: skip


def bicubic_thumbnail(hr_levels: torch.Tensor, scale: int) -> torch.Tensor:
    """The standard thumbnail of a source: the MATLAB bicubic downscale of ``hr_levels`` (uint8 (C, H, W), padded to a
    multiple of ``scale`` as the LR was; gray as RGB) rounded to 8 bits -> float64 levels (3, h, w)."""
    hr = hr_levels.float() / 255  # float32 as the models downscale, so that a plain bicubic LR equals it
    hr = hr.expand(3, -1, -1) if hr.shape[0] == 1 else hr[:3]
    return torch.round(imresize(pad_symmetric(hr, scale), 1.0 / scale).clamp(0, 1) * 255).double()  # as HCD rounds


def lr_fidelity(hr_levels: torch.Tensor, lr_levels: torch.Tensor, scale: int, *, thumbnail: torch.Tensor | None = None) -> float:
    """How far a stored LR is from the standard thumbnail: Y-PSNR (dB, no border crop) of ``lr_levels`` (uint8
    (3, h, w)) against :func:`bicubic_thumbnail` of ``hr_levels`` (or ``thumbnail``, made by it already). ``inf`` when
    the LR is that thumbnail."""
    bicubic = bicubic_thumbnail(hr_levels, scale) if thumbnail is None else thumbnail
    return psnr(rgb_to_y(bicubic), rgb_to_y(lr_levels.double()))


def _scores_json(sc: Scores | None) -> dict[str, float | str] | None:
    return {k: json_float(v) for k, v in asdict(sc).items()} if sc else None


def _source_view(rec: torch.Tensor, image: DecodedImage) -> torch.Tensor:
    """A clamped reconstruction (3, H', W') of the padded image as the source: its channels (gray: the mean), its size."""
    rec = rec.mean(0, keepdim=True) if image.pixels.shape[0] == 1 else rec
    return rec[:, : image.height, : image.width]
