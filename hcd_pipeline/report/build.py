"""Quality reports from the Parquet metric tables of one or more runs.

:func:`build_report` returns plain numbers (counts, per model/scale/method statistics, worst and best
images); :func:`render_html` makes a self-contained page (inline SVG plots, LR thumbnails as data URIs)
that a browser opens from disk. Plotting needs no extra library.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from hcd_pipeline.core.errors import SettingsError, StorageError
from hcd_pipeline.io.storage import Storage, StorageOptions, open_uri
from hcd_pipeline.pipeline.keys import input_root, inside
from hcd_pipeline.pipeline.runner import read_metrics
from hcd_pipeline.pipeline.settings import recorded_model

__all__ = ["load_tables", "run_info", "build_report", "format_text", "render_html", "stored_label", "STAT_COLUMNS", "REPORT_COLUMNS"]

STAT_COLUMNS = ("psnr_y", "plain_psnr_y", "gain_y", "ssim_y", "plain_ssim_y", "seconds", "lr_psnr_bicubic")
"""Per-group statistics; ``lr_psnr_bicubic`` is the stored LR's Y-PSNR against the bicubic thumbnail (``inf``, left
out of the statistics and counted in ``n_inf``, when the LR is that thumbnail)."""


# What a report reads: a projection, so that tables of millions of rows load only these columns.
REPORT_COLUMNS = ("key", "status", "error", "finished_at", "model", "weights_sha256", "scale", "method", "preset",
                  "lr_format", "lr_quality", "lr_bytes", "source_uri", "lr_uri", "width", "height", "kept", "device", "run_id",
                  "psnr_rgb", "plain_psnr_rgb", *STAT_COLUMNS)  # fmt: skip
MAX_POINTS = 5000  # per-image points kept for the charts (evenly spaced by gain beyond this)
MAX_FAILURES = 1000  # failed rows listed (all are counted)


def load_tables(uris: list[str], options: StorageOptions | None = None, columns: Sequence[str] | None = REPORT_COLUMNS) -> pa.Table:
    """Final rows of every run output in ``uris`` (one row per output and key), only ``columns`` (None: all).

    A URI that holds no metric table (``metrics.parquet`` or ``metrics/parts/``) raises
    :class:`~hcd_pipeline.core.errors.SettingsError`: a mistyped path is not an empty report.
    """
    tables = []
    for uri in uris:
        st = Storage(uri, options)
        if not (st.exists("metrics.parquet") or st.exists("metrics/parts")):
            raise SettingsError(f"{uri}: no run output here (neither metrics.parquet nor metrics/parts/)")
        t = read_metrics(uri, options, columns=None if columns is None else list(columns))
        tables.append(t.append_column("run_output", pa.array([uri] * t.num_rows, pa.string())))
    return pa.concat_tables(tables) if tables else pa.table({})


_RUN_FIELDS = ("run_id", "items", "skipped", "done", "failed", "seconds", "images_per_second")


def run_info(uris: list[str], options: StorageOptions | None = None) -> list[dict[str, Any]]:
    """The report's header, one entry per run output: its input and settings (``job.json``) and its runs
    (``runs/<id>.json``: counts, seconds, images/s), oldest first. What cannot be read is left out, never an error."""
    info = []
    for uri in uris:
        st = Storage(uri, options)
        entry: dict[str, Any] = {"output": uri, "input": None, "settings": {}, "runs": []}
        try:
            job = json.loads(st.read("job.json"))
            settings = {k: v for k, v in (job.get("settings") or {}).items() if k != "hcd"}
            if "model" in settings:  # as this release names it (earlier releases recorded None for the default)
                resolved = recorded_model(settings.get("model"), settings.get("scale"), settings.get("weights"))
                settings["model"], settings["scale"] = resolved
            entry.update(input=job.get("input"), settings=settings)
        except (OSError, ValueError, StorageError, AttributeError):
            pass
        try:
            for key in sorted(k for k in st.iter_keys("runs") if k.endswith(".json")):
                r = json.loads(st.read(key))
                entry["runs"].append({k: r.get(k) for k in _RUN_FIELDS})
        except (OSError, ValueError, StorageError, AttributeError):
            pass
        info.append(entry)
    return info


def _floats(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A numeric column as float64, nulls as NaN."""
    return np.asarray(pc.fill_null(pc.cast(col, pa.float64()), math.nan).to_numpy(zero_copy_only=False), dtype=np.float64)


