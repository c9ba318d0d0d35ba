"""Quality reports from the Parquet metric tables of one or more runs.

:func:`build_report` returns plain numbers (counts, per model/scale/method statistics, worst and best
images); :func:`render_html` makes a self-contained page (inline SVG plots, LR thumbnails as data URIs)
that a browser opens from disk. Plotting needs no extra library.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from .pipeline.runner import read_metrics
from .storage import StorageOptions, open_uri

__all__ = ["load_tables", "build_report", "format_text", "render_html", "STAT_COLUMNS"]

STAT_COLUMNS = ("psnr_y", "plain_psnr_y", "gain_y", "ssim_y", "plain_ssim_y", "seconds")


def load_tables(uris: list[str], options: StorageOptions | None = None) -> pa.Table:
    """Final rows of every run output in ``uris`` (one row per output and key)."""
    tables = []
    for uri in uris:
        t = read_metrics(uri, options)
        tables.append(t.append_column("run_output", pa.array([uri] * t.num_rows, pa.string())))
    return pa.concat_tables(tables) if tables else pa.table({})


def _stats(values: list[float]) -> dict[str, float]:
    """n, mean, median, p5, p95 of the finite values; ``n_inf``: infinite ones (perfect reconstructions: PSNR
    ``inf``; a gain of ``+inf`` is a perfect reconstruction where plain was not), left out of the statistics.
    An empty group has ``n = 0`` and no statistics."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    arr = np.asarray([v for v in present if math.isfinite(v)], dtype=np.float64)
    n_inf = len(present) - int(arr.size)
    if arr.size == 0:
        return {"n": 0, "n_inf": n_inf}
    return {
        "n": int(arr.size),
        "n_inf": n_inf,
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "p5": float(np.percentile(arr, 5)),
        "p95": float(np.percentile(arr, 95)),
    }


def _reason(error: str | None) -> str:
    return (error or "unknown").split(":", 1)[0]


