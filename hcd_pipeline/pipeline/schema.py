"""The Parquet metric table: one row per image and attempt; its schema is stable and documented.

See docs/outputs.md ("Parquet quality reports") for the meaning of each column.
"""

from __future__ import annotations

import io
import json
from dataclasses import fields
from typing import TYPE_CHECKING, Any, get_type_hints

import pyarrow as pa
import pyarrow.parquet as pq

from hcd_pipeline.core.errors import StorageError
from hcd_pipeline.hcd.settings import HCDSettings

if TYPE_CHECKING:
    from hcd_pipeline.io.storage import Storage

__all__ = [
    "METRICS_SCHEMA",
    "SCHEMA_VERSION",
    "SCHEMA_METADATA",
    "empty_row",
    "rows_to_table",
    "conform",
    "write_part",
    "read_part",
    "read_parquet_bytes",
]

_ARROW = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}
SETTINGS_TYPE = pa.struct([pa.field(f.name, _ARROW[get_type_hints(HCDSettings)[f.name]]) for f in fields(HCDSettings)])
"""The ``settings`` column: :class:`~hcd_pipeline.hcd.optimise.HCDSettings` as a struct, one field per setting, so that
queries filter on them (``settings.lr_steps``) without parsing ``settings_json``."""

SCHEMA_VERSION = "5"
"""Written into every Parquet file's metadata (``hcd_pipeline.schema``); 1 = files without the key. 2 added
``kept``, 3 added ``device``, ``settings``, ``lr_format``, ``lr_quality`` and ``lr_bytes``, 4 added
``source_version``, ``source_bytes`` and ``source_sha256`` (output layout 2: tar member keys keep the shard's
``.tar``), 5 added ``lr_psnr_bicubic``."""
SCHEMA_METADATA = {"hcd_pipeline.schema": SCHEMA_VERSION}
"""The file metadata that stamps :data:`SCHEMA_VERSION`."""

METRICS_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),  # image key relative to the input (tar: shard/member)
        pa.field("source_uri", pa.string()),
        pa.field("source_version", pa.string()),  # the listing's size + mtime (or ETag) of the source; schema 4
        pa.field("source_bytes", pa.int64()),  # size of the source file (tar members: of the member); schema 4
        pa.field("source_sha256", pa.string()),  # SHA-256 of the source's bytes (hex); schema 4
        pa.field("lr_uri", pa.string()),  # where the LR PNG was written (null if failed)
        pa.field("status", pa.string(), nullable=False),  # "ok" or "failed"
        pa.field("error", pa.string()),  # reason, for failed rows
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("channels", pa.int8()),
        pa.field("bit_depth", pa.int8()),
        pa.field("lr_width", pa.int32()),
        pa.field("lr_height", pa.int32()),
        pa.field("lr_format", pa.string()),  # png, jpeg or webp; schema 3
        pa.field("lr_quality", pa.int8()),  # JPEG / WebP quality (null for PNG); schema 3
        pa.field("lr_bytes", pa.int64()),  # size of the stored LR file; schema 3
        pa.field("model", pa.string()),
        pa.field("scale", pa.int8()),
        pa.field("weights_sha256", pa.string()),
        pa.field("method", pa.string()),
        pa.field("preset", pa.string()),
        pa.field("settings_json", pa.string()),  # the full HCD settings
        pa.field("settings", SETTINGS_TYPE),  # the same as a struct; schema 3
        pa.field("seed", pa.int64()),
        pa.field("plain_psnr_y", pa.float64()),
        pa.field("plain_ssim_y", pa.float64()),
        pa.field("plain_psnr_rgb", pa.float64()),
        pa.field("plain_ssim_rgb", pa.float64()),
        pa.field("psnr_y", pa.float64()),
        pa.field("ssim_y", pa.float64()),
        pa.field("psnr_rgb", pa.float64()),
        pa.field("ssim_rgb", pa.float64()),
        pa.field("gain_y", pa.float64()),  # psnr_y - plain_psnr_y (dB)
        pa.field("lr_psnr_bicubic", pa.float64()),  # Y-PSNR of the stored LR against the bicubic downscale; schema 5
        pa.field("changed_values", pa.int64()),  # LR values that differ from the plain LR
        pa.field("kept", pa.string()),  # "optimised", or "plain" when no iterate beat plain (no-harm rule); schema 2
        pa.field("device", pa.string()),  # "cpu" or "cuda:<GPU name>" of the model call; schema 3
        pa.field("seconds", pa.float64()),  # HCD time for this image
        pa.field("worker", pa.string()),  # host:pid of the actor
        pa.field("run_id", pa.string()),
        pa.field("finished_at", pa.timestamp("ms", tz="UTC")),
    ]
)


def empty_row() -> dict[str, Any]:
    return {f.name: None for f in METRICS_SCHEMA}


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([{**empty_row(), **r} for r in rows], schema=METRICS_SCHEMA)


