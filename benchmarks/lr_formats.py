"""Rate and distortion of stored LR formats: bits per HR pixel against the Y-PSNR users get (#16).

    python -m benchmarks.lr_formats --data Set5 --scale 2 --out /tmp/rd.json     # irn-x2: plain, pixel HCD, HCD in the JPEG file
    bash benchmarks/rd_all.sh                                                   # the committed runs (docs/eval/lr_formats-rd-*.json)

Rows, per image and mean over the set (irn-x2 / irn-x4, the field's protocol, 1 thread):
- ``HR as JPEG qQ`` / ``HR as WebP qQ``: the original image itself stored so (no downscaling), decoded (``--hr-formats``);
- ``bicubic LR, FMT qQ, bicubic up``: MATLAB-bicubic LR stored as FMT, upscaled with MATLAB bicubic;
- ``IRN plain, FMT qQ``: the model's plain LR stored as FMT, upscaled by the model;
- ``IRN + HCD, FMT qQ``: the default preset, judged as decoded (never below plain at that format);
- ``IRN + HCD in the JPEG file, jpeg qQ``: the file's DCT coefficients optimised (``jpeg_hcd``, the default for JPEG).
Bits per HR pixel = 8 x file bytes / (H x W of the HR image).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from hcd_pipeline.core.metrics import score_pair
from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
from hcd_pipeline.evaluation.evaluate import modcrop
from hcd_pipeline.io.datasets import resolve_dataset
from hcd_pipeline.io.images import list_images, read_image
from hcd_pipeline.io.lr_formats import decode_lr, encode_lr
from hcd_pipeline.models import load_model
from hcd_pipeline.models.registry import RESTORED_FORMATS, weights_file


def _series(variant: str) -> tuple[str, str]:
    """``"irn-x2 plain, jpeg q90"`` -> (``"irn-x2 plain, jpeg"``, ``"q90"``): one curve per method and format."""
    m = re.search(r" q(\d+)(?=\b|$)", variant)
    if not m:
        return variant, ""
    return (variant[: m.start()] + variant[m.end() :]).strip(), f"q{m.group(1)}"


def _charted(variant: str) -> bool:
    """The curves a reader compares (every row stays in the tables): pixel HCD lies on the plain curve for lossy
    formats (+0.01-0.03 dB); irn-xN's HCD in the file without a restorer, bicubic WebP and the step-count and judge
    variants (single points) sit between curves that are drawn; the first joint models are superseded by their v2."""
    v = re.sub(r"irn-x\d", "irn-xN", variant)
    skipped = ("irn-xN + HCD in the JPEG file", "bicubic LR, webp", "irn-xN-jpeg-joint ")
    return " + HCD, " not in v and "lr_steps=" not in v and "judge=" not in v and not v.startswith(skipped)


def chart(docs: list[dict], path: Path) -> None:
    """Rate against distortion, one panel per JSON (set means), one curve per method and format, as SVG."""
    from hcd_pipeline.report.svgplot import curve_panels

    panels = []
    for doc in docs:
        pts = [(*_series(r["variant"]), r["bpp"], r["psnr_y"]) for r in doc["summary"] if _charted(r["variant"])]
        panels.append((f"{doc['data']} x{doc['scale']}", [(re.sub(r"irn-x\d", "irn-xN", n), x, y, lab) for n, lab, x, y in pts]))
    title = "What users get per stored byte (up and left is better; labels: JPEG / WebP quality; every row: docs/results.md)"
    path.write_text(curve_panels(panels, xlabel="bits per HR pixel", ylabel="Y-PSNR (dB)", title=title, log_x=True))


def restorer_only(model: str) -> bool:
    """Whether a model (name or weights file) is its base's chain plus an LR restorer (a difference file holding only
    the restorer, as irn-x2-jpeg): its PNG and WebP LRs are then its base model's, rows not worth repeating. A joint
    codec model (its chain fine-tuned too) is not."""
    from safetensors import safe_open

    path = weights_file(model)
    if path is None:
        return False
    with safe_open(str(path), framework="pt") as fh:
        meta, keys = fh.metadata() or {}, list(fh.keys())
    return bool(meta.get("base")) and all(k.startswith("restorer.") for k in keys)


def table(docs: list[dict]) -> str:
    """One markdown table over several runs: a row per variant, per run its bits per HR pixel and Y-PSNR."""
    heads = [f"{d['data']} x{d['scale']}" for d in docs]
    # the same variant names at x2 and x4 (irn-x2 / irn-x4 -> irn-xN) so that their rows line up
    norm = [{re.sub(r"irn-x\d", "irn-xN", r["variant"]): r for r in d["summary"]} for d in docs]
    names = list(dict.fromkeys(v for n in norm for v in n))
    lines = ["| stored | " + " | ".join(f"{h}: bits/px, dB" for h in heads) + " |", "| --- |" + " --- |" * len(docs)]
    for v in names:
        cells = [f"{n[v]['bpp']:.3f}, {n[v]['psnr_y']:.2f}" if v in n else "" for n in norm]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def interpolate_log(points: list[tuple[float, float]], x: float) -> float | None:
    """y at ``x`` on a curve of (size, y) points (sizes: bits or bytes), linear in log(size) between the two
    neighbouring points; None outside the curve's range."""
    pts = sorted(points)
    for (b0, p0), (b1, p1) in zip(pts, pts[1:], strict=False):
        if b0 <= x <= b1:
            t = (math.log(x) - math.log(b0)) / ((math.log(b1) - math.log(b0)) or 1)
            return p0 + t * (p1 - p0)
    return None


