"""Measure HCD settings against the official preset on whole sets (docs/hcd.md).

Usage: python -m benchmarks.hcd_presets --model irn-x2 --data Set5 [--weights W] [--draws 1] --out docs/eval/presets-x2.json
Every variant is the ``default`` preset with the listed overrides, or ``official``; all run in one process,
so times are comparable. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time

from hcd_pipeline.evaluation.evaluate import EvalSettings, evaluate

VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "official": ("official", {}),
    "official, decode z=0": ("official", {"decode": "zero"}),
    "default": ("default", {}),
    "default, z fresh per pass": ("default", {"z_opt": "fresh"}),
    "default, rounding in LR loop": ("default", {"lr_round": True}),
    "default, no rounding in LR loop": ("default", {"lr_round": False, "keep_best": False}),
    "default, PGD image ball 0.3": (
        "default",
        {"optimizer": "pgd", "budget": "image", "hr_radius": 0.3, "lr_radius": 0.3, "step": 20 / 255},
    ),
    "default, 0 HR + 25 LR": ("default", {"hr_steps": 0, "lr_steps": 25}),
    "default, 15 HR + 15 LR": ("default", {"hr_steps": 15, "lr_steps": 15}),
    "default, step 0.5/255": ("default", {"step": 0.5 / 255}),
    "default, step 2/255": ("default", {"step": 2 / 255}),
    "default, radius 4/255": ("default", {"hr_radius": 4 / 255, "lr_radius": 4 / 255}),
    "default, radius 16/255": ("default", {"hr_radius": 16 / 255, "lr_radius": 16 / 255}),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="irn-x2")
    ap.add_argument("--scale", type=int, default=None)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--data", default="Set5")
    ap.add_argument("--draws", type=int, default=1)
    ap.add_argument("--decode", default=None, choices=["draw", "zero"], help="force the decoder z policy of every variant")
    ap.add_argument("--only", nargs="*", default=None, help="variant names to run")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    results = {}
    print("| variant | Y-PSNR | gain over plain | SSIM-Y | s/image |")
    print("| --- | --- | --- | --- | --- |")
    for name, (preset, over) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        over = dict(over)
        if args.decode:
            over["decode"] = args.decode
        t0 = time.perf_counter()
        res = evaluate(EvalSettings(model=args.model if not args.weights else None, scale=args.scale, weights=args.weights, data=args.data,
                                    method="hcd", preset=preset, draws=args.draws, overrides=dict(over)))  # fmt: skip
        m = res["mean"]
        results[name] = {"preset": preset, "overrides": over, "mean": m, "wall_s": time.perf_counter() - t0, "images": res["images"]}
        print(f"| {name} | {m['psnr_y']:.3f} | {m['gain_y']:+.3f} | {m['ssim_y']:.4f} | {m['seconds']:.2f} |", flush=True)
    with open(args.out, "w") as fh:
        json.dump({"args": vars(args), "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
