"""A DIV2K-sized image (2040 x 1356, a mosaic of B100 photos) through `hcd downscale` at x2 and x4.

Usage: python -m benchmarks.large_image [--out docs/eval/large_image.json] [--scales 2,4] [--layouts whole,tiled]
Each run is `hcd downscale` in its own process (default preset, --threads 2); it reports wall time and peak RSS
(max resident set size of the child, from wait4's rusage). Layouts: ``whole`` is the default command (a
DIV2K-sized image is optimised whole, with the memory-light backward); ``tiled`` adds ``--tile 192``.
The image is built here from shared/data/B100 and not stored.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

try:
    from benchmarks.sections import section
except ImportError:  # run as a file: benchmarks/ itself is the first entry of the path
    from sections import section  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]


def mosaic(dest: Path, width: int = 2040, height: int = 1356, source: Path = ROOT.parent / "shared/data/B100/HR") -> None:
    tiles = sorted(source.glob("*.png"))
    if not tiles:
        raise SystemExit(f"{source}: no PNG images to build the mosaic from (use --source)")
    canvas = Image.new("RGB", (width, height))
    x = y = 0
    for p in tiles:
        im = Image.open(p).convert("RGB")
        if im.width < im.height:
            im = im.rotate(90, expand=True)
        canvas.paste(im, (x, y))
        x += im.width
        if x >= width:
            x, y = 0, y + im.height
        if y >= height:
            break
    canvas.save(dest)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--scales", default="2,4")
    ap.add_argument("--layouts", default="whole,tiled")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", default="2040x1356", help="WxH of the mosaic (smaller for a quick check)")
    ap.add_argument("--source", type=Path, default=ROOT.parent / "shared/data/B100/HR", help="folder of photos for the mosaic")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hcd-large-"))
    src = work / "div2k_sized.png"
    mosaic(src, *(int(v) for v in args.size.split("x")), source=args.source)
    hcd = str(Path(sys.executable).parent / "hcd")
    rows = []
    for scale in (int(x) for x in args.scales.split(",")):
        for layout in args.layouts.split(","):
            dest = work / f"x{scale}-{layout}"
            cmd = [hcd, "downscale", str(src), "-o", str(dest), "--model", f"irn-x{scale}", "--threads", str(args.threads)]
            cmd += ["--tile", "192"] if layout == "tiled" else []
            t0 = time.perf_counter()
            with (work / "out.txt").open("w") as fo, (work / "err.txt").open("w") as fe:
                proc = subprocess.Popen(cmd, stdout=fo, stderr=fe)
                _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak RSS alone
            wall = time.perf_counter() - t0
            peak_kib = usage.ru_maxrss
            out = (work / "out.txt").read_text()
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{(work / 'err.txt').read_text()}")
            side = json.loads((dest / "div2k_sized.json").read_text())
            shown = " ".join(["downscale", src.name, "-o", "OUT", *cmd[5:]])  # the command without temporary paths
            rows.append({"scale": scale, "layout": layout, "seconds": wall, "peak_rss_mib": peak_kib / 1024,
                         "tile": side["tile"], "memory": side["memory"], "command": shown,
                         "plain_psnr_y": side["metrics"]["plain"]["psnr_y"], "psnr_y": side["metrics"]["optimised"]["psnr_y"]})  # fmt: skip
            print(out.strip(), flush=True)
    print("\n".join(section("large_image", rows)))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