def _stats(values: np.ndarray) -> dict[str, float]:
    """n, mean, median, p5, p95 of the finite values; ``n_inf``: infinite ones (perfect reconstructions: PSNR
    ``inf``; a gain of ``+inf`` is a perfect reconstruction where plain was not), left out of the statistics.
    Missing values (null, NaN) are left out. An empty group has ``n = 0`` and no statistics."""
    present = values[~np.isnan(values)]
    finite = present[np.isfinite(present)]
    n_inf = int(present.size - finite.size)
    if finite.size == 0:
        return {"n": 0, "n_inf": n_inf}
    return {
        "n": int(finite.size),
        "n_inf": n_inf,
        "mean": float(finite.mean()),
        "median": float(np.median(finite)),
        "p5": float(np.percentile(finite, 5)),
        "p95": float(np.percentile(finite, 95)),
    }


def _reason(error: str | None) -> str:
    return (error or "unknown").split(":", 1)[0]


# Grouped by the weights too (two trainings of one model name must not be pooled) and by the stored format and
# quality (a JPEG q90 run and a PNG run of one model differ by several dB).
_GROUP_COLUMNS = ("model", "weights_sha256", "scale", "method", "preset", "lr_format", "lr_quality")
_PICK = ("key", "run_output", "source_uri", "lr_uri", "plain_psnr_y", "psnr_y", "gain_y", "ssim_y", "width", "height", "lr_psnr_bicubic")


def build_report(table: pa.Table, worst: int = 10, *, max_points: int = MAX_POINTS, max_failures: int = MAX_FAILURES) -> dict[str, Any]:
    """Counts, per-group statistics of :data:`STAT_COLUMNS`, and the worst / best images by gain.

    ``table`` holds final rows (one per image), e.g. from :func:`load_tables` (at least :data:`REPORT_COLUMNS`).
    Column-wise (numpy over Arrow columns, no per-row Python objects), so a table of millions of rows costs a few
    arrays. ``points`` (for the charts) holds every scored image up to ``max_points``, else that many evenly spaced
    by gain (``points_total`` says how many there were); ``failures`` lists the first ``max_failures`` failed rows.
    """
    if table.num_rows and "run_output" not in table.column_names:
        table = table.append_column("run_output", pa.nulls(table.num_rows, pa.string()))
    is_ok = pc.fill_null(pc.equal(table["status"], "ok"), False) if table.num_rows else pa.array([], pa.bool_())
    ok, failed = table.filter(is_ok), table.filter(pc.invert(is_ok))
    keyed = ok.select(list(_GROUP_COLUMNS))
    # Files before schema 3 stored PNG only; no weights hash is one group.
    keyed = keyed.set_column(1, "weights_sha256", pc.fill_null(keyed["weights_sha256"], ""))
    keyed = keyed.set_column(5, "lr_format", pc.fill_null(keyed["lr_format"], "png"))
    per_group = []
    for g in sorted(keyed.group_by(list(_GROUP_COLUMNS)).aggregate([]).to_pylist(), key=lambda d: tuple(str(d[c]) for c in _GROUP_COLUMNS)):
        mask = None
        for c in _GROUP_COLUMNS:
            col = keyed[c]
            m = pc.is_null(col) if g[c] is None else pc.fill_null(pc.equal(col, pa.scalar(g[c], col.type)), False)
            mask = m if mask is None else pc.and_(mask, m)
        rows = ok.filter(mask)
        bits = 8 * _floats(rows["lr_bytes"]) / (_floats(rows["width"]) * _floats(rows["height"]))
        gain_rgb = _floats(rows["psnr_rgb"]) - _floats(rows["plain_psnr_rgb"])
        per_group.append({**g, "weights_sha256": g["weights_sha256"] or None, **{c: _stats(_floats(rows[c])) for c in STAT_COLUMNS},
                          "bits_per_px": _stats(bits), "gain_rgb": _stats(gain_rgb),
                          # the no-harm rule's count: images whose stored LR is the plain one (nothing beat it)
                          "kept_plain": int(pc.sum(pc.fill_null(pc.equal(rows["kept"], "plain"), False)).as_py() or 0),
                          "devices": dict(Counter(str(d) for d in rows["device"].to_pylist() if d is not None))})  # fmt: skip
    gain = _floats(ok["gain_y"]) if ok.num_rows else np.zeros(0)
    scored = np.flatnonzero(~np.isnan(gain))
    scored = scored[np.argsort(gain[scored], kind="stable")]  # stable: equal gains keep the table's order

    def picked(idx: np.ndarray) -> list[dict[str, Any]]:
        return ok.take(pa.array(idx, pa.int64())).select(list(_PICK)).to_pylist() if idx.size else []

    plain, hcd = (_floats(ok[c]) if ok.num_rows else np.zeros(0) for c in ("plain_psnr_y", "psnr_y"))
    drawn = scored[np.isfinite(plain[scored]) & np.isfinite(hcd[scored]) & np.isfinite(gain[scored])]
    total_points = int(drawn.size)
    if drawn.size > max_points:
        drawn = drawn[np.unique(np.round(np.linspace(0, drawn.size - 1, max_points)).astype(np.int64))]
    keys = ok["key"].take(pa.array(drawn, pa.int64())).to_pylist() if drawn.size else []
    errors = failed["error"].to_pylist()
    return {
        "counts": {
            "images": table.num_rows,
            "done": ok.num_rows,
            "failed": failed.num_rows,
            "failed_by_reason": dict(Counter(_reason(e) for e in errors)),
        },
        "groups": per_group,
        "worst": picked(scored[:worst]),
        "best": picked(scored[::-1][:worst]),
        "failures": [{"key": k, "error": e} for k, e in zip(failed["key"].to_pylist()[:max_failures], errors[:max_failures], strict=True)],
        # Charts plot finite values only; perfect reconstructions are counted in the groups' n_inf.
        "points": [
            {"key": k, "plain": float(plain[i]), "hcd": float(hcd[i]), "gain": float(gain[i])} for k, i in zip(keys, drawn, strict=True)
        ],
        "points_total": total_points,
    }


