"""Planning and finishing a run without per-image state on the driver.

Both run as Ray tasks (the driver holds object references and counts only):

* :func:`plan_task` streams the input listing in key order and yields the manifest in Arrow tables of
  :data:`MANIFEST_ROWS` items, skipping the keys that are done. A key is done when its ``ok`` row and its
  sidecar both exist. A sidecar without a row (the run was killed after the image was written and before
  its batch's Parquet part) gets its row back from the sidecar, which holds the same values.
* :func:`finalize_task` compacts the run's Parquet parts and rewrites ``metrics.parquet`` (one row per key)
  bucket by bucket (key hash), so that its memory is a bucket's, not the archive's.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..codecs import LR_EXTENSIONS
from ..storage import Storage
from .schema import METRICS_SCHEMA, SCHEMA_METADATA, read_parquet_bytes, rows_to_table, write_part
from .settings import PipelineSettings
from .sources import iter_inputs

__all__ = ["MANIFEST_SCHEMA", "MANIFEST_ROWS", "BUCKET_ROWS", "done_keys", "iter_manifest", "final_rows", "finalize", "table_stats"]

MANIFEST_SCHEMA = pa.schema([pa.field("kind", pa.string()), pa.field("uri", pa.string()), pa.field("key", pa.string())])
MANIFEST_ROWS = 4096
"""Input items per manifest table (one Ray Data block)."""
BUCKET_ROWS = 1_000_000
"""Rows per key-hash bucket when ``metrics.parquet`` is rebuilt: the finalize task's memory bound."""
_STEM = r"^(.*[^/])\.[^./]*$"  # output_stem() in Arrow: drop the extension


