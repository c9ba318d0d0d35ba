"""The model stage's work without Ray or Arrow: decoded rows in, rows with the LR and reconstructions out.

:class:`~.stages.ModelStage` (the Ray actor) wraps :class:`ModelStageCore` in Arrow conversion; everything else the
actor does happens here, so that ``benchmarks/gpu_check.py`` runs exactly this on a GPU machine without Ray,
pyarrow or fsspec.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np
import torch

from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.core.metrics import to_uint8_levels
from hcd_pipeline.downscaler import Downscaler
from hcd_pipeline.io.images import DecodedImage, decode_image
from hcd_pipeline.pipeline.settings import settings_from_dict

__all__ = ["ModelStageCore", "DIAGNOSTIC_FIELDS", "pixels_tensor", "decoded_row", "failed_row"]

DIAGNOSTIC_FIELDS = ("tile", "memory", "changed", "losses", "seconds", "stage_seconds", "kept", "judged", "device", "batch")
"""The fields of :class:`~hcd_pipeline.downscaler.ModelResult` that travel as JSON (``diagnostics``); the rest are arrays."""


def failed_row(key: str, uri: str, exc: BaseException | str, version: str | None = None) -> dict[str, Any]:
    """The decode stage's row for an input that could not be read or decoded."""
    err = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return {"key": key, "source_uri": uri, "error": err, "source_version": version}


def decoded_row(key: str, uri: str, data: bytes, version: str | None = None) -> dict[str, Any]:
    """The decode stage's row for a file's bytes (``DECODED_SCHEMA``: float32 pixels and alpha as raw bytes), or a
    failed row; here so that ``benchmarks/gpu_check.py`` feeds the model stage exactly what the decode stage would.

    ``version``: the listing's version of the source (:func:`~hcd_pipeline.io.storage.version_of`); the row also gets
    the source's size and SHA-256, which the sidecar and the metric row keep.
    """
    source = {"source_version": version, "source_bytes": len(data), "source_sha256": hashlib.sha256(data).hexdigest()}
    try:
        img = decode_image(data, uri)
    except Exception as exc:  # noqa: BLE001 - a bad image is a failed row, whatever the codec raised
        return {**failed_row(key, uri, exc, version), **source}
    return {
        "key": key,
        "source_uri": uri,
        "error": None,
        **source,
        "width": img.width,
        "height": img.height,
        "channels": int(img.pixels.shape[0]),
        "bit_depth": img.bit_depth,
        "source_mode": img.source_mode,
        "alpha": None if img.alpha is None else img.alpha.contiguous().numpy().tobytes(),
        "icc": img.metadata.icc if img.metadata else None,
        "exif": img.metadata.exif if img.metadata else None,
        "pixels": img.pixels.contiguous().numpy().tobytes(),
    }


def pixels_tensor(buf: bytes | None, dtype: np.dtype, shape: tuple[int, ...]) -> torch.Tensor | None:
    """A tensor from a row's raw bytes (a copy: Arrow buffers are read-only)."""
    if buf is None:
        return None
    return torch.from_numpy(np.frombuffer(buf, dtype=dtype).reshape(shape).copy())


class ModelStageCore:
    """Loads the model once (on a GPU when the settings give actors GPUs); optimises decoded rows."""

    def __init__(self, settings: dict[str, Any]) -> None:
        cfg = settings_from_dict(settings)
        if cfg.device_kind() == "cuda" and not torch.cuda.is_available():
            # Never a silent CPU fallback: the outputs would be CPU bytes in an output that job.json says are GPU bytes.
            import socket

            raise SettingsError(
                f"model actor on {socket.gethostname()}: num_gpus {cfg.num_gpus} gives it a GPU, but torch {torch.__version__} "
                "sees no CUDA device there; give GPU nodes the CUDA build of torch (docker/Dockerfile), or run with --num-gpus 0"
            )
        self.downscaler = Downscaler(cfg.downscale_settings())
        self.hold_seconds = cfg.simulated_image_seconds  # 0 but on a simulated cluster

    def rows(self, rows: list[dict[str, Any]], pixels: list[bytes | None]) -> list[dict[str, Any]]:
        """Decoded rows (``DECODED_SCHEMA`` without ``pixels``) and their float32 pixel bytes -> modelled rows.

        Same-size images of a call are optimised together (``Downscaler.batch_items``: by the GPU's free memory);
        an image that fails gets ``error`` set and never stops the others.
        """
        todo: list[tuple[dict[str, Any], DecodedImage]] = []
        for row, px in zip(rows, pixels, strict=True):
            row.update(hr_levels=None, lr=None, lr_width=None, lr_height=None, plain_rec=None, rec=None, diagnostics=None, lr_file=None,
                       scale=self.downscaler.scale)  # fmt: skip
            if row["error"] is not None:
                continue
            try:
                c, h, w = row["channels"], row["height"], row["width"]
                # The alpha goes along so that the downscaler's rules about it hold here too (JPEG refuses it: without it
                # the pipeline stored such images as JPEG and dropped their transparency); it is resized in `write`.
                alpha = pixels_tensor(row.get("alpha"), np.dtype(np.float32), (1, h, w))
                img = DecodedImage(
                    pixels_tensor(px, np.dtype(np.float32), (c, h, w)), alpha, row["bit_depth"], row["source_mode"], row["source_uri"]
                )  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - one image must never stop the pool
                row["error"] = f"{type(exc).__name__}: {exc}"
                continue
            todo.append((row, img))
        t0 = time.monotonic()
        outs = self.downscaler.optimise_batch([img for _, img in todo])
        if self.hold_seconds:
            time.sleep(max(0.0, self.hold_seconds * len(todo) - (time.monotonic() - t0)))
        for (row, img), opt in zip(todo, outs, strict=True):
            if isinstance(opt, Exception):
                row["error"] = f"{type(opt).__name__}: {opt}"
                continue
            row.update(
                lr=opt.lr.numpy().tobytes(),
                lr_width=int(opt.lr.shape[-1]),
                lr_height=int(opt.lr.shape[-2]),
                diagnostics=json.dumps({f: getattr(opt, f) for f in DIAGNOSTIC_FIELDS}),
                lr_file=opt.lr_file,
            )
            if opt.plain_rec is not None:
                row["hr_levels"] = to_uint8_levels(img.pixels).to(torch.uint8).numpy().tobytes()
                row["plain_rec"] = opt.plain_rec.numpy().tobytes()
                row["rec"] = None if opt.rec is opt.plain_rec else opt.rec.numpy().tobytes()  # type: ignore[union-attr]
        return rows
