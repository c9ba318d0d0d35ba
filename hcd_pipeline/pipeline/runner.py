"""Building and running the Ray Data pipeline; the final metric table; resume.

Output layout under ``settings.output``::

    job.json                      settings fingerprint (a rerun must match it)
    lr/<key stem>.png             optimised 8-bit LR (tar members: lr/<shard>/<member stem>.png)
    lr/<key stem>.json            sidecar, written after the PNG: its presence marks the pair complete
    metrics/parts/<run>-NNNNN.parquet   every attempt, as written during runs
    metrics.parquet               final table: one row per image key (latest attempt, "ok" preferred)
    runs/<run>.json               summary of each run

Resume: images whose key has an ``ok`` row and a sidecar are skipped; everything else (missing,
failed, interrupted) is redone. Outputs are deterministic, so a redo writes the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from ..errors import SettingsError
from ..storage import Storage, StorageOptions
from .schema import METRICS_SCHEMA
from .settings import PipelineSettings
from .sources import InputItem, list_inputs, output_stem

__all__ = ["RunSummary", "build_dataset", "run_pipeline", "read_metrics", "final_rows", "plan"]


@dataclass
class RunSummary:
    """What a run did. ``failed_by_reason`` maps the error's first words to counts."""

    run_id: str
    output: str
    items: int
    skipped: int
    done: int
    failed: int
    seconds: float
    images_per_second: float
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_parts(out: Storage) -> pa.Table:
    keys = [k for k in out.list("metrics/parts") if k.endswith(".parquet")]
    tables = [pq.read_table(io.BytesIO(out.read(k))).cast(METRICS_SCHEMA) for k in keys]
    if not tables:
        return METRICS_SCHEMA.empty_table()
    return pa.concat_tables(tables)


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


def read_metrics(uri: str, options: StorageOptions | None = None, *, all_attempts: bool = False) -> pa.Table:
    """The metric table of a run output (final rows, or every attempt with ``all_attempts``)."""
    out = Storage(uri, options)
    if not all_attempts and out.exists("metrics.parquet"):
        return pq.read_table(io.BytesIO(out.read("metrics.parquet"))).cast(METRICS_SCHEMA)
    parts = _read_parts(out)
    return parts if all_attempts else final_rows(parts)


def _write_table(out: Storage, key: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    out.write(key, buf.getvalue())


def _check_job(out: Storage, settings: PipelineSettings) -> None:
    fp = {"fingerprint": settings.fingerprint_hash(), "settings": settings.result_fingerprint()}
    if out.exists("job.json"):
        prev = json.loads(out.read("job.json"))
        if prev.get("fingerprint") != fp["fingerprint"]:
            raise SettingsError(
                f"{out.uri_of('job.json')}: output was made with other settings {prev.get('settings')}; "
                f"use another output or delete it (this run: {fp['settings']})"
            )
    else:
        out.write("job.json", (json.dumps(fp, indent=1, sort_keys=True) + "\n").encode())


def plan(settings: PipelineSettings) -> tuple[list[InputItem], list[str], int]:
    """(items to process, done member keys for tar shards, number of skipped file items)."""
    out = Storage(settings.output, settings.storage)
    items = list_inputs(settings.input, settings.storage)
    if settings.limit is not None:
        items = items[: settings.limit]
    previous = final_rows(_read_parts(out))
    ok_keys = set(previous.filter(pc.equal(previous["status"], "ok"))["key"].to_pylist()) if previous.num_rows else set()
    sidecars = {k for k in out.list("lr") if k.endswith(".json")}
    done = {k for k in ok_keys if f"lr/{output_stem(k)}.json" in sidecars}
    todo = [it for it in items if not (it.kind == "file" and it.key in done)]
    skipped = len(items) - len(todo)
    return todo, sorted(k for k in done if "/" in k), skipped


def build_dataset(settings: PipelineSettings, items: list[InputItem], run_id: str, done_member_keys: list[str] | None = None):  # noqa: ANN201
    """The Ray Dataset: input items -> autoscaling HCD actor pool -> metric rows (pyarrow blocks).

    Compose it with your own Ray code (filter, union, write); nothing runs until it is consumed.
    """
    import ray.data

    from .worker import HCDWorker

    ds = ray.data.from_items([{"kind": it.kind, "uri": it.uri, "key": it.key} for it in items], override_num_blocks=max(1, len(items)))
    return ds.map_batches(
        HCDWorker,
        fn_constructor_kwargs={"settings": settings.to_dict(), "run_id": run_id, "done_keys": done_member_keys or []},
        compute=ray.data.ActorPoolStrategy(min_size=settings.min_actors, max_size=settings.max_actors),
        batch_size=settings.batch_size,
        batch_format="numpy",
        num_cpus=settings.threads,
        num_gpus=settings.num_gpus or None,
    )


def _init_ray(settings: PipelineSettings, quiet: bool) -> None:
    import ray

    if ray.is_initialized():
        return
    if settings.address or os.environ.get("RAY_ADDRESS"):
        # Inside a submitted job RAY_ADDRESS points at the cluster.
        ray.init(address=settings.address or None, log_to_driver=not quiet)
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=not quiet, configure_logging=True, logging_level="WARNING")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = not quiet
    ctx.print_on_execution_start = not quiet


