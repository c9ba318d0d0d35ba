"""CPU cost per image of the decode and write stages beside the model stage, to size a node's stages.

    python -m benchmarks.stage_costs --data ../shared/data/B100/HR --limit 8 --crop 256 --method plain hcd --out docs/eval/stage_costs.json

The three stage callables of the pipeline are called directly (no Ray) on centre crops of the images, one
image per call, in one process with one torch thread: ms per image for decode (read + decode), model
(HCD or plain, with the reconstructions to score) and write (alpha, PNG encode, scores, LR + sidecar +
Parquet part written to a local folder).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/B100/HR")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--model", default="irn-x2")
    ap.add_argument("--scale", type=int, default=None, help="for scale-free models (bicubic)")
    ap.add_argument("--method", nargs="+", default=["plain", "hcd"])
    ap.add_argument("--out", default="docs/eval/stage_costs.json")
    args = ap.parse_args()
    import pyarrow as pa
    import torch
    from PIL import Image

    from hcd_pipeline.io.images import list_images
    from hcd_pipeline.pipeline.settings import PipelineSettings
    from hcd_pipeline.pipeline.stages import ModelStage, decode_stage, write_stage

    torch.set_num_threads(1)
    res: dict = {"command": "python -m benchmarks.stage_costs " + " ".join(sys.argv[1:]), "crop": args.crop, "rows": []}
    with tempfile.TemporaryDirectory(prefix="hcd-stages-") as tmp:
        inp = Path(tmp) / "in"
        inp.mkdir()
        for p in list_images(args.data)[: args.limit]:
            im = Image.open(p).convert("RGB")
            c = args.crop
            x, y = (im.width - c) // 2, (im.height - c) // 2
            im.crop((x, y, x + c, y + c)).save(inp / (p.stem + ".png"))
        files = sorted(inp.glob("*.png"))
        for method in args.method:
            s = PipelineSettings(input=str(inp), output=str(Path(tmp) / f"out-{method}"), model=args.model, scale=args.scale, method=method)
            sd = s.to_dict()
            model = ModelStage(sd)
            t = {"decode": 0.0, "model": 0.0, "write": 0.0}
            for f in files:
                batch = pa.table({"kind": ["file"], "uri": [str(f)], "key": [f.name]})
                t0 = time.perf_counter()
                dec = pa.concat_tables(list(decode_stage(batch, sd)))
                t1 = time.perf_counter()
                mod = model(dec)
                t2 = time.perf_counter()
                summ = write_stage(mod, sd, "bench")
                t3 = time.perf_counter()
                assert summ["ok"][0].as_py() == 1, summ.to_pylist()
                t["decode"] += t1 - t0
                t["model"] += t2 - t1
                t["write"] += t3 - t2
            n = len(files)
            row = {"method": method, "images": n, **{f"{k}_ms": round(1000 * v / n, 2) for k, v in t.items()}}
            row["model_over_cpu_stages"] = round(t["model"] / (t["decode"] + t["write"]), 2)
            res["rows"].append(row)
            print(json.dumps(row), flush=True)
    buf = io.StringIO()
    json.dump(res, buf, indent=1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(buf.getvalue() + "\n")


if __name__ == "__main__":
    main()
