"""hcd report: numbers checked against a direct computation, failed rows counted by reason."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hcd_pipeline.pipeline.schema import rows_to_table
from hcd_pipeline.report.build import build_report, load_tables

HCD = str(Path(sys.executable).parent / "hcd")


def _make_run(root: Path, n_ok: int, seed: int, method: str = "hcd") -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_ok):
        plain = float(rng.uniform(28, 36))
        gain = float(rng.normal(0.4, 0.2))
        rows.append({"key": f"img{i:03d}.png", "status": "ok", "model": "irn-x2", "scale": 2, "method": method, "preset": "default",
                     "plain_psnr_y": plain, "psnr_y": plain + gain, "gain_y": gain, "ssim_y": float(rng.uniform(0.8, 0.99)),
                     "plain_ssim_y": 0.8, "seconds": float(rng.uniform(1, 3)), "run_id": "r1",
                     "finished_at": datetime.now(UTC)})  # fmt: skip
    rows.append(
        {
            "key": "bad1.png",
            "status": "failed",
            "error": "ImageReadError: bad1.png: empty file",
            "run_id": "r1",
            "finished_at": datetime.now(UTC),
        }
    )
    rows.append(
        {
            "key": "bad2.png",
            "status": "failed",
            "error": "ImageReadError: bad2.png: truncated",
            "run_id": "r1",
            "finished_at": datetime.now(UTC),
        }
    )
    rows.append({"key": "gone.png", "status": "failed", "error": "ClientError: 503", "run_id": "r1", "finished_at": datetime.now(UTC)})
    (root / "metrics" / "parts").mkdir(parents=True)
    buf = io.BytesIO()
    pq.write_table(rows_to_table(rows), buf)
    (root / "metrics" / "parts" / "r1-00000.parquet").write_bytes(buf.getvalue())
    return rows


def test_report_numbers_match_direct_computation(tmp_path):
    rows_a = _make_run(tmp_path / "a", 40, 0)
    rows_b = _make_run(tmp_path / "b", 25, 1, method="official")
    rep = build_report(load_tables([str(tmp_path / "a"), str(tmp_path / "b")]), worst=5)
    assert rep["counts"] == {"images": 71, "done": 65, "failed": 6, "failed_by_reason": {"ImageReadError": 4, "ClientError": 2}}
    by_method = {g["method"]: g for g in rep["groups"]}
    for method, rows in (("hcd", rows_a), ("official", rows_b)):
        gains = np.array([r["gain_y"] for r in rows if r["status"] == "ok"])
        g = by_method[method]["gain_y"]
        assert g["n"] == len(gains)
        assert g["mean"] == pytest.approx(gains.mean())
        assert g["median"] == pytest.approx(np.median(gains))
        assert g["p5"] == pytest.approx(np.percentile(gains, 5))
        assert g["p95"] == pytest.approx(np.percentile(gains, 95))
    all_gains = sorted(r["gain_y"] for r in rows_a + rows_b if r["status"] == "ok")
    assert [w["gain_y"] for w in rep["worst"]] == pytest.approx(all_gains[:5])
    assert [b["gain_y"] for b in rep["best"]] == pytest.approx(all_gains[::-1][:5])


def test_report_at_archive_scale_reads_a_projection_and_caps_the_points(tmp_path):
    """200,000 rows, built column-wise: the report reads only REPORT_COLUMNS (from parts and from the merged file),
    its statistics equal numpy's over all rows, and the charts get an evenly spaced sample that keeps both ends."""
    import pyarrow as pa

    from hcd_pipeline.pipeline.schema import METRICS_SCHEMA
    from hcd_pipeline.report.build import MAX_POINTS, REPORT_COLUMNS

    n = 200_000
    rng = np.random.default_rng(7)
    plain = rng.uniform(26, 38, n)
    gain = rng.normal(0.5, 0.3, n)
    status = np.where(np.arange(n) % 1000 == 999, "failed", "ok")
    cols = {"key": pa.array([f"k{i:07d}.png" for i in range(n)]), "status": pa.array(status),
            "error": pa.array([None if s == "ok" else "ImageReadError: x" for s in status]), "model": pa.array(["irn-x2"] * n),
            "scale": pa.array(np.full(n, 2, np.int32)), "method": pa.array(["hcd"] * n), "preset": pa.array(["default"] * n),
            "plain_psnr_y": pa.array(plain), "psnr_y": pa.array(plain + gain), "gain_y": pa.array(gain),
            "finished_at": pa.array([datetime(2026, 11, 27, tzinfo=UTC)] * n)}  # fmt: skip
    table = pa.table({f.name: (cols[f.name].cast(f.type) if f.name in cols else pa.nulls(n, f.type)) for f in METRICS_SCHEMA})
    for where, name in (("parts", "metrics/parts/r1-00000.parquet"), ("merged", "metrics.parquet")):
        (tmp_path / where / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp_path / where / name)
        loaded = load_tables([str(tmp_path / where)])
        assert loaded.column_names == [*REPORT_COLUMNS, "run_output"] and loaded.num_rows == n
    rep = build_report(loaded, worst=3)
    ok = status == "ok"
    assert rep["counts"] == {"images": n, "done": int(ok.sum()), "failed": n - int(ok.sum()), "failed_by_reason": {"ImageReadError": 200}}
    (g,) = rep["groups"]
    assert g["gain_y"]["n"] == ok.sum() and g["gain_y"]["median"] == pytest.approx(np.median(gain[ok]))
    assert g["psnr_y"]["p5"] == pytest.approx(np.percentile((plain + gain)[ok], 5))
    assert len(rep["points"]) == MAX_POINTS and rep["points_total"] == ok.sum()
    pts = [p["gain"] for p in rep["points"]]
    assert pts == sorted(pts) and pts[0] == gain[ok].min() and pts[-1] == gain[ok].max()
    assert [w["gain_y"] for w in rep["worst"]] == sorted(gain[ok])[:3]


