"""The actor that Ray Data's pool runs: load the model once, then read, optimise and write per image."""

from __future__ import annotations

import json
import os
import socket
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from ..imageio import decode_image
from ..service import Downscaler
from ..storage import Storage, StorageOptions, open_uri
from .schema import rows_to_table
from .settings import PipelineSettings
from .sources import iter_tar_images, output_stem

__all__ = ["HCDWorker", "process_bytes"]


def _read_uri(uri: str, options: StorageOptions) -> bytes:
    fs, path = open_uri(uri, options)
    with fs.open(path, "rb") as fh:
        return fh.read()


def process_bytes(
    downscaler: Downscaler,
    out: Storage,
    key: str,
    source_uri: str,
    load: Callable[[], bytes],
    run_id: str,
    worker: str,
) -> dict[str, Any]:
    """Process one image and write ``lr/<stem>.png`` then ``lr/<stem>.json`` (the commit marker).

    Never raises for a bad image or a failed read/write: the row says ``status = "failed"`` and why.
    """
    row: dict[str, Any] = {"key": key, "source_uri": source_uri, "run_id": run_id, "worker": worker, **_settings_cols(downscaler)}
    try:
        img = decode_image(load(), source_uri)
        row.update(width=img.width, height=img.height, channels=int(img.pixels.shape[0]), bit_depth=img.bit_depth)
        res = downscaler.process(img)
        stem = output_stem(key)
        png_key, side_key = f"lr/{stem}.png", f"lr/{stem}.json"
        side = {**res.sidecar, "key": key}
        out.write(png_key, res.png)
        out.write(side_key, (json.dumps(side, indent=1) + "\n").encode())
        row.update(
            status="ok",
            lr_uri=out.uri_of(png_key),
            lr_width=int(res.lr.shape[-1]),
            lr_height=int(res.lr.shape[-2]),
            changed_values=int(res.sidecar["changed_values"]),  # type: ignore[call-overload]
            seconds=float(res.sidecar["seconds"]),  # type: ignore[arg-type]
        )
        if res.plain is not None and res.optimised is not None:
            row.update(
                plain_psnr_y=res.plain.psnr_y,
                plain_ssim_y=res.plain.ssim_y,
                plain_psnr_rgb=res.plain.psnr_rgb,
                plain_ssim_rgb=res.plain.ssim_rgb,
                psnr_y=res.optimised.psnr_y,
                ssim_y=res.optimised.ssim_y,
                psnr_rgb=res.optimised.psnr_rgb,
                ssim_rgb=res.optimised.ssim_rgb,
                gain_y=res.optimised.psnr_y - res.plain.psnr_y,
            )
    except Exception as exc:  # noqa: BLE001 - one image must never crash the job
        # Storage clients raise their own types (botocore, aiohttp) besides OSError; every failure,
        # bad image or not, is recorded in the row with its type and message, and the run exits non-zero.
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    row["finished_at"] = datetime.now(UTC)
    return row


def _settings_cols(ds: Downscaler) -> dict[str, Any]:
    d = ds.describe()
    return {
        "model": d["model"],
        "scale": d["scale"],
        "weights_sha256": d["weights_sha256"],
        "method": d["method"],
        "preset": d["preset"],
        "settings_json": json.dumps(d["hcd"], sort_keys=True),
        "seed": d["seed"],
    }


class HCDWorker:
    """Callable class for ``Dataset.map_batches``: input items in, metric rows (pyarrow) out."""

    def __init__(self, settings: dict[str, Any], run_id: str, done_keys: list[str] | None = None) -> None:
        import torch

        cfg = _settings_from_dict(settings)
        torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.run_id = run_id
        self.done = set(done_keys or ())
        self.downscaler = Downscaler(cfg.downscale_settings())
        self.out = Storage(cfg.output, cfg.storage)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        rows: list[dict[str, Any]] = []
        for kind, uri, key in zip(batch["kind"], batch["uri"], batch["key"], strict=True):
            kind, uri, key = str(kind), str(uri), str(key)
            if kind == "file":
                rows.append(
                    process_bytes(
                        self.downscaler, self.out, key, uri, lambda u=uri: _read_uri(u, self.cfg.storage), self.run_id, self.worker
                    )
                )
                continue
            try:
                members = list(iter_tar_images(_read_uri(uri, self.cfg.storage)))
            except (OSError, ValueError, EOFError, tarfile.TarError) as exc:
                rows.append(self._failed(key, uri, f"cannot read tar shard: {type(exc).__name__}: {exc}"))
                continue
            for name, data in members:
                mkey = f"{key}/{name}"
                if mkey in self.done:
                    continue
                rows.append(process_bytes(self.downscaler, self.out, mkey, f"{uri}#{name}", lambda d=data: d, self.run_id, self.worker))
        return rows_to_table(rows)

    def _failed(self, key: str, uri: str, error: str) -> dict[str, Any]:
        return {
            "key": key,
            "source_uri": uri,
            "status": "failed",
            "error": error,
            "run_id": self.run_id,
            "worker": self.worker,
            "finished_at": datetime.now(UTC),
            **_settings_cols(self.downscaler),
        }


def _settings_from_dict(d: dict[str, Any]) -> PipelineSettings:
    d = dict(d)
    d["storage"] = StorageOptions(**d.get("storage", {}))
    return PipelineSettings(**d)
