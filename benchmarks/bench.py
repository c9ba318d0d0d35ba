"""The method comparison over sets, scales and z draws, written as docs (docs/results.md).

    python -m benchmarks.bench --sets Set5 --scales 2,4 --methods bicubic,plain,lr,hr,hcd,official --out docs
    python -m benchmarks.bench --render-only --out docs   # rewrite results.md from results.json and docs/eval/*.json

Run from the repository root (the library does not write docs: this and :mod:`benchmarks.sections` do).

Outputs in ``--out`` (default ``docs/``): ``results.md`` (tables, the command at the top), ``results.json``
(every number), PNG plots (reconstruction PSNR against iteration per method; per-image gain) and
``comparison.html`` (side-by-side crops of HR, plain and HCD reconstructions with difference maps; a static
page that a browser opens from disk).
"""

from __future__ import annotations

import base64
import io
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from benchmarks.plots import bar_chart, line_chart
from benchmarks.sections import benchmark_sections
from hcd_pipeline.core.memstats import peak_rss_mib, reset_peak_rss
from hcd_pipeline.downscaler import Downscaler, DownscaleSettings, upscale_lr
from hcd_pipeline.evaluation.evaluate import EvalSettings, evaluate
from hcd_pipeline.hcd.settings import DEFAULT_PRESET
from hcd_pipeline.io.datasets import resolve_dataset
from hcd_pipeline.io.images import atomic_write_bytes, list_images, read_image
from hcd_pipeline.models.registry import DEFAULT_MODELS

__all__ = ["BENCH_METHODS", "run_bench", "render_results"]

BENCH_METHODS = ("bicubic", "plain", "lr", "hr", "hcd", "official")


def _label(name: str) -> str:
    """A set's short name for file names and titles: ``Set5`` or the folder's name (its parent for ``HR``)."""
    p = Path(name)
    if len(p.parts) <= 1:
        return name
    return p.parent.name if p.name == "HR" else p.name


def _png_b64(x: torch.Tensor) -> str:
    arr = (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr if arr.shape[2] == 3 else arr[:, :, 0]).resize((arr.shape[1] * 2, arr.shape[0] * 2), Image.NEAREST).save(
        buf, format="PNG"
    )
    return base64.b64encode(buf.getvalue()).decode()


def _comparison(sets: list[str], scales: list[int], crop: int = 96) -> str:
    """HTML with crops of HR, plain and HCD reconstructions and amplified difference maps."""
    blocks = []
    for scale in scales:
        for name in sets:
            path = list_images(resolve_dataset(name))[0]
            img = read_image(path)
            h, w = img.height - img.height % scale, img.width - img.width % scale
            hr = img.pixels[:, :h, :w]
            recs = {}
            for method in ("plain", "hcd"):
                ds = Downscaler(DownscaleSettings(model=DEFAULT_MODELS[scale], method=method, seed=0))
                res = ds.process(type(img)(hr, None, img.bit_depth, img.source_mode, img.name), metrics=True)
                rec = upscale_lr(ds.model, res.lr, seed=0, decode=ds.hcd.decode)
                recs[method] = (torch.round(rec * 255) / 255, res.optimised)
            cy, cx = (h - crop) // 2, (w - crop) // 2
            sl = (slice(None), slice(cy, cy + crop), slice(cx, cx + crop))
            cells = [("HR", hr[sl])]
            for method in ("plain", "hcd"):
                rec, sc = recs[method]
                cells.append((f"{method} ({sc.psnr_y:.2f} dB)" if sc else method, rec[sl]))
                cells.append((f"|HR - {method}| x 8", ((rec[sl] - hr[sl]).abs() * 8).clamp(0, 1)))
            figs = "".join(
                f'<figure><img src="data:image/png;base64,{_png_b64(t)}"><figcaption>{cap}</figcaption></figure>' for cap, t in cells
            )
            blocks.append(
                f"<h2>{_label(name)} / {path.name}, x{scale} ({DEFAULT_MODELS[scale]}), centre {crop}x{crop} crop at 2x zoom</h2>{figs}"
            )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>HCD visual comparison</title><style>body{font-family:sans-serif}'
        "figure{display:inline-block;margin:4px;text-align:center;font-size:12px}img{image-rendering:pixelated}</style></head><body>"
        "<h1>Plain downscaling vs HCD: reconstructions and errors</h1>" + "".join(blocks) + "</body></html>\n"
    )


