"""The three stages of a pipeline run, as Ray Data ``map_batches`` callables (pyarrow tables in and out).

    manifest (kind, uri, key)
      -> decode   (CPU tasks)   read bytes, expand tar shards, decode     -> one row per image
      -> model    (actor pool)  HCD on the accelerator: tensors in/out     -> LR, reconstructions
      -> write    (CPU tasks)   alpha, PNG, scores, LR + sidecar, Parquet  -> one summary row per batch

Only the model stage holds a model (and a GPU when there is one); the stages exchange raw arrays so that
no stage waits on another's codec or storage. A bad image is a row with ``error`` set that later stages
pass along; the write stage records it as a failed metric row. Every stage is a plain function or class
that can be called without Ray (``benchmarks/gpu_check.py`` and the tests do).
"""

from __future__ import annotations

import json
import os
import socket
import tarfile
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hcd_pipeline.core.errors import ImageReadError, StorageError
from hcd_pipeline.core.metrics import psnr_gain
from hcd_pipeline.downscaler import Downscaler, ImageInfo, ModelResult, Recorder
from hcd_pipeline.io import jsonfile as jsonutil
from hcd_pipeline.io.metadata import SourceMetadata
from hcd_pipeline.io.storage import Storage, StorageOptions, open_uri
from hcd_pipeline.pipeline.keys import UnsafeKey, check_key, lr_key, sidecar_key
from hcd_pipeline.pipeline.model_stage import DIAGNOSTIC_FIELDS, ModelStageCore, decoded_row, failed_row, pixels_tensor
from hcd_pipeline.pipeline.schema import (
    DECODED_SCHEMA,
    MAX_FAILURE_SAMPLES,
    MODELLED_SCHEMA,
    SOURCE_FIELDS,
    SUMMARY_SCHEMA,
    rows_to_table,
    write_part,
)
from hcd_pipeline.pipeline.settings import settings_from_dict
from hcd_pipeline.pipeline.sources import is_image_name

__all__ = [
    "decode_stage",
    "ModelStage",
    "write_stage",
    "settings_from_dict",
    "row_metrics",
    "settings_columns",
    "failure_reason",
]

_MAX_DECODED_BYTES = 64 << 20  # one decode output table is cut here (tar shards expand to many images)


MAX_SOURCE_BYTES = 1 << 30
"""Largest source file or tar member read (1 GiB: far above any image under the pixel limit, far below a bomb)."""


def _read_uri(uri: str, options: StorageOptions) -> bytes:
    fs, path = open_uri(uri, options)
    with fs.open(path, "rb") as fh:
        data = fh.read(MAX_SOURCE_BYTES + 1)
    if len(data) > MAX_SOURCE_BYTES:
        raise ImageReadError(f"{uri}: more than {MAX_SOURCE_BYTES} bytes; not read (the limit for one image file)")
    return data


def _try_read(uri: str, options: StorageOptions) -> bytes | BaseException:
    try:
        return _read_uri(uri, options)
    except Exception as exc:  # noqa: BLE001 - a failed read is a failed row; the run goes on
        return exc


