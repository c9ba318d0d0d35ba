"""Per-image gain distribution of HCD with the no-harm rule: share improved, kept plain, worst, mean.

    python -m benchmarks.no_harm --runs bicubic:2:Set14 irn-x2:2:Set5 irn-x4:4:Set5 --out docs/eval/no_harm.json
    python -m benchmarks.no_harm --merge A.json B.json --out docs/eval/no_harm.json     # join runs made apart

Each run is MODEL:SCALE:SET (a set name or folder) through ``hcd_pipeline.evaluation.evaluate`` (the field's protocol:
Y-PSNR with border crop, modcrop) with the default preset, plus the synthetic images of
``tests/test_no_harm.py`` (flat, gradient, text-like bars, noise) at 64 x 64 for each model. A row per image
gives plain and stored Y-PSNR and the gain; the summary counts images below plain (must be 0).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _synthetic(n: int = 64) -> dict:
    import torch

    g = torch.Generator().manual_seed(0)
    bars = torch.ones(3, n, n)
    bars[:, :, ::4] = 0.0
    return {
        "flat_white": torch.ones(3, n, n),
        "flat_grey": torch.full((3, n, n), 0.5),
        "gradient": torch.linspace(0, 1, n).view(1, 1, n).expand(3, n, n).clone(),
        "text_bars": bars,
        "noise": torch.rand(3, n, n, generator=g),
    }


def _summary(rows: list[dict]) -> dict:
    gains = [r["gain_y"] for r in rows]
    finite = [g for g in gains if math.isfinite(g)]
    return {
        "images": len(rows),
        "improved": sum(g > 0 for g in gains),
        "kept_plain": sum(g == 0 for g in gains),
        "below_plain": sum(g < 0 for g in gains),
        "worst_gain_db": min(finite) if finite else None,
        "mean_gain_db": sum(finite) / len(finite) if finite else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", default=["bicubic:2:Set14", "irn-x2:2:Set5", "irn-x4:4:Set5"])
    ap.add_argument("--out", default="docs/eval/no_harm.json")
    ap.add_argument("--merge", nargs="*", default=None, help="JSON files of earlier runs to join into --out (runs nothing)")
    args = ap.parse_args()
    if args.merge:
        docs = [json.loads(Path(p).read_text()) for p in args.merge]
        merged = {"command": " ; ".join(d["command"] for d in docs), "runs": [r for d in docs for r in d["runs"]]}
        Path(args.out).write_text(json.dumps(merged, indent=1) + "\n")
        print(f"wrote {args.out}")
        return
    from hcd_pipeline.core.metrics import psnr_gain
    from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
    from hcd_pipeline.evaluation.evaluate import EvalSettings, evaluate
    from hcd_pipeline.io.images import DecodedImage

    out: dict = {"command": "python -m benchmarks.no_harm " + " ".join(sys.argv[1:]), "runs": []}
    for spec in args.runs:
        model, scale, data = spec.split(":")
        t0 = time.perf_counter()
        res = evaluate(EvalSettings(model=model, scale=int(scale), data=data, method="hcd"))
        rows = [
            {"image": r["image"], "plain_psnr_y": r["plain_psnr_y"], "psnr_y": r["psnr_y"], "gain_y": r["gain_y"]} for r in res["images"]
        ]
        ds = Downscaler(DownscaleSettings(model=model, scale=int(scale), method="hcd"))
        synth = []
        for name, px in _synthetic().items():
            o = ds.process(DecodedImage(px, None, 8, "RGB", name))
            synth.append({"image": name, "plain_psnr_y": o.plain.psnr_y, "psnr_y": o.optimised.psnr_y,
                          "gain_y": psnr_gain(o.optimised.psnr_y, o.plain.psnr_y)})  # fmt: skip
        run = {"model": model, "scale": int(scale), "data": data, "seconds": round(time.perf_counter() - t0, 1),
               "summary": _summary(rows), "synthetic_summary": _summary(synth), "images": rows, "synthetic": synth}  # fmt: skip
        print(json.dumps({k: v for k, v in run.items() if k not in ("images", "synthetic")}), flush=True)
        out["runs"].append(run)
    from hcd_pipeline.io import jsonfile as jsonutil

    Path(args.out).write_text(jsonutil.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
