"""What a JPEG-stored LR gives back, as pictures: one crop of one image through each way of storing it (#16).

    python -m benchmarks.jpeg_pictures --image ../shared/data/Set5/HR/butterfly.png --out docs/jpeg_pictures.png

Tiles (the same crop, enlarged 3x with nearest neighbours so that pixels stay visible), each titled with the whole
image's Y-PSNR and the file's bits per HR pixel: the original; bicubic LR as JPEG + bicubic up; irn-x2's LR as JPEG,
upscaled by irn-x2; the same file upscaled by irn-x2-jpeg; irn-x2-jpeg with HCD in the JPEG file; the same with
irn-x2-jpeg-joint.v2 (its chain fine-tuned with JPEG); the same with jobs/archive-x2-jpeg.yaml's 32 Adam steps; and that
stored JPEG LR itself (enlarged 6x), which is what a website would serve.
"""

from __future__ import annotations

import argparse

import torch
from PIL import Image, ImageDraw

from hcd_pipeline.core.metrics import score_pair
from hcd_pipeline.downscaler import Downscaler, DownscaleSettings, upscale_lr
from hcd_pipeline.evaluation.evaluate import modcrop
from hcd_pipeline.io.images import read_image
from hcd_pipeline.io.lr_formats import decode_lr, encode_lr
from hcd_pipeline.models import load_model


def _tile(img: torch.Tensor, box: tuple[int, int, int], zoom: int, title: str) -> Image.Image:
    y, x, side = box
    crop = (img[:, y : y + side, x : x + side].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    pic = Image.fromarray(crop).resize((side * zoom, side * zoom), Image.NEAREST)
    out = Image.new("RGB", (pic.width, pic.height + 34), "white")
    out.paste(pic, (0, 34))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(title.split("\n")):
        draw.text((4, 2 + 15 * i), line, fill="black")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="../shared/data/Set5/HR/butterfly.png")
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--crop", default="96,96,72", help="Y,X,SIDE of the HR crop")
    ap.add_argument("--out", default="docs/jpeg_pictures.png")
    args = ap.parse_args()
    torch.set_num_threads(1)
    img = modcrop(read_image(args.image), 2)
    hr = img.pixels[:3]
    n_px = hr.shape[-1] * hr.shape[-2]
    y, x, side = (int(v) for v in args.crop.split(","))
    q = args.quality
    tiles = [_tile(hr, (y, x, side), 3, "original (HR)\n")]

    def scored(label: str, data: bytes, rec: torch.Tensor) -> None:
        psnr = score_pair(hr, rec, 2).psnr_y
        tiles.append(_tile(rec, (y, x, side), 3, f"{label}\n{psnr:.2f} dB, {8 * len(data) / n_px:.2f} bits/px"))

    bic = load_model("bicubic", scale=2)
    with torch.no_grad():
        lr_b = bic.downscale(hr.unsqueeze(0))[0][0].clamp(0, 1)
        data = encode_lr(lr_b, None, "jpeg", q)
        scored(f"bicubic LR, JPEG q{q}, bicubic up", data, bic.upscale(decode_lr(data).unsqueeze(0), None)[0].clamp(0, 1))
    plain_ds = Downscaler(DownscaleSettings(model="irn-x2", method="plain", lr_format="jpeg", lr_quality=q))
    plain = plain_ds.process(img)
    kw = {"seed": int(plain.sidecar["seed"]), "decode": str(plain.sidecar["decode_z"])}  # as the rows were scored
    scored(f"irn-x2, JPEG q{q}", plain.data, upscale_lr(plain_ds.model, decode_lr(plain.data), **kw))
    coded = Downscaler(DownscaleSettings(model="irn-x2-jpeg", lr_format="jpeg", lr_quality=q))  # its model: with the restorer
    scored("same file, irn-x2-jpeg up", plain.data, upscale_lr(coded.model, decode_lr(plain.data), **kw))
    hcd = coded.process(img)
    scored("irn-x2-jpeg + HCD in the file", hcd.data, upscale_lr(coded.model, decode_lr(hcd.data), **kw))
    joint = Downscaler(DownscaleSettings(model="irn-x2-jpeg-joint.v2", lr_format="jpeg", lr_quality=q))
    hcd = joint.process(img)
    scored("irn-x2-jpeg-joint.v2 + HCD in the file", hcd.data, upscale_lr(joint.model, decode_lr(hcd.data), **kw))
    archive = Downscaler(DownscaleSettings(model="irn-x2-jpeg-joint.v2", lr_format="jpeg", lr_quality=q,
                                           overrides={"lr_steps": 32, "optimizer": "adam", "judge": "y+rgb"}))  # fmt: skip
    hcd = archive.process(img)  # jobs/archive-x2-jpeg.yaml's settings
    scored("the same, 32 Adam steps (archive job)", hcd.data, upscale_lr(archive.model, decode_lr(hcd.data), **kw))
    lr_tile = _tile(decode_lr(hcd.data), (y // 2, x // 2, side // 2), 6, f"the stored LR (JPEG q{q})\nas served")
    tiles.append(lr_tile)
    w = sum(t.width for t in tiles) + 6 * (len(tiles) - 1)
    sheet = Image.new("RGB", (w, max(t.height for t in tiles)), "white")
    left = 0
    for t in tiles:
        sheet.paste(t, (left, 0))
        left += t.width + 6
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
