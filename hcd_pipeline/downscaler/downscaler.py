"""The downscaler: one decoded image in, the stored LR image, its sidecar and metrics out.

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

import time
from collections.abc import Callable, Sequence

import torch

from hcd_pipeline.core.device import device_mode, device_record, free_memory, precision_mode, resolve_device
from hcd_pipeline.core.errors import ImageReadError, SettingsError
from hcd_pipeline.core.metrics import to_uint8_levels
from hcd_pipeline.core.resize import pad_symmetric
from hcd_pipeline.downscaler.record import DownscaleOutput, ImageInfo, ModelResult, Recorder, _source_view
from hcd_pipeline.downscaler.settings import (
    AUTO_TILE,
    AUTO_TILE_PIXELS,
    LOW_MEMORY_PIXELS,
    MAX_BATCH,
    MEMORY_MODES,
    STEP_BYTES_PER_PIXEL,
    DownscaleSettings,
)
from hcd_pipeline.hcd.judge import ReconstructionJudge
from hcd_pipeline.hcd.optimise import HCDResult, collaborative_downscale
from hcd_pipeline.hcd.tiles import tiled_collaborative_downscale
from hcd_pipeline.io.images import DecodedImage
from hcd_pipeline.io.lr_formats import roundtrip
from hcd_pipeline.models.protocol import Rescaler
from hcd_pipeline.models.registry import for_lr_format, load_model


class Downscaler(Recorder):
    """Loads a model once and downscales images with it (thread-compatible, not thread-safe)."""

    def __init__(self, settings: DownscaleSettings) -> None:
        self.device = resolve_device(settings.device)
        self.model: Rescaler = for_lr_format(
            load_model(settings.model, scale=settings.scale, weights=settings.weights, device=self.device), settings.lr_format
        )
        super().__init__(settings, int(self.model.scale))
        if self._jpeg_file_mode():
            from hcd_pipeline.jpeg.coefficients import jpeglib_module

            jpeglib_module()  # before any work: a missing optional package is one line, not a failure per image

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
        """Images of this (padded) size optimised together: ``settings.hcd_batch``, else 1 on the CPU (measured: batching
        gains nothing there, ``benchmarks/batch_speed.py``) and on CUDA as many as fit in 60 % of the free memory."""
        if self.settings.hcd_batch is not None:
            return self.settings.hcd_batch
        free = free_memory(self.device)
        if free is None or self.settings.method == "plain":
            return 1 if free is None else MAX_BATCH
        return max(1, min(MAX_BATCH, int(0.6 * free // (height * width * STEP_BYTES_PER_PIXEL[memory]))))

    def process(self, image: DecodedImage, *, metrics: bool = True, progress=None) -> DownscaleOutput:  # noqa: ANN001
        """Downscale one image; ``progress`` is called once per optimisation step.

        Equal to :meth:`record` of :meth:`optimise`: the pipeline runs the two halves in different stages
        (the model stage on the accelerator, encoding and scoring on CPU workers) and gets the same bytes.
        """
        opt = self.optimise(image, metrics=metrics, progress=progress)
        return self.record(ImageInfo.of(image), opt, alpha=image.alpha, hr_levels=to_uint8_levels(image.pixels).to(torch.uint8))

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
    ) -> list[ModelResult]:
        """HCD in the JPEG file: per image, the plain LR's JPEG coefficients optimised for the upscaler and judged as
        decoded by libjpeg; the best file (or the plain LR's file) is stored byte for byte."""
        from hcd_pipeline.hcd.jpeg_file import optimise_jpeg

        q = self.settings.lr_quality
        base = collaborative_downscale(self.model, hr, method="plain", settings=self.hcd, generator=gens[0] if len(gens) == 1 else gens)
        out = []
        for i, (im, r) in enumerate(zip(images, base.split(), strict=True)):
            judge = self.judge(im, as_decoded=True)  # it gets the decoded files themselves
            z = r.z
            got = optimise_jpeg(
                lambda lr_in, z=z: self.model.upscale(lr_in, z), hr[i : i + 1], r.plain_lr, q,
                lambda lr_dec, j=judge, z=z: float(j(lr_dec, z)[0]), steps=self.hcd.lr_steps, judge_every=self.hcd.judge_every,
                optimizer=self._jpeg_optimizer_name(), numerics=lambda: precision_mode(self.device, self.settings.precision),
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

    def optimise(self, image: DecodedImage, *, metrics: bool = True, progress=None) -> ModelResult:  # noqa: ANN001
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
    ) -> list[ModelResult | Exception]:
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
                record = device_record(
                    self.device, gpu_mode=self.settings.gpu_mode, threads=self.settings.threads, precision=self.settings.precision
                )
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
    ) -> list[ModelResult | Exception]:
        results: list[ModelResult | Exception | None] = [None] * len(images)
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
                    if isinstance(out, ModelResult):
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

    def _run(self, images: list[DecodedImage], hr: torch.Tensor, *, metrics: bool, progress) -> list[ModelResult]:  # noqa: ANN001
        """HCD over same-size padded images (B, 3, H, W) -> one :class:`ModelResult` per image."""
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
                    precision=self.settings.precision,
                )  # fmt: skip
            else:
                res = collaborative_downscale(
                    self.model, hr, method=self.settings.method, settings=self.hcd,
                    generator=gens[0] if len(gens) == 1 else gens, progress=progress, judge=judge,
                    precision=self.settings.precision,
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
    ) -> ModelResult:
        """One image's :class:`ModelResult` from its HCD result: the whole-image no-harm guard, reconstructions
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
        return ModelResult(
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
