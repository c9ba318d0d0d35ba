"""A DIV2K-sized image (2040 x 1356, a mosaic of B100 photos) through `hcd downscale` at x2 and x4.

Usage: python benchmarks/large_image.py [--out docs/eval/large_image.json]
Each scale runs `hcd downscale` in its own process and reports wall time and peak RSS (max resident set size
of the child, from getrusage). The image is built here from shared/data/B100 and not stored.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def mosaic(dest: Path) -> None:
    tiles = sorted((ROOT.parent / "shared" / "data" / "B100" / "HR").glob("*.png"))
    canvas = Image.new("RGB", (2040, 1356))
    x = y = 0
    for p in tiles:
        im = Image.open(p).convert("RGB")
        if im.width < im.height:
            im = im.rotate(90, expand=True)
        canvas.paste(im, (x, y))
        x += im.width
        if x >= 2040:
            x, y = 0, y + im.height
        if y >= 1356:
            break
    canvas.save(dest)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--scales", default="2,4")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hcd-large-"))
    src = work / "div2k_sized.png"
    mosaic(src)
    hcd = str(Path(sys.executable).parent / "hcd")
    rows = []
    for scale in (int(x) for x in args.scales.split(",")):
        t0 = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc = subprocess.run([hcd, "downscale", str(src), "-o", str(work / f"x{scale}"), "--model", f"irn-x{scale}", "--force"],
                              capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        side = json.loads((work / f"x{scale}" / "div2k_sized.json").read_text())
        rows.append({"scale": scale, "seconds": wall, "peak_rss_mib": max(peak, before) / 1024, "tile": side["tile"],
                     "plain_psnr_y": side["metrics"]["plain"]["psnr_y"], "psnr_y": side["metrics"]["optimised"]["psnr_y"]})  # fmt: skip
        print(proc.stdout.strip())
    print("| scale | seconds | peak RSS (MiB) | tile (LR px) | plain Y-PSNR | HCD Y-PSNR |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| x{r['scale']} | {r['seconds']:.0f} | {r['peak_rss_mib']:.0f} | {r['tile']} | {r['plain_psnr_y']:.3f} | {r['psnr_y']:.3f} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
