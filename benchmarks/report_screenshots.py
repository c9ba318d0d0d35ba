"""Screenshots of `hcd report`'s HTML page in a real headless browser (Debian's chromium), for the docs.

    make demo && python benchmarks/report_screenshots.py --run out/demo --out docs

Writes docs/report/report.{html,json} (the report of the run), docs/report_charts.png (table and charts) and
docs/report_pictures.png (the reconstructions of the worst images). Needs `chromium` on the PATH.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="out/demo")
    ap.add_argument("--out", default="docs")
    args = ap.parse_args()
    out = Path(args.out)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        sys.exit("chromium not found: apt-get install chromium")
    hcd = str(Path(sys.executable).parent / "hcd")
    subprocess.run([hcd, "--quiet", "report", args.run, "--out", str(out / "report")], check=True, stdout=subprocess.DEVNULL)
    page = (out / "report" / "report.html").resolve()
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "page.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,2700",
                        f"--screenshot={shot}", page.as_uri()], check=True, capture_output=True, timeout=120)  # fmt: skip
        full = Image.open(shot).convert("RGB")
    full.crop((0, 0, 1100, 1000)).save(out / "report_charts.png", optimize=True)
    full.crop((0, 1160, 1100, 1700)).save(out / "report_pictures.png", optimize=True)
    print(f"wrote {out / 'report'}/report.html, {out / 'report_charts.png'}, {out / 'report_pictures.png'}")


if __name__ == "__main__":
    main()
