"""What the no-harm judge costs: the default preset with the judge on every iterate, every 5th, and off.

    python -m benchmarks.judge_cost --image ../shared/data/Set5/HR/baby.png --crop 192 --rounds 2

One process, one torch thread, ``irn-x2``, a centre-offset crop; variants interleaved ``--rounds`` times;
prints seconds per image (median) and the Y-PSNR gain over plain for each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="../shared/data/Set5/HR/baby.png")
    ap.add_argument("--crop", type=int, default=192)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    import torch

    from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
    from hcd_pipeline.io.images import DecodedImage, read_image

    torch.set_num_threads(1)
    img = read_image(args.image)
    c = args.crop
    im = DecodedImage(img.pixels[:, 100 : 100 + c, 100 : 100 + c].contiguous(), None, 8, "RGB", f"{Path(args.image).stem}{c}")
    variants = {"judge every iterate": {"judge_every": 1}, "judge every 5th (default)": {}, "no judge (judge=loss)": {"judge": "loss"}}
    res: dict[str, dict[str, list[float]]] = {k: {"s": [], "gain": []} for k in variants}
    for _ in range(args.rounds):
        for name, ov in variants.items():
            ds = Downscaler(DownscaleSettings(model="irn-x2", method="hcd", overrides=ov))
            t0 = time.perf_counter()
            o = ds.process(im)
            res[name]["s"].append(time.perf_counter() - t0)
            res[name]["gain"].append(o.optimised.psnr_y - o.plain.psnr_y)
    base = statistics.median(res["no judge (judge=loss)"]["s"])
    for name, r in res.items():
        s = statistics.median(r["s"])
        print(json.dumps({"variant": name, "seconds": round(s, 2), "vs_no_judge": round(s / base, 2), "gain_db": round(r["gain"][-1], 3)}))


if __name__ == "__main__":
    main()
