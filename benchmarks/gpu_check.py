"""The prepared GPU check: everything a lent GPU machine should measure, in one call, into one JSON.

    python -m benchmarks.gpu_check --device cuda --out docs/eval/gpu.json           # on a GPU: at most ~6 min
    python -m benchmarks.gpu_check --device cpu --quick --out /tmp/gpu_check.json   # here: at most ~3 min
    python -m benchmarks.gpu_check --device cpu --quick --tiny --out X.json         # the test suite (seconds)

Sections (each is written to the JSON as soon as it ends, and a failing section records its error and the
rest go on, so a run cut short still leaves what it measured):

- ``environment``: device record (kind, name, torch / CUDA / cuDNN, numerics flags), Python, free memory.
- ``throughput``: HCD (default preset) images/s at 512 x 512 (quick: 128), x2 and x4, batches 1 / 4 / 16
  (quick: 1 / 4), peak device memory, the memory mode used.
- ``step_ms``: ms per HR-domain and LR-domain step in each memory mode (fast / low / lowest).
- ``cpu_vs_device``: Set5 through ``Downscaler`` on the CPU and on the device: LR values that differ, the largest
  difference, the gain on each and their difference (only with a device other than the CPU).
- ``repeatability``: Set5 twice on the device (deterministic numerics): differing LR values (must be 0); the
  ``fast`` numerics against deterministic: differing values and the time ratio.
- ``precision``: the precision policy (#24): per scale and precision (fp32, tf32 and bf16 on CUDA; fp32 and bf16 on
  the CPU), HCD images/s at 512 x 512 (quick: 128) in batches of 16 (quick: 4), peak memory per image, the FLOPs of
  one image's HCD (counted by ``torch.utils.flop_counter.FlopCounterMode`` at batch 1), the achieved TFLOP/s and their
  share of the device's peak for that precision (H100 / H200 / A100 tables), and the Set5 mean gain against fp32's.
- ``mixed_sizes``: the pipeline's model stage over images at the sizes of B100 + Set14 + Set5 as listed, in listing
  order and ordered by size within a decode task (``size_window``), against the same count at one size: megapixels/s,
  the mean number of images optimised together, and the window's share of the same-size rate (#24: >= 80 %).
- ``train_speed``: training steps/s of the joint x2 codec recipe in fp32 and bf16 (#24's training target: 5x its 0.09
  s/step on an H200); not in the default list (``--sections ...,train_speed``).
- ``compiled_step``: one LR-domain step at 512 x 512, x2, batch 16, eager against ``torch.compile`` (static shapes;
  on CUDA also CUDA graphs), fp32 and bf16: ms per step, speed against eager, compile seconds, differences from
  eager fp32 (#24's cheap steps, measured before they enter the library); not in the default list.
- ``pipeline_stage``: the pipeline's model stage (``ModelStageCore``, what the Ray actor runs, without Ray or
  Arrow) on Set5 rows decoded as the decode stage does, with the settings dict the driver sends: errors, the
  batch sizes it chose, and LR values that differ from ``Downscaler.process`` of each image alone.

Needs torch, numpy, pillow, safetensors and this repository; not Ray, pyarrow or fsspec. Data: ``--data`` (a
set name looked up like ``hcd eval`` does, or a folder); without it ``shared/data/Set5/HR`` inside the tree (copy it
there, untracked, before sending the tree to a GPU machine), else Set5 where ``hcd eval`` finds it, else the samples.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from hcd_pipeline.core.device import device_mode, device_record, free_memory, precision_mode, resolve_device
from hcd_pipeline.core.resize import pad_symmetric
from hcd_pipeline.downscaler import MEMORY_MODES, STEP_BYTES_PER_PIXEL, Downscaler, DownscaleSettings
from hcd_pipeline.hcd.optimise import collaborative_downscale
from hcd_pipeline.hcd.settings import get_preset
from hcd_pipeline.io.images import DecodedImage, decode_image, list_images, read_image
from hcd_pipeline.models import load_model
from hcd_pipeline.models.irn import quantize_ste

ROOT = Path(__file__).resolve().parents[1]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _peak_reset(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_mib(dev: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(dev) / 2**20, 1) if dev.type == "cuda" else None


def _images(data: str | None, limit: int, crop: int | None) -> list[DecodedImage]:
    """Up to ``limit`` images of the set (centre crops of ``crop`` when given), sides cut to multiples of 4."""
    if data:
        from hcd_pipeline.io.datasets import resolve_dataset

        paths = list_images(resolve_dataset(data))
    else:
        paths = list_images(ROOT / "samples")
    out = []
    for p in paths[:limit]:
        img = read_image(p)
        px = img.pixels
        if crop:
            h, w = px.shape[-2:]
            y, x = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
            px = px[:, y : y + crop, x : x + crop]
        h, w = px.shape[-2] - px.shape[-2] % 4, px.shape[-1] - px.shape[-1] % 4
        out.append(DecodedImage(px[:, :h, :w].contiguous(), None, img.bit_depth, img.source_mode, p.name))
    return out


def _square(images: list[DecodedImage], side: int, n: int) -> torch.Tensor:
    """n distinct side x side RGB crops (mirror-padded where an image is smaller), (n, 3, side, side)."""
    tiles = []
    i = 0
    while len(tiles) < n:
        img = images[i % len(images)].pixels
        img = img.expand(3, -1, -1) if img.shape[0] == 1 else img
        img = pad_symmetric(img, side)  # mirror up to a multiple of the side
        variant = i // len(images)  # flips and transposes give more distinct items
        t = img[:, :side, :side]
        if variant & 1:
            t = t.flip(-1)
        if variant & 2:
            t = t.flip(-2)
        if variant & 4:
            t = t.transpose(-1, -2)
        tiles.append(t.float())
        i += 1
    return torch.stack(tiles)


def environment(dev: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    with device_mode(dev, "deterministic"):
        rec = device_record(dev, gpu_mode="deterministic", threads=torch.get_num_threads())
    mods = {}
    for name in ("numpy", "PIL", "safetensors", "ray", "pyarrow"):
        try:
            mods[name] = getattr(__import__(name), "__version__", "?")
        except ImportError:
            mods[name] = None
    extra = {}
    if dev.type == "cuda":
        extra["total_memory_gib"] = round(torch.cuda.get_device_properties(dev).total_memory / 2**30, 1)
    return {**rec, "python": platform.python_version(), "modules": mods, "free_memory_gib": _gib(free_memory(dev)), **extra}


def _gib(b: int | None) -> float | None:
    return None if b is None else round(b / 2**30, 2)


def throughput(dev: torch.device, args: argparse.Namespace, images: list[DecodedImage]) -> dict[str, Any]:
    side = 128 if args.quick else 512
    batches = (1, 4) if args.quick else (1, 4, 16)
    cfg = get_preset("default")
    rows = []
    for scale in (2, 4):
        model = load_model(_model(args, scale), device=dev)
        for b in batches:
            hr = _square(images, side, b).to(dev)
            free = free_memory(dev)
            need = b * side * side * STEP_BYTES_PER_PIXEL["fast"]
            mode = "fast" if free is None or need <= 0.8 * free else "low"
            model.backward = MEMORY_MODES[mode]
            gens = [torch.Generator().manual_seed(0) for _ in range(b)]
            with device_mode(dev, "deterministic"):
                if not args.quick:
                    collaborative_downscale(model, hr, settings=cfg, generator=gens)  # warm-up (kernels, allocator)
                _sync(dev)
                _peak_reset(dev)
                t0 = time.perf_counter()
                res = collaborative_downscale(model, hr, settings=cfg, generator=gens)
                _sync(dev)
                dt = time.perf_counter() - t0
            gains = [it.judged.get("stored", 0) - it.judged.get("plain", 0) for it in res.split()]
            row = {"scale": scale, "side": side, "batch": b, "memory": mode, "seconds": round(dt, 3),
                   "images_per_s": round(b / dt, 3), "peak_mib": _peak_mib(dev),
                   "mean_judged_gain_db": round(sum(gains) / b, 4)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"preset": "default", "rows": rows}


def step_ms(dev: torch.device, args: argparse.Namespace, images: list[DecodedImage]) -> dict[str, Any]:
    side = 128 if args.quick else 512
    steps = 2 if args.quick else 5
    hr = _square(images, side, 1).to(dev)
    model = load_model(_model(args, 2), device=dev)
    rows = []
    for mode in MEMORY_MODES:
        model.backward = MEMORY_MODES[mode]
        row: dict[str, Any] = {"memory": mode, "side": side}
        for stage, over in (("hr", {"hr_steps": steps, "lr_steps": 0}), ("lr", {"hr_steps": 0, "lr_steps": steps})):
            cfg = get_preset("default", judge="loss", keep_best=False, **over)
            with device_mode(dev, "deterministic"):
                collaborative_downscale(model, hr, settings=cfg)  # warm-up
                _sync(dev)
                _peak_reset(dev)
                res = collaborative_downscale(model, hr, settings=cfg)
                _sync(dev)
            row[f"{stage}_step_ms"] = round(1000 * res.seconds[stage] / steps, 2)
            row[f"{stage}_peak_mib"] = _peak_mib(dev)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"rows": rows}


PEAK_TFLOPS = {"H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4}, "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
               "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}}  # fmt: skip
"""Dense peak TFLOP/s by precision (NVIDIA's data sheets, SXM parts; tensor cores for tf32 / bf16)."""


def _peak(dev: torch.device, precision: str) -> float | None:
    if dev.type != "cuda":
        return None
    name = torch.cuda.get_device_name(dev)
    return next((v[precision] for k, v in PEAK_TFLOPS.items() if k in name), None)


def _flops_per_image(model: Any, hr: torch.Tensor, cfg: Any, precision: str) -> int:
    """FLOPs of one image's HCD (every model call: forward, backward, judge), counted at batch 1."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        collaborative_downscale(model, hr[:1], settings=cfg, generator=torch.Generator().manual_seed(0), precision=precision)
    return int(counter.get_total_flops())


def precision(dev: torch.device, args: argparse.Namespace, images: list[DecodedImage]) -> dict[str, Any]:
    side = 128 if args.quick else 512
    b = 4 if args.quick else 16
    precisions = ("fp32", "tf32", "bf16") if dev.type == "cuda" else ("fp32", "bf16")
    cfg = get_preset("default")
    rows = []
    for scale in (2, 4):
        model = load_model(_model(args, scale), device=dev)
        hr = _square(images, side, b).to(dev)
        free = free_memory(dev)
        mode = "fast" if free is None or b * side * side * STEP_BYTES_PER_PIXEL["fast"] <= 0.8 * free else "low"
        model.backward = MEMORY_MODES[mode]
        gains: dict[str, float] = {}
        for p in precisions:
            row: dict[str, Any] = {"scale": scale, "precision": p, "side": side, "batch": b, "memory": mode}
            try:
                flops = _flops_per_image(model, hr, cfg, p)
                gens = [torch.Generator().manual_seed(0) for _ in range(b)]
                with device_mode(dev, "deterministic"):
                    if not args.quick:
                        collaborative_downscale(model, hr, settings=cfg, generator=gens, precision=p)  # warm-up
                    _sync(dev)
                    _peak_reset(dev)
                    t0 = time.perf_counter()
                    collaborative_downscale(model, hr, settings=cfg, generator=gens, precision=p)
                    _sync(dev)
                    dt = time.perf_counter() - t0
                peak_mib = _peak_mib(dev)
                tflops = flops * b / dt / 1e12
                ds = Downscaler(DownscaleSettings(model=_model(args, scale), device=str(dev), precision=p))
                gains[p] = _gain([ds.process(img) for img in images])
                peak = _peak(dev, p)
                row.update(images_per_s=round(b / dt, 3), peak_mib_per_image=None if peak_mib is None else round(peak_mib / b, 1),
                           gflop_per_image=round(flops / 1e9, 1), achieved_tflops=round(tflops, 3),
                           share_of_peak=None if peak is None else round(tflops / peak, 4), set_gain_db=gains[p],
                           gain_vs_fp32_db=round(gains[p] - gains["fp32"], 4) if "fp32" in gains else None)  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - a failing variant is recorded; the others go on
                row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"preset": "default", "set_images": len(images), "rows": rows}


def compiled_step(dev: torch.device, args: argparse.Namespace, images: list[DecodedImage]) -> dict[str, Any]:
    """#24's cheap steps, measured before any of it enters the library: one LR-domain step of HCD (IRN's upscale of
    the rounded LR, straight-through, forward and backward to the LR; memory mode fast; MSE against the HR) at
    512 x 512 HR in batches of 16 (quick: 64 x 64 in batches of 2), x2, eager against ``torch.compile`` with static
    shapes, for each variant of ``--compile-variants`` (``precision:mode``; mode ``eager``, ``default``,
    ``reduce-overhead`` (CUDA graphs) or ``max-autotune-no-cudagraphs``). Per variant: ms per step (median of the timed
    steps after warm-up), the speed against eager at the same precision, the seconds of the first call (compilation),
    and the largest difference of the loss and of the gradient from eager fp32. A failing variant records its error
    (no C compiler for inductor on a CPU, no Triton on a GPU) and the others go on."""
    side, b, timed = (64, 2, 3) if args.quick else (512, 16, 10)
    model = load_model(_model(args, 2), device=dev)
    model.backward = MEMORY_MODES["fast"]
    hr = _square(images, side, b).to(dev)
    with torch.no_grad():
        lr0 = torch.round(model.downscale(hr)[0].clamp(0, 1) * 255) / 255
    z = torch.zeros(model.z_shape(lr0.shape), device=dev)

    def loss_of(lr: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(model.upscale(quantize_ste(lr), z), hr)

    def step(fn: Callable[[torch.Tensor], torch.Tensor], precision: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = lr0.detach().clone().requires_grad_(True)
        with precision_mode(dev, precision):
            loss = fn(x)
            (grad,) = torch.autograd.grad(loss.float(), x)
        return loss.detach().float(), grad

    rows: list[dict[str, Any]] = []
    eager_ms: dict[str, float] = {}
    reference: tuple[torch.Tensor, torch.Tensor] | None = None
    for variant in args.compile_variants.split(","):
        precision, _, mode = variant.partition(":")
        row: dict[str, Any] = {"precision": precision, "mode": mode, "side": side, "batch": b, "scale": 2}
        try:
            torch._dynamo.reset()  # every variant compiles from scratch and counts its own compile time
            fn = loss_of if mode == "eager" else torch.compile(loss_of, mode=None if mode == "default" else mode, dynamic=False)
            with device_mode(dev, "deterministic"), _autotuned(dev):
                t0 = time.perf_counter()
                step(fn, precision)
                _sync(dev)
                row["first_call_s"] = round(time.perf_counter() - t0, 2)
                for _ in range(2):
                    step(fn, precision)
                _sync(dev)
                _peak_reset(dev)
                times = []
                for _ in range(timed):
                    t0 = time.perf_counter()
                    loss, grad = step(fn, precision)
                    _sync(dev)
                    times.append(time.perf_counter() - t0)
            ms = 1000 * sorted(times)[len(times) // 2]
            if mode == "eager":
                eager_ms[precision] = ms
            if reference is None and mode == "eager" and precision == "fp32":
                reference = (loss, grad)
            row.update(ms_per_step=round(ms, 3), step_images_per_s=round(b / ms * 1000, 2), peak_mib=_peak_mib(dev),
                       speed_vs_eager=round(eager_ms[precision] / ms, 3) if precision in eager_ms else None)  # fmt: skip
            if reference is not None:
                row["loss_diff_vs_eager_fp32"] = float((loss - reference[0]).abs())
                row["grad_max_diff_vs_eager_fp32"] = float((grad - reference[1]).abs().max())
                row["grad_max_abs"] = float(reference[1].abs().max())
        except Exception as exc:  # noqa: BLE001 - a failing variant is recorded; the others go on
            row["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
        rows.append(row)
        print(json.dumps(row), flush=True)
    torch._dynamo.reset()
    return {"model": _model(args, 2), "memory": "fast", "cudnn": "benchmark (autotuned), tf32 only where precision says", "rows": rows}


@contextlib.contextmanager
def _autotuned(dev: torch.device) -> Iterator[None]:
    """cuDNN picks its fastest kernels (benchmark mode) while TF32 stays as the precision policy sets it: the fp32
    variants stay fp32, which the ``fast`` gpu_mode (TF32 on) would not."""
    cudnn = torch.backends.cudnn
    saved = (cudnn.benchmark, cudnn.deterministic)
    if dev.type == "cuda":
        cudnn.benchmark, cudnn.deterministic = True, False
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = saved


def _run_set(dev: torch.device, args: argparse.Namespace, images: list[DecodedImage], gpu_mode: str = "deterministic", threads: int = 1):
    ds = Downscaler(DownscaleSettings(model=_model(args, 2), device=str(dev), gpu_mode=gpu_mode, threads=threads))
    t0 = time.perf_counter()
    outs = [ds.process(img) for img in images]
    _sync(dev)
    return outs, time.perf_counter() - t0


def _diff(a: list[Any], b: list[Any]) -> dict[str, Any]:
    n = sum(int((x.lr != y.lr).sum()) for x, y in zip(a, b, strict=True))
    m = max(float((x.lr - y.lr).abs().max()) * 255 for x, y in zip(a, b, strict=True))
    total = sum(x.lr.numel() for x in a)
    return {"differing_values": n, "of_values": total, "max_levels": round(m, 3)}


def _gain(outs: list[Any]) -> float:
    g = [o.optimised.psnr_y - o.plain.psnr_y for o in outs if o.optimised and o.plain]
    return round(sum(g) / len(g), 4) if g else float("nan")


def cpu_vs_device(dev: torch.device, args: argparse.Namespace, images: list[DecodedImage]) -> dict[str, Any]:
    if dev.type == "cpu":
        return {"skipped": "the device is the CPU"}
    on_dev, t_dev = _run_set(dev, args, images)
    on_cpu, t_cpu = _run_set(torch.device("cpu"), args, images, threads=args.cpu_threads)
    return {"images": len(images), **_diff(on_cpu, on_dev), "gain_cpu_db": _gain(on_cpu), "gain_device_db": _gain(on_dev),
            "gain_difference_db": round(_gain(on_dev) - _gain(on_cpu), 4), "seconds_cpu": round(t_cpu, 2),
            "cpu_threads": args.cpu_threads, "seconds_device": round(t_dev, 2)}  # fmt: skip


def repeatability(dev: torch.device, args: argparse.Namespace, images: list[DecodedImage]) -> dict[str, Any]:
    first, t1 = _run_set(dev, args, images)
    second, t2 = _run_set(dev, args, images)
    res: dict[str, Any] = {"images": len(images), "run_to_run": _diff(first, second), "seconds": [round(t1, 2), round(t2, 2)]}
    if dev.type == "cuda":
        fast, tf = _run_set(dev, args, images, gpu_mode="fast")
        fast2, tf2 = _run_set(dev, args, images, gpu_mode="fast")
        res["fast_vs_deterministic"] = _diff(second, fast)
        res["fast_run_to_run"] = _diff(fast, fast2)
        res["fast_time_ratio"] = round(min(tf, tf2) / t2, 3)
        res["gain_deterministic_db"], res["gain_fast_db"] = _gain(second), _gain(fast2)
    return res


def pipeline_stage(dev: torch.device, args: argparse.Namespace, images: list[DecodedImage]) -> dict[str, Any]:
    from hcd_pipeline.io.images import encode_png
    from hcd_pipeline.pipeline.model_stage import ModelStageCore, decoded_row
    from hcd_pipeline.pipeline.settings import PipelineSettings

    settings = PipelineSettings(input="-", output="-", model=_model(args, 2), num_gpus=1.0 if dev.type == "cuda" else 0.0,
                                batch_size=len(images)).to_dict()  # fmt: skip
    if dev.type == "cuda" and dev.index:
        raise SystemExit("pipeline_stage: actors use cuda:0 (Ray sets CUDA_VISIBLE_DEVICES); run with --device cuda")
    core = ModelStageCore(settings)
    files = [encode_png(img.pixels.expand(3, -1, -1) if img.pixels.shape[0] == 1 else img.pixels, None) for img in images]
    rows = [decoded_row(img.name, img.name, data) for img, data in zip(images, files, strict=True)]  # the decode stage's rows
    pixels = [row.pop("pixels") for row in rows]
    t0 = time.perf_counter()
    out = core.rows(rows, pixels)
    _sync(dev)
    dt = time.perf_counter() - t0
    alone = Downscaler(DownscaleSettings(model=_model(args, 2), device=str(dev), hcd_batch=1))
    diffs, batches, errors = 0, [], [r["error"] for r in out if r["error"]]
    for r, img, data in zip(out, images, files, strict=True):
        if r["error"]:
            continue
        batches.append(json.loads(r["diagnostics"])["batch"])
        ref = alone.optimise(decode_image(data, img.name))
        got = torch.frombuffer(bytearray(r["lr"]), dtype=torch.uint8)
        diffs += int((got != ref.lr.flatten()).sum())
    device = json.loads(out[0]["diagnostics"])["device"] if out and out[0]["diagnostics"] else None
    return {"images": len(images), "errors": errors, "batches": batches, "device": device,
            "lr_values_differing_from_alone": diffs, "seconds": round(dt, 2)}  # fmt: skip


B100_ORIENTATION = "PPPLLLLLLLLLLLLLLLLLPLLLLLLLLPLPLLPLLLPPLLLLLPLLLLLLLLPPLLLLLLPLPLLPLLLPLLLLLPLLLPPLLLLPLLLPLLPLLLPL"
"""B100's images in listing order: L 480 x 320, P 320 x 480."""
SET14_SIZES = [(500, 480), (720, 576), (512, 512), (352, 288), (250, 361), (276, 276), (500, 362), (352, 288), (512, 512),
               (512, 512), (768, 512), (512, 512), (529, 656), (586, 391)]  # fmt: skip
