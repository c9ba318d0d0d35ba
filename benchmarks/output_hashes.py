"""SHA-256 of the stored LR files of a fixed matrix of settings: the check that a refactoring changed no output.

Usage:
    python -m benchmarks.output_hashes --out /tmp/before.json            # on the commit before the change
    python -m benchmarks.output_hashes --compare /tmp/before.json        # after it: lists every case that differs

Each case is one ``Downscaler`` call on a small crop of ``samples/`` (or a batch of three), covering the pixel
optimiser (Barzilai-Borwein, Adam, the normalised-gradient steps of ``official``, random starts, patience, the
loss judge, tiles, batches, 2 threads, x4) and HCD in the JPEG file (Barzilai-Borwein and Adam), with the shipped
models. Hashes depend on the torch build and the CPU: compare runs made on one machine. About 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
from hcd_pipeline.io.images import DecodedImage, read_image

ROOT = Path(__file__).resolve().parents[1]

CASES: dict[str, dict[str, Any]] = {
    "default-tiny": {"model": "tiny-irn-x2"},
    "default": {},
    "default-x4": {"model": "irn-x4"},
    "default-2-threads": {"threads": 2},
    "adam": {"preset": "adam", "overrides": {"hr_steps": 2, "lr_steps": 4}},
    "official": {"preset": "official", "overrides": {"hr_steps": 2, "lr_steps": 3}},
    "hr-only": {"method": "hr", "preset": "adam", "overrides": {"hr_steps": 3}},
    "pgd-image-budget": {"overrides": {"optimizer": "pgd", "budget": "image", "lr_radius": 0.05}},
    "random-start": {"overrides": {"random_start": True}},
    "patience": {"overrides": {"lr_steps": 12, "judge_every": 1, "patience": 1}},
    "judge-loss": {"overrides": {"judge": "loss"}},
    "tiles": {"tile": 24, "overlap": 4},
    "jpeg-file-bb": {"model": "irn-x2-jpeg-joint", "lr_format": "jpeg"},
    "jpeg-file-bb-x4": {"model": "irn-x4-jpeg-joint", "lr_format": "jpeg"},
    "jpeg-file-adam": {"model": "irn-x2-jpeg-joint", "lr_format": "jpeg", "preset": "adam", "overrides": {"lr_steps": 6}},
    "jpeg-pixels": {"lr_format": "jpeg", "codec_aware": False},
}
"""Case name -> DownscaleSettings fields (defaults: irn-x2, method hcd, default preset, seed 0)."""


def _crop(path: Path, side: int, dx: int = 0) -> DecodedImage:
    img = read_image(path)
    px = img.pixels[:3, dx : dx + side, dx : dx + side]
    return DecodedImage(px, None, img.bit_depth, img.source_mode, f"{path.stem}-{dx}")


def run_cases() -> dict[str, str]:
    samples = ROOT / "samples"
    one = _crop(samples / "coffee_crop.png", 64)
    batch = [_crop(samples / "astronaut_crop.png", 48, dx) for dx in (0, 8, 16)]
    hashes: dict[str, str] = {}
    for name, fields in CASES.items():
        t0 = time.perf_counter()
        ds = Downscaler(DownscaleSettings(**{"model": "irn-x2", **fields}))
        out = ds.process(one)
        hashes[name] = hashlib.sha256(out.data).hexdigest()
        # The loss of every step, to the last bit: a changed trajectory shows even where the stored file does not.
        hashes[f"{name}/losses"] = hashlib.sha256(json.dumps(out.sidecar["losses"]).encode()).hexdigest()
        changed = out.sidecar["changed_values"]
        print(f"{name:20s} {hashes[name][:16]} losses {hashes[f'{name}/losses'][:16]} {changed:6d} values changed"
              f" {time.perf_counter() - t0:6.1f} s", flush=True)  # fmt: skip
    big = ROOT.parent / "shared" / "data" / "Set5" / "HR" / "baby.png"
    if big.is_file():  # coefficient planes above torch's parallel grain (32,768 values): reductions split over threads
        t0 = time.perf_counter()
        ds = Downscaler(DownscaleSettings(model="irn-x2-jpeg-joint", lr_format="jpeg", threads=2))
        out = ds.process(_crop(big, 512))
        hashes["jpeg-file-bb-512-2-threads"] = hashlib.sha256(out.data).hexdigest()
        hashes["jpeg-file-bb-512-2-threads/losses"] = hashlib.sha256(json.dumps(out.sidecar["losses"]).encode()).hexdigest()
        print(f"{'jpeg-file-bb-512':20s} {hashes['jpeg-file-bb-512-2-threads'][:16]} {time.perf_counter() - t0:6.1f} s", flush=True)
    ds = Downscaler(DownscaleSettings(model="irn-x2", hcd_batch=3))
    outs = ds.optimise_batch(batch)
    for i, out in enumerate(outs):
        if isinstance(out, Exception):
            raise out
        hashes[f"batch-{i}"] = hashlib.sha256(out.lr.numpy().tobytes()).hexdigest()
    print(f"{'batch of 3':20s} {hashes['batch-0'][:16]}", flush=True)
    return hashes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="write the hashes here (JSON)")
    ap.add_argument("--compare", type=Path, help="compare with hashes written earlier; exit 1 if any differs")
    args = ap.parse_args()
    hashes = run_cases()
    if args.out:
        args.out.write_text(json.dumps(hashes, indent=1) + "\n")
    if args.compare:
        before = json.loads(args.compare.read_text())
        differ = sorted(k for k in set(before) | set(hashes) if before.get(k) != hashes.get(k))
        print("identical" if not differ else f"differ: {', '.join(differ)}")
        raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