def test_report_keeps_stored_formats_apart_and_states_their_bytes():
    """A PNG run and a JPEG q90 run of one model are two groups (several dB apart), each with its bits per HR pixel;
    rows from before schema 3 (no format) count as PNG."""
    from hcd_pipeline.report.build import format_text, render_html

    base = {"status": "ok", "model": "irn-x2", "scale": 2, "method": "hcd", "preset": "default", "width": 100, "height": 50,
            "plain_psnr_y": 30.0, "gain_y": 0.5, "psnr_y": 30.5}  # fmt: skip
    rows = [{**base, "key": "a.png", "lr_format": "png", "lr_bytes": 10000}, {**base, "key": "b.png"},
            {**base, "key": "c.png", "lr_format": "jpeg", "lr_quality": 90, "lr_bytes": 500, "psnr_y": 26.0},
            {**base, "key": "d.png", "lr_format": "jpeg", "lr_quality": 90, "lr_bytes": 700, "psnr_y": 27.0}]  # fmt: skip
    rep = build_report(rows_to_table(rows))
    by = {(g["lr_format"], g["lr_quality"]): g for g in rep["groups"]}
    assert set(by) == {("png", None), ("jpeg", 90)}
    assert by["png", None]["psnr_y"]["n"] == 2 and by["png", None]["bits_per_px"] == {**by["png", None]["bits_per_px"], "n": 1}
    assert by["png", None]["bits_per_px"]["mean"] == pytest.approx(8 * 10000 / 5000)
    assert by["jpeg", 90]["bits_per_px"]["mean"] == pytest.approx(8 * 600 / 5000)
    assert by["jpeg", 90]["psnr_y"]["mean"] == pytest.approx(26.5)
    text = format_text(rep)
    assert "jpeg q90" in text and "nan" not in text.lower()
    assert "<td>jpeg q90</td>" in render_html(rep, compare=0)


