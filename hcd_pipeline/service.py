"""Single-image service: one decoded image in, the stored LR image, its sidecar and metrics out.

This is what ``hcd downscale``, ``hcd eval`` and every pipeline actor call. It loads the model once
(:class:`Downscaler`), does no file I/O, and handles any image:

* sizes that are not multiples of the scale are padded (MATLAB-style symmetric, i.e. mirrored with the
  edge repeated) before downscaling; the sidecar records the original size so that the upscaled image
  is cropped back;
* grayscale images are replicated to RGB for the model; their LR is stored as RGB (exactly what was
  optimised) and their reconstruction is the channel mean;
* alpha is resized separately with MATLAB bicubic and stored as the LR PNG's alpha channel;
* 16-bit sources are used at full precision; the LR is 8-bit by definition.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ._version import __version__
from .codecs import DEFAULT_QUALITY, LR_EXTENSIONS, check_format, encode_lr, roundtrip
from .device import GPU_MODES, device_mode, device_record, free_memory, resolve_device
from .errors import ImageReadError, SettingsError
from .hcd import (
    DEFAULT_PRESET,
    METHODS,
    HCDResult,
    HCDSettings,
    ReconstructionJudge,
    collaborative_downscale,
    decode_z,
    get_preset,
)
from .imageio import DecodedImage
from .jsonutil import json_float
from .metadata import METADATA_POLICIES, SourceMetadata, embed_metadata
from .metrics import Scores, psnr, rgb_to_y, score_levels, to_uint8_levels
from .models.protocol import Rescaler
from .models.registry import for_lr_format, load_model, model_fingerprint, resolve_name
from .resize import imresize
from .tiles import tiled_collaborative_downscale

__all__ = [
    "DownscaleSettings",
    "DownscaleOutput",
    "ImageInfo",
    "Optimised",
    "Downscaler",
    "pad_symmetric",
    "upscale_lr",
    "AUTO_TILE_PIXELS",
    "AUTO_TILE",
    "LOW_MEMORY_PIXELS",
    "MEMORY_MODES",
    "MEMORY_CHOICES",
    "STEP_BYTES_PER_PIXEL",
    "upscale_stored",
    "MAX_BATCH",
]

AUTO_TILE_PIXELS = 4096 * 1024
"""HR images with more pixels than this (4 MP: DIV2K's 2040 x 1356 fits whole) are optimised in tiles unless
``tile = 0``. Below it the whole image is optimised at once, with the memory-light backward when large."""
AUTO_TILE = 192
"""LR tile side used by the automatic tiling."""
LOW_MEMORY_PIXELS = 512 * 512
"""With ``memory="auto"``, optimised regions (whole image or tile) with more HR pixels than this use the
``low`` memory mode: plain autograd keeps every activation of every coupling block (``docs/results.md``,
"Speed", has the measured peaks)."""
MEMORY_MODES = {"fast": "store", "low": "recompute", "lowest": "reversible"}
"""``DownscaleSettings.memory`` -> the model's backward mode (``IRN.BACKWARDS``); "auto" picks fast or low."""
MEMORY_CHOICES = ("auto", *MEMORY_MODES)
"""Every value ``DownscaleSettings.memory`` (``--memory``) takes."""
STEP_BYTES_PER_PIXEL = {"fast": 11_900, "low": 1_100, "lowest": 1_050}
"""Peak bytes of one HCD step per HR pixel in each memory mode: the HR step (the larger) measured at 512 x 512 on
irn-x2 (``docs/results.md``, "Speed": 2.9 / 0.27 / 0.26 GiB), with 5 % headroom. On CUDA the memory policy sizes
layouts and batches from these and the device's free memory; on the CPU from :data:`LOW_MEMORY_PIXELS`."""
MAX_BATCH = 16
"""Most images optimised together in one model call."""


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


@dataclass(frozen=True)
class DownscaleSettings:
    """Everything that determines the stored LR (recorded in every sidecar and Parquet row)."""

    model: str | None = None
    scale: int | None = None
    weights: str | None = None
    method: str = "hcd"
    preset: str = DEFAULT_PRESET
    overrides: dict[str, object] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    threads: int = 1  # torch intra-op threads during processing: part of what fixes the output bits
    tile: int | None = None  # LR pixels per tile side; None: tile images over AUTO_TILE_PIXELS; 0: never
    overlap: int = 16
    memory: str = "auto"  # fast | low | lowest (MEMORY_MODES); auto: from the image size (and free GPU memory)
    batch: int | None = None  # same-size images optimised together; None: 1 on the CPU, from free memory on CUDA
    gpu_mode: str = "deterministic"  # GPU_MODES: CUDA numerics (deterministic, or TF32 + autotuned cuDNN)
    lr_format: str = "png"  # codecs.LR_FORMATS: the stored LR file (lossy formats are judged as decoded)
    lr_quality: int = DEFAULT_QUALITY  # JPEG / WebP quality
    codec_aware: bool = True  # with lr_format jpeg: optimise the JPEG file's DCT coefficients (jpeg_hcd)
    metadata: str = "keep"  # METADATA_POLICIES: the source's ICC profile and EXIF in the LR file (keep: without GPS)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SettingsError(f"unknown method {self.method!r}; expected one of {METHODS}")
        check_format(self.lr_format, self.lr_quality)
        if self.metadata not in METADATA_POLICIES:
            raise SettingsError(f"metadata {self.metadata!r}: expected one of {METADATA_POLICIES}")
        if self.memory not in MEMORY_CHOICES:
            raise SettingsError(f"unknown memory mode {self.memory!r}; expected one of {MEMORY_CHOICES}")
        if self.gpu_mode not in GPU_MODES:
            raise SettingsError(f"unknown gpu_mode {self.gpu_mode!r}; expected one of {GPU_MODES}")
        if self.batch is not None and not 1 <= self.batch <= MAX_BATCH:
            raise SettingsError(f"batch must be between 1 and {MAX_BATCH}, got {self.batch}")
        if self.tile is not None and self.tile < 0:
            raise SettingsError(f"tile must be >= 0 (0: whole image), got {self.tile}")

    def hcd_settings(self) -> HCDSettings:
        return get_preset(self.preset, **self.overrides)


@dataclass(frozen=True)
class ImageInfo:
    """What :meth:`Downscaler.finish` needs to know of the source besides its pixels."""

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
class Optimised:
    """The model stage's result for one image (CPU tensors): what :meth:`Downscaler.finish` turns into files.

    Attributes:
        lr: the stored LR colour as 8-bit levels, uint8 (3, h, w).
        tile, memory: the layout used (0 = whole image) and the memory mode.
        changed, losses, seconds, stage_seconds: HCD diagnostics.
        kept, judged: ``"plain"`` or ``"optimised"``, and the no-harm judge's dB of the plain and the stored
            LR (empty when nothing was judged): see :class:`~hcd_pipeline.hcd.HCDResult`.
        plain_rec, rec: reconstructions of the plain and the stored LR in the source's channels, cropped to the
            source size and rounded to 8-bit levels (uint8 (C, H, W)); None when not scored. ``rec is plain_rec``
            when the stored LR is the plain one.
        device: :func:`~hcd_pipeline.device.device_record` of the device that made it; batch: images optimised
            together with it (1: alone).
        lr_file: the stored file itself when the optimisation made the file (JPEG coefficients, :mod:`.jpeg_hcd`);
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
    """What turns a model call's result into files (:meth:`finish`: scores, sidecar, the LR file) and describes the
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
        """The coefficient optimiser of JPEG file mode (:data:`.jpeg_hcd.JPEG_OPTIMIZERS`; ``pgd`` means ``bb`` there)."""
        return "adam" if self.hcd.optimizer == "adam" else "bb"

    def _jpeg_optimizer(self) -> dict[str, object]:
        """The sidecar's record of the coefficient optimiser and the constants that shape its files."""
        from .jpeg_hcd import optimizer_constants

        name = self._jpeg_optimizer_name()
        return {"name": name, **optimizer_constants(name)}

    def _jpeg_file_mode(self) -> bool:
        """JPEG with ``codec_aware``: optimise the file's DCT coefficients (:mod:`.jpeg_hcd`) instead of LR pixels."""
        return self.settings.lr_format == "jpeg" and self.settings.codec_aware and self.settings.method in ("lr", "hcd")

    def finish(self, info: ImageInfo, opt: Optimised, *, alpha: torch.Tensor | None, hr_levels: torch.Tensor | None) -> DownscaleOutput:
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


class Downscaler(Recorder):
    """Loads a model once and downscales images with it (thread-compatible, not thread-safe)."""

    def __init__(self, settings: DownscaleSettings) -> None:
        self.device = resolve_device(settings.device)
        self.model: Rescaler = for_lr_format(
            load_model(settings.model, scale=settings.scale, weights=settings.weights, device=self.device), settings.lr_format
        )
        super().__init__(settings, int(self.model.scale))
        if self._jpeg_file_mode():
            from .jpeg_hcd import _jpeglib

            _jpeglib()  # before any work: a missing optional package is one line, not a failure per image

    def layout(self, height: int, width: int) -> tuple[int, str]:
        """(LR tile side or 0 for the whole image, memory mode) for an HR image of this size.

        On the CPU: tiles above :data:`AUTO_TILE_PIXELS`, the ``low`` mode above :data:`LOW_MEMORY_PIXELS`. On CUDA
        the same choices come from the device's free memory: the whole image in ``fast`` mode if its step fits in
        60 % of it, else in ``low`` mode, else tiles.
        """
        if self.settings.method == "plain":
            return 0, "fast"  # nothing is optimised: one no-grad pass over the whole image
        free = free_memory(self.device)
        tile, memory = self.settings.tile, self.settings.memory
        if free is not None and tile is None:
            fits = [m for m in ("fast", "low") if height * width * STEP_BYTES_PER_PIXEL[m] <= 0.6 * free]
            tile = 0 if fits else AUTO_TILE
            if memory == "auto":
                memory = fits[0] if fits else "auto"
        if tile is None:
            tile = AUTO_TILE if height * width > AUTO_TILE_PIXELS else 0
        if memory == "auto":
            region = min(height, tile * self.scale) * min(width, tile * self.scale) if tile else height * width
            if free is not None:
                memory = "fast" if region * STEP_BYTES_PER_PIXEL["fast"] <= 0.6 * free else "low"
            else:
                memory = "low" if region > LOW_MEMORY_PIXELS else "fast"
        return tile, memory

    def batch_items(self, height: int, width: int, memory: str) -> int:
        """Images of this (padded) size optimised together: ``settings.batch``, else 1 on the CPU (measured: batching
        gains nothing there, ``benchmarks/batch_speed.py``) and on CUDA as many as fit in 60 % of the free memory."""
        if self.settings.batch is not None:
            return self.settings.batch
        free = free_memory(self.device)
        if free is None or self.settings.method == "plain":
            return 1 if free is None else MAX_BATCH
        return max(1, min(MAX_BATCH, int(0.6 * free // (height * width * STEP_BYTES_PER_PIXEL[memory]))))

    def process(self, image: DecodedImage, *, metrics: bool = True, progress=None) -> DownscaleOutput:  # noqa: ANN001
        """Downscale one image; ``progress`` is called once per optimisation step.

        Equal to :meth:`finish` of :meth:`optimise`: the pipeline runs the two halves in different stages
        (the model stage on the accelerator, encoding and scoring on CPU workers) and gets the same bytes.
        """
        opt = self.optimise(image, metrics=metrics, progress=progress)
        return self.finish(ImageInfo.of(image), opt, alpha=image.alpha, hr_levels=to_uint8_levels(image.pixels).to(torch.uint8))

    def judge(self, images: DecodedImage | Sequence[DecodedImage], *, as_decoded: bool = False) -> ReconstructionJudge:
        """The no-harm judge of one image or a batch of them: PSNR (dB) of an LR's 8-bit reconstruction exactly as
        the metric rows measure it (source region and channels, border crop = scale; Y or RGB by
        ``HCDSettings.judge``), of the stored file as decoded (lossy formats) unless the LRs it gets are decoded
        files already (``as_decoded``)."""
        ims = [images] if isinstance(images, DecodedImage) else list(images)
        return ReconstructionJudge(
            self.model, [im.pixels for im in ims], channels=self.hcd.judge, crop=self.scale,
            view=[lambda rec, im=im: _source_view(rec, im) for im in ims], decoded=None if as_decoded else self._decoded(),
        )  # fmt: skip

    def _run_jpeg(
        self, images: list[DecodedImage], hr: torch.Tensor, gens: list[torch.Generator], memory: str, metrics: bool, t0: float
    ) -> list[Optimised]:
        """HCD in the JPEG file: per image, the plain LR's JPEG coefficients optimised for the upscaler and judged as
        decoded by libjpeg; the best file (or the plain LR's file) is stored byte for byte."""
        from .jpeg_hcd import optimise_jpeg

        q = self.settings.lr_quality
        base = collaborative_downscale(self.model, hr, method="plain", settings=self.hcd, generator=gens[0] if len(gens) == 1 else gens)
        out = []
        for i, (im, r) in enumerate(zip(images, base.split(), strict=True)):
            judge = self.judge(im, as_decoded=True)  # it gets the decoded files themselves
            z = r.z
            got = optimise_jpeg(
                lambda lr_in, z=z: self.model.upscale(lr_in, z), hr[i : i + 1], r.plain_lr, q,
                lambda lr_dec, j=judge, z=z: float(j(lr_dec, z)[0]), steps=self.hcd.lr_steps, judge_every=self.hcd.judge_every,
                optimizer=self._jpeg_optimizer_name(),
            )  # fmt: skip
            changed = int((torch.round(got.lr * 255) != torch.round(got.start_lr * 255)).sum())
            res = HCDResult(lr=got.lr, plain_lr=got.start_lr, z=z, losses=got.losses, changed=changed,
                            seconds={"lr": time.perf_counter() - t0}, kept="plain" if got.kept_start else "optimised",
                            judged={"plain": got.start_db, "stored": got.stored_db})  # fmt: skip
            opt = self._result(im, res, 0, memory, 0.0, metrics, lambda lr_x, j=judge: j.reconstruction(0, lr_x[0]), as_decoded=True)
            opt.lr_file = got.data  # the plain LR's own file when no iterate beat it (re-encoding its decode would differ)
            out.append(opt)
        seconds = (time.perf_counter() - t0) / len(images)
        for o in out:
            o.seconds = seconds
        return out

    def _decoded(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """What users decode from the stored file, for lossy formats (None: PNG stores the LR exactly)."""
        if self.settings.lr_format == "png":
            return None
        fmt, q = self.settings.lr_format, self.settings.lr_quality
        return lambda lr: roundtrip(lr, fmt, q)

    def optimise(self, image: DecodedImage, *, metrics: bool = True, progress=None) -> Optimised:  # noqa: ANN001
        """The model's part of :meth:`process`: HCD and the reconstructions to score (CPU tensors out)."""
        out = self.optimise_batch([image], metrics=metrics, progress=progress)[0]
        if isinstance(out, Exception):
            raise out
        return out

    def optimise_batch(
        self,
        images: Sequence[DecodedImage],
        *,
        metrics: bool = True,
        progress=None,  # noqa: ANN001
    ) -> list[Optimised | Exception]:
        """:meth:`optimise` of several images; a failure comes back in its image's place, as the exception.

        Images that are optimised whole and share a padded size go through HCD together in batches of
        :meth:`batch_items` (each with its own generator seeded ``settings.seed``, so each result equals the image's
        :meth:`optimise` alone up to batched-convolution rounding, see ``collaborative_downscale``); tiled images
        go one at a time. ``progress`` is called once per optimisation step of each model call.
        """
        # oneDNN's reductions depend on the thread count, and an LR value can flip by one level: run with the
        # configured count so that the same settings give the same bytes in the CLI and in pipeline actors.
        previous = torch.get_num_threads()
        torch.set_num_threads(self.settings.threads)
        try:
            with device_mode(self.device, self.settings.gpu_mode):
                record = device_record(self.device, gpu_mode=self.settings.gpu_mode, threads=self.settings.threads)
                return self._optimise_batch(images, metrics=metrics, progress=progress, record=record)
        finally:
            torch.set_num_threads(previous)

    def _optimise_batch(
        self,
        images: Sequence[DecodedImage],
        *,
        metrics: bool,
        progress,  # noqa: ANN001
        record: dict[str, object],
    ) -> list[Optimised | Exception]:
        results: list[Optimised | Exception | None] = [None] * len(images)
        groups: dict[tuple[object, ...], list[tuple[int, torch.Tensor]]] = {}
        for i, image in enumerate(images):
            try:
                hr = self._prepare(image)
            except Exception as exc:  # noqa: BLE001 - one image's failure is its own
                results[i] = exc
                continue
            tile, memory = self.layout(*hr.shape[-2:])
            key: tuple[object, ...] = ("tiled", i) if tile else (tuple(hr.shape), memory)
            groups.setdefault(key, []).append((i, hr))
        for (kind, *rest), members in groups.items():
            memory = str(rest[0]) if kind != "tiled" else ""
            size = 1 if kind == "tiled" else self.batch_items(int(members[0][1].shape[-2]), int(members[0][1].shape[-1]), memory)
            for at in range(0, len(members), size):
                chunk = members[at : at + size]
                try:
                    outs = self._run([images[i] for i, _ in chunk], torch.cat([h for _, h in chunk]), metrics=metrics, progress=progress)
                except Exception as exc:  # noqa: BLE001
                    if len(chunk) == 1:
                        results[chunk[0][0]] = exc
                        continue
                    # A batch failed as a whole (e.g. out of memory): each image gets its own chance.
                    outs = []
                    for i, h in chunk:
                        try:
                            outs.extend(self._run([images[i]], h, metrics=metrics, progress=progress))
                        except Exception as one:  # noqa: BLE001
                            outs.append(one)  # type: ignore[arg-type]
                for (i, _), out in zip(chunk, outs, strict=True):
                    if isinstance(out, Optimised):
                        out.device, out.batch = record, len(chunk)
                    results[i] = out
        return [r if r is not None else RuntimeError("not processed") for r in results]

    def _prepare(self, image: DecodedImage) -> torch.Tensor:
        """Checks, RGB, padding: (1, 3, H', W') on the device."""
        s = self.scale
        h, w = image.height, image.width
        if h < s or w < s:
            raise ImageReadError(f"{image.name}: image is {w}x{h}, smaller than the scale x{s}")
        if not bool(torch.isfinite(image.pixels).all()):
            raise ImageReadError(f"{image.name}: pixel values contain NaN or inf")
        if image.alpha is not None and self.settings.lr_format == "jpeg":
            raise SettingsError(f"{image.name}: JPEG has no alpha channel: store this image with --lr-format png or webp")
        rgb = image.pixels if image.pixels.shape[0] == 3 else image.pixels.expand(3, -1, -1)
        return pad_symmetric(rgb.float(), s).unsqueeze(0).to(self.device)

    def _run(self, images: list[DecodedImage], hr: torch.Tensor, *, metrics: bool, progress) -> list[Optimised]:  # noqa: ANN001
        """HCD over same-size padded images (B, 3, H, W) -> one :class:`Optimised` per image."""
        t0 = time.perf_counter()
        tile, memory = self.layout(*hr.shape[-2:])
        gens = [torch.Generator(device="cpu").manual_seed(self.settings.seed) for _ in images]
        jpeg_file = self._jpeg_file_mode() and not tile and self.hcd.judge != "loss"
        judged = self.hcd.judge != "loss" and self.settings.method != "plain" and not jpeg_file
        judge = self.judge(images) if judged else None
        # Models without a choice of backward (the bicubic pair, user models) always run plain autograd.
        previous = getattr(self.model, "backward", None)
        if previous is not None:
            self.model.backward = MEMORY_MODES[memory]  # type: ignore[attr-defined]
        try:
            if jpeg_file:
                return self._run_jpeg(images, hr, gens, memory, metrics, t0)
            if tile:
                side = tile * self.scale
                res: HCDResult = tiled_collaborative_downscale(
                    self.model, hr, tile=tile, overlap=self.settings.overlap, method=self.settings.method,
                    settings=self.hcd, generator=gens[0], progress=progress, batch=self.batch_items(side, side, memory),
                )  # fmt: skip
            else:
                res = collaborative_downscale(
                    self.model, hr, method=self.settings.method, settings=self.hcd,
                    generator=gens[0] if len(gens) == 1 else gens, progress=progress, judge=judge,
                )  # fmt: skip
        finally:
            if previous is not None:
                self.model.backward = previous  # type: ignore[attr-defined]
        seconds = (time.perf_counter() - t0) / len(images)
        # The judge has reconstructed the plain and the stored LR already: the metrics reuse those reconstructions.
        cached = (lambda i, lr: judge.reconstruction(i, lr)) if judge is not None and not tile else None
        return [
            self._result(im, r, tile, memory, seconds, metrics, (lambda lr, i=i: cached(i, lr[0])) if cached else None)
            for i, (im, r) in enumerate(zip(images, res.split(), strict=True))
        ]

    def _result(
        self,
        image: DecodedImage,
        res: HCDResult,
        tile: int,
        memory: str,
        seconds: float,
        metrics: bool,
        cached: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
        *,
        as_decoded: bool = False,
    ) -> Optimised:
        """One image's :class:`Optimised` from its HCD result: the whole-image no-harm guard, reconstructions
        (``cached(lr)``: one the judge already made, or None)."""
        s = self.scale
        h, w = image.height, image.width
        lr_stored, kept, judged = res.lr, res.kept, dict(res.judged)
        if self.hcd.judge != "loss" and self.settings.method != "plain" and (tile or not judged):
            # No harm on the whole image as the rows measure it (tiles were each judged on their own region).
            judge = self.judge(image)
            judged = {"plain": float(judge(res.plain_lr, res.z)[0]), "stored": float(judge(res.lr, res.z)[0])}
            if not judged["stored"] > judged["plain"]:
                lr_stored, kept, judged["stored"] = res.plain_lr, "plain", judged["plain"]
        changed = res.changed if lr_stored is res.lr else 0
        kept = "plain" if changed == 0 else kept
        plain_rec = rec = None
        if metrics and min(h, w) >= 2 * s + 11:

            def reconstruct(lr_img: torch.Tensor) -> torch.Tensor:
                known = cached(lr_img) if cached is not None else None
                if known is not None:
                    return known
                decoded = None if as_decoded else self._decoded()
                seen = decoded(lr_img) if decoded is not None else lr_img
                with torch.no_grad():
                    out = self.model.upscale(seen, res.z)[0].clamp(0, 1).cpu()
                return to_uint8_levels(_source_view(out, image)).to(torch.uint8)

            plain_rec = reconstruct(res.plain_lr)
            rec = plain_rec if torch.equal(lr_stored, res.plain_lr) else reconstruct(lr_stored)
        return Optimised(
            lr=torch.round(lr_stored[0].cpu() * 255).to(torch.uint8),
            tile=tile,
            memory=memory,
            changed=changed,
            kept=kept,
            judged=judged,
            losses=list(res.losses),
            seconds=seconds,
            stage_seconds=dict(res.seconds),
            plain_rec=plain_rec,
            rec=rec,
        )


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


def upscale_lr(
    model: Rescaler,
    lr: torch.Tensor,
    *,
    seed: int,
    decode: str,
    source_size: tuple[int, int] | None = None,
    channels: int = 3,
) -> torch.Tensor:
    """Upscale a stored LR (3, h, w) the way :class:`Downscaler` scored it -> (C, H, W) in [0, 1].

    ``decode`` and ``seed`` must be the sidecar's (``decode_z`` and ``seed``): the z is drawn exactly as
    during downscaling, so the result equals the reconstruction that was measured.
    """
    dev = next((p.device for p in getattr(model, "parameters", lambda: iter(()))()), torch.device("cpu"))
    x = lr.unsqueeze(0).to(dev)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    z = decode_z(model, x.shape, get_preset("official", decode=decode), gen, dev)
    with torch.no_grad():
        rec = model.upscale(x, z)[0].clamp(0, 1).cpu()
    if channels == 1:
        rec = rec.mean(0, keepdim=True)
    if source_size is not None:
        w, h = source_size
        rec = rec[:, :h, :w]
    return rec


def stored_lr_format(name: str, sidecar: dict[str, object]) -> str:
    """The format of a stored LR: the sidecar's ``lr_format``, else the file name's extension (PNG if unknown)."""
    fmt = sidecar.get("lr_format")
    if isinstance(fmt, str) and fmt:
        return fmt
    by_extension = {ext: f for f, ext in LR_EXTENSIONS.items()} | {".jpeg": "jpeg"}
    return by_extension.get(Path(name).suffix.lower(), "png")


def upscale_stored(
    lr: DecodedImage,
    sidecar: dict[str, object],
    *,
    model: str | None = None,
    scale: int | None = None,
    weights: str | None = None,
    device: str = "cpu",
    seed: int | None = None,
    decode: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A stored LR image and its sidecar -> (reconstruction (C, H, W), alpha (1, H, W) or None), in [0, 1].

    The model, seed, z policy, source size and channels come from the sidecar unless given; a ``model`` that
    contradicts the sidecar, or installed weights that differ from those the LR was made with, are refused. The
    LR's alpha (if any) is upscaled with MATLAB bicubic and cropped like the image.
    """
    if not isinstance(sidecar, dict):
        raise SettingsError(f"{lr.name}: its sidecar is not a JSON object (got {type(sidecar).__name__})")
    name = model or sidecar.get("model")
    if weights is None and (name is None or str(name).startswith("file:")):
        raise SettingsError(f"{lr.name}: no sidecar model; give --model/--scale or --weights")
    if model and sidecar.get("model") and model != sidecar["model"]:
        raise SettingsError(f"{lr.name}: sidecar says model {sidecar['model']!r}, but --model {model} was given")
    sc = scale or sidecar.get("scale")
    net = load_model(None if weights else str(name), scale=int(sc) if sc else None, weights=weights, device=device)  # type: ignore[call-overload]
    net = for_lr_format(net, stored_lr_format(lr.name, sidecar))
    if sidecar.get("weights_sha256") and weights is None and model_fingerprint(str(name)) != sidecar["weights_sha256"]:
        raise SettingsError(f"{lr.name}: weights of {name!r} differ from those the LR was made with ({sidecar['weights_sha256']})")
    if lr.pixels.shape[0] != 3:
        raise SettingsError(f"{lr.name}: LR images are RGB, got {lr.pixels.shape[0]} channel(s)")
    size = sidecar.get("source_size")
    if isinstance(size, list | tuple) and len(size) == 2:
        # The LR of a W x H source is ceil(W / s) x ceil(H / s): a sidecar of another image or scale does not fit it.
        want = (-(-int(size[0]) // net.scale), -(-int(size[1]) // net.scale))
        if (lr.width, lr.height) != want:
            raise SettingsError(
                f"{lr.name}: LR is {lr.width}x{lr.height}, but its sidecar's source {size[0]}x{size[1]} at x{net.scale} gives "
                f"{want[0]}x{want[1]}: the sidecar belongs to another image or model"
            )
    rec = upscale_lr(
        net,
        lr.pixels,
        seed=seed if seed is not None else int(sidecar.get("seed", 0)),  # type: ignore[arg-type]
        decode=decode or str(sidecar.get("decode_z", "draw")),
        source_size=(int(size[0]), int(size[1])) if isinstance(size, list | tuple) else None,
        channels=int(sidecar.get("channels", 3)),  # type: ignore[arg-type]
    )
    alpha = None
    if lr.alpha is not None:
        alpha = imresize(lr.alpha.double(), float(net.scale)).clamp(0, 1).float()[:, : rec.shape[-2], : rec.shape[-1]]
    return rec, alpha