def conform(table: pa.Table) -> pa.Table:
    """A table of any release's metric schema in the current one.

    Columns that an older file lacks come back as nulls; columns that a newer release added are dropped
    (read the file with pyarrow to see them); the rest are cast to the current types.
    """
    cols = []
    for f in METRICS_SCHEMA:
        if f.name == "settings" and table.column_names and ("settings" not in table.column_names or table["settings"].type != f.type):
            cols.append(_settings_struct(table))  # older files, or settings added since: rebuilt from the JSON
        elif f.name in table.column_names:
            cols.append(table[f.name].cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=METRICS_SCHEMA.remove_metadata())


def _settings_struct(table: pa.Table) -> pa.Array:
    """The ``settings`` column from ``settings_json`` (fields a file lacks are null; unknown ones dropped)."""
    if "settings_json" not in table.column_names:
        return pa.nulls(table.num_rows, SETTINGS_TYPE)
    names = set(SETTINGS_TYPE.names)
    values = []
    for text in table["settings_json"].to_pylist():
        d = json.loads(text) if text else None
        values.append({k: v for k, v in d.items() if k in names} if isinstance(d, dict) else None)
    return pa.array(values, SETTINGS_TYPE)


def read_parquet_bytes(data: bytes, columns: list[str] | None = None) -> pa.Table:
    """A metric Parquet file's rows in the current schema (only ``columns`` when given)."""
    if columns is None:
        return conform(pq.read_table(io.BytesIO(data)))
    present = set(pq.read_schema(io.BytesIO(data)).names)
    return conform(pq.read_table(io.BytesIO(data), columns=[c for c in columns if c in present])).select(columns)


def read_part(out: Storage, key: str, columns: list[str] | None = None) -> pa.Table:
    """:func:`read_parquet_bytes` of the file ``key`` of ``out``; a file that is not a readable metric table raises
    :class:`~hcd_pipeline.core.errors.StorageError` naming it."""
    data = out.read(key)
    try:
        return read_parquet_bytes(data, columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise StorageError(f"{out.uri_of(key)}: not a readable metric table ({type(exc).__name__}: {exc})") from exc


def write_part(out: Storage, key: str, table: pa.Table) -> None:
    """Write metric rows as one Parquet file (zstd), stamped with :data:`SCHEMA_VERSION`."""
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(SCHEMA_METADATA), buf, compression="zstd")
    out.write(key, buf.getvalue())


# The tables the stages hand each other (Ray Data blocks), not files.
ROW_COLUMNS = [
    pa.field("key", pa.string()),
    pa.field("source_uri", pa.string()),
    pa.field("error", pa.string()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("channels", pa.int8()),
    pa.field("bit_depth", pa.int8()),
    pa.field("source_mode", pa.string()),
    pa.field("source_version", pa.string()),  # the listing's size + mtime / ETag of the source (resume compares it)
    pa.field("source_bytes", pa.int64()),
    pa.field("source_sha256", pa.string()),
    pa.field("alpha", pa.large_binary()),  # float32 (1, H, W) bytes, null without transparency
    pa.field("icc", pa.large_binary()),  # the source's ICC profile, null without one (hcd_pipeline.io.metadata)
    pa.field("exif", pa.large_binary()),  # the source's EXIF (TIFF structure), null without
]
DECODED_SCHEMA = pa.schema([*ROW_COLUMNS, pa.field("pixels", pa.large_binary())])
"""Decode stage -> model stage: ``pixels`` is float32 (C, H, W) in [0, 1], C = ``channels``."""
MODELLED_SCHEMA = pa.schema(
    [
        *ROW_COLUMNS,
        pa.field("hr_levels", pa.large_binary()),  # source rounded to 8-bit levels, uint8 (C, H, W); null when not scored
        pa.field("lr", pa.large_binary()),  # uint8 (3, lr_height, lr_width)
        pa.field("lr_width", pa.int32()),
        pa.field("lr_height", pa.int32()),
        pa.field("plain_rec", pa.large_binary()),  # uint8 (C, H, W)
        pa.field("rec", pa.large_binary()),  # uint8 (C, H, W); null when equal to plain_rec
        pa.field("diagnostics", pa.string()),  # JSON of DIAGNOSTIC_FIELDS: tile, memory, changed, losses, seconds, kept, ...
        pa.field("lr_file", pa.binary()),  # the stored file when the model stage made it (JPEG coefficients)
        pa.field("scale", pa.int8()),  # the model's scale factor (the write stage records without loading the model)
    ]
)
"""Model stage -> write stage."""
SUMMARY_SCHEMA = pa.schema(
    [
        pa.field("ok", pa.int64()),
        pa.field("failed", pa.int64()),
        pa.field("part", pa.string()),
        pa.field("failures", pa.string()),  # JSON list of {"key", "error"}, at most MAX_FAILURE_SAMPLES
        pa.field("reasons", pa.string()),  # JSON {reason: count}; reason = the error's exception type
        pa.field("fatal", pa.string()),  # the part could not be written: the output store failed; the run stops
    ]
)
"""Write stage -> driver: one small row per batch (the driver keeps counts, never rows)."""
SOURCE_FIELDS = ("source_version", "source_bytes", "source_sha256")
"""What the metric row and the sidecar keep of the source's content (resume redoes an image when it changes)."""
MAX_FAILURE_SAMPLES = 20