def model_label(group: dict[str, Any]) -> str:
    """``model@<first 6 hex of the weights hash>``: tells two weights of one model name apart."""
    w = group.get("weights_sha256")
    return f"{group['model']}@{w[:6]}" if w and w != "none" else str(group["model"])


def stored_label(group: dict[str, Any]) -> str:
    """The stored LR's format and quality: ``png``, ``jpeg q90``."""
    fmt, q = group.get("lr_format") or "png", group.get("lr_quality")
    return f"{fmt} q{q}" if q is not None and fmt != "png" else str(fmt)


def format_text(report: dict[str, Any]) -> str:
    """The report as the terminal table ``hcd report`` prints."""
    c = report["counts"]
    lines = []
    for r in report.get("runs", []):
        s = r["settings"]
        what = f"model {s['model']} x{s.get('scale')}" if s.get("model") else f"weights {s.get('weights')}"
        lines.append(f"{r['input'] or '?'} -> {r['output']}: {what}, {s.get('method', '?')}"
                     f"{', ' + s['lr_format'] if s.get('lr_format') else ''}; {len(r['runs'])} run(s)")  # fmt: skip
        for run in r["runs"][-3:]:
            lines.append(f"  run {run['run_id']}: {run['done']} done, {run['failed']} failed, {run['skipped']} skipped, "
                         f"{run['seconds']} s, {run['images_per_second']} img/s")  # fmt: skip
    lines.append(f"images {c['images']}: {c['done']} done, {c['failed']} failed")
    lines += [f"  failed ({reason}): {n}" for reason, n in sorted(c["failed_by_reason"].items())]
    head = f"{'model':19s} {'x':>2s} {'method':7s} {'preset':9s} {'stored':8s} {'n':>5s}  {'stat':6s} "
    head += f"{'PSNR-Y':>8s} {'plain':>8s} {'gain':>7s} {'SSIM-Y':>7s} {'s/img':>7s} {'bits/px':>7s} {'LR/bic':>7s}"
    lines.append(head)
    cols = (("psnr_y", 8, 3), ("plain_psnr_y", 8, 3), ("gain_y", 7, 3), ("ssim_y", 7, 4), ("seconds", 7, 2), ("bits_per_px", 7, 3),
            ("lr_psnr_bicubic", 7, 2))  # fmt: skip
    for g in report["groups"]:
        for stat in ("mean", "median", "p5", "p95"):
            # a statistic a group lacks (no finite values, or a column older files lack) prints as "-"
            cells = " ".join(f"{v:{w}.{p}f}" if (v := g.get(col, {}).get(stat)) is not None else f"{'-':>{w}s}" for col, w, p in cols)
            lines.append(
                f"{model_label(g):19s} {g['scale']:>2} {g['method']:7s} {g['preset']:9s} {stored_label(g):8s} {g['psnr_y']['n']:5d}  "
                f"{stat:6s} {cells}"
            )
    for g in report["groups"]:
        rgb = g.get("gain_rgb", {}).get("mean")
        lines.append(f"{model_label(g)} x{g['scale']} {g['method']} {stored_label(g)}: {g.get('kept_plain', 0)} of {g['psnr_y']['n']} "
                     f"kept the plain LR (nothing beat it); mean RGB gain {'-' if rgb is None else f'{rgb:+.3f} dB'}")  # fmt: skip
    if report["worst"]:
        lines.append("worst images by gain:")
        lines += [f"  {w['gain_y']:+.3f} dB  {w['key']}  ({w['plain_psnr_y']:.2f} -> {w['psnr_y']:.2f})" for w in report["worst"]]
    return "\n".join(lines)


