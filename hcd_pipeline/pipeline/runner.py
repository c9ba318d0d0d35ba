"""Building and running the Ray Data pipeline; the final metric table; resume.

Output layout under ``settings.output``::

    job.json                      input, output layout and settings fingerprint (a rerun must match them)
    lr/<key>.png                  optimised 8-bit LR, named by the whole key (lr/a/x.jpg.png; tar members:
                                  lr/<shard>.tar/<member>.png); .jpg / .webp with lr_format jpeg / webp
    lr/<key>.json                 sidecar, written after the PNG: its presence marks the pair complete
    metrics/parts/<run>-*.parquet every attempt: one part per write batch, merged into
                                  <run>-compacted.parquet when the run ends
    metrics.parquet               final table: one row per image key (latest attempt, "ok" preferred)
    runs/<run>.json               summary of each run

The driver holds settings, object references and counts, never a row or a key per image: the listing and
the resume plan run in a Ray task (:mod:`.plan`), the stages (:mod:`.stages`) write LR, sidecars and
Parquet parts themselves and send back one summary row per batch, and ``metrics.parquet`` is rebuilt in a
Ray task.

Resume: images whose key has an ``ok`` row and a sidecar, and whose source the listing shows unchanged (size and
modification time, or ETag), are skipped; everything else (missing, failed, interrupted, replaced) is redone.
Outputs are deterministic, so a redo of an unchanged source writes the same bytes. Keys are checked once, when
listed (:mod:`.keys`): a key that would leave ``lr/`` is a failed row, never a write.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from hcd_pipeline.core import errors
from hcd_pipeline.core.errors import HcdError, SettingsError, StorageError
from hcd_pipeline.io.storage import Storage, StorageOptions
from hcd_pipeline.pipeline.cluster import check_fits, check_ray_address, check_ray_reachable, init_ray, is_local
from hcd_pipeline.pipeline.keys import LAYOUT, check_disjoint
from hcd_pipeline.pipeline.plan import done_keys, final_rows, finalize, iter_manifest
from hcd_pipeline.pipeline.progress import Progress
from hcd_pipeline.pipeline.schema import METRICS_SCHEMA, read_part
from hcd_pipeline.pipeline.settings import PipelineSettings, recorded_model
from hcd_pipeline.pipeline.sources import check_input
from hcd_pipeline.pipeline.stages import ModelStage, decode_stage, write_stage

__all__ = [
    "RunSummary",
    "build_dataset",
    "preflight",
    "run_pipeline",
    "read_metrics",
    "final_rows",
    "plan_run",
]


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
    failures: list[dict[str, str]] = field(default_factory=list)  # the first MAX_FAILURE_SAMPLES per batch, at most 100
    recovered: int = 0  # images of a killed run whose rows were rebuilt from their sidecars (not redone)
    set_aside: list[str] = field(default_factory=list)  # unreadable parts moved to metrics/corrupt/ (images recovered or redone)
    table: dict[str, Any] = field(default_factory=dict)  # metrics.parquet: rows, ok, scored, and means of the scored
    phases: dict[str, float] = field(default_factory=dict)  # seconds: plan (listing, resume set), process, finalize

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_FINAL_BY = ("key", "status", "finished_at", "source_version")  # what final_rows chooses by


def _read_parts(out: Storage, columns: list[str] | None = None) -> pa.Table:
    keys = [k for k in out.iter_keys("metrics/parts") if k.endswith(".parquet")]
    tables = [read_part(out, k, columns) for k in keys]
    if tables:
        return pa.concat_tables(tables)
    empty = METRICS_SCHEMA.empty_table()
    return empty if columns is None else empty.select(columns)


def read_metrics(
    uri: str, options: StorageOptions | None = None, *, all_attempts: bool = False, columns: list[str] | None = None
) -> pa.Table:
    """The metric table of a run output (final rows, or every attempt with ``all_attempts``), only ``columns``
    when given (the columns that choose the final rows are read too, and dropped again).

    Files of every schema version read into the current one (:func:`.schema.conform`).
    """
    out = Storage(uri, options)
    if not all_attempts and out.exists("metrics.parquet"):
        return read_part(out, "metrics.parquet", columns)
    need = None if columns is None else list(dict.fromkeys([*columns, *([] if all_attempts else _FINAL_BY)]))
    parts = _read_parts(out, need)
    rows = parts if all_attempts else final_rows(parts)
    return rows if columns is None else rows.select(columns)


def _input_id(uri: str) -> str:
    """The input as ``job.json`` records it: local paths absolute (a rerun from another folder is the same input)."""
    return uri.rstrip("/") if "://" in uri else os.path.abspath(uri)


def _job_record(settings: PipelineSettings) -> dict[str, Any]:
    """What ``job.json`` holds: the fingerprint, the resolved settings, the input and the output layout."""
    return {"fingerprint": settings.fingerprint_hash(), "settings": settings.result_fingerprint(), "input": _input_id(settings.input),
            "layout": LAYOUT}  # fmt: skip


def _write_job(out: Storage, settings: PipelineSettings) -> None:
    """Write ``job.json`` for a new output (an existing one was checked by :func:`_check_job`)."""
    if not out.exists("job.json"):
        out.write("job.json", (json.dumps(_job_record(settings), indent=1, sort_keys=True) + "\n").encode())


def _check_job(out: Storage, settings: PipelineSettings) -> None:
    """Refuse to add to an output made from another input, in another layout, with other settings or (unless allowed)
    on another device kind. A new output (no ``job.json``) passes."""
    fp = _job_record(settings)
    where = out.uri_of("job.json")
    if not out.exists("job.json"):
        return
    try:
        job = json.loads(out.read("job.json"))
        if not isinstance(job, dict):
            raise ValueError(f"a JSON object expected, got {type(job).__name__}")
    except ValueError as exc:
        raise SettingsError(f"{where}: not a job file of hcd_pipeline ({exc}); use another output") from exc
    if job.get("layout", 1) != LAYOUT:
        raise SettingsError(
            f"{where}: output written in layout {job.get('layout', 1)} by an earlier release (LR names without the source's "
            f"extension); this release writes layout {LAYOUT} and does not add to it: use a new output (the old one stays readable)"
        )
    if job.get("input") != fp["input"]:
        raise SettingsError(f"{where}: output was made from the input {job.get('input')}, not {fp['input']}; use another output")
    then = dict(job.get("settings") or {})
    if "model" in then:  # as earlier releases recorded it: unresolved (None for the default), names of their time
        then["model"], then["scale"] = recorded_model(then.get("model"), then.get("scale"), then.get("weights"))
    now = json.loads(json.dumps(fp["settings"]))  # as job.json holds it
    mixed = ("device", "gpu_mode") if settings.allow_mixed_devices else ()
    changed = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k) and k not in mixed)
    if "device" in changed:
        raise SettingsError(
            f"{where}: output was made on {then.get('device', 'cpu')}, this run would add {settings.device_kind()} "
            "outputs (their bytes differ); use another output, or allow_mixed_devices (--allow-mixed-devices) to mix them knowingly"
        )
    if changed:
        raise SettingsError(
            f"{where}: output was made with other settings (differing: {', '.join(changed)}; then "
            f"{ {k: then.get(k) for k in changed} }, now { {k: now.get(k) for k in changed} }); use another output or delete it"
        )


def _plan_gen(settings: dict[str, Any], run_id: str):  # noqa: ANN202 - a Ray generator task
    """Manifest tables, then the done keys (or None without tar shards), then the counts."""
    from hcd_pipeline.pipeline.stages import settings_from_dict

    cfg = settings_from_dict(settings)
    out = Storage(cfg.output, cfg.storage)
    set_aside: list[str] = []
    done, recovered = done_keys(out, run_id, set_aside)
    counts: dict[str, Any] = {}
    yield from iter_manifest(cfg, done, counts)
    yield done if counts["tar"] else None
    yield {**counts, "recovered": recovered, "set_aside": set_aside}


def _finalize(settings: dict[str, Any], run_id: str) -> dict[str, Any]:
    from hcd_pipeline.pipeline.stages import settings_from_dict

    cfg = settings_from_dict(settings)
    return finalize(Storage(cfg.output, cfg.storage), run_id)


def plan_run(settings: PipelineSettings, run_id: str) -> tuple[list[Any], Any, dict[str, int]]:
    """(manifest object refs, done-keys ref or None, counts) from the plan task; Ray must be running."""
    import ray

    gen = ray.remote(num_cpus=1)(_plan_gen).remote(settings.to_dict(), run_id)
    refs = list(gen)
    counts = ray.get(refs[-1])
    return refs[:-2], refs[-2], counts


DECODE_TASK_MEMORY = 256 * 1024 * 1024
"""Memory (bytes) reserved for each decode task."""


def build_dataset(settings: PipelineSettings, manifest: list[Any], run_id: str, done_ref: Any = None):  # noqa: ANN201
    """The Ray Dataset of a run: manifest -> decode (CPU tasks) -> model (actor pool) -> write (CPU tasks).

    ``manifest``: object refs of Arrow tables (kind, uri, key) as :func:`plan_run` makes them. Each output
    row summarises one written batch (:data:`.schema.SUMMARY_SCHEMA`). Nothing runs until it is consumed.
    """
    import ray.data

    sd = settings.to_dict()
    # Map tasks coalesce their outputs into large blocks: cut the manifest into decode-task-sized blocks so
    # that every model call gets one decode task's images and every write task one model call's results.
    per_task = settings.decode_rows()
    ds = ray.data.from_arrow_refs(manifest).repartition(target_num_rows_per_block=per_task)
    ds = ds.map_batches(
        decode_stage,
        fn_kwargs={"settings": sd, "done_members": [done_ref] if done_ref is not None else None},
        batch_size=per_task,
        batch_format="pyarrow",
        num_cpus=settings.decode_cpus,
        concurrency=settings.decode_tasks,
        # A decode task holds up to a block of decoded images (Ray Data cuts blocks at 128 MiB) and its inputs.
        # Declaring it also keeps the stage its own: Ray fuses a task stage into the actor stage after it when
        # their resources are equal, and the model actors would then read and decode while the accelerator
        # waits (tests/test_archive.py checks the plan).
        memory=DECODE_TASK_MEMORY,
    )
    ds = ds.map_batches(
        ModelStage,
        fn_constructor_kwargs={"settings": sd},
        compute=ray.data.ActorPoolStrategy(min_size=settings.min_actors, max_size=settings.max_actors),
        batch_size=settings.model_batch(),
        batch_format="pyarrow",
        num_cpus=settings.threads,
        num_gpus=settings.num_gpus or None,
    )
    return ds.map_batches(
        write_stage,
        fn_kwargs={"settings": sd, "run_id": run_id},
        batch_size=None,  # one part per model batch: rows land as soon as their images are written
        batch_format="pyarrow",
        num_cpus=settings.write_cpus,
        concurrency=settings.write_tasks,
    )


def _storage_cause(exc: BaseException) -> BaseException | None:
    """The first of our own errors (StorageError, ...) in an exception's cause chain (Ray wraps task errors)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, HcdError):
            return cur
        if getattr(cur, "actor_init_failed", False):
            # An actor whose constructor raised (a GPU actor on a node without CUDA): Ray keeps only the text.
            found = _OUR_ERROR.findall(str(cur))
            if found:
                kind, message = found[-1]
                return getattr(errors, kind, HcdError)(f"a model actor could not start: {message}")
        cur = cur.__cause__ or cur.__context__ or getattr(cur, "cause", None)
    return None


