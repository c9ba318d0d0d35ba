"""Time and peak memory of one HCD step: the official code's structure against ours, same weights and image.

The official code wraps every invertible layer in gradient checkpointing (each backward recomputes the
forward of the layer). Ours runs plain autograd (activations kept), which is what the CPU prefers when the
image fits. Both compute the same gradient (checked). Run:

    python benchmarks/hcd_step_speed.py --model irn-x2 --size 256 --steps 5 [--threads 2]

Peak memory is the process's resident-set high-water mark, reset before each variant (Linux
``/proc/self/clear_refs``), so both are measured in one process.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint

from hcd_pipeline import load_model, read_image
from hcd_pipeline.models.irn import quantize_ste


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def upscale_checkpointed(model, lr, z):
    """The original structure: every invertible op in its own checkpoint (recomputed in backward)."""
    y = torch.cat((lr, z), 1)
    for op in reversed(model.operations):
        y = checkpoint(op.inverse, y, use_reentrant=False)
    return y


def run(variant: str, model, hr: torch.Tensor, steps: int) -> tuple[float, float, torch.Tensor]:
    with torch.no_grad():
        lr0 = quantize_ste(model.downscale(hr)[0])
    z = torch.zeros(model.z_shape(lr0.shape))
    e = torch.zeros_like(lr0, requires_grad=True)
    times = []
    _reset_peak()
    grad = torch.empty(0)
    for _ in range(steps):
        t0 = time.perf_counter()
        lr_in = quantize_ste(lr0 + e)
        rec = upscale_checkpointed(model, lr_in, z) if variant == "official" else model.upscale(lr_in, z)
        loss = torch.mean((rec - hr) ** 2)
        (grad,) = torch.autograd.grad(loss, e)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), _peak_rss_mib(), grad


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="irn-x2")
    ap.add_argument("--size", type=int, default=256, help="HR crop side")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    img = read_image(Path(__file__).resolve().parents[2] / "shared/data/Set5/HR/baby.png").pixels
    hr = img[:, : args.size, : args.size].unsqueeze(0).contiguous()
    results = {}
    for variant in ("official", "ours", "official", "ours"):  # interleaved, the second pass is reported
        results[variant] = run(variant, model, hr, args.steps)
    (t_o, m_o, g_o), (t_u, m_u, g_u) = results["official"], results["ours"]
    assert torch.allclose(g_o, g_u, atol=1e-7), "the two structures must give the same gradient"
    print(f"model {args.model}, HR {args.size}x{args.size}, LR-domain step, {torch.get_num_threads()} threads")
    print(f"official structure (checkpoint per op): {t_o * 1000:8.1f} ms/step, peak RSS {m_o:7.0f} MiB")
    print(f"ours (plain autograd):                  {t_u * 1000:8.1f} ms/step, peak RSS {m_u:7.0f} MiB")
    print(f"speed-up {t_o / t_u:.2f}x")


if __name__ == "__main__":
    main()
