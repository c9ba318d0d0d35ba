"""Planning and finishing a run without per-image state on the driver.

Both run as Ray tasks (the driver holds object references and counts only):

* :func:`plan_task` streams the input listing in key order and yields the manifest in Arrow tables of
  :data:`MANIFEST_ROWS` items, skipping the images that are done. An image is done when its key has an ``ok``
  row and a sidecar, and the row's ``source_version`` equals what the listing says of the source now (its
  size and modification time, or ETag): a replaced source is redone. A sidecar without a row (the run was
  killed after the image was written and before its batch's Parquet part) gets its row back from the
  sidecar, which holds the same values.
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

from hcd_pipeline.core.errors import StorageError
from hcd_pipeline.io.lr_formats import LR_EXTENSIONS
from hcd_pipeline.io.storage import Storage
from hcd_pipeline.pipeline.keys import key_of_sidecar, lr_key, sidecar_key
from hcd_pipeline.pipeline.schema import METRICS_SCHEMA, SCHEMA_METADATA, read_part, rows_to_table, write_part
from hcd_pipeline.pipeline.settings import PipelineSettings
from hcd_pipeline.pipeline.sources import iter_inputs

__all__ = [
    "MANIFEST_SCHEMA",
    "MANIFEST_ROWS",
    "BUCKET_ROWS",
    "done_keys",
    "tokens",
    "iter_manifest",
    "final_rows",
    "finalize",
    "table_stats",
]

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string()),  # file | tar | invalid (refused when listed: error says why)
        pa.field("uri", pa.string()),
        pa.field("key", pa.string()),
        pa.field("version", pa.string()),  # the listing's size + mtime / ETag
        pa.field("error", pa.string()),
    ]
)
MANIFEST_ROWS = 4096
"""Input items per manifest table (one Ray Data block)."""
BUCKET_ROWS = 1_000_000
"""Rows per key-hash bucket when ``metrics.parquet`` is rebuilt: the finalize task's memory bound."""


