"""The Parquet metric table: one row per image and attempt; its schema is stable and documented.

See the README section "Parquet quality reports" for the meaning of each column.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

__all__ = ["METRICS_SCHEMA", "empty_row", "rows_to_table"]

METRICS_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),  # image key relative to the input (tar: shard/member)
        pa.field("source_uri", pa.string()),
        pa.field("lr_uri", pa.string()),  # where the LR PNG was written (null if failed)
        pa.field("status", pa.string(), nullable=False),  # "ok" or "failed"
        pa.field("error", pa.string()),  # reason, for failed rows
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("channels", pa.int8()),
        pa.field("bit_depth", pa.int8()),
        pa.field("lr_width", pa.int32()),
        pa.field("lr_height", pa.int32()),
        pa.field("model", pa.string()),
        pa.field("scale", pa.int8()),
        pa.field("weights_sha256", pa.string()),
        pa.field("method", pa.string()),
        pa.field("preset", pa.string()),
        pa.field("settings_json", pa.string()),  # the full HCD settings
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
        pa.field("changed_values", pa.int64()),  # LR values that differ from the plain LR
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