SET5_SIZES = [(512, 512), (288, 288), (256, 256), (280, 280), (228, 344)]


def mixed_sizes(dev: torch.device, args: argparse.Namespace, images: list[DecodedImage]) -> dict[str, Any]:
    """The pipeline's model stage over an archive of mixed sizes (#24): B100 (first 40; all 100 with --limit 100) +
    Set14 + Set5 at their sizes (width x height, as listed), content mirrored from the check's images, in model
    calls of 8 (quick: 4): in listing order, ordered by size within a decode task of 4 calls (the pipeline's
    ``size_window``), and every image at B100's 480 x 320 (same count). Megapixels/s of each; the window's share of
    the same-size rate is the issue's >= 80 % target."""
    from hcd_pipeline.io.images import encode_png
    from hcd_pipeline.pipeline.model_stage import ModelStageCore, decoded_row
    from hcd_pipeline.pipeline.settings import PipelineSettings

    sizes = [(480, 320) if c == "L" else (320, 480) for c in B100_ORIENTATION[: 100 if (args.limit or 0) >= 100 else 40]]
    sizes += SET14_SIZES + SET5_SIZES
    call, window = (4, 4) if args.quick else (8, 4)
    if args.quick:  # a quarter of each side (sides kept even), 16 images: the CPU test
        sizes = [(w // 8 * 2, h // 8 * 2) for w, h in sizes[:12] + SET5_SIZES[:4]]
    settings = PipelineSettings(input="-", output="-", model=_model(args, 2), num_gpus=1.0 if dev.type == "cuda" else 0.0,
                                batch_size=call, hcd_batch=call).to_dict()  # fmt: skip
    core = ModelStageCore(settings)

    def rows_of(dims: list[tuple[int, int]]) -> list[tuple[dict[str, Any], bytes]]:
        out = []
        for i, (w, h) in enumerate(dims):
            src = images[i % len(images)].pixels
            src = pad_symmetric(src.expand(3, -1, -1) if src.shape[0] == 1 else src, max(w, h))[:, :h, :w]
            row = decoded_row(f"m{i:03d}.png", f"m{i:03d}.png", encode_png(src.contiguous(), None))
            out.append((row, row.pop("pixels")))
        return out

    def run(items: list[tuple[dict[str, Any], bytes]]) -> dict[str, Any]:
        batches, t0 = [], time.perf_counter()
        for k in range(0, len(items), call):
            chunk = items[k : k + call]
            out = core.rows([dict(r) for r, _ in chunk], [p for _, p in chunk])
            batches += [json.loads(r["diagnostics"])["batch"] for r in out if not r["error"]]
        _sync(dev)
        dt = time.perf_counter() - t0
        mp = sum(r["width"] * r["height"] for r, _ in items) / 1e6
        return {"images": len(items), "megapixels": round(mp, 3), "seconds": round(dt, 2), "mp_per_s": round(mp / dt, 4),
                "mean_batch": round(sum(batches) / max(len(batches), 1), 2)}  # fmt: skip

    listed = rows_of(sizes)
    ordered = []
    for k in range(0, len(listed), call * window):  # what a decode task of `window` calls hands on (pipeline.stages._by_size)
        ordered += sorted(listed[k : k + call * window], key=lambda it: (it[0]["height"], it[0]["width"]))
    run(listed[:call])  # warm-up: the model's first call (allocations, cuDNN's choices) is not the archive's
    res = {"call": call, "window": window, "listed": run(listed), "size_window": run(ordered)}
    res["same_size"] = run(rows_of([(480, 320) if not args.quick else (120, 80)] * len(sizes)))
    res["window_share_of_same_size"] = round(res["size_window"]["mp_per_s"] / res["same_size"]["mp_per_s"], 3)
    res["listed_share_of_same_size"] = round(res["listed"]["mp_per_s"] / res["same_size"]["mp_per_s"], 3)
    return res


def train_speed(dev: torch.device, args: argparse.Namespace, images: list[DecodedImage]) -> dict[str, Any]:
    """Training steps/s of the joint x2 codec recipe (#24's baseline: 0.09 s/step on an H200 in fp32; the GPU runs of
    docs/training.md): --init irn-x2, JPEG between the halves, an 8-block restorer, crops of 128 in batches of 32,
    for 40 steps (quick: the tiny model, crops of 32 in batches of 2, 12 steps) in fp32 and bf16. Steps/s over the
    steps after the first 10 (the log's own measure), and the loss at the end (both runs draw the same crops)."""
    import tempfile

    from hcd_pipeline.training.config import TrainConfig
    from hcd_pipeline.training.train import train

    pack = sorted((ROOT / "shared" / "train").glob("BSD200-c*"))
    if pack:
        data = str(pack[-1])
    else:  # the check's image set (its images are at least a crop's side), else the samples
        from hcd_pipeline.io.datasets import resolve_dataset

        data = str(resolve_dataset(args.image_set)) if args.image_set else str(ROOT / "samples")
    quick = args.quick or args.tiny
    size = {"patch": 32, "batch": 2, "steps": 12, "restore_blocks": 1, "restore_width": 8} if quick else \
        {"patch": 128, "batch": 32, "steps": 40, "restore_blocks": 8, "restore_width": 64}  # fmt: skip
    rows = []
    for precision in ("fp32", "bf16"):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(scale=2, init=_model(args, 2), init_lr_scale=0.1, lambda_fit=32, codec="jpeg", z_train=0.0,
                              blocks=1 if args.tiny else 4, width=8 if args.tiny else 32, data=data, val="", out=tmp,
                              device=str(dev), precision=precision, log_every=2, ckpt_every=10_000, warmup=2, **size)  # fmt: skip
            t0 = time.perf_counter()
            train(cfg, progress=False)
            wall = time.perf_counter() - t0
            log = [json.loads(line) for line in (Path(tmp) / "log.jsonl").read_text().splitlines()]
        steps = [r for r in log if "loss" in r]
        rate = steps[-1].get("steps_per_s") if steps else None
        rows.append({"precision": precision, "steps": size["steps"], "steps_per_s": rate,
                     "s_per_step": round(1 / rate, 4) if rate else None, "wall_s": round(wall, 1),
                     "last_loss": steps[-1]["loss"] if steps else None})  # fmt: skip
    base = rows[0]["steps_per_s"]
    for r in rows:
        r["speed_vs_fp32"] = round(r["steps_per_s"] / base, 3) if base and r["steps_per_s"] else None
    return {"data": data, **{k: v for k, v in size.items() if k != "steps"}, "rows": rows, "baseline_s_per_step_h200_fp32": 0.09}


def _model(args: argparse.Namespace, scale: int) -> str:
    return f"tiny-irn-x{scale}" if args.tiny else f"irn-x{scale}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto")
    ap.add_argument("--quick", action="store_true", help="small sizes and few steps (CPU: at most ~3 min)")
    ap.add_argument("--tiny", action="store_true", help="the test-sized models (for the test suite)")
    ap.add_argument("--data", default=None, help="image set (Set5, a folder); default: Set5 if found, else samples/")
    ap.add_argument("--limit", type=int, default=None, help="images of the set (default 5; quick: 2)")
    ap.add_argument("--cpu-threads", type=int, default=4, help="torch threads for the CPU reference of cpu_vs_device")
    ap.add_argument("--sections", default="environment,precision,throughput,mixed_sizes,step_ms,cpu_vs_device,repeatability,pipeline_stage")
    ap.add_argument(
        "--compile-variants",
        default=None,
        help="compiled_step's precision:mode list (default: fp32 and bf16, eager and compiled; on CUDA also"
        " bf16 with CUDA graphs; quick: fp32 eager and compiled)",
    )
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    if args.compile_variants is None:
        graphs = ",bf16:reduce-overhead" if dev.type == "cuda" else ""
        args.compile_variants = "fp32:eager,fp32:default" if args.quick else f"fp32:eager,fp32:default,bf16:eager,bf16:default{graphs}"
    data = args.data
    inside = ROOT / "shared" / "data" / "Set5" / "HR"  # on a lent GPU machine: copied into the tree so that it travels
    if data is None and inside.is_dir():
        data = str(inside)
    if data is None:
        try:
            from hcd_pipeline.io.datasets import resolve_dataset

            resolve_dataset("Set5")
            data = "Set5"
        except FileNotFoundError:
            data = None
    args.image_set = data
    limit = args.limit or (2 if args.quick else 5)
    crop = 64 if args.tiny else (96 if args.quick else None)
    images = _images(data, limit, crop)
    doc: dict[str, Any] = {
        "command": "python -m benchmarks.gpu_check " + " ".join(sys.argv[1:]),
        "data": data or "samples",
        "crop": crop,
        "quick": args.quick,
        "sections": {},
    }
    funcs: dict[str, Callable[..., dict[str, Any]]] = {
        "environment": lambda: environment(dev, args),
        "throughput": lambda: throughput(dev, args, images),
        "precision": lambda: precision(dev, args, images),
        "step_ms": lambda: step_ms(dev, args, images),
        "cpu_vs_device": lambda: cpu_vs_device(dev, args, images),
        "repeatability": lambda: repeatability(dev, args, images),
        "pipeline_stage": lambda: pipeline_stage(dev, args, images),
        "mixed_sizes": lambda: mixed_sizes(dev, args, images),
        "train_speed": lambda: train_speed(dev, args, images),
        "compiled_step": lambda: compiled_step(dev, args, images),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    for name in args.sections.split(","):
        t0 = time.perf_counter()
        try:
            res = funcs[name]()
        except Exception as exc:  # noqa: BLE001 - a failed section is recorded; the others still run
            res = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=5)}
        res["section_seconds"] = round(time.perf_counter() - t0, 2)
        doc["sections"][name] = res
        doc["total_seconds"] = round(time.perf_counter() - t_all, 2)
        out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"[gpu_check] {name}: {res['section_seconds']} s{' ERROR ' + res['error'] if 'error' in res else ''}", flush=True)
    failed = [k for k, v in doc["sections"].items() if "error" in v]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