def test_report_cli_writes_json_and_html(tmp_path):
    _make_run(tmp_path / "a", 12, 2)
    proc = subprocess.run([HCD, "report", str(tmp_path / "a"), "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "12 done, 3 failed" in proc.stdout and "worst images by gain" in proc.stdout
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["counts"]["failed_by_reason"] == {"ImageReadError": 2, "ClientError": 1}
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "bad1.png" in page


def test_report_files_go_where_pointed_and_weights_are_not_pooled(tmp_path):
    _make_run(tmp_path / "a", 6, 3)
    # A second run of the same model name with other weights.
    rows = [{"key": f"x{i}.png", "status": "ok", "model": "irn-x2", "weights_sha256": "ab" * 32, "scale": 2, "method": "hcd",
             "preset": "default", "plain_psnr_y": 30.0, "psnr_y": 30.5, "gain_y": 0.5, "run_id": "r2",
             "finished_at": datetime.now(UTC)} for i in range(3)]  # fmt: skip
    (tmp_path / "b" / "metrics" / "parts").mkdir(parents=True)
    pq.write_table(rows_to_table(rows), tmp_path / "b" / "metrics" / "parts" / "r2-00000.parquet")
    work = tmp_path / "cwd"
    work.mkdir()
    out = tmp_path / "rep"
    proc = subprocess.run([HCD, "report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)], capture_output=True, text=True,
                          timeout=120, cwd=work)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json"] and list(work.iterdir()) == []
    groups = json.loads((out / "report.json").read_text())["groups"]
    assert sorted((g["weights_sha256"] or "", g["gain_y"]["n"]) for g in groups) == [("", 6), ("ab" * 32, 3)]
    assert "irn-x2@ababab" in proc.stdout
    # --html alone: the JSON goes beside it.
    proc = subprocess.run([HCD, "report", str(tmp_path / "a"), "--html", str(out / "x.html")], capture_output=True, text=True,
                          timeout=120, cwd=work)  # fmt: skip
    assert proc.returncode == 0 and (out / "x.json").is_file() and list(work.iterdir()) == []
    # Unasked: into the run output when it is one local folder; for several, the user must say where.
    proc = subprocess.run([HCD, "report", str(tmp_path / "b")], capture_output=True, text=True, timeout=120, cwd=work)
    assert proc.returncode == 0 and {"report.html", "report.json"} <= {p.name for p in (tmp_path / "b").iterdir()}
    proc = subprocess.run([HCD, "report", str(tmp_path / "a"), str(tmp_path / "b")], capture_output=True, text=True, timeout=120, cwd=work)
    assert proc.returncode == 1 and "-o DIR" in proc.stderr and list(work.iterdir()) == []


def test_report_pictures_rebuild_what_the_run_measured(tmp_path):
    """The worst/best pictures are rebuilt from the source and the stored LR: their PSNRs equal the rows'."""
    import re

    from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
    from hcd_pipeline.io.images import read_image
    from hcd_pipeline.report.build import render_html

    samples = Path(__file__).resolve().parents[1] / "samples"
    out = tmp_path / "run"
    (out / "lr").mkdir(parents=True)
    rows = []
    # One LR stored as PNG, one as WebP: the plain reconstruction is rebuilt from the plain LR's file in that format.
    for name, fmt in (("astronaut_crop.png", "png"), ("camera_crop_gray.png", "webp")):
        ds = Downscaler(DownscaleSettings(model="tiny-irn-x2", overrides={"lr_steps": 4}, lr_format=fmt, lr_quality=80))
        res = ds.process(read_image(samples / name))
        stem = name.rsplit(".", 1)[0]
        (out / "lr" / f"{stem}{res.ext}").write_bytes(res.data)
        (out / "lr" / f"{stem}.json").write_text(json.dumps(res.sidecar))
        rows.append({"key": name, "status": "ok", "source_uri": str(samples / name), "lr_uri": str(out / "lr" / f"{stem}{res.ext}"),
                     "model": "tiny-irn-x2", "scale": 2, "method": "hcd", "preset": "default", "plain_psnr_y": res.plain.psnr_y,
                     "psnr_y": res.optimised.psnr_y, "gain_y": res.optimised.psnr_y - res.plain.psnr_y})  # fmt: skip
    # The report reads pictures only under the run's output and the input its job.json records.
    table = rows_to_table(rows)
    table = table.append_column("run_output", pa.array([str(out)] * table.num_rows, pa.string()))
    assert 'class="cmp"' not in render_html(build_report(table, worst=2), compare=2)  # no job.json: the sources are not read
    (out / "job.json").write_text(json.dumps({"input": str(samples), "layout": 2}))
    rep = build_report(table, worst=2)
    page = render_html(rep, compare=2)
    assert page.count('class="cmp"') == 4  # two worst and two best, each HR + three crops
    for r in rows:
        shown = re.search(
            rf"{re.escape(r['key'])} \(([-+0-9.]+) dB\).*?plain \(image: ([0-9.]+) dB\).*?HCD \(image: ([0-9.]+) dB\)", page, re.S
        )
        assert shown, r["key"]
        assert float(shown.group(2)) == pytest.approx(r["plain_psnr_y"], abs=0.006)
        assert float(shown.group(3)) == pytest.approx(r["psnr_y"], abs=0.006)
    # The product itself: the stored LR at 1x beside the bicubic thumbnail, with the distance the sidecar recorded,
    # and both reconstructions' errors.
    side = json.loads((out / "lr" / "astronaut_crop.json").read_text())
    fid = side["metrics"]["lr_vs_bicubic_psnr_y"]
    assert f"stored LR, 1x ({'identical' if fid == 'inf' else f'{float(fid):.1f} dB apart'})" in page
    for label in ("bicubic thumbnail, 1x", "plain error, 8x", "HCD error, 8x"):
        assert page.count(f"<figcaption>{label}</figcaption>") == 4, label
    # An LR that cannot be read back: the report still renders, saying why.
    (out / "lr" / "astronaut_crop.json").unlink()
    page = render_html(rep, compare=2)
    assert "reconstructions unavailable" in page


def test_svg_charts_have_axes_ticks_and_counts():
    import re

    from hcd_pipeline.report.svgplot import histogram, nice_ticks, scatter, scatter_panels

    for lo, hi in ((0.61, 0.94), (-4.3, 1.2), (38.0, 41.4), (0.0, 1234.0)):
        t = nice_ticks(lo, hi)
        assert t[0] <= lo + (t[1] - t[0]) and t[-1] >= hi - (t[1] - t[0]) and 3 <= len(t) <= 12
    assert nice_ticks(0, 1, integer=True) == [0.0, 1.0]  # counts never get fractional ticks
    vals = [0.1 * i for i in range(-5, 20)] + [float("inf"), float("nan")]
    svg = histogram(vals, xlabel="gain (dB)", bins=5, mark=0.0)
    counts = [int(m) for m in re.findall(r": (\d+)</title>", svg)]
    assert sum(counts) == 25 and len(counts) == 5  # infinite and NaN values are left out
    assert "gain (dB)" in svg and ">images<" in svg and "stroke-dasharray" in svg
    sc = scatter([(30.0, 30.5), (35.0, 34.9)], xlabel="plain (dB)", ylabel="HCD (dB)", diagonal=True, names=["a", "b"])
    assert sc.count("<circle") == 2 and "<title>a: " in sc
    doc = scatter_panels([("x2", [("official", 30.0, 0.5), ("default", 6.0, 0.7)])], xlabel="s", ylabel="dB", title="t", log_x=True)
    assert doc.startswith("<?xml") and doc.count("<circle") == 4  # two points and two legend marks


def test_curve_panels_join_each_series_in_x_order():
    import re
    import xml.etree.ElementTree as ET

    from hcd_pipeline.report.svgplot import curve_panels

    pts = [("JPEG", 2.5, 43.8, "q90"), ("JPEG", 1.0, 35.9, "q50"), ("PNG", 3.8, 40.8, "")]
    doc = curve_panels([("Set5 x2", pts)], xlabel="bits per HR pixel", ylabel="Y-PSNR (dB)", title="rd", log_x=True)
    root = ET.fromstring(doc.split("\n", 1)[1])  # well-formed SVG
    assert root.tag.endswith("svg")
    lines = re.findall(r'<polyline points="([^"]+)"', doc)
    assert len(lines) == 1  # one curve with two points; the single PNG point has none
    xs = [float(p.split(",")[0]) for p in lines[0].split()]
    assert xs == sorted(xs)  # joined left to right (q50 before q90)
    assert ">q50<" in doc and ">q90<" in doc and doc.count("<circle") == 3


def test_report_header_counts_kept_plain_and_draws_gain_against_plain(tmp_path):
    """The run's header (input, output, settings, runs), the kept-plain count and RGB gain per group, and a scatter of
    gain against plain quality with the no-gain line, also when every point lies above it."""
    from hcd_pipeline.report.build import format_text, render_html, run_info

    out = tmp_path / "run"
    rows = [{"key": f"k{i}.png", "status": "ok", "model": "irn-x2", "scale": 2, "method": "hcd", "preset": "default", "run_id": "r1",
             "plain_psnr_y": 30.0 + i, "psnr_y": 30.0 + i + 0.1 * i, "gain_y": 0.1 * i, "plain_psnr_rgb": 29.0, "psnr_rgb": 29.0 + 0.2 * i,
             "kept": "plain" if i == 0 else "optimised", "device": "cpu", "finished_at": datetime.now(UTC)} for i in range(4)]  # fmt: skip
    (out / "metrics" / "parts").mkdir(parents=True)
    pq.write_table(rows_to_table(rows), out / "metrics" / "parts" / "r1-00000.parquet")
    job = {"input": "/photos", "layout": 2, "settings": {"model": None, "scale": None, "method": "hcd"}}  # as earlier releases wrote it
    (out / "job.json").write_text(json.dumps(job))
    (out / "runs").mkdir()
    (out / "runs" / "r1.json").write_text(json.dumps({"run_id": "r1", "items": 4, "skipped": 0, "done": 4, "failed": 0, "seconds": 8.0,
                                                      "images_per_second": 0.5}))  # fmt: skip
    rep = {"runs": run_info([str(out)]), **build_report(load_tables([str(out)]))}
    (g,) = rep["groups"]
    assert g["kept_plain"] == 1 and g["gain_rgb"]["mean"] == pytest.approx(0.3) and g["devices"] == {"cpu": 4}
    # The default recorded unresolved by an earlier release: the weights of that release, by their tag.
    assert rep["runs"][0]["settings"]["model"] == "irn-x2.v1" and rep["runs"][0]["runs"][0]["images_per_second"] == 0.5
    text = format_text(rep)
    assert f"/photos -> {out}: model irn-x2.v1 x2, hcd" in text and "1 of 4 kept the plain LR" in text and "+0.300 dB" in text
    page = render_html(rep)
    assert "<b>/photos</b> &rarr;" in page and "<td>r1</td><td>4</td>" in page
    svg = page[page.index("Gain against plain quality") :]
    assert 'stroke-dasharray="4"' in svg.split("</svg>")[0]  # the no-gain line, though no point lies below it
