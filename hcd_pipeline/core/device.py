"""Device semantics: what an accelerator run records, the numerics it runs with, and its memory.

The bytes of a stored LR depend on the device (CPU oneDNN and CUDA kernels add in different orders, and an LR
value can flip by one level), on TF32 and on cuDNN's algorithm choice. So every model call records its device
(:func:`device_record`) in the sidecar and the metric row, and runs CUDA in one of two numerics modes
(:data:`GPU_MODES`), set for the call and restored after it (:func:`device_mode`): nothing process-wide is left
changed behind a call.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from typing import Any

import torch

from hcd_pipeline.core.errors import SettingsError

__all__ = ["GPU_MODES", "PRECISIONS", "device_record", "device_label", "device_mode", "precision_mode", "free_memory", "resolve_device"]

GPU_MODES = ("deterministic", "fast")
"""``deterministic`` (the default): cuDNN deterministic algorithms, no autotuning, no TF32 (full float32 matmuls
and convolutions): the same input gives the same bytes run after run. ``fast``: cuDNN autotuning and TF32 tensor
cores (Ampere and later); results may differ by an LR level between runs and from ``deterministic``."""
PRECISIONS = ("fp32", "tf32", "bf16")
"""Numerics of the optimisation's model calls (forward and backward; :func:`precision_mode`): ``fp32``; ``tf32``
(float32 tensors, TF32 tensor-core matmuls and convolutions on CUDA; exactly ``fp32`` on the CPU, which has none);
``bf16`` (autocast to bfloat16 on CUDA and on the CPU). What is judged and scored (the no-harm rule, keep-best,
the metrics) always runs in float32, so a lower precision can cost gain but never stores an LR worse than plain."""


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when this process sees one, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``; a CUDA device that
    this process cannot see is a clear error rather than a failure deep inside torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise SettingsError(f"device {name!r}: expected cpu, cuda, cuda:N or auto") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingsError(
                f"device {name!r}: this process sees no CUDA device (torch {torch.__version__}, CUDA build: {torch.version.cuda})"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SettingsError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif dev.type != "cpu":
        raise SettingsError(f"device {name!r}: only cpu and cuda are supported")
    return dev


def device_label(dev: torch.device) -> str:
    """Short form for the metric rows: ``cpu`` or ``cuda:<GPU name>``."""
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return "cpu"


def device_record(dev: torch.device, *, gpu_mode: str, threads: int, precision: str = "fp32") -> dict[str, Any]:
    """What fixes the output bits besides the settings: device kind and name, versions, numerics flags, and the
    optimisation's precision when it is not ``fp32`` (records of fp32 runs are those of earlier releases).

    Read inside :func:`device_mode` so that the flags are those the call ran with.
    """
    rec: dict[str, Any] = {
        "kind": dev.type,
        "name": device_label(dev),
        "torch": torch.__version__,
        "threads": threads,
    }
    if dev.type == "cuda":
        rec.update(
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            capability=".".join(map(str, torch.cuda.get_device_capability(dev))),
            gpu_mode=gpu_mode,
            tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
            tf32_cudnn=bool(torch.backends.cudnn.allow_tf32),
            cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
            cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
        )
    else:
        rec["cpu"] = platform.processor() or platform.machine()
    if precision != "fp32":
        rec["precision"] = precision
    return rec


@contextlib.contextmanager
def device_mode(dev: torch.device, gpu_mode: str) -> Iterator[None]:
    """Run a block with ``gpu_mode``'s numerics on CUDA (no-op on CPU); the previous flags are restored after."""
    if gpu_mode not in GPU_MODES:
        raise SettingsError(f"gpu_mode {gpu_mode!r}: expected one of {GPU_MODES}")
    if dev.type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    fast = gpu_mode == "fast"
    cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = not fast, fast, fast, fast
    try:
        with torch.cuda.device(dev):
            yield
    finally:
        cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved


@contextlib.contextmanager
def precision_mode(dev: torch.device, precision: str) -> Iterator[None]:
    """Run a block's model calls in ``precision`` (:data:`PRECISIONS`) on ``dev``; flags are restored after it."""
    if precision not in PRECISIONS:
        raise SettingsError(f"precision {precision!r}: expected one of {PRECISIONS}")
    if precision == "bf16":
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16):
            yield
        return
    if precision == "fp32" or dev.type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = matmul.allow_tf32 = True
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


def free_memory(dev: torch.device) -> int | None:
    """Free bytes on a CUDA device (what the memory policy sizes batches and layouts from); None on CPU."""
    if dev.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(dev)
    return int(free)
