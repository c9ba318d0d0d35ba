"""Archive scale: `hcd run` on many tiny images against a hand-written Ray Data pipeline doing the same work.

    python -m benchmarks.archive_scale --sizes 5000,20000,100000 --baseline-at 20000 --out docs/eval/archive_scale.json

For each size N a folder of N tiny PNGs (16x16, made once, from the bundled samples) is processed by
``hcd run --model bicubic --scale 2 --method plain`` in a child process; the benchmark records its wall time
(Ray start included), images/s and the driver's peak RSS (VmHWM of the ``hcd run`` process, sampled until it
exits). At ``--baseline-at`` the same images go through ``baseline`` below: ``read_binary_files`` ->
one ``map_batches`` doing the same per-image work with the same library calls (decode, downscale, PNG +
sidecar written atomically, scores) -> ``write_parquet``. Both run one after the other on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HCD = str(Path(sys.executable).parent / "hcd")


def make_images(folder: Path, n: int, size: int = 16) -> None:
    """``n`` distinct size x size PNGs cut from the bundled samples, 1000 per subfolder."""
    from PIL import Image

    srcs = [Image.open(p).convert("RGB") for p in sorted((ROOT / "samples").glob("*.png"))]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = srcs[i % len(srcs)]
        x, y = (i * 37) % (src.width - size), (i // len(srcs) * 13) % (src.height - size)
        sub = folder / f"{i // 1000:05d}"
        sub.mkdir(exist_ok=True)
        src.crop((x, y, x + size, y + size)).save(sub / f"{i:08d}.png", compress_level=1)


def _peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def timed(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``cmd``; wall seconds and the peak RSS of that process (not of its children: Ray's own processes)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _peak_rss_mib(proc.pid))
        time.sleep(0.2)
    out = proc.stdout.read() if proc.stdout else ""
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed ({proc.returncode}):\n{out[-3000:]}")
    return {"seconds": round(wall, 2), "peak_rss_mib": round(peak, 1), "log_tail": out[-400:]}


def baseline(inp: str, out: str) -> None:
    """The hand-written pipeline: the same per-image work in one map_batches, no stages, no resume, no plan."""
    import ray
    import ray.data

    from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
    from hcd_pipeline.io.images import decode_image
    from hcd_pipeline.io.storage import Storage

    state: dict[str, object] = {}

    def work(batch: dict) -> dict:
        if not state:  # one model and one storage client per worker process
            state["ds"] = Downscaler(DownscaleSettings(model="bicubic", scale=2, method="plain"))
            state["out"] = Storage(out)
        ds, st = state["ds"], state["out"]
        rows: dict[str, list] = {"key": [], "psnr_y": [], "ssim_y": []}
        for path, data in zip(batch["path"], batch["bytes"], strict=True):
            key = os.path.relpath("/" + str(path).lstrip("/"), inp)
            res = ds.process(decode_image(bytes(data), key))  # type: ignore[attr-defined]
            st.write(f"lr/{key}.png", res.png)  # type: ignore[attr-defined]  # output layout 2: the whole key
            st.write(f"lr/{key}.json", (json.dumps({**res.sidecar, "key": key}, indent=1) + "\n").encode())  # type: ignore[attr-defined]
            rows["key"].append(key)
            rows["psnr_y"].append(res.optimised.psnr_y if res.optimised else None)
            rows["ssim_y"].append(res.optimised.ssim_y if res.optimised else None)
        return rows

    ray.init(address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    inp = os.path.abspath(inp)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.read_binary_files(inp, include_paths=True)
    ds = ds.map_batches(work, batch_size=256)
    ds.write_parquet(os.path.join(out, "metrics"))


def _without_work(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--work":
            skip = True
        elif not a.startswith("--work="):
            out.append(a)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000,20000,100000")
    ap.add_argument("--baseline-at", type=int, default=20000, help="size at which the hand-written pipeline also runs (0: never)")
    ap.add_argument("--work", default=None, help="folder for images and outputs (default: a temporary folder)")
    ap.add_argument("--out", default="docs/eval/archive_scale.json")
    ap.add_argument("--baseline-only", nargs=2, metavar=("INPUT", "OUTPUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_only:
        baseline(*args.baseline_only)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="hcd-archive-"))
    results: list[dict] = []
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    for n in sizes:
        inp = work / f"in-{n}"
        if not inp.exists():
            make_images(inp, n)
        out = work / f"out-{n}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [HCD, "--quiet", "run", "--input", str(inp), "--output", str(out), "--model", "bicubic", "--scale", "2", "--method", "plain"]
        r = timed(cmd, env)
        row = {"images": n, "hcd_run": {**r, "images_per_second": round(n / r["seconds"], 1)}}
        if n == args.baseline_at:
            bout = work / f"baseline-{n}"
            shutil.rmtree(bout, ignore_errors=True)
            b = timed([sys.executable, "-m", "benchmarks.archive_scale", "--baseline-only", str(inp), str(bout)], env)
            row["baseline"] = {**b, "images_per_second": round(n / b["seconds"], 1)}
            row["ratio"] = round(row["hcd_run"]["images_per_second"] / row["baseline"]["images_per_second"], 3)
        print(json.dumps({k: v for k, v in row.items()}, default=str), flush=True)
        results.append(row)
        shutil.rmtree(out, ignore_errors=True)
    doc = {
        # The command without --work (a temporary folder of this machine's).
        "command": "python -m benchmarks.archive_scale " + " ".join(_without_work(sys.argv[1:])),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "note": "wall time includes starting Ray; peak RSS is the driver process (hcd run / the baseline script) only",
        "results": results,
    }
    for r in doc["results"]:
        for k in ("hcd_run", "baseline"):
            if k in r:
                r[k].pop("log_tail", None)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