def at_equal_bytes(doc: dict, series: str, bpp: float) -> float | None:
    """Y-PSNR of a curve (``series``: a variant name without its quality, e.g. ``"bicubic LR, jpeg, bicubic up"``) at
    ``bpp`` bits per HR pixel, linear in log(bpp) between its two neighbouring qualities; None outside its range."""
    return interpolate_log([(r["bpp"], r["psnr_y"]) for r in doc["summary"] if _series(r["variant"])[0] == series], bpp)


def _run_label(doc: dict, variant: str) -> str:
    """``"Set5 x2"`` plus the row's HCD settings: ``", 32 steps"``, ``", 32 steps, optimizer=adam"``."""
    settings = re.search(r"\(([^)]*)\)", variant)
    parts = [] if settings is None else [re.sub(r"^lr_steps=(\d+)$", r"\1 steps", p.strip()) for p in settings.group(1).split(",")]
    return ", ".join([f"{doc['data']} x{doc['scale']}", *parts])


def optimizer_table(docs: list[dict], quality: int = 90) -> str:
    """HCD in the file with ``optimizer=adam`` at ``quality`` against the same settings with the preset's optimiser
    (Barzilai-Borwein) at the same bytes, that curve run at more than one quality (``rd_all.sh``: q90 and q93)."""
    lines = [f"| run | model | adam, q{quality}: bits/px, dB | Barzilai-Borwein at the same bytes | adam's gain | RGB PSNR at "
             f"q{quality}: plain / Barzilai-Borwein / adam |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for d in docs:
        by_variant = {r["variant"]: r for r in d["summary"]}
        for row in d["summary"]:
            if ", optimizer=adam" not in row["variant"] or not row["variant"].endswith(f"jpeg q{quality}"):
                continue
            bb_variant = row["variant"].replace(", optimizer=adam", "")
            ref = _series(bb_variant)[0]
            v = at_equal_bytes(d, ref, row["bpp"])
            cells = ["outside its range", "-"] if v is None else [f"{v:.2f} dB", f"{row['psnr_y'] - v:+.2f} dB"]
            plain = by_variant.get(re.sub(r" \+ HCD in the JPEG file \([^)]*\)", " plain", row["variant"]), {})
            rgb = [r.get("psnr_rgb") for r in (plain, by_variant.get(bb_variant, {}), row)]  # absent in runs before RGB was kept
            cells.append(" / ".join("-" if x is None else f"{x:.2f}" for x in rgb))
            model = row["variant"].split(" + HCD")[0]
            head = f"| {_run_label(d, row['variant'])} | {model} | {row['bpp']:.3f}, {row['psnr_y']:.2f} | "
            lines.append(head + " | ".join(cells) + " |")
    return "\n".join(lines)


def equal_bytes_table(docs: list[dict], quality: int = 90) -> str:
    """For each run, each codec model (irn-xN-jpeg, irn-xN-jpeg-joint) with HCD in the JPEG file at ``quality``
    against other curves at the same bytes: what its extra bytes would buy if spent on a higher JPEG quality instead."""
    lines = [f"| run | model + HCD in the file, q{quality}: bits/px, dB | vs bicubic LR + bicubic up | vs irn-xN plain | "
             "vs the same model plain | vs the HR itself as JPEG |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for d in docs:
        n = f"irn-x{d['scale']}"
        tail = " + HCD in the JPEG file"
        for row in d["summary"]:
            model = row["variant"].split(tail)[0]
            if tail not in row["variant"] or not model.startswith(f"{n}-jpeg") or not row["variant"].endswith(f"jpeg q{quality}"):
                continue
            cells = []
            for ref in ("bicubic LR, jpeg, bicubic up", f"{n} plain, jpeg", f"{model} plain, jpeg", "HR as JPEG"):
                v = at_equal_bytes(d, ref, row["bpp"])
                cells.append("outside its range" if v is None else f"{row['psnr_y'] - v:+.2f} dB")
            head = f"| {_run_label(d, row['variant'])} | {model.replace(n, 'irn-xN')}: {row['bpp']:.3f}, {row['psnr_y']:.2f} | "
            lines.append(head + " | ".join(cells) + " |")
    return "\n".join(lines)


def _label(model: str) -> str:
    """A model name as given, a weights file by its stem."""
    return Path(model).stem if model.endswith(".safetensors") else model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="Set5")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--formats", default="png:0,jpeg:90,jpeg:75,webp:90")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--models", default="",
                    help="comma list of model names or weights files (default: the scale's default); "
                    "MODEL:plain+infile gives that model its own --methods")  # fmt: skip
    ap.add_argument("--methods", default="plain,hcd,infile", help="of plain, hcd (pixel HCD), infile (HCD in the JPEG file)")
    ap.add_argument("--no-baselines", action="store_true", help="skip the HR-as-JPEG/WebP and bicubic rows")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="HCD setting for the HCD variants (e.g. lr_steps=16); repeatable; shown in their labels")  # fmt: skip
    ap.add_argument("--hr-formats", default="jpeg:50,jpeg:90", help="the HR itself stored as FMT:Q (baseline rows)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--render", default=None, help="--out JSONs to chart, comma-separated, one panel each (runs nothing)")
    ap.add_argument("--chart", default=None, help="SVG of Y-PSNR against bits per HR pixel")
    args = ap.parse_args()
    if args.render:
        docs: list[dict] = []
        for f in args.render.split(","):  # runs of the same set and scale (e.g. a step sweep) become one
            doc = json.loads(Path(f).read_text())
            same = next((d for d in docs if (d["data"], d["scale"]) == (doc["data"], doc["scale"])), None)
            if same is None:
                docs.append(doc)
            else:
                same["summary"] = same["summary"] + doc["summary"]
        if args.chart:
            chart(docs, Path(args.chart))
        print(table(docs))
        print()
        print(equal_bytes_table(docs))
        print()
        print(optimizer_table(docs))
        return
    torch.set_num_threads(1)
    s = args.scale
    bic = load_model("bicubic", scale=s)
    models = [m for m in args.models.split(",") if m] or [""]  # "": the scale's default model
    default_methods = set(args.methods.split(","))
    overrides = {k: json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v for k, v in (o.split("=", 1) for o in args.overrides)}
    # (label, methods, model settings, has a restorer) per --models entry, parsed and loaded once
    entries = []
    for spec_m in models:
        model, _, own = spec_m.partition(":")
        chosen = {"model": None, "weights": None}
        if model:
            chosen = {"model": None, "weights": model} if model.endswith(".safetensors") else {"model": model, "weights": None}
        methods = set(own.split("+")) if own else default_methods
        entries.append((_label(model) if model else "IRN", methods, chosen, bool(model) and restorer_only(model)))
    downscalers: dict[tuple[str, str], Downscaler] = {}  # one per variant and format, reused for every image
    rows = []
    for path in list_images(resolve_dataset(args.data))[: args.limit]:
        img = modcrop(read_image(path), s)
        hr = img.pixels if img.pixels.shape[0] == 3 else img.pixels.expand(3, -1, -1)
        pixels = hr.shape[-1] * hr.shape[-2]

        def add(variant: str, nbytes: int, rec: torch.Tensor, name: str = path.name, hr: torch.Tensor = hr, n: int = pixels) -> None:
            sc = score_pair(hr, rec, s)
            rows.append({"image": name, "variant": variant, "bpp": 8 * nbytes / n, "psnr_y": sc.psnr_y, "psnr_rgb": sc.psnr_rgb,
                         "seconds": 0.0})  # fmt: skip

        for spec in [] if args.no_baselines else args.hr_formats.split(","):
            fmt, q = spec.split(":")[0], int(spec.split(":")[1])
            buf = io.BytesIO()
            Image.fromarray((hr * 255).round().byte().permute(1, 2, 0).numpy()).save(buf, format=fmt.upper(), quality=q)
            add(f"HR as {'JPEG' if fmt == 'jpeg' else 'WebP'} q{q}", len(buf.getvalue()), decode_lr(buf.getvalue()))
        with torch.no_grad():
            lr_b = torch.round(bic.downscale(hr.unsqueeze(0))[0].clamp(0, 1) * 255) / 255
        for spec in args.formats.split(","):
            fmt, q = spec.split(":")[0], int(spec.split(":")[1])
            tag = fmt if fmt == "png" else f"{fmt} q{q}"
            data = encode_lr(lr_b[0], None, fmt, q or 90)
            if not args.no_baselines:
                with torch.no_grad():
                    add(f"bicubic LR, {tag}, bicubic up", len(data), bic.upscale(decode_lr(data).unsqueeze(0), None)[0].clamp(0, 1))
            variants = []
            for name, methods, chosen, has_restorer in entries:
                if has_restorer and fmt not in RESTORED_FORMATS:
                    continue  # a restorer-only model upscales other formats exactly as its base model does
                if "plain" in methods:
                    variants.append((f"{name} plain", {"method": "plain", **chosen}))
                if "hcd" in methods:
                    variants.append((f"{name} + HCD", {"codec_aware": False, **chosen}))
                if fmt == "jpeg" and "infile" in methods:
                    variants.append((f"{name} + HCD in the JPEG file", {"codec_aware": True, **chosen}))
            for label, kw in variants:
                if overrides and kw.get("method") != "plain":
                    kw = {**kw, "overrides": overrides}
                    label = f"{label} ({', '.join(f'{k}={v}' for k, v in overrides.items())})"
                if (label, spec) not in downscalers:
                    downscalers[label, spec] = Downscaler(DownscaleSettings(scale=s, lr_format=fmt, lr_quality=q or 90, **kw))  # type: ignore[arg-type]
                ds = downscalers[label, spec]
                t0 = time.perf_counter()
                out = ds.process(img)
                dt = time.perf_counter() - t0
                rows.append({"image": path.name, "variant": f"{label}, {tag}", "bpp": 8 * len(out.data) / pixels,
                             "psnr_y": out.optimised.psnr_y, "psnr_rgb": out.optimised.psnr_rgb, "seconds": round(dt, 2)})  # fmt: skip
        print(f"{path.name} done", file=sys.stderr, flush=True)
    summary = []
    for v in dict.fromkeys(r["variant"] for r in rows):
        sel = [r for r in rows if r["variant"] == v]
        summary.append({"variant": v, "bpp": round(statistics.fmean(r["bpp"] for r in sel), 3),
                        "psnr_y": round(statistics.fmean(r["psnr_y"] for r in sel), 3),
                        "psnr_rgb": round(statistics.fmean(r["psnr_rgb"] for r in sel), 3),
                        "s_per_image": round(statistics.fmean(r["seconds"] for r in sel), 2)})  # fmt: skip
    print("| variant | bits per HR pixel | Y-PSNR (dB) | RGB PSNR (dB) | s/image |\n| --- | --- | --- | --- | --- |")
    for r in summary:
        print(f"| {r['variant']} | {r['bpp']:.3f} | {r['psnr_y']:.3f} | {r['psnr_rgb']:.3f} | {r['s_per_image']:.2f} |")
    if args.out:
        doc = {"command": "python -m benchmarks.lr_formats " + " ".join(sys.argv[1:]), "scale": s, "data": args.data,
               "summary": summary, "rows": rows}  # fmt: skip
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        if args.chart:
            chart([doc], Path(args.chart))


if __name__ == "__main__":
    main()