def readable_roots(run_output: str | None, options: StorageOptions | None) -> list[str]:
    """Where a report may read pictures of a run: its output, and the input that its ``job.json`` records.

    A metric table is data that anyone may have written: a row's ``lr_uri`` or ``source_uri`` pointing at a web
    server or at a private file elsewhere is never opened (the report would fetch it and embed it in the page).
    """
    if not run_output:
        return []
    roots = [run_output]
    try:
        job = json.loads(Storage(run_output, options).read("job.json"))
        if isinstance(job, dict) and isinstance(job.get("input"), str):
            roots.append(input_root(job["input"]))
    except (OSError, ValueError, StorageError):
        pass  # no job.json (a table copied elsewhere): the output only
    return roots


def readable(uri: str | None, roots: list[str]) -> bool:
    """Whether ``uri`` is a local path or object-store URI under one of ``roots`` (never http:// and the like)."""
    if not uri or ("://" in uri and uri.split("://", 1)[0] not in ("s3", "s3a", "file")):
        return False
    return any(inside(uri, r) for r in roots)


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


def _run_html(r: dict[str, Any]) -> str:
    """The header of one run output: where from, where to, with what, and its runs."""
    esc = html.escape
    shown = ("model", "scale", "weights", "method", "seed", "threads", "lr_format", "lr_quality", "device")
    what = ", ".join(f"{k} {esc(str(v))}" for k, v in r["settings"].items() if v is not None and k in shown)
    runs = "".join(
        f"<tr><td>{esc(str(x['run_id']))}</td><td>{x['done']}</td><td>{x['failed']}</td><td>{x['skipped']}</td>"
        f"<td>{x['seconds']}</td><td>{x['images_per_second']}</td></tr>"
        for x in r["runs"]
    )
    head = "<tr><th>run</th><th>done</th><th>failed</th><th>skipped</th><th>seconds</th><th>images/s</th></tr>"
    where = f"<b>{esc(str(r['input'] or '?'))}</b> &rarr; <b>{esc(r['output'])}</b>"
    return f"<p>{where}: {what or 'settings unknown (no job.json)'}</p><table>{head}{runs}</table>"