_OUR_ERROR = re.compile(r"hcd_pipeline\.core\.errors\.(\w+): (.+)$", re.M)


def preflight(settings: PipelineSettings) -> None:
    """The checks that need no Ray, so that a bad run fails in a second, in one line, writing nothing: the model,
    scale and preset (loaded on the CPU: the driver may have no GPU), input and output apart, the input present, an
    existing output's ``job.json`` agreeing (it is written when the run starts), a Ray address that Ray can join."""
    from dataclasses import replace

    from hcd_pipeline.downscaler import Downscaler

    check_ray_address(settings.address)
    if not is_local(settings):
        check_ray_reachable(settings.address)
    Downscaler(replace(settings.downscale_settings(), device="cpu"))
    check_disjoint(settings.input, settings.output)
    check_input(settings.input, settings.storage)
    _check_job(Storage(settings.output, settings.storage), settings)


def run_pipeline(
    settings: PipelineSettings,
    *,
    progress: bool | str = True,
    run_id: str | None = None,
    verbose: bool = False,
    preflighted: bool = False,
) -> RunSummary:
    """Run (or resume) a job; returns its summary. Raises if the output storage fails.

    ``progress``: True / ``"auto"`` (a bar in a terminal, a line every ``settings.progress_interval`` seconds
    otherwise), ``"bar"``, ``"lines"``, or False. ``verbose``: Ray's worker logs and warnings reach the console.
    ``preflighted``: the caller ran :func:`preflight` on these settings already (the CLI does, before it starts Ray).
    """
    import ray

    if not preflighted:
        preflight(settings)
    out = Storage(settings.output, settings.storage)
    _write_job(out, settings)
    run_id = run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    mode = "auto" if progress is True else ("off" if progress is False else str(progress))
    init_ray(settings, verbose=verbose)
    if is_local(settings):
        check_fits(settings, ray.cluster_resources())
    t0 = time.perf_counter()
    try:
        manifest, done_ref, counts = plan_run(settings, run_id)
        t_plan = time.perf_counter()
        reasons: Counter[str] = Counter()
        failures: list[dict[str, str]] = []
        # Tar shards expand to an unknown number of images: the bar then counts images without a total.
        bar = Progress(None if counts["tar"] else counts["todo"], mode=mode, interval=settings.progress_interval)
        if manifest:
            for batch in build_dataset(settings, manifest, run_id, done_ref).iter_batches(batch_size=None, batch_format="pyarrow"):
                for r in batch.to_pylist():  # one row per written batch, not per image
                    if r["fatal"]:
                        bar.close()
                        raise StorageError(r["fatal"])
                    bar.update(r["ok"], r["failed"])
                    reasons.update(json.loads(r["reasons"]))
                    failures.extend(json.loads(r["failures"])[: max(0, 100 - len(failures))])
        bar.close()
        t_process = time.perf_counter()
        table = ray.get(ray.remote(num_cpus=1)(_finalize).remote(settings.to_dict(), run_id))
    except Exception as exc:
        cause = _storage_cause(exc)
        if cause is not None and cause is not exc:
            raise cause from exc
        raise
    seconds = time.perf_counter() - t0
    n = bar.done + bar.failed
    summary = RunSummary(
        run_id=run_id,
        output=settings.output,
        items=counts["items"],
        skipped=counts["skipped"],
        done=bar.done,
        failed=bar.failed,
        seconds=round(seconds, 3),
        images_per_second=round(n / seconds, 4) if seconds > 0 else 0.0,
        failed_by_reason=dict(reasons),
        failures=failures,
        recovered=counts["recovered"],
        set_aside=counts["set_aside"],
        table=table,
        phases={
            "plan": round(t_plan - t0, 3),
            "process": round(t_process - t_plan, 3),
            "finalize": round(time.perf_counter() - t_process, 3),
        },
    )
    out.write(f"runs/{run_id}.json", (json.dumps(summary.to_dict(), indent=1) + "\n").encode())
    return summary
