"""Batched HCD against one image at a time on the CPU, at tile sizes the pipeline uses (#13: batching must not
slow the CPU path).

    python -m benchmarks.batch_speed --sizes 128,192 --batches 1,4,8 --threads 2 --out docs/eval/batch_speed.json

For each HR size, ``max(batches)`` distinct centre crops of B100 images go through ``collaborative_downscale``
(default preset, irn-x2, one generator per item) as batches of B, all in one process, the sizes and batch
sizes interleaved over ``--rounds`` rounds; the best round is reported as images per second. B = 1 is the
one-at-a-time baseline. The LR bytes of every batched item are compared with its run alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from hcd_pipeline.hcd.optimise import collaborative_downscale
from hcd_pipeline.hcd.settings import get_preset
from hcd_pipeline.io.datasets import resolve_dataset
from hcd_pipeline.io.images import list_images, read_image
from hcd_pipeline.models import load_model


def crops(n: int, side: int, data: str) -> torch.Tensor:
    out = []
    for p in list_images(resolve_dataset(data))[:n]:
        px = read_image(p).pixels
        px = px.expand(3, -1, -1) if px.shape[0] == 1 else px
        h, w = px.shape[-2:]
        y, x = (h - side) // 2, (w - side) // 2
        out.append(px[:, y : y + side, x : x + side])
    return torch.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128,192")
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", default="B100")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("irn-x2")
    model.backward = "store"
    cfg = get_preset("default")
    sizes = [int(v) for v in args.sizes.split(",")]
    batches = [int(v) for v in args.batches.split(",")]
    n = max(batches)
    data = {s: crops(n, s, args.data) for s in sizes}
    best: dict[tuple[int, int], float] = {}
    lrs: dict[tuple[int, int], torch.Tensor] = {}
    for _ in range(args.rounds):
        for s in sizes:
            for b in batches:
                t0 = time.perf_counter()
                parts = []
                for at in range(0, n, b):
                    hr = data[s][at : at + b]
                    gens = [torch.Generator().manual_seed(0) for _ in range(hr.shape[0])]
                    parts.append(collaborative_downscale(model, hr, settings=cfg, generator=gens if b > 1 else gens[0]).lr)
                dt = time.perf_counter() - t0
                best[(s, b)] = max(best.get((s, b), 0.0), n / dt)
                lrs[(s, b)] = torch.cat(parts)
    rows = []
    for s in sizes:
        base = best[(s, 1)]
        for b in batches:
            diff = (torch.round(lrs[(s, b)] * 255) - torch.round(lrs[(s, 1)] * 255)).abs()
            row = {"hr_side": s, "batch": b, "images_per_s": round(best[(s, b)], 3), "vs_one_at_a_time": round(best[(s, b)] / base, 3),
                   "lr_values_differing_from_alone": int((diff > 0).sum()), "max_level_difference": int(diff.max())}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    doc = {"command": "python -m benchmarks.batch_speed " + " ".join(sys.argv[1:]), "images_per_size": n, "threads": args.threads,
           "preset": "default", "model": "irn-x2", "rows": rows}  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
