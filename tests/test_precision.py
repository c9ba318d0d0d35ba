"""The precision policy (#24): the optimisation's model calls in fp32, tf32 or bf16; what is judged and scored stays
float32, so a lower precision may cost gain but never stores an LR worse than plain."""

from __future__ import annotations

import dataclasses

import torch

from hcd_pipeline.core.device import precision_mode
from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
from hcd_pipeline.io.images import read_image
from tests.conftest import SAMPLES


def _crop():
    im = read_image(SAMPLES / "coffee_crop.png")
    return dataclasses.replace(im, pixels=im.pixels[:, :64, :64])


def _run(precision: str, **kw):
    return Downscaler(DownscaleSettings(model="irn-x2", precision=precision, **kw)).process(_crop())


def test_tf32_on_the_cpu_is_fp32_bit_for_bit_and_says_so():
    a, b = _run("fp32"), _run("tf32")
    assert a.data == b.data
    assert "precision" not in a.sidecar["device"] and b.sidecar["device"]["precision"] == "tf32"


def test_bf16_optimises_in_bfloat16_but_judges_in_float32():
    fp32, bf16 = _run("fp32"), _run("bf16")
    assert bf16.data != fp32.data  # another trajectory: the model calls did run in bfloat16
    assert bf16.sidecar["device"]["precision"] == "bf16"
    judged = bf16.sidecar["judged"]
    assert judged["stored"] > judged["plain"] == fp32.sidecar["judged"]["plain"]  # the plain LR is judged in fp32 alike
    # The stored LR's judged value is its float32 Y-PSNR, which the metric row (float32) reports.
    assert abs(bf16.optimised.psnr_y - judged["stored"]) < 1e-9
    gain32 = fp32.optimised.psnr_y - fp32.plain.psnr_y
    gain16 = bf16.optimised.psnr_y - bf16.plain.psnr_y
    assert gain16 > 0.5 * gain32 > 0, (gain16, gain32)


def test_bf16_in_every_memory_mode():
    # The memory-light backwards recompute forward passes inside the backward: they run in the same numerics.
    outs = {m: _run("bf16", memory=m) for m in ("fast", "low", "lowest")}
    for m, out in outs.items():
        assert out.sidecar["judged"]["stored"] >= out.sidecar["judged"]["plain"], m
        assert out.sidecar["memory"] == m


def test_no_precision_state_is_left_behind():
    before = (torch.is_autocast_enabled("cpu"), torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    _run("bf16")
    with precision_mode(torch.device("cpu"), "tf32"):
        pass
    after = (torch.is_autocast_enabled("cpu"), torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    assert before == after and not after[0]
