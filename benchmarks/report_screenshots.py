"""Screenshots of `hcd report`'s HTML page in a real headless browser (Debian's chromium), for the docs.

    make demo && python -m benchmarks.report_screenshots --run out/demo --rows 2000 --out docs

Writes docs/report/report.{html,json} (the report of the run), docs/report_charts.png (header, table and charts),
docs/report_pictures.png (the stored LR beside the bicubic thumbnail, reconstructions and error maps of the worst
images), and, with --rows N, the same page for a synthetic run output of N rows (scores drawn around the demo's, no
pictures: the charts at archive size) as docs/report_charts_<N>.png. Needs `chromium` on the PATH.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image


def _shoot(browser: str, page: Path, size: tuple[int, int]) -> Image.Image:
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "page.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={size[0]},{size[1]}",
                        f"--screenshot={shot}", page.resolve().as_uri()], check=True, capture_output=True, timeout=180)  # fmt: skip
        return Image.open(shot).convert("RGB")


def _synthetic_run(root: Path, n: int, seed: int = 0) -> None:
    """A run output of ``n`` scored rows (no pictures): plain Y-PSNR 26-42 dB, gains as HCD's default gives on
    photos (+0.2 to +1.2 dB, a few kept plain at 0)."""
    from hcd_pipeline.pipeline.schema import rows_to_table

    rng = np.random.default_rng(seed)
    plain = rng.uniform(26, 42, n)
    gain = np.clip(rng.normal(0.7, 0.25, n) - 0.01 * (plain - 34), 0, None)
    gain[rng.random(n) < 0.02] = 0.0
    now = datetime.now(UTC)
    rows = [{"key": f"photos/{i:06d}.jpg", "status": "ok", "model": "irn-x2", "scale": 2, "method": "hcd", "preset": "default",
             "plain_psnr_y": float(p), "psnr_y": float(p + g), "gain_y": float(g), "ssim_y": 0.95, "plain_ssim_y": 0.94,
             "plain_psnr_rgb": float(p - 1), "psnr_rgb": float(p - 1 + 0.8 * g), "kept": "plain" if g == 0 else "optimised",
             "device": "cuda:NVIDIA H100", "seconds": float(rng.uniform(0.2, 0.4)), "lr_psnr_bicubic": float(rng.uniform(42, 48)),
             "width": 1024, "height": 768, "lr_format": "png", "lr_bytes": int(rng.uniform(3e5, 5e5)), "run_id": "r1",
             "finished_at": now} for i, (p, g) in enumerate(zip(plain, gain, strict=True))]  # fmt: skip
    (root / "metrics" / "parts").mkdir(parents=True)
    pq.write_table(rows_to_table(rows), root / "metrics" / "parts" / "r1-00000.parquet")
    (root / "job.json").write_text(json.dumps({"input": "s3://archive/photos/", "layout": 2,
                                               "settings": {"model": "irn-x2", "scale": 2, "method": "hcd", "seed": 0}}))  # fmt: skip
    (root / "runs").mkdir()
    (root / "runs" / "r1.json").write_text(json.dumps({"run_id": "r1", "items": n, "skipped": 0, "done": n, "failed": 0,
                                                       "seconds": round(n / 3.1, 1), "images_per_second": 3.1}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="out/demo")
    ap.add_argument("--rows", type=int, default=0, help="also a synthetic run of this many rows (0: none)")
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    out = Path(args.out)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        sys.exit("chromium not found: apt-get install chromium")
    hcd = str(Path(sys.executable).parent / "hcd")
    subprocess.run([hcd, "--quiet", "report", args.run, "-o", str(out / "report")], check=True, stdout=subprocess.DEVNULL)
    full = _shoot(browser, out / "report" / "report.html", (1400, 3200))
    text = (out / "report" / "report.html").read_text()
    full.crop((0, 0, 1400, 1250)).save(out / "report_charts.png", optimize=True)
    full.crop((0, 1250, 1400, 1900)).save(out / "report_pictures.png", optimize=True)
    wrote = [out / "report" / "report.html", out / "report_charts.png", out / "report_pictures.png"]
    if args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            _synthetic_run(run, args.rows)
            subprocess.run([hcd, "--quiet", "report", str(run), "-o", str(Path(tmp) / "rep")], check=True, stdout=subprocess.DEVNULL)
            big = _shoot(browser, Path(tmp) / "rep" / "report.html", (1400, 1400))
        big.crop((0, 0, 1400, 1250)).save(out / f"report_charts_{args.rows}.png", optimize=True)
        wrote.append(out / f"report_charts_{args.rows}.png")
    print("wrote " + ", ".join(map(str, wrote)) + f" ({len(text)} bytes of HTML)")


if __name__ == "__main__":
    main()
