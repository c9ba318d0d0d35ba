"""Pipeline throughput: images per second, plain and HCD, 1 vs 2 actors, and a plain Python loop.

Usage: python -m benchmarks.pipeline_throughput --data ../shared/data/B100/HR --limit 8 --crop 192 --model irn-x2
All variants run in one process on the same images, so their ratios are comparable (the machine is shared).
``--crop`` centre-crops every image to the same size, so that the work splits evenly across actors.
Pipeline times are end to end (actor start and model load included), as a user of ``hcd run`` sees them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

from hcd_pipeline import Downscaler, DownscaleSettings, read_image

try:
    from benchmarks.sections import section
except ImportError:  # run as a file: benchmarks/ itself is the first entry of the path
    from sections import section  # type: ignore[no-redef]
from hcd_pipeline.io.images import list_images
from hcd_pipeline.pipeline import PipelineSettings, run_pipeline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/Set14/HR")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--model", default="irn-x2")
    ap.add_argument("--crop", type=int, default=0, help="centre-crop each image to this side (0: keep)")
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hcd-throughput-"))
    inp = work / "in"
    inp.mkdir()
    for p in list_images(args.data)[: args.limit]:
        if args.crop:
            im = Image.open(p)
            left, top = (im.width - args.crop) // 2, (im.height - args.crop) // 2
            im.crop((left, top, left + args.crop, top + args.crop)).save(inp / (p.stem + ".png"))
        else:
            shutil.copy(p, inp / p.name)
    n = len(list(inp.iterdir()))
    rows = []
    for method in ("plain", "hcd"):
        ds = Downscaler(DownscaleSettings(model=args.model, method=method, threads=2))
        t0 = time.perf_counter()
        for p in sorted(inp.iterdir()):
            ds.process(read_image(p))
        loop = time.perf_counter() - t0
        rows.append({"method": method, "runner": "python loop (2 threads)", "images": n, "seconds": loop, "images_per_s": n / loop})
        for actors in (1, 2):
            settings = PipelineSettings(input=str(inp), output=str(work / f"out-{method}-{actors}"), model=args.model, method=method,
                                        min_actors=actors, max_actors=actors, threads=2 // actors)  # fmt: skip
            t0 = time.perf_counter()
            s = run_pipeline(settings, progress=False)
            wall = time.perf_counter() - t0
            rows.append({"method": method, "runner": f"pipeline, {actors} actor(s) x {2 // actors} thread(s)", "images": s.done,
                         "seconds": wall, "images_per_s": s.done / wall})  # fmt: skip
    meta = {"data": args.data, "limit": args.limit, "crop": args.crop, "model": args.model}
    data = {"settings": meta, "rows": rows}
    print("\n".join(section("throughput", data)))
    if args.out:
        Path(args.out).write_text(json.dumps(data, indent=1) + "\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
