"""Gain against time of HCD presets and variants, side by side on the same images in one process (#14's target).

    python -m benchmarks.preset_cost --scale 2 --sets Set5,Set14 --set-variants Set14=official,default --out docs/eval/preset_cost-x2.json
    python -m benchmarks.preset_cost --scale 4 --sets Set5,Set14 --set-variants Set14=official,default --out docs/eval/preset_cost-x4.json
    python -m benchmarks.preset_cost --render docs/eval/preset_cost-x2.json docs/eval/preset_cost-x4.json --chart docs/gain_vs_time.svg

Every image goes through every variant before the next image starts (variants interleaved per image, so that a
change of machine load hits all of them alike), 1 torch thread, the shipped model of the scale, the field's
protocol (``hcd_pipeline.evaluation.evaluate``: modcrop, Y-PSNR with border crop). Per variant: mean gain over plain
downscaling, share of images improved, worst gain, seconds per image, and the time ratio official / variant
computed per image and over the whole set.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VARIANTS: dict[str, tuple] = {
    # name: (method, preset, overrides[, other DownscaleSettings fields])
    "official": ("hcd", "official", {}),
    "adam (previous default)": ("hcd", "adam", {}),
    "default": ("hcd", "default", {}),
    "default, 4 LR steps": ("hcd", "default", {"lr_steps": 4}),
    "default, 16 LR steps": ("hcd", "default", {"lr_steps": 16}),
    "default + 2 HR steps": ("hcd", "default", {"hr_steps": 2}),
    "default, radius 4/255": ("hcd", "default", {"lr_radius": 4 / 255}),
    "default, radius 16/255": ("hcd", "default", {"lr_radius": 16 / 255}),
    "default, first step 1/255": ("hcd", "default", {"step": 1 / 255}),
    "default, judged every step": ("hcd", "default", {"judge_every": 1}),
    "default, judged every 4th": ("hcd", "default", {"judge_every": 4}),
    # The precision policy (#24): the optimisation's model calls in bfloat16 (autocast), judged in float32.
    "default, bf16": ("hcd", "default", {}, {"precision": "bf16"}),
}


def run(args: argparse.Namespace) -> dict:
    import torch

    from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
    from hcd_pipeline.evaluation.evaluate import modcrop
    from hcd_pipeline.io.datasets import resolve_dataset
    from hcd_pipeline.io.images import list_images, read_image

    torch.set_num_threads(1)
    # Variant names hold commas: with ";" in --only it separates names, else "," does (names without commas).
    wanted = args.only.split(";" if ";" in args.only else ",") if args.only else None
    names = [v for v in VARIANTS if not wanted or v in wanted]
    ds = {n: Downscaler(DownscaleSettings(scale=args.scale, method=VARIANTS[n][0], preset=VARIANTS[n][1],
                                          overrides=dict(VARIANTS[n][2]), **(VARIANTS[n][3] if len(VARIANTS[n]) > 3 else {})))
          for n in names}  # fmt: skip
    rows = []
    per_set = dict(kv.split("=", 1) for kv in args.set_variants)
    for set_name in args.sets.split(","):
        chosen = [n for n in names if set_name not in per_set or n in per_set[set_name].split(",")]
        for path in list_images(resolve_dataset(set_name))[: args.limit]:
            img = modcrop(read_image(path), args.scale)
            for n in chosen:
                t0 = time.perf_counter()
                out = ds[n].process(img)
                sec = time.perf_counter() - t0
                row = {"set": set_name, "image": path.name, "variant": n, "seconds": round(sec, 3),
                       "plain_psnr_y": out.plain.psnr_y, "psnr_y": out.optimised.psnr_y,
                       "gain_y": out.optimised.psnr_y - out.plain.psnr_y, "kept": out.sidecar["kept"]}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    return {"command": "python -m benchmarks.preset_cost " + " ".join(sys.argv[1:]), "scale": args.scale,
            "model": next(iter(ds.values())).model_name, "variants": {n: VARIANTS[n] for n in names},
            "rows": rows, "summary": summarise(rows)}  # fmt: skip


def summarise(rows: list[dict]) -> list[dict]:
    """Per set (and all sets) and variant: gain distribution, time, time ratio against official."""
    out = []
    sets = sorted({r["set"] for r in rows}) + ["all"]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    for s in sets:
        sel = [r for r in rows if s in ("all", r["set"])]
        official = {(r["set"], r["image"]): r["seconds"] for r in sel if r["variant"] == "official"}
        for v in variants:
            vr = [r for r in sel if r["variant"] == v]
            if not vr:
                continue  # a variant not run on this set (--set-variants)
            gains = [r["gain_y"] for r in vr]
            secs = [r["seconds"] for r in vr]
            entry = {"set": s, "variant": v, "images": len(vr), "mean_gain_db": round(statistics.fmean(gains), 4),
                     "share_improved": round(sum(g > 0 for g in gains) / len(gains), 3), "worst_gain_db": round(min(gains), 4),
                     "below_plain": sum(g < 0 for g in gains), "s_per_image": round(statistics.fmean(secs), 3)}  # fmt: skip
            paired = [r for r in vr if (r["set"], r["image"]) in official]
            if paired:
                # Over the images both ran: total official seconds / total seconds, and the median image's ratio.
                ratios = [official[(r["set"], r["image"])] / r["seconds"] for r in paired]
                entry["official_time_ratio"] = round(
                    sum(official[(r["set"], r["image"])] for r in paired) / sum(r["seconds"] for r in paired), 2
                )
                entry["official_time_ratio_median_image"] = round(statistics.median(ratios), 2)
            out.append(entry)
    return out


def chart(docs: list[dict], path: Path) -> None:
    """Gain vs seconds per image, one panel per scale, on the set where every variant ran, as a self-contained SVG."""
    from hcd_pipeline.report.svgplot import scatter_panels

    panels = []
    for doc in docs:
        counts = {s: len({r["variant"] for r in doc["rows"] if r["set"] == s}) for s in dict.fromkeys(r["set"] for r in doc["rows"])}
        full = max(counts, key=lambda s: counts[s])  # the set that ran every variant (the others ran fewer)
        pts = [(r["variant"], r["s_per_image"], r["mean_gain_db"]) for r in doc["summary"] if r["set"] == full]
        panels.append((f"x{doc['scale']} ({doc['model']}), {full}", pts))
    path.write_text(scatter_panels(panels, xlabel="seconds per image (1 thread)", ylabel="mean Y-PSNR gain over plain (dB)",
                                   title="HCD presets: gain against time (up and left is better)", log_x=True))  # fmt: skip


def table(docs: list[dict]) -> str:
    """The runs' tables as results.md shows them (``python -m benchmarks.bench --render-only`` renders the same section)."""
    try:
        from benchmarks.sections import preset_cost_section
    except ImportError:  # run as a file
        from sections import preset_cost_section  # type: ignore[no-redef]

    return "\n".join(preset_cost_section(docs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--sets", default="Set5,Set14")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set")
    ap.add_argument("--only", default=None, help="variant names, separated by ';' (or ',' when no name has a comma)")
    ap.add_argument("--set-variants", nargs="*", default=[], metavar="SET=V1,V2", help="only these variants on that set")
    ap.add_argument("--out", default=None)
    ap.add_argument("--render", nargs="*", default=None, help="JSON files to chart and tabulate (runs nothing)")
    ap.add_argument(
        "--from-rows",
        nargs=2,
        metavar=("LOG", "COMMAND"),
        default=None,
        help="rebuild --out from the rows a run printed (LOG) and its command line (runs nothing)",
    )
    ap.add_argument("--chart", default=None)
    args = ap.parse_args()
    if args.from_rows:
        rows = [json.loads(line) for line in Path(args.from_rows[0]).read_text().splitlines() if line.startswith("{")]
        names = dict.fromkeys(r["variant"] for r in rows)
        doc = {"command": args.from_rows[1], "scale": args.scale, "model": f"irn-x{args.scale}",
               "variants": {n: VARIANTS[n] for n in names}, "rows": rows, "summary": summarise(rows)}  # fmt: skip
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        print(table([doc]))
        return
    if args.render:
        docs = [json.loads(Path(p).read_text()) for p in args.render]
        if args.chart:
            chart(docs, Path(args.chart))
        print(table(docs))
        return
    doc = run(args)
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v) + "\n")
    print(table([doc]))


if __name__ == "__main__":
    main()
