"""The report's pictures: HR, plain and HCD reconstructions of an image side by side, with a zoomed crop.

Rebuilt from what a run stored: the source (``source_uri``), the stored LR and its sidecar (``lr_uri``): the plain
LR is downscaled again with the sidecar's model, and both LRs are upscaled with the sidecar's seed and z policy
(:func:`~hcd_pipeline.downscaler.upscale_lr`), exactly as the run scored them. The crop is where HCD reduced the
error most (or the centre when it changed nothing).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from hcd_pipeline.core.metrics import psnr, rgb_to_y, to_uint8_levels
from hcd_pipeline.downscaler import Downscaler, DownscaleSettings, bicubic_thumbnail, lr_fidelity, upscale_lr
from hcd_pipeline.io.images import decode_image
from hcd_pipeline.io.lr_formats import DEFAULT_QUALITY, decode_lr
from hcd_pipeline.io.storage import StorageOptions, open_uri

__all__ = ["Comparison", "rebuild", "comparison_html", "CROP", "ZOOM", "ERROR_GAIN"]

CROP = 48
"""Side of the zoomed crop in HR pixels."""
ZOOM = 3
"""Display magnification of the crop (nearest neighbour, so pixels stay visible)."""
ERROR_GAIN = 8
"""Error maps show |reconstruction - HR| on Y times this (an error of 32 levels is white)."""
LR_SIDE = 256
"""Largest side of the stored LR and the bicubic thumbnail shown at 1x (larger ones are cropped to their centre)."""


@dataclass
class Comparison:
    """HR and the two reconstructions as float (C, H, W) in [0, 1], the crop's top-left corner, Y-PSNRs (dB); the
    stored LR and the MATLAB bicubic thumbnail of the source (3, h, w) in [0, 1] and their Y-PSNR against each other."""

    key: str
    hr: torch.Tensor
    plain: torch.Tensor
    hcd: torch.Tensor
    crop_yx: tuple[int, int]
    psnr_plain: float
    psnr_hcd: float
    lr: torch.Tensor | None = None
    bicubic_lr: torch.Tensor | None = None
    lr_vs_bicubic: float | None = None


def _read(uri: str, options: StorageOptions | None) -> bytes:
    fs, path = open_uri(uri, options)
    with fs.open(path, "rb") as fh:
        return fh.read()


def _best_crop(hr: torch.Tensor, plain: torch.Tensor, hcd: torch.Tensor, side: int) -> tuple[int, int]:
    """Top-left of the side x side window where HCD's squared error fell most below plain's."""
    h, w = hr.shape[-2:]
    side = min(side, h, w)
    gain = ((plain - hr) ** 2 - (hcd - hr) ** 2).sum(0, keepdim=True).unsqueeze(0)
    sums = F.avg_pool2d(gain, side, stride=max(1, side // 4))
    if float(sums.max()) <= 0:
        return (h - side) // 2, (w - side) // 2
    i = int(sums.flatten().argmax())
    stride = max(1, side // 4)
    return (i // sums.shape[-1]) * stride, (i % sums.shape[-1]) * stride


def rebuild(row: dict[str, Any], options: StorageOptions | None = None, cache: dict[str, Downscaler] | None = None) -> Comparison:
    """The comparison for one metric row (needs ``source_uri`` and ``lr_uri`` readable). Raises on any failure."""
    src = decode_image(_read(str(row["source_uri"]), options), str(row["source_uri"]))
    lr_uri = str(row["lr_uri"])
    lr = decode_image(_read(lr_uri, options), lr_uri)
    side = json.loads(_read(lr_uri.rsplit(".", 1)[0] + ".json", options))
    if str(side["model"]).startswith("file:"):
        raise ValueError(f"{lr_uri}: made with a weights file ({side['model']}); the report rebuilds shipped models only")
    cache = {} if cache is None else cache
    fmt, quality = str(side.get("lr_format", "png")), int(side.get("lr_quality") or DEFAULT_QUALITY)
    name = f"{side['model']}:{side['seed']}:{fmt}:{quality}"
    if name not in cache:
        cache[name] = Downscaler(DownscaleSettings(model=side["model"], method="plain", seed=int(side["seed"]), lr_format=fmt,
                                                   lr_quality=quality))  # fmt: skip
    ds = cache[name]
    if ds.weights_hash != side.get("weights_sha256"):
        raise ValueError(f"{lr_uri}: the installed {side['model']} weights differ from those that made it")
    plain_lr = decode_lr(ds.process(src, metrics=False).data)  # the plain LR's file as users decode it (JPEG / WebP)
    kw = {
        "seed": int(side["seed"]),
        "decode": str(side["decode_z"]),
        "source_size": tuple(side["source_size"]),
        "channels": src.pixels.shape[0],
    }
    rec_plain = upscale_lr(ds.model, plain_lr, **kw)  # type: ignore[arg-type]
    rec_hcd = upscale_lr(ds.model, lr.pixels[:3], **kw)  # type: ignore[arg-type]
    hr = to_uint8_levels(src.pixels) / 255
    rec_plain, rec_hcd = to_uint8_levels(rec_plain) / 255, to_uint8_levels(rec_hcd) / 255
    s = ds.scale

    def y_psnr(rec: torch.Tensor) -> float:
        return psnr(rgb_to_y(hr * 255), rgb_to_y(rec * 255), s)

    hr_levels = torch.round(hr * 255).to(torch.uint8)
    thumbnail = bicubic_thumbnail(hr_levels, s)  # shown, and what the stored LR's distance is measured against
    stored = lr.pixels[:3]
    fid = lr_fidelity(hr_levels, torch.round(stored * 255).to(torch.uint8), s, thumbnail=thumbnail)
    return Comparison(str(row["key"]), hr, rec_plain, rec_hcd, _best_crop(hr, rec_plain, rec_hcd, CROP), y_psnr(rec_plain), y_psnr(rec_hcd),
                      stored, (thumbnail / 255).float(), fid)  # fmt: skip


def _png(t: torch.Tensor, box: tuple[int, int, int] | None = None, max_side: int | None = None) -> str:
    arr = (t.clamp(0, 1) * 255).round().to(torch.uint8)
    arr = arr.expand(3, -1, -1) if arr.shape[0] == 1 else arr[:3]
    im = Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy())
    scale = 1.0
    if max_side and max(im.size) > max_side:
        scale = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
    if box is not None:
        y, x, side = box
        ImageDraw.Draw(im).rectangle([x * scale, y * scale, (x + side) * scale, (y + side) * scale], outline=(255, 0, 0), width=2)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def comparison_html(c: Comparison, gain: float | None = None) -> str:
    """A row of figures: the HR with the crop marked; the stored LR and the bicubic thumbnail at 1x; the crop of HR,
    plain and HCD at ``ZOOM``x; the plain and HCD errors of the crop (:func:`_error`)."""
    y, x = c.crop_yx
    side = min(CROP, c.hr.shape[-2], c.hr.shape[-1])
    crops = [(label, t[:, y : y + side, x : x + side]) for label, t in
             (("HR", c.hr), (f"plain (image: {c.psnr_plain:.2f} dB)", c.plain), (f"HCD (image: {c.psnr_hcd:.2f} dB)", c.hcd))]  # fmt: skip
    px = side * ZOOM
    figs = [f'<figure><img alt="HR" src="data:image/png;base64,{_png(c.hr, (y, x, side), 220)}"><figcaption>{html.escape(c.key)}'
            f"{'' if gain is None else f' ({gain:+.3f} dB)'}</figcaption></figure>"]  # fmt: skip
    if c.lr is not None and c.bicubic_lr is not None:
        fid = "identical" if c.lr_vs_bicubic is None or c.lr_vs_bicubic == float("inf") else f"{c.lr_vs_bicubic:.1f} dB apart"
        for label, t in ((f"stored LR, 1x ({fid})", c.lr), ("bicubic thumbnail, 1x", c.bicubic_lr)):
            h, w = t.shape[-2:]
            t = t[:, max(0, (h - LR_SIDE) // 2) :, max(0, (w - LR_SIDE) // 2) :][:, :LR_SIDE, :LR_SIDE]  # the centre of a large LR
            figs.append(f'<figure><img alt="{html.escape(label)}" width="{t.shape[-1]}" height="{t.shape[-2]}" '
                        f'src="data:image/png;base64,{_png(t)}"><figcaption>{html.escape(label)}</figcaption></figure>')  # fmt: skip
    hr_crop = crops[0][1]
    errors = [(f"{name} error, {ERROR_GAIN}x", _error(t, hr_crop)) for name, t in (("plain", crops[1][1]), ("HCD", crops[2][1]))]
    for label, t in (*crops, *errors):
        figs.append(f'<figure><img alt="{html.escape(label)}" width="{px}" height="{px}" style="image-rendering:pixelated" '
                    f'src="data:image/png;base64,{_png(t)}"><figcaption>{html.escape(label)}</figcaption></figure>')  # fmt: skip
    return '<div class="cmp">' + "".join(figs) + "</div>"


def _error(rec: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """|rec - hr| on Y (BT.601 luma, in [0, 1]) times :data:`ERROR_GAIN`, as a gray image (1, h, w)."""

    def luma(t: torch.Tensor) -> torch.Tensor:
        return t if t.shape[0] == 1 else rgb_to_y(t[:3] * 255) / 255

    return ((luma(rec) - luma(hr)).abs() * ERROR_GAIN).clamp(0, 1).reshape(1, *rec.shape[-2:])