def _tar_members(key: str, uri: str, version: str, options: StorageOptions, done: pa.Array | None) -> Iterator[dict[str, Any]]:
    """Decoded rows of a tar shard's image members, read as a stream.

    Member keys are ``<shard key>/<member name>``; a member whose name fails :func:`~.keys.check_key`, a link
    member, and a second member of the same name are failed rows saying why (the first of a name is processed).
    A member that cannot be read (truncated data) is a failed row naming ``<shard>/<member>``; the members
    before it keep their rows. A damaged header ends the walk with one failed row for the rest of the shard.
    ``done``: tokens ``key\0version`` of finished members (:func:`~.plan.done_keys`); members carry the
    shard's version, so a changed shard is redone whole.
    """
    last = None
    seen: set[str] = set()
    try:
        fs, path = open_uri(uri, options)
        with fs.open(path, "rb") as fh, tarfile.open(fileobj=fh, mode="r|*") as tar:
            for member in tar:
                if not is_image_name(member.name) or member.isdir():
                    continue
                last = member.name
                where = f"{uri}#{member.name}"
                try:
                    mkey = f"{key}/{check_key(member.name)}"
                except UnsafeKey as exc:
                    yield failed_row(f"{key}/{member.name}", where, f"UnsafeKey: {exc}", version)
                    continue
                if not member.isfile():
                    yield failed_row(
                        mkey, where, f"UnsafeKey: tar member {member.name!r} is not a regular file (a link or a device); not read", version
                    )
                    continue
                if member.size > MAX_SOURCE_BYTES:  # a header may declare gigabytes (a .tar.gz bomb inflates to them)
                    yield failed_row(
                        mkey, where, f"ImageReadError: {where}: member of {member.size} bytes; larger than {MAX_SOURCE_BYTES}", version
                    )
                    continue
                if mkey in seen:
                    yield failed_row(mkey, where, f"DuplicateKey: a second member named {member.name!r}; the first is used", version)
                    continue
                seen.add(mkey)
                if done is not None and len(done) and pc.is_in(pa.array([f"{mkey}\0{version}"]), value_set=done)[0].as_py():
                    continue
                try:
                    fobj = tar.extractfile(member)
                    data = fobj.read() if fobj is not None else b""
                    if len(data) != member.size:
                        raise tarfile.ReadError(f"member truncated ({len(data)} of {member.size} bytes)")
                except (OSError, EOFError, tarfile.TarError) as exc:
                    yield failed_row(mkey, where, exc, version)
                    return  # nothing after a truncated member can be read from a stream
                yield decoded_row(mkey, where, data, version)
    except Exception as exc:  # noqa: BLE001 - storage clients and tarfile raise many types
        where = f" after member {last!r}" if last else ""
        yield failed_row(key, uri, f"cannot read tar shard{where}: {type(exc).__name__}: {exc}", version)


_DONE_CACHE: dict[str, pa.Array] = {}


def _resolve_done(done: pa.Array | list[Any] | None) -> pa.Array | None:
    """Done keys given directly, or as ``[ObjectRef]`` (fetched once per worker process)."""
    if done is None or isinstance(done, pa.Array):
        return done
    import ray

    ref = done[0]
    k = ref.hex()
    if k not in _DONE_CACHE:
        _DONE_CACHE.clear()
        _DONE_CACHE[k] = ray.get(ref)
    return _DONE_CACHE[k]


def decode_stage(batch: pa.Table, settings: dict[str, Any], done_members: pa.Array | list[Any] | None = None) -> Iterator[pa.Table]:
    """Manifest rows (:data:`~.plan.MANIFEST_SCHEMA`) -> decoded images (:data:`DECODED_SCHEMA`), in tables of at most ~64 MiB.

    ``done_members``: ``key\0version`` tokens of finished tar members to skip (an Arrow array, or ``[ObjectRef]`` of one).
    """
    options = StorageOptions(**settings.get("storage", {}))
    done = _resolve_done(done_members)
    rows: list[dict[str, Any]] = []
    size = 0
    items = batch.to_pylist()
    # File reads go out concurrently (object-store latency overlaps); decoding stays in this thread, in order.
    fetched = [_pool().submit(_try_read, it["uri"], options) for it in items if it["kind"] == "file"]
    for it in items:
        key, uri, version = it["key"], it["uri"], it["version"]
        if it["kind"] == "tar":
            produced: Iterator[dict[str, Any]] = _tar_members(key, uri, version, options, done)
        elif it["kind"] == "invalid":
            produced = iter([failed_row(key, uri, it["error"], version)])
        else:
            data = fetched.pop(0).result()
            produced = iter(
                [failed_row(key, uri, data, version) if isinstance(data, BaseException) else decoded_row(key, uri, data, version)]
            )
        for row in produced:
            rows.append(row)
            size += len(row.get("pixels") or b"")
            if size >= _MAX_DECODED_BYTES:
                yield _by_size(rows)
                rows, size = [], 0
    if rows:
        yield _by_size(rows)


def _by_size(rows: list[dict[str, Any]]) -> pa.Table:
    """The rows ordered by image size (stable; failed rows first): the model stage cuts its calls from consecutive
    rows, and same-size images in one call are optimised together (``PipelineSettings.size_window``)."""
    return pa.Table.from_pylist(sorted(rows, key=lambda r: (r.get("height") or 0, r.get("width") or 0)), schema=DECODED_SCHEMA)


