"""`hcd report`'s cost on a large metric table: N synthetic rows in the full schema, written as one Parquet file,
then load_tables (the report's column projection) and build_report timed, with the process's peak RSS.

    python -m benchmarks.report_scale --rows 1000000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hcd_pipeline.pipeline.schema import METRICS_SCHEMA
from hcd_pipeline.report.build import build_report, load_tables


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    n = ap.parse_args().rows
    rng = np.random.default_rng(0)
    plain, gain = rng.uniform(26, 38, n), rng.normal(0.5, 0.3, n)
    cols = {"key": pa.array([f"shard-{i // 10000:05d}/img{i:08d}.png" for i in range(n)]), "status": pa.array(["ok"] * n),
            "model": pa.array(["irn-x2"] * n), "scale": pa.array(np.full(n, 2, np.int32)), "method": pa.array(["hcd"] * n),
            "preset": pa.array(["default"] * n), "plain_psnr_y": pa.array(plain), "psnr_y": pa.array(plain + gain),
            "gain_y": pa.array(gain), "seconds": pa.array(rng.uniform(0.5, 2, n)),
            "finished_at": pa.array([datetime(2026, 11, 27, tzinfo=UTC)] * n)}  # fmt: skip
    table = pa.table({f.name: cols[f.name].cast(f.type) if f.name in cols else pa.nulls(n, f.type) for f in METRICS_SCHEMA})
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(table, Path(tmp) / "metrics.parquet", compression="zstd")
        size = (Path(tmp) / "metrics.parquet").stat().st_size
        del table, cols
        before = _rss_mib()
        t0 = time.perf_counter()
        loaded = load_tables([tmp])
        t1 = time.perf_counter()
        rep = build_report(loaded)
        t2 = time.perf_counter()
    print(f"{n} rows ({size / 2**20:.1f} MiB Parquet): load {t1 - t0:.2f} s, build_report {t2 - t1:.2f} s, "
          f"peak RSS {_rss_mib():.0f} MiB (after making the table: {before:.0f}), {len(rep['points'])} chart points")  # fmt: skip


if __name__ == "__main__":
    main()