def render_html(report: dict[str, Any], options: StorageOptions | None = None, *, compare: int = 3) -> str:
    """A self-contained HTML page of the report (works offline: inline SVG charts, images as data URIs).

    ``compare``: for this many of the worst and of the best images, HR / plain / HCD reconstructions side by side
    with a zoomed crop, rebuilt from the source and the stored LR (:mod:`.pictures`); the rest as LR
    thumbnails.
    """
    from hcd_pipeline.report.pictures import ERROR_GAIN, ZOOM, comparison_html, rebuild
    from hcd_pipeline.report.svgplot import histogram, scatter

    cache: dict[str, Any] = {}
    esc = html.escape
    c = report["counts"]
    group_rows = "".join(
        f"<tr><td>{esc(model_label(g))}</td><td>x{g['scale']}</td><td>{esc(str(g['method']))}</td><td>{esc(str(g['preset']))}</td>"
        f"<td>{esc(stored_label(g))}</td><td>{g['psnr_y']['n']}</td>"
        + "".join(
            "<td>"
            + " / ".join(f"{v:.3f}" if (v := g.get(col, {}).get(st)) is not None else "-" for st in ("mean", "median", "p5", "p95"))
            + "</td>"
            for col in ("psnr_y", "gain_y", "gain_rgb", "ssim_y", "seconds", "bits_per_px", "lr_psnr_bicubic")
        )
        + f"<td>{g.get('kept_plain', 0)}</td><td>{esc(', '.join(f'{d} ({n})' for d, n in g.get('devices', {}).items()) or '-')}</td>"
        + "</tr>"
        for g in report["groups"]
    )
    header = "".join(_run_html(r) for r in report.get("runs", []))

    roots: dict[str | None, list[str]] = {}

    def allowed(it: dict[str, Any], *cols: str) -> bool:
        if it.get("run_output") not in roots:
            roots[it.get("run_output")] = readable_roots(it.get("run_output"), options)
        return all(readable(it.get(c), roots[it.get("run_output")]) for c in cols)

    outside = "<span>(not read: the picture lies outside the run's output and input)</span>"

    def thumb(it: dict[str, Any], note: str = "") -> str:
        pic = _thumb(it["lr_uri"], options) if allowed(it, "lr_uri") else outside
        return (f"<figure>{pic}<figcaption>{esc(str(it['key']))}<br>{it['plain_psnr_y']:.2f} &rarr; "
                f"{it['psnr_y']:.2f} dB ({it['gain_y']:+.3f}){note}</figcaption></figure>")  # fmt: skip

    def gallery(items: list[dict[str, Any]]) -> str:
        parts = []
        for i, it in enumerate(items):
            if i < compare and allowed(it, "lr_uri", "source_uri"):
                try:
                    parts.append(comparison_html(rebuild(it, options, cache), it["gain_y"]))
                    continue
                except Exception as exc:  # noqa: BLE001 - a picture that cannot be rebuilt must not lose the report
                    parts.append(thumb(it, f"<br>(reconstructions unavailable: {esc(type(exc).__name__)}: {esc(str(exc))[:160]})"))
                    continue
            parts.append(thumb(it))
        return "".join(parts)

    gains = [p["gain"] for p in report["points"]]
    n_pts, n_all = len(report["points"]), report.get("points_total", len(report["points"]))
    sample = f" A sample of {n_pts} of the {n_all} images, evenly spaced by gain." if n_all > n_pts else ""
    hist = histogram(gains, xlabel="gain over plain downscaling, Y-PSNR (dB)", ylabel="images", mark=0.0)
    # Gain against the plain PSNR (not HCD against plain: at thousands of images that is one diagonal line).
    plot = scatter(
        [(p["plain"], p["gain"]) for p in report["points"]],
        xlabel="plain downscaling: Y-PSNR of the reconstruction (dB)",
        ylabel="gain of HCD over plain, Y-PSNR (dB)",
        hline=0.0,
        names=[str(p["key"]) for p in report["points"]],
        width=640,
        height=380,
    )

    failures = "".join(f"<li><code>{esc(f['key'])}</code>: {esc(str(f['error']))}</li>" for f in report["failures"][:200])
    reasons = ", ".join(f"{esc(k)}: {v}" for k, v in c["failed_by_reason"].items()) or "none"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>hcd report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 6px}}
figure{{display:inline-block;margin:6px;text-align:center;font-size:12px;vertical-align:top}}
.cmp{{border-bottom:1px solid #ddd;padding:4px 0}}</style></head><body>
<h1>HCD quality report</h1>
{header}
<p>{c["images"]} images: {c["done"]} done, {c["failed"]} failed (by reason: {reasons}).</p>
<h2>Per model, scale, method and stored format</h2><p>cells: mean / median / 5th / 95th percentile</p>
<table><tr><th>model</th><th>scale</th><th>method</th><th>preset</th><th>stored as</th><th>n</th><th>Y-PSNR (dB)</th>
<th>gain over plain (dB)</th><th>RGB gain (dB)</th><th>SSIM-Y</th><th>seconds/image</th><th>bits per HR pixel</th>
<th title="Y-PSNR of the stored LR against the MATLAB bicubic downscale; - when it is that thumbnail">LR vs bicubic (dB)</th>
<th title="images whose stored LR is the plain one: no iterate beat it (the no-harm rule)">kept plain</th><th>device</th></tr>
{group_rows}</table>
<h2>Gain over plain downscaling</h2><p>One bar per gain interval; the dashed line is no gain. Perfect reconstructions
(infinite PSNR) are counted in the table's n, not plotted.{sample}</p>{hist}
<h2>Gain against plain quality, per image</h2><p>Points above the dashed line gained (the no-harm rule keeps every
point on or above it); hover for the image.{sample}</p>{plot}
<h2>Worst images by gain</h2><p>The first {compare}: the source with the crop marked; the stored LR at 1x beside the standard
bicubic thumbnail, with their Y-PSNR against each other; the crop of HR, plain and HCD reconstructions at {ZOOM}x (where HCD
reduced the error most) and their errors against HR (absolute, Y, amplified {ERROR_GAIN}x: black is no error).</p>
{gallery(report["worst"])}
<h2>Best images by gain</h2>{gallery(report["best"])}
<h2>Failures</h2><ul>{failures or "<li>none</li>"}</ul>
</body></html>
"""
