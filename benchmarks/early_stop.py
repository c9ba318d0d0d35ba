"""Presets side by side on one set and scale: mean gain and seconds per image, for #14's cost target.

    python -m benchmarks.early_stop --data Set5 --scale 2 --out docs/eval/early_stop-x2-Set5.json

Variants, one after the other in one process (1 thread): the official preset, the default preset, and the
default preset with early stopping on the no-harm judge (``patience`` 1 and 2: a stage ends after that many
judged iterates, every 5th step, without improvement).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="Set5")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--variants", default="official,default,default+patience1,default+patience2")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import torch

    from hcd_pipeline.evaluation.evaluate import EvalSettings, evaluate

    torch.set_num_threads(1)
    rows = []
    for v in args.variants.split(","):
        preset, _, extra = v.partition("+")
        ov = {"patience": int(extra.removeprefix("patience"))} if extra else {}
        t0 = time.perf_counter()
        res = evaluate(EvalSettings(model=None, scale=args.scale, data=args.data, method="hcd", preset=preset, overrides=ov))
        n = len(res["images"])
        sec = (time.perf_counter() - t0) / n
        row = {"variant": v, "images": n, "mean_gain_db": round(res["mean"]["gain_y"], 4), "s_per_image": round(sec, 2),
               "min_gain_db": round(min(r["gain_y"] for r in res["images"]), 4)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = next((r for r in rows if r["variant"] == "official"), None)
    if base:
        for r in rows:
            r["time_vs_official"] = round(r["s_per_image"] / base["s_per_image"], 3)
    doc = {"command": "python -m benchmarks.early_stop " + " ".join(sys.argv[1:]), "rows": rows}
    print(json.dumps(doc, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
