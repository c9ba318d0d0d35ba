"""The evaluation protocol over image sets: mod-crop, downscale (plain or HCD), upscale, score.

Each HR image is cropped to a multiple of the scale, downscaled by the chosen method to an 8-bit LR,
upscaled, rounded to 8 bits and scored on Y and RGB with ``scale`` border pixels ignored
(:mod:`hcd_pipeline.core.metrics`). With several z draws, every draw uses its own seed (``seed``, ``seed + 1``, ...) and the
per-image score is the mean over draws.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass

from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.core.metrics import psnr_gain
from hcd_pipeline.core.settings_fields import setting
from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
from hcd_pipeline.downscaler.settings import ImageSettings
from hcd_pipeline.io.datasets import resolve_dataset
from hcd_pipeline.io.images import DecodedImage, list_images, read_image

__all__ = ["EVAL_METHODS", "resolve_dataset", "EvalSettings", "evaluate"]  # resolve_dataset: io.datasets, kept here for callers

EVAL_METHODS = ("plain", "lr", "hr", "hcd", "official")


@dataclass(frozen=True, kw_only=True)
class EvalSettings(ImageSettings):
    """The protocol's settings: every image setting, declared once in :class:`ImageSettings` (``hcd eval`` takes the
    same flags as ``hcd downscale``), plus the set, the z draws, a limit and the device. ``method`` defaults to
    ``plain`` here and also takes ``official`` (``hcd`` with the original code's preset)."""

    method: str = setting(
        "plain", "plain, lr, hr, hcd, or official (hcd with the original code's preset, whatever --preset says)",
        choices=EVAL_METHODS, fp="always",
    )  # fmt: skip
    data: str = setting("Set5", "set name (Set5, Set14, B100, Urban100: io.datasets) or folder")
    draws: int = setting(1, "z draws (seeds seed .. seed + N - 1), scores averaged", bounds=(1, None))
    decode: str | None = setting(None, "decoder z policy (default: the preset's)", choices=("draw", "zero"))
    limit: int | None = setting(None, "only the first N images", bounds=(1, None))
    device: str = setting("cpu", "cpu, cuda, cuda:N or auto", cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.draws < 1:
            raise SettingsError(f"draws must be >= 1, got {self.draws}")

    def downscale_settings(self, draw: int = 0) -> DownscaleSettings:
        """The settings of one z draw (seed ``seed + draw``): ``official`` as ``hcd`` with that preset, ``decode`` as
        an override of the preset's."""
        method, preset = ("hcd", "official") if self.method == "official" else (self.method, self.preset)
        overrides = {**self.overrides, **({"decode": self.decode} if self.decode else {})}
        fields = {**self.image_settings(), "method": method, "preset": preset, "overrides": overrides, "seed": self.seed + draw}
        return DownscaleSettings(**fields, device=self.device)


def modcrop(img: DecodedImage, s: int) -> DecodedImage:
    h, w = img.height - img.height % s, img.width - img.width % s
    return DecodedImage(img.pixels[:, :h, :w], None, img.bit_depth, img.source_mode, img.name)


def _finite_mean(values: list[float]) -> float | None:
    """Mean of the finite values; None when there are none (never NaN)."""
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if finite else None


def evaluate(cfg: EvalSettings, *, progress=None) -> dict[str, object]:  # noqa: ANN001
    """Run the protocol; returns ``{"settings", "images": [...], "mean": {...}}``."""
    folder = resolve_dataset(cfg.data)
    paths = list_images(folder)[: cfg.limit]
    if not paths:
        raise FileNotFoundError(f"{folder}: no images")
    downscalers = [Downscaler(cfg.downscale_settings(draw)) for draw in range(cfg.draws)]
    s = downscalers[0].scale
    rows = []
    for path in paths:
        img = modcrop(read_image(path), s)
        per_draw = []
        fidelity: list[float] = []
        t0 = time.perf_counter()
        for ds in downscalers:
            out = ds.process(img)
            if out.optimised is None or out.plain is None:
                raise ValueError(f"{path}: {img.width}x{img.height} is too small to score (SSIM needs 11 px after cropping)")
            per_draw.append((out.optimised, out.plain, out.sidecar["changed_values"]))
            fidelity.append(float(out.sidecar["metrics"]["lr_vs_bicubic_psnr_y"]))  # type: ignore[index]
            losses = out.sidecar["losses"]
        row: dict[str, object] = {"image": path.name}
        for key in ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"):
            row[key] = statistics.fmean(getattr(o, key) for o, _, _ in per_draw)
        row["plain_psnr_y"] = statistics.fmean(p.psnr_y for _, p, _ in per_draw)
        row["gain_y"] = psnr_gain(float(row["psnr_y"]), float(row["plain_psnr_y"]))  # type: ignore[arg-type]
        row["changed_values"] = statistics.fmean(c for _, _, c in per_draw)  # type: ignore[misc]
        row["lr_psnr_bicubic"] = statistics.fmean(fidelity)  # the stored LR against the bicubic thumbnail (Y, dB)
        row["seconds"] = (time.perf_counter() - t0) / len(downscalers)
        row["losses"] = losses  # per optimisation step, last draw
        rows.append(row)
        if progress is not None:
            progress(row)
    keys = [k for k in rows[0] if k not in ("image", "losses")]
    # Means over finite values; perfect reconstructions (PSNR inf) are counted in "perfect" instead.
    mean = {k: _finite_mean([float(r[k]) for r in rows]) for k in keys}  # type: ignore[arg-type]
    mean["perfect"] = sum(1 for r in rows if math.isinf(float(r["psnr_y"])))  # type: ignore[arg-type]
    return {
        "settings": {**asdict(cfg), "data_folder": str(folder), **downscalers[0].describe(), "method": cfg.method},
        "images": rows,
        "mean": mean,
    }