def run_bench(
    sets: list[str],
    scales: list[int],
    methods: list[str],
    draws: int,
    out: Path,
    *,
    limit: int | None = None,
    command: str = "",
    device: str = "cpu",
) -> dict[str, Any]:
    """Run every (scale, set, method), write the docs, return the numbers."""
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"command": command, "draws": draws, "runs": []}
    for scale in scales:
        for name in sets:
            curves: dict[str, list[float]] = {}
            for method in methods:
                model = "bicubic" if method == "bicubic" else DEFAULT_MODELS[scale]
                tracked = reset_peak_rss()
                t0 = time.perf_counter()
                res = evaluate(
                    EvalSettings(
                        model=model,
                        scale=scale,
                        data=name,
                        method="plain" if method == "bicubic" else method,
                        draws=draws,
                        limit=limit,
                        device=device,
                    )
                )
                wall = time.perf_counter() - t0
                images = res["images"]
                steps = max((len(r["losses"]) for r in images), default=0)  # type: ignore[index, union-attr]
                if steps:
                    curve = []
                    for k in range(steps):
                        vals = [r["losses"][k] for r in images if len(r["losses"]) > k]  # type: ignore[index]
                        curve.append(statistics.fmean(-10 * math.log10(max(v, 1e-12)) for v in vals))
                    curves[method] = curve
                run = {
                    "scale": scale,
                    "set": name,
                    "method": method,
                    "preset": DEFAULT_PRESET if method in ("lr", "hr", "hcd") else None,
                    "model": model,
                    "mean": res["mean"],
                    "images": [{k: v for k, v in r.items() if k != "losses"} for r in images],  # type: ignore[union-attr]
                    "wall_s": wall,
                    "peak_rss_mib": peak_rss_mib() if tracked else None,
                }
                results["runs"].append(run)
                m = res["mean"]
                print(
                    f"x{scale} {name:8s} {method:9s} {m['psnr_y']:.3f} dB  gain {m['gain_y']:+.3f}  {m['seconds']:.2f} s/img",
                    file=sys.stderr,
                )  # type: ignore[index]
            if curves:
                tag = f"x{scale}_{_label(name)}"
                title = f"{_label(name)} x{scale}: reconstruction PSNR (RGB, unrounded) per step"
                line_chart(
                    curves, out / f"psnr_vs_iter_{tag}.png", title=title, xlabel="optimisation step (HR steps, then LR steps)", ylabel="dB"
                )
            hcd_run = next((r for r in results["runs"] if r["scale"] == scale and r["set"] == name and r["method"] == "hcd"), None)
            if hcd_run:
                labels, gains = [r["image"] for r in hcd_run["images"]], [r["gain_y"] for r in hcd_run["images"]]
                title = f"{_label(name)} x{scale}: HCD gain over plain per image (Y-PSNR)"
                bar_chart(labels, gains, out / f"gain_x{scale}_{_label(name)}.png", title=title, ylabel="dB")
    atomic_write_bytes(out / "results.json", (json.dumps(results, indent=1) + "\n").encode())
    atomic_write_bytes(out / "comparison.html", _comparison(sets[:1], scales).encode())
    atomic_write_bytes(out / "results.md", _markdown(results, sets, scales, out).encode())
    return results


def render_results(out: Path) -> None:
    """Rewrite ``out/results.md`` from ``out/results.json`` and the benchmark JSON in ``out/eval`` (no runs)."""
    results = json.loads((out / "results.json").read_text())
    sets = list(dict.fromkeys(r["set"] for r in results["runs"]))
    scales = list(dict.fromkeys(r["scale"] for r in results["runs"]))
    atomic_write_bytes(out / "results.md", _markdown(results, sets, scales, out).encode())


def _markdown(results: dict[str, Any], sets: list[str], scales: list[int], out: Path) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Made by `{results['command']}` on this project's 2-core CPU machine; every number is in `results.json`.",
        f"Mean over the images of each set; {results['draws']} z draw(s) per image (seeds 0..). Y-PSNR / SSIM on Y with the",
        "standard protocol (see docs/quality.md). `bicubic` is the MATLAB bicubic pair; the other rows use the default IRN of the scale.",
        "Gain is over plain downscaling with the same model. Peak RSS is the process high-water mark during the row.",
        "",
    ]
    for scale in scales:
        for name in sets:
            lines += [
                f"## {name} x{scale}",
                "",
                "| method | Y-PSNR | SSIM-Y | gain (dB) | s/image | peak RSS (MiB) |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            for r in results["runs"]:
                if r["scale"] == scale and r["set"] == name:
                    m = r["mean"]
                    mem = f"{r['peak_rss_mib']:.0f}" if r["peak_rss_mib"] else "n/a"
                    # Runs record the preset the optimising methods used; older files ran the then-default `adam`.
                    label = f"{r['method']} ({r.get('preset', 'adam')})" if r["method"] in ("lr", "hr", "hcd") else r["method"]
                    lines.append(f"| {label} | {m['psnr_y']:.3f} | {m['ssim_y']:.4f} | {m['gain_y']:+.3f} | {m['seconds']:.2f} | {mem} |")
            lines += ["", f"![PSNR per step](psnr_vs_iter_x{scale}_{name}.png)", f"![gain per image](gain_x{scale}_{name}.png)", ""]
    lines += ["Visual comparison: [comparison.html](comparison.html).", ""]
    lines += benchmark_sections(out / "eval")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command line (``python -m benchmarks.bench``); returns the exit status."""
    import argparse

    from hcd_pipeline.core.errors import HcdError

    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="Set5", help="comma-separated set names or folders")
    ap.add_argument("--scales", default="2,4")
    ap.add_argument("--methods", default="bicubic,plain,lr,hr,hcd,official")
    ap.add_argument("--draws", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="only the first N images of each set")
    ap.add_argument("-o", "--output", "--out", dest="out", default="docs")
    ap.add_argument("--render-only", action="store_true", help="rewrite results.md from results.json and eval/*.json, running nothing")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    out = Path(args.out)
    try:
        if args.render_only:
            if not (out / "results.json").exists():
                raise HcdError(f"{out / 'results.json'}: not found; run without --render-only first")
            render_results(out)
            print(f"wrote {out}/results.md")
            return 0
        ms = [m.strip() for m in args.methods.split(",") if m.strip()]
        bad = [m for m in ms if m not in BENCH_METHODS]
        if bad:
            raise HcdError(f"--methods: unknown {bad}; choose from {BENCH_METHODS}")
        run_bench([s.strip() for s in args.sets.split(",")], [int(s) for s in args.scales.split(",")], ms, args.draws, out,
                  limit=args.limit, command="python -m benchmarks.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
                  device=args.device)  # fmt: skip
    except HcdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}/results.md, results.json, comparison.html and plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
