"""HCD across model families: plain / default / official per model and set, and how far the stored LR moves from
the standard bicubic thumbnail.

    python -m benchmarks.model_families --runs edsr-x2:2:Set5 edsr-x4:4:Set5 --methods plain,hcd,official \
        --out docs/eval/model_families.json
    python -m benchmarks.model_families --out docs/eval/model_families.json --table      # print the Markdown tables

Each run is MODEL:SCALE:SET[:LIMIT] (LIMIT: the first LIMIT images of the set in name order) through
``hcd_pipeline.evaluation.evaluate`` (the field's protocol: modcrop, Y-PSNR / SSIM with ``scale`` border pixels ignored).
``hcd`` is the default preset, ``official`` the original code's; ``hcd+KEY=VALUE[+KEY=VALUE]`` is the default preset
with settings changed (``hcd+lr_radius=2/255``: each LR value within 2 levels of the plain LR; a fraction or a number).
Per run and method the JSON keeps the means, the
seconds per image (on the machine named in the file), the count of images below plain (the no-harm rule: must be
0) and the stored LR's Y-PSNR against the MATLAB bicubic downscale (``lr_psnr_bicubic``: mean and worst; ``inf``
when the LR is that thumbnail). Results are written after every run and method; a rerun skips what the file has.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _summary(result: dict, seconds: float) -> dict:
    rows = result["images"]
    fid = [float(r["lr_psnr_bicubic"]) for r in rows]
    gains = [float(r["gain_y"]) for r in rows]
    return {
        "images": len(rows),
        "psnr_y": result["mean"]["psnr_y"],
        "ssim_y": result["mean"]["ssim_y"],
        "plain_psnr_y": result["mean"]["plain_psnr_y"],
        "gain_y": result["mean"]["gain_y"],
        "below_plain": sum(g < 0 for g in gains),
        "kept_plain": sum(g == 0 for g in gains),
        "seconds_per_image": seconds / max(1, len(rows)),
        "lr_psnr_bicubic_mean": (sum(_finite(fid)) / len(_finite(fid))) if _finite(fid) else "inf",
        "lr_psnr_bicubic_worst": min(fid) if fid else None,
        "per_image": [
            {"image": r["image"], "psnr_y": r["psnr_y"], "gain_y": r["gain_y"], "lr_psnr_bicubic": r["lr_psnr_bicubic"]} for r in rows
        ],  # fmt: skip
    }


def _method(name: str) -> tuple[str, tuple[tuple[str, object], ...]]:
    """``hcd+lr_radius=2/255`` -> ("hcd", (("lr_radius", 0.00784...),)); values: fractions, numbers, else text."""
    base, *pairs = name.split("+")
    overrides = []
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            parsed: object = float(Fraction(value))
        except ValueError:
            parsed = value
        overrides.append((key, parsed))
    return base, dict(overrides)


def _fmt(v: object, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) and math.isfinite(v) else str(v)


def table(doc: dict) -> str:
    """Markdown: one table per run, one row per method."""
    out = []
    for run, methods in doc["runs"].items():
        model, scale, data, *limit = run.split(":")
        n = next(iter(methods.values()))["images"]
        title = f"{model} x{scale}, {data}" + (f" (first {n} images in name order)" if limit else "")
        out += [f"#### {title}", "", "| method | Y-PSNR | SSIM-Y | gain (dB) | below plain | s/image | LR vs bicubic: mean / worst (dB) |",
                "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for method, r in methods.items():
            out.append(
                f"| {method} | {r['psnr_y']:.3f} | {r['ssim_y']:.4f} | {r['gain_y']:+.3f} | {r['below_plain']} | "
                f"{r['seconds_per_image']:.1f} | {_fmt(r['lr_psnr_bicubic_mean'], '.2f')} / {_fmt(r['lr_psnr_bicubic_worst'], '.2f')} |"
            )
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="*", default=[])
    ap.add_argument("--methods", default="plain,hcd,official")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default="docs/eval/model_families.json")
    ap.add_argument("--table", action="store_true", help="print the Markdown tables of --out and stop")
    args = ap.parse_args()
    out = Path(args.out)
    doc = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    if args.table:
        print(table(doc))
        return

    import torch

    from hcd_pipeline.evaluation.evaluate import EvalSettings, evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    doc.update(machine=f"{platform.machine()} {torch.get_num_threads()} threads, no GPU" if not torch.cuda.is_available() else "cuda",
               command="python -m benchmarks.model_families " + " ".join(sys.argv[1:]))  # fmt: skip
    for run in args.runs:
        model, scale, data, *limit = run.split(":")
        for method in args.methods.split(","):
            if method in doc["runs"].get(run, {}):
                continue
            t0 = time.perf_counter()
            base, overrides = _method(method)
            res = evaluate(EvalSettings(model=model, scale=int(scale), data=data, method=base, overrides=overrides,
                                        limit=int(limit[0]) if limit else None))  # fmt: skip
            doc["runs"].setdefault(run, {})[method] = _summary(res, time.perf_counter() - t0)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(doc, indent=1) + "\n")
            r = doc["runs"][run][method]
            print(f"{run} {method}: {r['psnr_y']:.3f} dB ({r['gain_y']:+.3f}), {r['seconds_per_image']:.1f} s/image", flush=True)


if __name__ == "__main__":
    main()
