"""The SR pair (bicubic down, EDSR up): architecture, strict loading of original / BasicSR checkpoints, our weight
format, conversion, training, and HCD through the CLI with a user's checkpoint."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hcd_pipeline import imresize, load_model
from hcd_pipeline.core.errors import WeightsError
from hcd_pipeline.models.edsr import EDSRConfig, SRRescaler
from hcd_pipeline.models.edsr_weights import load_edsr, save_edsr, to_original_state_dict
from hcd_pipeline.models.registry import load_weights_file

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _random_sr(cfg: EDSRConfig, seed: int = 0) -> SRRescaler:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        m = SRRescaler(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return m.eval()


def _basicsr(sd: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
    """The original layout renamed to BasicSR's EDSR (as its training code saves it), mean shifts dropped."""
    out = {}
    for k, v in sd.items():
        if "_mean." in k:
            continue
        k = re.sub(r"^head\.0\.", "conv_first.", k)
        k = re.sub(r"^body\.(\d+)\.body\.0\.", r"body.\1.conv1.", k)
        k = re.sub(r"^body\.(\d+)\.body\.2\.", r"body.\1.conv2.", k)
        k = k.replace(f"body.{blocks}.", "conv_after_body.") if k.startswith(f"body.{blocks}.") else k
        k = re.sub(r"^tail\.0\.(\d+)\.", r"upsample.\1.", k)
        k = re.sub(r"^tail\.1\.", "conv_last.", k)
        out[k] = v
    return out


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shapes_and_bicubic_downscale(scale):
    m = _random_sr(EDSRConfig(scale=scale, blocks=1, width=8))
    hr = torch.rand(2, 3, 12 * scale, 8 * scale, generator=torch.Generator().manual_seed(1))
    lr, z = m.downscale(hr)
    assert z is None and m.z_shape(lr.shape) is None
    assert torch.equal(lr, imresize(hr, 1.0 / scale))
    assert m.upscale(lr).shape == hr.shape
    with pytest.raises(ValueError, match="divisible"):
        m.downscale(hr[..., :-1])


def test_upscale_is_differentiable_in_the_lr():
    m = _random_sr(EDSRConfig(scale=2, blocks=1, width=8))
    lr = torch.rand(1, 3, 6, 6, requires_grad=True)
    m.upscale(lr).square().sum().backward()
    assert lr.grad is not None and lr.grad.abs().sum() > 0


@pytest.mark.parametrize("scale", [2, 4])
def test_original_and_basicsr_checkpoints_load_strictly(tmp_path, scale):
    ref = _random_sr(EDSRConfig(scale=scale, blocks=2, width=8))
    sd = to_original_state_dict(ref)
    assert "sub_mean.weight" in sd and f"tail.0.{2 * (scale // 4)}.weight" in sd
    torch.save(sd, tmp_path / "edsr_baseline.pt")
    torch.save({"params": _basicsr(sd, 2)}, tmp_path / "EDSR_basicsr.pth")
    lr = torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(2))
    want = ref.upscale(lr)
    for name in ("edsr_baseline.pt", "EDSR_basicsr.pth"):
        m = load_model(weights=tmp_path / name, scale=scale)
        assert isinstance(m, SRRescaler) and m.config == EDSRConfig(scale=scale, blocks=2, width=8)
        assert torch.equal(m.upscale(lr), want), name
    with pytest.raises(WeightsError, match=rf"EDSR x{scale}, but x{6 - scale} was asked for"):
        load_model(weights=tmp_path / "edsr_baseline.pt", scale=6 - scale)


def test_wrong_checkpoints_are_refused_in_one_line(tmp_path):
    sd = to_original_state_dict(_random_sr(EDSRConfig(scale=2, blocks=2, width=8)))
    cases = {
        "extra": {**sd, "body.0.body.1.weight": torch.zeros(8, 8, 3, 3)},
        "missing": {k: v for k, v in sd.items() if k != "tail.1.bias"},
        "shape": {**sd, "body.1.body.2.weight": torch.zeros(8, 8, 1, 1)},
        "nan": {**sd, "head.0.bias": torch.full((8,), float("nan"))},
        "mean": {**sd, "sub_mean.bias": torch.zeros(3)},  # a network trained on another range / mean
        "other": {"conv.weight": torch.zeros(3, 3, 3, 3)},  # neither IRN nor EDSR
    }
    expect = {
        "extra": "1 unexpected",
        "missing": "1 missing",
        "shape": "has shape",
        "nan": "NaN",
        "mean": "DIV2K mean",
        "other": "neither IRN",
    }
    for name, bad in cases.items():
        torch.save(bad, tmp_path / f"{name}.pt")
        with pytest.raises(WeightsError) as info:
            load_weights_file(tmp_path / f"{name}.pt")
        msg = str(info.value)
        assert expect[name] in msg and f"{name}.pt" in msg and "\n" not in msg, msg