class ModelStage(ModelStageCore):
    """The actor pool's callable: :class:`~.model_stage.ModelStageCore` on Arrow tables (decoded rows in, rows with
    the LR and reconstructions out)."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = self.rows(batch.drop_columns(["pixels"]).to_pylist(), batch["pixels"].to_pylist())
        return pa.Table.from_pylist(rows, schema=MODELLED_SCHEMA)


def _model_result_of(row: dict[str, Any]) -> ModelResult:
    d = json.loads(row["diagnostics"])
    c, h, w = row["channels"], row["height"], row["width"]
    plain = pixels_tensor(row["plain_rec"], np.dtype(np.uint8), (c, h, w))
    rec = pixels_tensor(row["rec"], np.dtype(np.uint8), (c, h, w)) if row["rec"] is not None else plain
    lr = pixels_tensor(row["lr"], np.dtype(np.uint8), (3, row["lr_height"], row["lr_width"]))
    return ModelResult(lr=lr, plain_rec=plain, rec=rec, lr_file=row.get("lr_file"), **{f: d[f] for f in DIAGNOSTIC_FIELDS})  # type: ignore[arg-type]


class _Writer:
    """Per-process cache of what the write stage needs: the output storage and a :class:`Recorder` per scale.

    ``record`` needs the settings, the scale (each modelled row carries the one its model ran at) and the model's
    description (its name and the weights file's hash): no weights are loaded here; the model stage holds them.
    """

    _cache: dict[tuple[str, int | None], tuple[Storage, Recorder]] = {}

    @classmethod
    def get(cls, settings: dict[str, Any], scale: int | None) -> tuple[Storage, Recorder]:
        k = (json.dumps(settings, sort_keys=True, default=str), scale)
        if k not in cls._cache:
            cfg = settings_from_dict(settings)
            ds = replace(cfg.downscale_settings(), device="cpu")
            # Without a modelled row (an empty batch) the scale comes from the model itself, as before.
            recorder = Recorder(ds, scale) if scale is not None else Downscaler(ds)
            cls._cache[k] = (Storage(cfg.output, cfg.storage), recorder)
        return cls._cache[k]


def settings_columns(d: dict[str, Any]) -> dict[str, Any]:
    """The settings columns of a metric row from ``Recorder.describe()`` (or a sidecar, which holds it)."""
    return {
        "model": d["model"],
        "scale": d["scale"],
        "weights_sha256": d["weights_sha256"],
        "method": d["method"],
        "preset": d["preset"],
        "settings_json": json.dumps(d["hcd"], sort_keys=True),
        "settings": d["hcd"],
        "seed": d["seed"],
    }


def _prepare_one(ds: Recorder, row: dict[str, Any], base: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, bytes, str, bytes] | None]:
    """The CPU part of writing one image: (its metric row, (LR key, LR file, sidecar key, sidecar) or None if it failed)."""
    res: dict[str, Any] = {**base, **{k: row.get(k) for k in ("key", "source_uri", *SOURCE_FIELDS)}}
    if row["width"] is not None:
        res.update(width=row["width"], height=row["height"], channels=row["channels"], bit_depth=row["bit_depth"])
    if row["error"] is not None:
        res.update(status="failed", error=row["error"])
        return res, None
    try:
        c, h, w = row["channels"], row["height"], row["width"]
        meta = SourceMetadata(icc=row.get("icc"), exif=row.get("exif"))
        info = ImageInfo(row["source_uri"], w, h, c, row["bit_depth"], row["source_mode"], meta)
        alpha = pixels_tensor(row["alpha"], np.dtype(np.float32), (1, h, w))
        hr_levels = pixels_tensor(row["hr_levels"], np.dtype(np.uint8), (c, h, w))
        done = ds.record(info, _model_result_of(row), alpha=alpha, hr_levels=hr_levels)
        sidecar = {**done.sidecar, "key": row["key"], **{k: row.get(k) for k in SOURCE_FIELDS}}
        side = (jsonutil.dumps(sidecar, indent=1) + "\n").encode()
        res.update(row_metrics(done.sidecar), status="ok")
        return res, (lr_key(row["key"], done.ext), done.data, sidecar_key(row["key"]), side)
    except Exception as exc:  # noqa: BLE001 - a failure is a row, whatever raised it
        res.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        return res, None


def _store_pair(out: Storage, files: tuple[str, bytes, str, bytes]) -> str | None:
    """Write the PNG, then its sidecar (the commit marker); the error text, or None when both are written."""
    try:
        out.write(files[0], files[1])
        out.write(files[2], files[3])
    except Exception as exc:  # noqa: BLE001 - storage clients raise many types; every failure is a row
        return f"{type(exc).__name__}: {exc}"
    return None


IO_THREADS = 16
"""Reads and writes in flight per decode / write task: object-store requests and fsyncs wait, not compute."""
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:  # one per worker process, made on first use
        _POOL = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="hcd-io")
    return _POOL


def failure_reason(error: str | None) -> str:
    """The group of a failure in summaries: the error's text before the first colon (its exception type)."""
    return str(error).split(":", 1)[0]


def row_metrics(sidecar: dict[str, Any]) -> dict[str, Any]:
    """The metric-row columns that a sidecar holds (also used to recover rows from sidecars).

    Infinite PSNRs are ``"inf"`` in JSON and ``inf`` in Parquet; ``gain_y`` follows :func:`~hcd_pipeline.core.metrics.psnr_gain`.
    """
    m = sidecar.get("metrics") or {}
    plain, opt = m.get("plain"), m.get("optimised")
    res: dict[str, Any] = {
        "lr_width": sidecar["lr_size"][0],
        "lr_height": sidecar["lr_size"][1],
        "changed_values": int(sidecar["changed_values"]),
        "seconds": float(sidecar["seconds"]),
        "kept": sidecar.get("kept"),
        "device": (sidecar.get("device") or {}).get("name"),
        "lr_format": sidecar.get("lr_format", "png"),
        "lr_quality": sidecar.get("lr_quality"),
        "lr_bytes": sidecar.get("lr_bytes"),
    }
    if plain and opt:
        names = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")
        res.update({f"plain_{k}": float(plain[k]) for k in names})
        res.update({k: float(opt[k]) for k in names})
        res["gain_y"] = psnr_gain(res["psnr_y"], res["plain_psnr_y"])
    if m.get("lr_vs_bicubic_psnr_y") is not None:
        res["lr_psnr_bicubic"] = float(m["lr_vs_bicubic_psnr_y"])
    return res


def write_stage(batch: pa.Table, settings: dict[str, Any], run_id: str) -> pa.Table:
    """Model-stage rows -> LR PNG + sidecar per image, one Parquet part of metric rows per batch -> a summary row.

    The sidecar is written after the PNG and marks the pair complete; the part is written after the pairs.
    A failed part write is reported in the summary's ``fatal`` column: the output store is gone and the driver
    stops the run with :class:`~hcd_pipeline.core.errors.StorageError`.
    """
    scales = {s for s in batch.column("scale").to_pylist() if s is not None} if "scale" in batch.column_names else set()
    out, ds = _Writer.get(settings, min(scales) if scales else None)  # one model per run: one scale
    base = {**settings_columns(ds.describe()), "run_id": run_id, "worker": f"{socket.gethostname()}:{os.getpid()}"}
    prepared = [_prepare_one(ds, r, base) for r in batch.to_pylist()]
    # The files go out concurrently (storage latency overlaps); each image's PNG still precedes its sidecar.
    errors = _pool().map(lambda f: _store_pair(out, f) if f is not None else None, [f for _, f in prepared])
    rows = []
    for (row, files), err in zip(prepared, errors, strict=True):
        if files is not None:
            if err is None:
                row["lr_uri"] = out.uri_of(files[0])
            else:
                for k in ("lr_width", "lr_height", "changed_values", "kept", "device", "lr_format", "lr_quality", "lr_bytes"):
                    row.pop(k, None)
                row.update(status="failed", error=err)
        row["finished_at"] = datetime.now(UTC)
        rows.append(row)
    part = f"metrics/parts/{run_id}-{uuid.uuid4().hex[:12]}.parquet"
    try:
        write_part(out, part, rows_to_table(rows))
    except StorageError as exc:
        # Sent as data: Ray would wrap the exception and drop its type. The batch's images that were written
        # get their rows back from their sidecars when the run is resumed.
        return pa.Table.from_pylist([{"ok": 0, "failed": 0, "part": part, "failures": "[]", "reasons": "{}", "fatal": str(exc)}],
                                    schema=SUMMARY_SCHEMA)  # fmt: skip
    failures = [{"key": r["key"], "error": r["error"]} for r in rows if r["status"] != "ok"]
    return pa.Table.from_pylist(
        [
            {
                "ok": len(rows) - len(failures),
                "failed": len(failures),
                "part": part,
                "failures": json.dumps(failures[:MAX_FAILURE_SAMPLES]),
                "reasons": json.dumps(dict(Counter(failure_reason(f["error"]) for f in failures))),
            }
        ],  # fmt: skip
        schema=SUMMARY_SCHEMA,
    )
