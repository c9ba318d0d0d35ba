"""A small training pack that fits the GPU machine's 64 MiB working tree: crops of every training photo we may use.

    python -m benchmarks.make_train_pack                      # -> shared/train/BSD200-c192 (about 15 MB), and
                                                              #    shared/data/Set5/HR (gpu_session.sh's VAL)
    python -m benchmarks.make_train_pack --side 144           # sessions 6-8 (7.5 MB, BSD200 only)

Training data (#25): everything in ``../shared/data`` that is not a test set: BSD200 (200 photos, 481 x 321) and the
scikit-image photos (never Set5, Set14, B100 or Urban100). Each BSD200 photo gives its centre ``--side`` x
``--side`` square; a larger photo (scikit-image's 512 x 512) gives its non-overlapping squares. Kept lossless (PNG).
``shared/`` inside the checkout is ignored by git and travels to a lent GPU machine with the tree;
``benchmarks/gpu_session.sh`` trains from it, taking random ``--patch`` crops of these squares (flips and rotations
as the original recipe). The tree, ``shared/`` and the carried training state must stay under 64 MiB: the tracked
tree is 44 MB since the first joint models left the package, so 192-px squares (15 MB) leave 8 MB for the state.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from PIL import Image

SOURCES = ("../shared/data/BSD200/HR", "../shared/data/skimage")
TEST_SETS = ("Set5", "Set14", "B100", "Urban100")
VAL_SRC, VAL_DEST = Path("../shared/data/Set5/HR"), Path("shared/data/Set5/HR")
"""The validation images a GPU run scores (``gpu_session.sh``'s ``VAL``), copied into the tree so that they travel."""
TRAVEL_LIMIT = 64 * 2**20
"""What the GPU machine receives: the working tree (tracked and untracked files) and ``shared/``, at most 64 MiB."""


def travelling_bytes() -> int:
    """Bytes of the files git tracks or would track (not ignored) plus everything under ``shared/``."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], check=True,
                           capture_output=True).stdout.decode().split("\0")  # fmt: skip
    tree = sum(Path(n).stat().st_size for n in names if n and Path(n).is_file())
    return tree + sum(f.stat().st_size for f in Path("shared").rglob("*") if f.is_file())


def squares(rgb: Image.Image, side: int) -> list[Image.Image]:
    """The centre square of a photo less than two sides wide or high, else its non-overlapping squares."""
    w, h = rgb.size
    if w < 2 * side or h < 2 * side:
        left, top = (w - side) // 2, (h - side) // 2
        return [rgb.crop((left, top, left + side, top + side))]
    return [rgb.crop((x, y, x + side, y + side)) for y in range(0, h - side + 1, side) for x in range(0, w - side + 1, side)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", nargs="*", default=list(SOURCES), help="folders of training photos (no test set)")
    ap.add_argument("--side", type=int, default=192)
    ap.add_argument("--out", default=None, help="default: shared/train/BSD200-c<side>")
    ap.add_argument("--no-val", action="store_true", help=f"do not copy {VAL_SRC} (validation) to {VAL_DEST}")
    args = ap.parse_args()
    out = Path(args.out or f"shared/train/BSD200-c{args.side}")
    out.mkdir(parents=True, exist_ok=True)
    total = count = 0
    for src in args.src:
        if any(name in Path(src).parts for name in TEST_SETS):
            raise SystemExit(f"{src}: a test set is never training data")
        paths = sorted(Path(src).glob("*.png"))
        if not paths:
            raise SystemExit(f"{src}: no PNG images found")
        for p in paths:
            with Image.open(p) as im:
                rgb = im.convert("RGB")
            if min(rgb.size) < args.side:
                continue
            for i, sq in enumerate(squares(rgb, args.side)):
                dest = out / f"{Path(src).parent.name if src.endswith('HR') else Path(src).name}-{p.stem}-{i}.png"
                sq.save(dest, optimize=True)
                total += dest.stat().st_size
                count += 1
    print(f"{count} crops of {args.side} x {args.side} in {out}: {total / 1e6:.1f} MB")
    if not args.no_val:
        if not VAL_SRC.is_dir():
            raise SystemExit(f"{VAL_SRC}: the validation images were not found (run from the repository root)")
        shutil.copytree(VAL_SRC, VAL_DEST, dirs_exist_ok=True)
        print(f"validation images: {VAL_DEST} ({len(list(VAL_DEST.glob('*.png')))} PNGs)")
    size = travelling_bytes()
    verdict = "fits" if size < TRAVEL_LIMIT else "does NOT fit: remove a pack under shared/ first"
    print(f"tree + shared/ = {size / 2**20:.1f} MiB of the GPU machine's {TRAVEL_LIMIT // 2**20} MiB: {verdict}")


if __name__ == "__main__":
    main()