def _stems(keys: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(keys, pattern=_STEM, replacement=r"\1")


def _parts(out: Storage) -> Iterator[str]:
    return (k for k in out.iter_keys("metrics/parts") if k.endswith(".parquet"))


def _chunks(it: Iterator[str], n: int = 65536) -> Iterator[pa.Array]:
    buf: list[str] = []
    for x in it:
        buf.append(x)
        if len(buf) >= n:
            yield pa.array(buf, pa.string())
            buf = []
    if buf:
        yield pa.array(buf, pa.string())


def _concat(arrays: list[pa.Array]) -> pa.Array:
    return pa.chunked_array(arrays, pa.string()).combine_chunks() if arrays else pa.array([], pa.string())


def done_keys(out: Storage, run_id: str) -> tuple[pa.Array, int]:
    """(done keys, rows recovered from sidecars); recovered rows are written as a part of run ``run_id``."""
    ok = [
        t.filter(pc.equal(t["status"], "ok"))["key"].combine_chunks()
        for t in (read_parquet_bytes(out.read(k), ["key", "status"]) for k in _parts(out))
    ]
    ok_keys = pc.unique(_concat(ok))
    sidecars = _concat([pc.replace_substring_regex(a, pattern=r"^lr/(.*)\.json$", replacement=r"\1")
                        for a in _chunks(k for k in out.iter_keys("lr") if k.endswith(".json"))])  # fmt: skip
    ok_stems = _stems(ok_keys)
    done = ok_keys.filter(pc.is_in(ok_stems, value_set=sidecars))
    orphans = sidecars.filter(pc.invert(pc.is_in(sidecars, value_set=ok_stems)))
    rows = []
    from .stages import row_metrics, settings_columns

    for stem in orphans.to_pylist():  # only images written after the last part of a killed run
        try:
            side = json.loads(out.read(f"lr/{stem}.json"))
            key = str(side["key"])
            rows.append(
                {
                    "key": key,
                    "source_uri": side.get("source"),
                    "status": "ok",
                    "lr_uri": out.uri_of(f"lr/{stem}{LR_EXTENSIONS.get(str(side.get('lr_format', 'png')), '.png')}"),
                    "width": side["source_size"][0],
                    "height": side["source_size"][1],
                    "channels": side.get("channels"),
                    "bit_depth": side.get("source_bit_depth"),
                    **settings_columns(side),
                    "worker": "recovered from sidecar",
                    "run_id": run_id,
                    "finished_at": datetime.now(UTC),
                    **row_metrics(side),
                }  # fmt: skip
            )
        except (KeyError, TypeError, ValueError, OSError):
            continue  # a sidecar we cannot read back: the image is redone
    if rows:
        write_part(out, f"metrics/parts/{run_id}-recovered.parquet", rows_to_table(rows))
        done = pc.unique(_concat([done, pa.array([r["key"] for r in rows], pa.string())]))
    return done, len(rows)


def iter_manifest(settings: PipelineSettings, done: pa.Array, counts: dict[str, int]) -> Iterator[pa.Table]:
    """Manifest tables of the items to process; ``counts`` gets items, skipped, todo and tar."""
    counts.update(items=0, skipped=0, todo=0, tar=0)
    buf: list[tuple[str, str, str]] = []

    def flush() -> pa.Table:
        kinds, uris, keys = (pa.array(c, pa.string()) for c in zip(*buf, strict=True))
        keep = pc.invert(pc.and_(pc.equal(kinds, "file"), pc.is_in(keys, value_set=done)))
        t = pa.Table.from_arrays([kinds, uris, keys], schema=MANIFEST_SCHEMA).filter(keep)
        counts["skipped"] += len(buf) - t.num_rows
        counts["todo"] += t.num_rows
        counts["tar"] += int(pc.sum(pc.equal(t["kind"], "tar")).as_py() or 0)
        buf.clear()
        return t

    for item in iter_inputs(settings.input, settings.storage):
        if settings.limit is not None and counts["items"] >= settings.limit:
            break
        counts["items"] += 1
        buf.append((item.kind, item.uri, item.key))
        if len(buf) >= MANIFEST_ROWS:
            t = flush()
            if t.num_rows:
                yield t
    if buf:
        t = flush()
        if t.num_rows:
            yield t


def final_rows(table: pa.Table) -> pa.Table:
    """One row per key: the latest ``ok`` row if any, else the latest attempt."""
    if table.num_rows == 0:
        return table
    ok = pc.equal(table["status"], "ok").cast(pa.int8())
    t = table.append_column("_ok", ok)
    t = t.sort_by([("key", "ascending"), ("_ok", "ascending"), ("finished_at", "ascending")])
    keys = t["key"].to_numpy(zero_copy_only=False)
    last = np.ones(len(keys), dtype=bool)
    last[:-1] = keys[:-1] != keys[1:]
    return t.filter(pa.array(last)).drop_columns(["_ok"])


def _bucket(keys: pa.ChunkedArray | pa.Array, n: int) -> np.ndarray:
    return np.fromiter((zlib.crc32(k.encode()) % n for k in keys.to_pylist()), dtype=np.int64, count=len(keys))


def _compact(out: Storage, run_id: str) -> None:
    """Merge the run's per-batch parts into one file (the parts stay the log; duplicates are harmless)."""
    small = [k for k in _parts(out) if k.rsplit("/", 1)[-1].startswith(f"{run_id}-") and not k.endswith("-compacted.parquet")]
    if len(small) < 2:
        return
    tables = [read_parquet_bytes(out.read(k)) for k in small]
    write_part(out, f"metrics/parts/{run_id}-compacted.parquet", pa.concat_tables(tables))
    for k in small:
        out.delete(k)


def table_stats(table: pa.Table) -> dict[str, Any]:
    """Counts and means of a final table (ok rows with scores; infinite PSNRs are left out of the means)."""
    ok = table.filter(pc.equal(table["status"], "ok"))
    scored = ok.filter(pc.and_(pc.is_finite(ok["psnr_y"]), pc.is_finite(ok["plain_psnr_y"])))
    stats: dict[str, Any] = {"rows": table.num_rows, "ok": ok.num_rows, "scored": scored.num_rows}
    for c in ("plain_psnr_y", "psnr_y", "gain_y", "ssim_y", "seconds"):
        stats[f"sum_{c}"] = float(pc.sum(scored[c]).as_py() or 0.0)
    return stats


def finalize(out: Storage, run_id: str) -> dict[str, Any]:
    """Compact the run's parts and rewrite ``metrics.parquet``; returns :func:`table_stats` of it."""
    _compact(out, run_id)
    parts = list(_parts(out))
    total = 0
    for k in parts:  # row counts from the footers, without reading the rows
        with out.fs.open(out.full(k), "rb") as fh:
            total += pq.read_metadata(fh).num_rows
    n = max(1, -(-total // BUCKET_ROWS))
    totals: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hcd-final-") as tmp:
        if n > 1:  # spill each part's rows into per-bucket files, then reduce bucket by bucket
            sinks = [pa.ipc.new_file(os.path.join(tmp, f"{b}.arrow"), METRICS_SCHEMA.remove_metadata()) for b in range(n)]
            for k in parts:
                t = read_parquet_bytes(out.read(k))
                b = _bucket(t["key"], n)
                for i in range(n):
                    sinks[i].write_table(t.filter(pa.array(b == i)))
            for s in sinks:
                s.close()
        local = os.path.join(tmp, "metrics.parquet")
        schema = METRICS_SCHEMA.with_metadata(SCHEMA_METADATA)
        with pq.ParquetWriter(local, schema, compression="zstd") as w:
            for b in range(n):
                if n > 1:
                    t = pa.ipc.open_file(os.path.join(tmp, f"{b}.arrow")).read_all()
                else:
                    t = pa.concat_tables([read_parquet_bytes(out.read(k)) for k in parts]) if parts else METRICS_SCHEMA.empty_table()
                f = final_rows(t.cast(METRICS_SCHEMA.remove_metadata()))
                w.write_table(f.replace_schema_metadata(schema.metadata))
                for key, v in table_stats(f).items():
                    totals[key] = totals.get(key, 0) + v
        out.put_file(local, "metrics.parquet")
    return totals
