"""HCD in the JPEG file: which coefficient optimiser, and what its bits term is worth at equal bytes (#16).

    python -m benchmarks.jpeg_optimizers --out docs/eval/jpeg_optimizers.json            # about 25 min on 1 core

Centre crops (240 x 240) of the first ``--n`` Set14 images, x2, ``irn-x2-jpeg-joint``, 1 thread. Rows: the plain
file at several JPEG qualities (the model's plain LR; the flat curve a user gets by raising the quality), ``bb`` (the
preset's optimiser) at 8 and 32 steps and at several qualities (its rate-distortion curve), and ``adam`` with
``jpeg_hcd.RATE_WEIGHT`` set to 0 / 0.05 / 0.2 / 0.5 / 1.0 at q90 (0.2 is the shipped weight), and adam without its
chroma term (``jpeg_hcd.CHROMA_WEIGHT`` 0). Each row: mean Y-PSNR and RGB PSNR of the decoded file upscaled, mean
file bytes, seconds per image; ``vs_bb_equal_bytes``: dB over ``bb`` (32 steps)
interpolated at the row's bytes between its qualities (log bytes), the fair comparison, since an optimiser that only
spends more bytes moves along that curve.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from benchmarks.lr_formats import interpolate_log
from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
from hcd_pipeline.hcd import jpeg_file as jpeg_hcd
from hcd_pipeline.io.datasets import resolve_dataset
from hcd_pipeline.io.images import decode_image, list_images

MODEL = "irn-x2-jpeg-joint"
BB_QUALITIES = (85, 88, 90, 93)


def _crops(n: int, side: int) -> list:  # noqa: ANN001
    """The first n Set14 images' centre crops, decoded as the service gets them."""
    out = []
    for path in list_images(resolve_dataset("Set14"))[:n]:
        im = Image.open(path).convert("RGB")
        left, top = (im.width - side) // 2, (im.height - side) // 2
        buf = io.BytesIO()
        im.crop((left, top, left + side, top + side)).save(buf, "PNG")
        out.append(decode_image(buf.getvalue(), name=Path(path).name))
    return out


def _row(crops: list, *, method: str, quality: int, steps: int = 0, optimizer: str = "bb", rate: float | None = None,  # noqa: ANN001
         chroma: float | None = None) -> dict:  # fmt: skip
    overrides: dict[str, object] = {"lr_steps": steps, "optimizer": optimizer} if method != "plain" else {}
    saved = jpeg_hcd.RATE_WEIGHT, jpeg_hcd.CHROMA_WEIGHT
    if rate is not None:
        jpeg_hcd.RATE_WEIGHT = rate  # the module constants, read at each call
    if chroma is not None:
        jpeg_hcd.CHROMA_WEIGHT = chroma
    try:
        ds = Downscaler(DownscaleSettings(model=MODEL, method=method, lr_format="jpeg", lr_quality=quality, overrides=overrides, threads=1))
        db, rgb, size, secs = [], [], [], []
        for im in crops:
            t0 = time.perf_counter()
            out = ds.process(im)
            secs.append(time.perf_counter() - t0)
            scores = out.optimised if method != "plain" else out.plain
            db.append(scores.psnr_y)
            rgb.append(scores.psnr_rgb)
            size.append(len(out.data))
    finally:
        jpeg_hcd.RATE_WEIGHT, jpeg_hcd.CHROMA_WEIGHT = saved
    label = "plain" if method == "plain" else f"{optimizer} {steps} steps" + (f", rate weight {rate}" if rate is not None else "")
    label += f", chroma weight {chroma}" if chroma is not None else ""
    row = {"label": label, "quality": quality, "psnr_y": statistics.fmean(db), "psnr_rgb": statistics.fmean(rgb),
           "bytes": statistics.fmean(size), "s_per_image": statistics.fmean(secs), "per_image_psnr_y": db}  # fmt: skip
    print(f"{label:34s} q{quality}  {row['psnr_y']:.3f} dB  RGB {row['psnr_rgb']:.3f}  {row['bytes']:8.0f} B  {row['s_per_image']:.1f} s",
          flush=True)  # fmt: skip
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5, help="Set14 images (their centre crops)")
    ap.add_argument("--side", type=int, default=240)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    crops = _crops(args.n, args.side)
    rows = [_row(crops, method="plain", quality=q) for q in (90, 95, 98)]
    bb = [_row(crops, method="lr", quality=q, steps=32) for q in BB_QUALITIES]
    rows += bb
    rows.append(_row(crops, method="lr", quality=90, steps=8))
    rows.append(_row(crops, method="lr", quality=90, steps=8, optimizer="adam", rate=jpeg_hcd.RATE_WEIGHT))
    for rate in (0.0, 0.05, 0.2, 0.5, 1.0):
        rows.append(_row(crops, method="lr", quality=90, steps=32, optimizer="adam", rate=rate))
    for chroma in (0.0, 0.2, 0.5):  # the shipped CHROMA_WEIGHT (0.1) is in the rows above
        rows.append(_row(crops, method="lr", quality=90, steps=32, optimizer="adam", rate=jpeg_hcd.RATE_WEIGHT, chroma=chroma))
    for r in rows:
        at = interpolate_log([(b["bytes"], b["psnr_y"]) for b in bb], r["bytes"])
        r["vs_bb_equal_bytes"] = None if at is None else r["psnr_y"] - at
    print("\nrow                                 quality   Y-PSNR  RGB PSNR    bytes  vs bb at equal bytes")
    for r in rows:
        eq = "-" if r["vs_bb_equal_bytes"] is None else f"{r['vs_bb_equal_bytes']:+.2f}"
        print(f"{r['label']:34s}  q{r['quality']}  {r['psnr_y']:7.3f} {r['psnr_rgb']:9.3f} {r['bytes']:8.0f}  {eq}")
    if args.out:
        meta = {"model": MODEL, "data": f"Set14, first {args.n} images, centre {args.side} x {args.side}", "scale": 2, "threads": 1,
                "command": "python -m benchmarks.jpeg_optimizers " + " ".join(sys.argv[1:]),
                "shipped_rate_weight": jpeg_hcd.RATE_WEIGHT, "chroma_weight": jpeg_hcd.CHROMA_WEIGHT,
                "adam_step": jpeg_hcd.ADAM_STEP}  # fmt: skip
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
