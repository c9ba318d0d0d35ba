"""Per-item costs of planning and finishing a run, for projecting an archive of millions of images.

    python -m benchmarks.plan_costs --keys 100000 --s3-keys 5000 --out docs/eval/plan_costs.json

Without processing an image it measures, on a synthetic output of ``--keys`` finished images (an ok row
each in Parquet parts, a sidecar each under ``lr/`` in output layout 2) and an input folder of as many files:

* listing: input keys per second (local folder walk) and, on a local S3-compatible server (moto), keys per
  second and LIST requests (1000 keys a page);
* resume planning: the plan task's work (``done_keys`` + the manifest, every key skipped), its seconds per
  key and the process's peak-RSS growth per key;
* Parquet: bytes per metric row in the parts and in ``metrics.parquet``;
* finalize: seconds per row to rebuild ``metrics.parquet``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _rows(keys: list[str], versions: dict[str, str]) -> list[dict]:
    import random

    rnd = random.Random(int(keys[0].rsplit("/", 1)[-1][:-4]) if keys else 0)  # per part: repeated values would compress unlike real ones
    settings = json.dumps({"hr_steps": 5, "lr_steps": 20, "optimizer": "adam", "budget": "pixel", "hr_radius": 0.03}, sort_keys=True)
    now = datetime.now(UTC)
    return [
        {
            "key": k,
            "source_uri": f"s3://archive/originals/{k}",
            "source_version": versions[k],
            "source_bytes": 0,
            "source_sha256": "e3b0c442" * 8,
            "lr_uri": f"s3://archive-lr/x2/lr/{k}.png",
            "status": "ok",
            "width": 512,
            "height": 384,
            "channels": 3,
            "bit_depth": 8,
            "lr_width": 256,
            "lr_height": 192,
            "model": "irn-x2",
            "scale": 2,
            "weights_sha256": "9f" * 32,
            "method": "hcd",
            "preset": "default",
            "settings_json": settings,
            "seed": 0,
            "plain_psnr_y": 38 + rnd.random(),
            "plain_ssim_y": 0.97 + rnd.random() / 100,
            "plain_psnr_rgb": 36 + rnd.random(),
            "plain_ssim_rgb": 0.96,
            "psnr_y": 38.7 + rnd.random(),
            "ssim_y": 0.975,
            "psnr_rgb": 36.6,
            "ssim_rgb": 0.965,
            "gain_y": 0.7 + rnd.random() / 10,
            "changed_values": rnd.randrange(100000),
            "seconds": 40 + rnd.random(),
            "worker": "10.0.0.12:4242",
            "run_id": "20261126T120000-abcdef",
            "finished_at": now,
        }  # fmt: skip
        for k in keys
    ]


def synth_output(out: Path, inp: Path, n: int, part_rows: int = 4096) -> list[str]:
    from hcd_pipeline.io.storage import Storage
    from hcd_pipeline.pipeline.schema import rows_to_table, write_part

    keys = [f"{i // 1000:05d}/{i:08d}.png" for i in range(n)]
    for k in keys:  # the sources first: the rows record the version their listing shows
        for p, data in ((inp / k, b""), (out / "lr" / f"{k}.json", json.dumps({"key": k}).encode())):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    versions = dict(Storage(str(inp)).iter_entries())
    st = Storage(str(out))
    for j in range(0, n, part_rows):
        rows = _rows(keys[j : j + part_rows], versions)
        write_part(st, f"metrics/parts/20261126T120000-abcdef-{j // part_rows:05d}.parquet", rows_to_table(rows))
    return keys


def s3_listing(n: int) -> dict:
    import s3fs

    from hcd_pipeline.io.storage import StorageOptions
    from hcd_pipeline.pipeline.sources import iter_inputs
    from tests.services import S3Server

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = S3Server()
    server.start()
    try:
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": server.url})
        fs.mkdir("bench")
        for i in range(n):
            fs.pipe(f"bench/in/{i // 1000:05d}/{i:08d}.png", b"")
        t0 = time.perf_counter()
        count = sum(1 for _ in iter_inputs("s3://bench/in/", StorageOptions(endpoint_url=server.url)))
        secs = time.perf_counter() - t0
    finally:
        server.stop()
    pages = -(-count // 1000)
    return {"keys": count, "seconds": round(secs, 3), "keys_per_second": round(count / secs), "list_requests": pages,
            "seconds_per_request": round(secs / pages, 4), "server": "moto_server, a local process"}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--s3-keys", type=int, default=5000, help="objects put on the local S3 server for the listing rate (0: skip)")
    ap.add_argument("--out", default="docs/eval/plan_costs.json")
    args = ap.parse_args()
    from hcd_pipeline.io.storage import Storage
    from hcd_pipeline.pipeline.plan import done_keys, finalize, iter_manifest
    from hcd_pipeline.pipeline.settings import PipelineSettings
    from hcd_pipeline.pipeline.sources import iter_inputs

    res: dict = {"command": "python -m benchmarks.plan_costs " + " ".join(sys.argv[1:]), "keys": args.keys}
    with tempfile.TemporaryDirectory(prefix="hcd-plan-") as tmp:
        out, inp = Path(tmp) / "out", Path(tmp) / "in"
        synth_output(out, inp, args.keys)
        t0 = time.perf_counter()
        listed = sum(1 for _ in iter_inputs(str(inp)))
        secs = time.perf_counter() - t0
        res["local_listing"] = {"keys": listed, "seconds": round(secs, 3), "keys_per_second": round(listed / secs)}
        rss0 = _rss_mib()
        t0 = time.perf_counter()
        done, recovered = done_keys(Storage(str(out)), "bench")
        t_done = time.perf_counter() - t0
        counts: dict[str, int] = {}
        t0 = time.perf_counter()
        tables = sum(1 for _ in iter_manifest(PipelineSettings(input=str(inp), output=str(out)), done, counts))
        t_manifest = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        res["resume_plan"] = {
            "done_keys_seconds": round(t_done, 3), "manifest_seconds": round(t_manifest, 3), "skipped": counts["skipped"],
            "todo_tables": tables, "recovered": recovered, "us_per_key": round(1e6 * (t_done + t_manifest) / args.keys, 2),
            "done_array_bytes_per_key": round(done.nbytes / max(1, len(done)), 1),
            "rss_growth_mib": round(max(peak, _rss_mib()) - rss0, 1),
        }  # fmt: skip
        parts = sum(p.stat().st_size for p in (out / "metrics" / "parts").glob("*.parquet"))
        t0 = time.perf_counter()
        stats = finalize(Storage(str(out)), "bench")
        t_final = time.perf_counter() - t0
        final = (out / "metrics.parquet").stat().st_size
        res["parquet"] = {"part_bytes_per_row": round(parts / args.keys, 1), "final_bytes_per_row": round(final / args.keys, 1)}
        res["finalize"] = {"seconds": round(t_final, 3), "us_per_row": round(1e6 * t_final / args.keys, 2), "rows": stats["rows"]}
    if args.s3_keys:
        res["s3_listing"] = s3_listing(args.s3_keys)
    print(json.dumps(res, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
