"""A small training pack that fits the GPU machine's 64 MiB working tree: centre crops of BSD200.

    python benchmarks/make_train_pack.py                      # -> shared/train/BSD200-c144 (about 7.5 MB)
    python benchmarks/make_train_pack.py --side 192           # what the first GPU session used (13.4 MB)

Each of the 200 BSD200 training photos (481 x 321) is cut to its centre ``--side`` x ``--side`` square, kept
lossless (PNG). ``shared/`` inside the checkout is untracked (ignored in .git/info/exclude) and travels to a lent
GPU machine with the tree; ``benchmarks/gpu_session.sh`` trains from it. The tree and ``shared/`` together must stay
under 64 MiB: the tracked tree was 56.3 MB after session 5 (51.1 MB before its weights and results), so the
default side is 144 now (patches of 128 still fit).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="../shared/data/BSD200/HR")
    ap.add_argument("--side", type=int, default=144)
    ap.add_argument("--out", default=None, help="default: shared/train/BSD200-c<side>")
    args = ap.parse_args()
    out = Path(args.out or f"shared/train/BSD200-c{args.side}")
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    paths = sorted(Path(args.src).glob("*.png"))
    if not paths:
        raise SystemExit(f"{args.src}: no PNG images found")
    s = args.side
    for p in paths:
        with Image.open(p) as im:
            rgb = im.convert("RGB")
        w, h = rgb.size
        left, top = (w - s) // 2, (h - s) // 2
        rgb.crop((left, top, left + s, top + s)).save(out / p.name, optimize=True)
        total += (out / p.name).stat().st_size
    print(f"{len(paths)} crops of {s} x {s} in {out}: {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