def build_report(table: pa.Table, worst: int = 10) -> dict[str, Any]:
    """Counts, per-group statistics of :data:`STAT_COLUMNS`, and the worst / best images by gain.

    ``table`` holds final rows (one per image), e.g. from :func:`load_tables`.
    """
    data = table.to_pylist()
    ok = [r for r in data if r["status"] == "ok"]
    failed = [r for r in data if r["status"] != "ok"]
    # Grouped by the weights too: two trainings of one model name must not be pooled.
    groups: dict[tuple[str, str, int, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        groups[(r["model"], r.get("weights_sha256") or "", r["scale"], r["method"], r["preset"])].append(r)
    per_group = []
    for (model, weights, scale, method, preset), rs in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        per_group.append(
            {
                "model": model,
                "weights_sha256": weights or None,
                "scale": scale,
                "method": method,
                "preset": preset,
                **{c: _stats([r[c] for r in rs]) for c in STAT_COLUMNS},
            }  # fmt: skip
        )
    scored = sorted((r for r in ok if r["gain_y"] is not None and not math.isnan(r["gain_y"])), key=lambda r: r["gain_y"])
    pick = ("key", "run_output", "source_uri", "lr_uri", "plain_psnr_y", "psnr_y", "gain_y", "ssim_y", "width", "height")
    return {
        "counts": {
            "images": len(data),
            "done": len(ok),
            "failed": len(failed),
            "failed_by_reason": dict(Counter(_reason(r["error"]) for r in failed)),
        },
        "groups": per_group,
        "worst": [{k: r.get(k) for k in pick} for r in scored[:worst]],
        "best": [{k: r.get(k) for k in pick} for r in scored[::-1][:worst]],
        "failures": [{"key": r["key"], "error": r["error"]} for r in failed],
        # Charts plot finite values only; perfect reconstructions are counted in the groups' n_inf.
        "points": [
            {"key": r["key"], "plain": r["plain_psnr_y"], "hcd": r["psnr_y"], "gain": r["gain_y"]}
            for r in scored
            if all(v is not None and math.isfinite(v) for v in (r["plain_psnr_y"], r["psnr_y"], r["gain_y"]))
        ],
    }


def model_label(group: dict[str, Any]) -> str:
    """``model@<first 6 hex of the weights hash>``: tells two weights of one model name apart."""
    w = group.get("weights_sha256")
    return f"{group['model']}@{w[:6]}" if w and w != "none" else str(group["model"])


def format_text(report: dict[str, Any]) -> str:
    """The report as the terminal table ``hcd report`` prints."""
    c = report["counts"]
    lines = [f"images {c['images']}: {c['done']} done, {c['failed']} failed"]
    lines += [f"  failed ({reason}): {n}" for reason, n in sorted(c["failed_by_reason"].items())]
    head = f"{'model':19s} {'x':>2s} {'method':7s} {'preset':9s} {'n':>5s}  {'stat':6s} "
    head += f"{'PSNR-Y':>8s} {'plain':>8s} {'gain':>7s} {'SSIM-Y':>7s} {'s/img':>7s}"
    lines.append(head)
    for g in report["groups"]:
        for stat in ("mean", "median", "p5", "p95"):
            cells = " ".join(
                f"{g[col].get(stat, float('nan')):{w}.{p}f}"
                for col, w, p in (("psnr_y", 8, 3), ("plain_psnr_y", 8, 3), ("gain_y", 7, 3), ("ssim_y", 7, 4), ("seconds", 7, 2))
            )
            lines.append(f"{model_label(g):19s} {g['scale']:>2} {g['method']:7s} {g['preset']:9s} {g['psnr_y']['n']:5d}  {stat:6s} {cells}")
    if report["worst"]:
        lines.append("worst images by gain:")
        lines += [f"  {w['gain_y']:+.3f} dB  {w['key']}  ({w['plain_psnr_y']:.2f} -> {w['psnr_y']:.2f})" for w in report["worst"]]
    return "\n".join(lines)


def _thumb(uri: str | None, options: StorageOptions | None, size: int = 160) -> str:
    if not uri:
        return ""
    try:
        fs, path = open_uri(uri, options)
        with fs.open(path, "rb") as fh:
            im = Image.open(io.BytesIO(fh.read()))
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
    except (OSError, ValueError) as exc:
        return f"<span>(thumbnail unavailable: {html.escape(str(exc))})</span>"
    return f'<img alt="LR" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def render_html(report: dict[str, Any], options: StorageOptions | None = None, *, compare: int = 3) -> str:
    """A self-contained HTML page of the report (works offline: inline SVG charts, images as data URIs).

    ``compare``: for this many of the worst and of the best images, HR / plain / HCD reconstructions side by side
    with a zoomed crop, rebuilt from the source and the stored LR (:mod:`.report_images`); the rest as LR
    thumbnails.
    """
    from .report_images import ZOOM, comparison_html, rebuild
    from .svgplot import histogram, scatter

    cache: dict[str, Any] = {}
    esc = html.escape
    c = report["counts"]
    group_rows = "".join(
        f"<tr><td>{esc(model_label(g))}</td><td>x{g['scale']}</td><td>{esc(str(g['method']))}</td><td>{esc(str(g['preset']))}</td>"
        f"<td>{g['psnr_y']['n']}</td>"
        + "".join(
            f"<td>{g[col].get('mean', float('nan')):.3f} / {g[col].get('median', float('nan')):.3f} / "
            f"{g[col].get('p5', float('nan')):.3f} / {g[col].get('p95', float('nan')):.3f}</td>"
            for col in ("psnr_y", "gain_y", "ssim_y", "seconds")
        )
        + "</tr>"
        for g in report["groups"]
    )

    def thumb(it: dict[str, Any], note: str = "") -> str:
        return (f"<figure>{_thumb(it['lr_uri'], options)}<figcaption>{esc(str(it['key']))}<br>{it['plain_psnr_y']:.2f} &rarr; "
                f"{it['psnr_y']:.2f} dB ({it['gain_y']:+.3f}){note}</figcaption></figure>")  # fmt: skip

    def gallery(items: list[dict[str, Any]]) -> str:
        parts = []
        for i, it in enumerate(items):
            if i < compare:
                try:
                    parts.append(comparison_html(rebuild(it, options, cache), it["gain_y"]))
                    continue
                except Exception as exc:  # noqa: BLE001 - a picture that cannot be rebuilt must not lose the report
                    parts.append(thumb(it, f"<br>(reconstructions unavailable: {esc(type(exc).__name__)}: {esc(str(exc))[:160]})"))
                    continue
            parts.append(thumb(it))
        return "".join(parts)

    gains = [p["gain"] for p in report["points"]]
    hist = histogram(gains, xlabel="gain over plain downscaling, Y-PSNR (dB)", ylabel="images", mark=0.0)
    plot = scatter(
        [(p["plain"], p["hcd"]) for p in report["points"]],
        xlabel="plain: Y-PSNR of the reconstruction (dB)",
        ylabel="HCD: Y-PSNR of the reconstruction (dB)",
        diagonal=True,
        names=[str(p["key"]) for p in report["points"]],
    )

    failures = "".join(f"<li><code>{esc(f['key'])}</code>: {esc(str(f['error']))}</li>" for f in report["failures"][:200])
    reasons = ", ".join(f"{esc(k)}: {v}" for k, v in c["failed_by_reason"].items()) or "none"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>hcd report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 6px}}
figure{{display:inline-block;margin:6px;text-align:center;font-size:12px;vertical-align:top}}
.cmp{{border-bottom:1px solid #ddd;padding:4px 0}}</style></head><body>
<h1>HCD quality report</h1>
<p>{c["images"]} images: {c["done"]} done, {c["failed"]} failed (by reason: {reasons}).</p>
<h2>Per model, scale and method</h2><p>cells: mean / median / 5th / 95th percentile</p>
<table><tr><th>model</th><th>scale</th><th>method</th><th>preset</th><th>n</th><th>Y-PSNR (dB)</th><th>gain over plain (dB)</th>
<th>SSIM-Y</th><th>seconds/image</th></tr>{group_rows}</table>
<h2>Gain over plain downscaling</h2><p>One bar per gain interval; the dashed line is no gain. Perfect reconstructions
(infinite PSNR) are counted in the table's n, not plotted.</p>{hist}
<h2>Plain vs HCD, per image</h2><p>Points above the dashed line gained; hover for the image.</p>{plot}
<h2>Worst images by gain</h2><p>The first {compare}: the source with the crop marked, then HR, plain and HCD reconstructions
of the crop at {ZOOM}x (where HCD reduced the error most).</p>{gallery(report["worst"])}
<h2>Best images by gain</h2>{gallery(report["best"])}
<h2>Failures</h2><ul>{failures or "<li>none</li>"}</ul>
</body></html>
"""