def run_pipeline(settings: PipelineSettings, *, progress: bool = True, run_id: str | None = None) -> RunSummary:
    """Run (or resume) a job; returns its summary. Raises if the output storage fails."""
    from dataclasses import replace

    from ..service import Downscaler

    # Model, scale and preset errors surface here, before Ray starts (on CPU: the driver may have no GPU).
    Downscaler(replace(settings.downscale_settings(), device="cpu"))
    out = Storage(settings.output, settings.storage)
    _check_job(out, settings)
    run_id = run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    items, done_members, skipped = plan(settings)
    t0 = time.perf_counter()
    n_done = n_failed = 0
    reasons: Counter[str] = Counter()
    failures: list[dict[str, str]] = []
    if items:
        _init_ray(settings, quiet=not progress)
        ds = build_dataset(settings, items, run_id, done_members)
        pending: list[pa.Table] = []
        pending_rows = 0
        part = 0
        bar = tqdm(total=len(items), desc="images", unit="img", disable=not progress)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            tbl = batch.cast(METRICS_SCHEMA)
            pending.append(tbl)
            pending_rows += tbl.num_rows
            for status, err, key in zip(tbl["status"].to_pylist(), tbl["error"].to_pylist(), tbl["key"].to_pylist(), strict=True):
                if status == "ok":
                    n_done += 1
                else:
                    n_failed += 1
                    reasons[" ".join(str(err).split(":")[:1])] += 1
                    failures.append({"key": key, "error": str(err)})
            bar.update(tbl.num_rows)
            rate = (n_done + n_failed) / max(1e-9, time.perf_counter() - t0)
            bar.set_postfix(done=n_done, failed=n_failed, per_s=f"{rate:.2f}")
            if pending_rows >= settings.part_rows:
                _write_table(out, f"metrics/parts/{run_id}-{part:05d}.parquet", pa.concat_tables(pending))
                part += 1
                pending, pending_rows = [], 0
        bar.close()
        if pending_rows:
            _write_table(out, f"metrics/parts/{run_id}-{part:05d}.parquet", pa.concat_tables(pending))
    _write_table(out, "metrics.parquet", final_rows(_read_parts(out)))
    seconds = time.perf_counter() - t0
    summary = RunSummary(
        run_id=run_id,
        output=settings.output,
        items=len(items) + skipped,
        skipped=skipped,
        done=n_done,
        failed=n_failed,
        seconds=round(seconds, 3),
        images_per_second=round((n_done + n_failed) / seconds, 4) if seconds > 0 else 0.0,
        failed_by_reason=dict(reasons),
        failures=failures,
    )
    out.write(f"runs/{run_id}.json", (json.dumps(summary.to_dict(), indent=1) + "\n").encode())
    return summary
