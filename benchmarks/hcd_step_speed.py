"""Time and peak memory of one HCD step: the official code's structure against ours, same weights and image.

The official code wraps every invertible layer in gradient checkpointing (each backward recomputes the
forward of the layer). Ours runs plain autograd (activations kept) when the image fits, or the memory-light
backwards of ``IRN.backward``: ``recompute`` (tensors between blocks kept, each block recomputed one
subnetwork at a time) and ``reversible`` (block inputs rebuilt from outputs, memory independent of depth).
The gradients agree (the reversible one up to float drift; its relative error is printed). Each variant runs
the LR-domain step (upscale + backward) and the HR-domain step (downscale + round + upscale + backward). Run:

    python -m benchmarks.hcd_step_speed --model irn-x2 --size 256 --steps 5 [--threads 2] [--compile]

Times: all variants in one process, interleaved twice, the second round reported. Memory: each variant runs
again in a child process with glibc's mmap threshold fixed at 64 KiB (so that freed tensors leave the resident
set); its figure is the peak resident set during two steps minus the resident set before them, i.e. what the
step itself needs on top of the model and image. ``--out`` writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint

from hcd_pipeline import load_model, read_image
from hcd_pipeline.core.memstats import peak_rss_mib, reset_peak_rss, rss_mib

try:
    from benchmarks.sections import section
except ImportError:  # run as a file: benchmarks/ itself is the first entry of the path
    from sections import section  # type: ignore[no-redef]
from hcd_pipeline.models.irn import IRN, quantize_ste

Chain = Callable[[torch.Tensor], torch.Tensor]


def step_memory_mib(argv: list[str], variant: str, stage: str) -> float:
    """Extra resident memory of two steps of ``variant``, measured in a child process."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    cmd = [sys.executable, "-m", "benchmarks.hcd_step_speed", *argv, "--memory-of", variant, "--stage", stage]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["extra_mib"])


def checkpointed(model: IRN) -> tuple[Chain, Chain]:
    """The original structure: every invertible op in its own checkpoint (recomputed in backward)."""

    def down(x: torch.Tensor) -> torch.Tensor:
        for op in model.operations:
            x = checkpoint(op, x, use_reentrant=False)
        return x

    def up(y: torch.Tensor) -> torch.Tensor:
        for op in reversed(model.operations):
            y = checkpoint(op.inverse, y, use_reentrant=False)
        return y

    return down, up


def step_fn(down: Chain, up: Chain, model: IRN, hr: torch.Tensor, stage: str):  # noqa: ANN201
    """One HCD step of ``stage`` ("lr" or "hr") as a function of the perturbation; returns (loss, grad)."""
    with torch.no_grad():
        lr0 = quantize_ste(down(hr)[:, :3])
    z = torch.zeros(model.z_shape(lr0.shape))
    base = hr if stage == "hr" else lr0

    def step(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if stage == "hr":
            lr_in = quantize_ste(down(base + e)[:, :3])
        else:
            lr_in = quantize_ste(base + e)
        rec = up(torch.cat((lr_in, z), 1))
        loss = torch.mean((rec - hr) ** 2)
        (grad,) = torch.autograd.grad(loss, e)
        return loss, grad

    return step, torch.zeros_like(base, requires_grad=True)


def run(step, e: torch.Tensor, steps: int) -> tuple[float, torch.Tensor]:  # noqa: ANN001
    """Median seconds per step over ``steps`` steps, and the last gradient."""
    times = []
    grad = torch.empty(0)
    for _ in range(steps):
        t0 = time.perf_counter()
        _, grad = step(e)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), grad


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="irn-x2")
    ap.add_argument("--size", type=int, default=256, help="HR crop side")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of our plain-autograd step")
    ap.add_argument("--out", default=None)
    ap.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)  # child mode: memory of one variant
    ap.add_argument("--stage", default="lr", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    assert isinstance(model, IRN)
    img = read_image(Path(__file__).resolve().parents[2] / "shared/data/Set5/HR/baby.png").pixels
    hr = img[:, : args.size, : args.size].unsqueeze(0).contiguous()

    def ours(mode: str, channels_last: bool) -> tuple[Chain, Chain]:
        def down(x: torch.Tensor) -> torch.Tensor:
            model.backward, model.channels_last = mode, channels_last
            return model(x)

        def up(y: torch.Tensor) -> torch.Tensor:
            model.backward, model.channels_last = mode, channels_last
            return model.inverse(y)

        return down, up

    variants: dict[str, tuple[Chain, Chain]] = {
        "official structure (checkpoint per op)": checkpointed(model),
        "ours: plain autograd, contiguous": ours("store", False),
        "ours: plain autograd, channels_last upscale (memory=fast)": ours("store", True),
        "ours: recompute per subnetwork (memory=low)": ours("recompute", True),
        "ours: reversible, inputs rebuilt (memory=lowest)": ours("reversible", True),
    }
    if args.memory_of:
        fn, e = step_fn(*variants[args.memory_of], model, hr, args.stage)
        base = rss_mib()
        reset_peak_rss()
        for _ in range(2):
            fn(e)
        print(json.dumps({"extra_mib": peak_rss_mib() - base}))
        return
    child_argv = ["--model", args.model, "--size", str(args.size), "--threads", str(args.threads)]
    rows = []
    for stage in ("lr", "hr"):
        steps = {name: step_fn(*chains, model, hr, stage) for name, chains in variants.items()}
        if args.compile:
            fn, e = steps["ours: plain autograd, channels_last upscale (memory=fast)"]
            steps["ours: plain autograd, torch.compile"] = (torch.compile(fn), e)
        results: dict[str, tuple[float, torch.Tensor]] = {}
        for _ in range(2):  # interleaved; the second round is reported (warm caches, compiled graphs)
            for name, (fn, e) in steps.items():
                results[name] = run(fn, e, args.steps)
        ref = results["official structure (checkpoint per op)"]
        for name, (t, grad) in results.items():
            err = float((grad - ref[1]).abs().max() / ref[1].abs().max())
            if err > 0.5:  # clearly wrong, not drift
                raise SystemExit(f"{name}: gradient differs from the official structure's (relative {err:.2e})")
            extra = step_memory_mib(child_argv, name, stage) if name in variants else float("nan")
            rows.append({"stage": stage, "variant": name, "ms_per_step": t * 1000, "step_memory_mib": extra,
                         "speedup_vs_official": ref[0] / t, "grad_rel_err": err})  # fmt: skip
    # Per image, from the step times: the presets' step counts (official 15 HR + 15 LR, default 5 HR + 20 LR).
    ms = {(r["stage"], r["variant"]): r["ms_per_step"] / 1000 for r in rows}
    official = "official structure (checkpoint per op)"
    per_image = {"official preset, official structure": 15 * ms["hr", official] + 15 * ms["lr", official]}
    for name in variants:
        if name.startswith("ours"):
            per_image[f"default preset, {name[6:]}"] = 5 * ms["hr", name] + 20 * ms["lr", name]
    meta = {"model": args.model, "size": args.size, "threads": torch.get_num_threads(), "steps": args.steps}
    data = {"settings": meta, "rows": rows, "per_image_s": per_image}
    print("\n".join(section("step_speed", data)))
    if args.out:
        Path(args.out).write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