def tokens(keys: pa.Array | pa.ChunkedArray, versions: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``key\0version`` per row: what identifies one content of one image across runs."""
    return pc.binary_join_element_wise(keys, pc.fill_null(versions, ""), "\0")


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


CORRUPT_PREFIX = "metrics/corrupt"
"""Where parts that cannot be read are set aside (their images are recovered from their sidecars or redone)."""


def done_keys(out: Storage, run_id: str, set_aside: list[str] | None = None) -> tuple[pa.Array, int]:
    """(``key\0version`` tokens of the finished images, rows recovered from sidecars); recovered rows are written
    as a part of run ``run_id``. A part that cannot be read (a crash of the disk, not of ours: parts are written
    whole) is moved to :data:`CORRUPT_PREFIX` and its key appended to ``set_aside``; the run goes on."""
    ok = []
    for k in list(_parts(out)):
        try:
            t = read_part(out, k, ["key", "status", "source_version"])
        except StorageError:
            aside = f"{CORRUPT_PREFIX}/{k.rsplit('/', 1)[-1]}"
            out.move(k, aside)
            if set_aside is not None:
                set_aside.append(out.uri_of(aside))
            continue
        t = t.filter(pc.equal(t["status"], "ok"))
        ok.append(tokens(t["key"], t["source_version"]).combine_chunks() if t.num_rows else pa.array([], pa.string()))
    ok_tokens = pc.unique(_concat(ok))
    sidecars = _concat([a for a in _chunks(s for s in map(key_of_sidecar, out.iter_keys("lr")) if s is not None)])
    ok_keys = pc.replace_substring_regex(ok_tokens, pattern="\x00.*$", replacement="") if len(ok_tokens) else ok_tokens
    done = ok_tokens.filter(pc.is_in(ok_keys, value_set=sidecars))
    orphans = sidecars.filter(pc.invert(pc.is_in(sidecars, value_set=ok_keys)))
    rows = []
    from hcd_pipeline.pipeline.schema import SOURCE_FIELDS
    from hcd_pipeline.pipeline.stages import row_metrics, settings_columns

    for key in orphans.to_pylist():  # only images written after the last part of a killed run
        try:
            side = json.loads(out.read(sidecar_key(key)))
            if not isinstance(side, dict) or side.get("key") != key:
                continue  # not a sidecar of ours for this key: the image is redone
            rows.append(
                {
                    "key": key,
                    "source_uri": side.get("source"),
                    **{f: side.get(f) for f in SOURCE_FIELDS},
                    "status": "ok",
                    "lr_uri": out.uri_of(lr_key(key, LR_EXTENSIONS.get(str(side.get("lr_format", "png")), ".png"))),
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
        t = rows_to_table(rows)
        write_part(out, f"metrics/parts/{run_id}-recovered.parquet", t)
        done = pc.unique(_concat([done, tokens(t["key"], t["source_version"]).combine_chunks()]))
    return done, len(rows)


def iter_manifest(settings: PipelineSettings, done: pa.Array, counts: dict[str, int]) -> Iterator[pa.Table]:
    """Manifest tables of the items to process; ``counts`` gets items, skipped, todo and tar."""
    counts.update(items=0, skipped=0, todo=0, tar=0)
    buf: list[tuple[str, str, str, str, str | None]] = []

    def flush() -> pa.Table:
        kinds, uris, keys, versions, errors = (pa.array(c, pa.string()) for c in zip(*buf, strict=True))
        keep = pc.invert(pc.and_(pc.equal(kinds, "file"), pc.is_in(tokens(keys, versions), value_set=done)))
        t = pa.Table.from_arrays([kinds, uris, keys, versions, errors], schema=MANIFEST_SCHEMA).filter(keep)
        counts["skipped"] += len(buf) - t.num_rows
        counts["todo"] += t.num_rows
        counts["tar"] += int(pc.sum(pc.equal(t["kind"], "tar")).as_py() or 0)
        buf.clear()
        return t

    for item in iter_inputs(settings.input, settings.storage, output=settings.output):
        if settings.limit is not None and counts["items"] >= settings.limit:
            break
        counts["items"] += 1
        buf.append((item.kind, item.uri, item.key, item.version, item.error))
        if len(buf) >= MANIFEST_ROWS:
            t = flush()
            if t.num_rows:
                yield t
    if buf:
        t = flush()
        if t.num_rows:
            yield t


def final_rows(table: pa.Table) -> pa.Table:
    """One row per key: among the attempts on the source's latest version (that of the latest attempt), the
    latest ``ok`` row if any, else the latest attempt. A source replaced since its ``ok`` row whose new content
    failed therefore shows the failure, not the old image's row."""
    if table.num_rows == 0:
        return table
    t = table.sort_by([("key", "ascending"), ("finished_at", "ascending")])
    keys = t["key"].to_numpy(zero_copy_only=False)
    versions = pc.fill_null(t["source_version"], "").to_numpy(zero_copy_only=False)
    last = np.ones(len(keys), dtype=bool)
    last[:-1] = keys[:-1] != keys[1:]
    group_last = np.flatnonzero(last)[np.cumsum(np.r_[True, last[:-1]]) - 1]  # index of each row's key's latest attempt
    current = (versions == versions[group_last]).astype(np.int8)
    ok = pc.equal(t["status"], "ok").cast(pa.int8())
    t = t.append_column("_cur", pa.array(current)).append_column("_ok", ok)
    t = t.sort_by([("key", "ascending"), ("_cur", "ascending"), ("_ok", "ascending"), ("finished_at", "ascending")])
    return t.filter(pa.array(last)).drop_columns(["_cur", "_ok"])


def _bucket(keys: pa.ChunkedArray | pa.Array, n: int) -> np.ndarray:
    return np.fromiter((zlib.crc32(k.encode()) % n for k in keys.to_pylist()), dtype=np.int64, count=len(keys))


def _compact(out: Storage, run_id: str) -> None:
    """Merge the run's per-batch parts into one file (the parts stay the log; duplicates are harmless)."""
    small = [k for k in _parts(out) if k.rsplit("/", 1)[-1].startswith(f"{run_id}-") and not k.endswith("-compacted.parquet")]
    if len(small) < 2:
        return
    tables = [read_part(out, k) for k in small]
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
                t = read_part(out, k)
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
                    t = pa.concat_tables([read_part(out, k) for k in parts]) if parts else METRICS_SCHEMA.empty_table()
                f = final_rows(t.cast(METRICS_SCHEMA.remove_metadata()))
                w.write_table(f.replace_schema_metadata(schema.metadata))
                for key, v in table_stats(f).items():
                    totals[key] = totals.get(key, 0) + v
        out.put_file(local, "metrics.parquet")
    return totals