def test_safetensors_float16_round_trip_and_conversion(tmp_path):
    ref = _random_sr(EDSRConfig(scale=2, blocks=2, width=8))
    save_edsr(ref, tmp_path / "half.safetensors", {"data": "none"}, dtype=torch.float16)
    half = load_edsr(tmp_path / "half.safetensors", 2)
    with torch.no_grad():
        for p in ref.parameters():
            if p.requires_grad:
                p.copy_(p.half().float())
    lr = torch.rand(1, 3, 6, 6)
    assert torch.equal(half.upscale(lr), ref.upscale(lr))  # float16 storage, float32 compute
    # An original checkpoint through `hcd convert` (the family is read from the tensors, not the name).
    torch.save(to_original_state_dict(ref), tmp_path / "model.bin")
    proc = subprocess.run(
        [sys.executable, "-m", "hcd_pipeline.cli", "convert", str(tmp_path / "model.bin"), str(tmp_path / "c.safetensors")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "EDSR x2, 2 blocks, width 8" in proc.stdout
    assert torch.equal(load_weights_file(tmp_path / "c.safetensors", 2).upscale(lr), ref.upscale(lr))


def test_hcd_with_a_users_checkpoint_through_the_cli(tmp_path):
    torch.save(to_original_state_dict(_random_sr(EDSRConfig(scale=2, blocks=1, width=8))), tmp_path / "mine.pt")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hcd_pipeline.cli", "downscale", str(SAMPLES / "coffee_crop.png"), "-o", str(out)]
    opts = ["--weights", str(tmp_path / "mine.pt"), "--scale", "2", "--set", "lr_steps=3", "--set", "hr_steps=2"]
    subprocess.run(cmd + opts, capture_output=True, text=True, check=True)
    side = json.loads(next(out.glob("*.json")).read_text())
    m = side["metrics"]
    # The no-harm rule holds for any model, and the stored LR's distance from the bicubic thumbnail is recorded.
    assert float(m["optimised"]["psnr_y"]) >= float(m["plain"]["psnr_y"])
    fid = m["lr_vs_bicubic_psnr_y"]
    assert (fid == "inf") == (side["kept"] == "plain")
    assert fid == "inf" or 20 < float(fid) < 80
    proc = subprocess.run(cmd + ["--weights", str(tmp_path / "mine.pt"), "--scale", "4", "--force"], capture_output=True, text=True)
    assert proc.returncode != 0 and "EDSR x2, but x4 was asked for" in proc.stderr


def test_sr_training_runs_resumes_and_exports(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("astronaut_crop.png", "coffee_crop.png"):
        (data / name).write_bytes((SAMPLES / name).read_bytes())
    from hcd_pipeline.training.config import TrainConfig
    from hcd_pipeline.training.train import train

    cfg = TrainConfig(family="sr", scale=2, blocks=1, width=8, patch=32, batch=2, steps=6, warmup=2, data=str(data), val=str(data),
                      out=str(tmp_path / "run"), ckpt_every=3, val_every=3, export_dtype="float16", device="cpu")  # fmt: skip
    path = train(cfg, progress=False)
    m = load_weights_file(path, 2)
    assert isinstance(m, SRRescaler) and m.config == EDSRConfig(scale=2, blocks=1, width=8)
    logs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if "val_psnr_z0" in r] == [0, 3, 6]
    # A x4 run starts from the x2 network (body and first upsampling stage); the second x2 stage stays new.
    from hcd_pipeline.training.objective import build_model
    from hcd_pipeline.training.train import init_from

    x4 = build_model(TrainConfig(family="sr", scale=4, blocks=1, width=8))
    taken = init_from(x4, str(path))
    assert {"net.head.0.weight", "net.tail.0.0.weight"} <= taken and not any(k.startswith("net.tail.0.2.") for k in taken)


def test_lr_fidelity_is_inf_for_the_bicubic_thumbnail_and_reaches_the_rows():
    from hcd_pipeline import Downscaler, DownscaleSettings, read_image
    from hcd_pipeline.pipeline.stages import row_metrics

    img = read_image(SAMPLES / "coffee_crop.png")
    plain = Downscaler(DownscaleSettings(model="bicubic", scale=2, method="plain")).process(img)
    assert plain.sidecar["metrics"]["lr_vs_bicubic_psnr_y"] == "inf"
    assert row_metrics(plain.sidecar)["lr_psnr_bicubic"] == float("inf")
    irn = Downscaler(DownscaleSettings(model="tiny-irn-x2", method="plain")).process(img)
    fid = float(irn.sidecar["metrics"]["lr_vs_bicubic_psnr_y"])
    assert 20 < fid < 60 and row_metrics(irn.sidecar)["lr_psnr_bicubic"] == fid  # IRN's LR is not the thumbnail


@pytest.mark.parametrize("radius", [1, 3])
def test_lr_radius_bounds_how_far_the_thumbnail_moves(radius):
    """With the default preset (no HR stage) every stored LR value stays within ``lr_radius`` of the bicubic
    thumbnail, so its Y-PSNR against it is at least 20 log10(255 / (0.8588 r)) (0.8588: the largest change of BT.601
    Y per level of R, G and B together)."""
    from hcd_pipeline import Downscaler, DownscaleSettings, read_image

    img = read_image(SAMPLES / "coffee_crop.png")
    bicubic = torch.round(imresize(img.pixels.float(), 0.5).clamp(0, 1) * 255)
    res = Downscaler(DownscaleSettings(model="bicubic", scale=2, overrides={"lr_radius": radius / 255})).process(img)
    assert res.sidecar["kept"] == "optimised"
    assert (res.lr * 255 - bicubic).abs().max().item() == pytest.approx(radius, abs=1e-3)  # reaches the bound, not past it
    fid = float(res.sidecar["metrics"]["lr_vs_bicubic_psnr_y"])
    assert 20 * math.log10(255 / (0.8588 * radius)) <= fid < 80


@pytest.mark.parametrize("name", ["edsr-x2", "edsr-x4"])
def test_shipped_sr_model_in_the_original_layout_gives_the_same_outputs(tmp_path, name):
    shipped = load_model(name)
    assert isinstance(shipped, SRRescaler) and shipped.config == EDSRConfig(scale=int(name[-1]), blocks=16, width=64)
    torch.save(to_original_state_dict(shipped), tmp_path / f"edsr_baseline_x{name[-1]}.pt")
    again = load_model(weights=tmp_path / f"edsr_baseline_x{name[-1]}.pt")
    lr = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(again.upscale(lr), shipped.upscale(lr))


def test_pipeline_with_a_users_sr_checkpoint_matches_the_cli(ray_local, small_images, tmp_path):
    from hcd_pipeline.pipeline import PipelineSettings, read_metrics, run_pipeline

    ckpt = tmp_path / "edsr_baseline_x2.pt"
    torch.save(to_original_state_dict(_random_sr(EDSRConfig(scale=2, blocks=1, width=8))), ckpt)
    out = tmp_path / "out"
    settings = PipelineSettings(
        input=str(small_images), output=str(out), weights=str(ckpt), scale=2, overrides={"lr_steps": 3, "hr_steps": 1}
    )
    summary = run_pipeline(settings, progress=False)
    assert (summary.done, summary.failed) == (4, 0)
    table = read_metrics(str(out))
    rows = {r["key"]: r for r in table.to_pylist()}
    assert all(r["lr_psnr_bicubic"] is not None and r["gain_y"] >= 0 for r in rows.values())
    # The plain LR of the SR pair is the bicubic thumbnail: rows kept plain score inf, the others finite.
    assert all((r["lr_psnr_bicubic"] == float("inf")) == (r["kept"] == "plain") for r in rows.values())
    cli = tmp_path / "cli"
    subprocess.run([sys.executable, "-m", "hcd_pipeline.cli", "downscale", str(small_images / "a.png"), "-o", str(cli),
                    "--weights", str(ckpt), "--scale", "2", "--set", "lr_steps=3", "--set", "hr_steps=1"],
                   check=True, capture_output=True)  # fmt: skip
    assert (cli / "a.png").read_bytes() == (out / "lr" / "a.png.png").read_bytes()
