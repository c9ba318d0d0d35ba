"""Codec-robust models (#16 item 3): the differentiable JPEG, the LR restorer, its format rule, training with a codec."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.io.images import read_image
from hcd_pipeline.io.lr_formats import roundtrip
from hcd_pipeline.jpeg.simulate import jpeg_sim, quant_tables
from hcd_pipeline.models import IRN, IRNConfig
from hcd_pipeline.models.registry import for_lr_format, load_model
from hcd_pipeline.models.weights import load_irn, save_weights
from hcd_pipeline.training.config import TrainConfig
from hcd_pipeline.training.data import codec_batch
from hcd_pipeline.training.train import train
from tests.conftest import SAMPLES


def _photo(h: int = 72, w: int = 88) -> torch.Tensor:
    img = read_image(sorted(SAMPLES.glob("*.png"))[0]).pixels[:3, :h, :w]
    return (torch.round(img * 255) / 255).unsqueeze(0)


def test_quant_tables_match_libjpeg():
    """Pillow writes libjpeg's scaled tables into the file: ours must be the same numbers."""
    for q in (30, 50, 75, 90, 95):
        buf = io.BytesIO()
        Image.new("RGB", (16, 16)).save(buf, "JPEG", quality=q)
        with Image.open(buf) as im:
            tables = im.quantization  # Pillow gives them in natural (row-major) order
        luma, chroma = quant_tables(q)
        for ours, theirs in ((luma, tables[0]), (chroma, tables[1])):
            assert np.array_equal(ours.numpy().ravel(), np.array(theirs)), q


def test_jpeg_sim_is_close_to_pillow_and_differentiable():
    x = _photo()
    for q in (75, 90):
        sim = jpeg_sim(x, q)[0]
        real = roundtrip(x[0], "jpeg", q)
        diff = (sim - real).abs() * 255
        assert diff.mean() < 1.5, (q, diff.mean())
        # the codec's error itself is far larger than the model's error: the simulation keeps what JPEG loses
        assert ((real - x[0]) ** 2).mean().sqrt() * 255 > 2 * diff.mean()
        assert sim.shape == x[0].shape and torch.equal(sim, torch.round(sim * 255) / 255)
    # per-image qualities: each item as if alone
    two = torch.cat([x, x.flip(-1)])
    both = jpeg_sim(two, [90, 75])
    assert torch.equal(both[0], jpeg_sim(x, 90)[0]) and torch.equal(both[1], jpeg_sim(x.flip(-1), 75)[0])
    y = x.clone().requires_grad_(True)
    jpeg_sim(y, 90).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_restorer_starts_as_identity_and_round_trips_through_weights(tmp_path):
    base = load_irn("hcd_pipeline/weights/tiny-irn-x2.safetensors")
    cfg = IRNConfig(**{**base.config.to_dict(), "restore_blocks": 2, "restore_width": 8})
    model = IRN(cfg)
    model.load_state_dict(base.state_dict(), strict=False)
    lr = torch.rand(1, 3, 16, 16)
    z = torch.zeros(model.z_shape(lr.shape))
    assert torch.equal(model.upscale(lr, z), base.upscale(lr, z))  # zero tail: identity until trained
    torch.nn.init.normal_(model.restorer.tail.weight, std=0.1)  # type: ignore[union-attr]
    out = model.upscale(lr, z)
    assert not torch.equal(out, base.upscale(lr, z))
    assert torch.equal(model.without_restorer().upscale(lr, z), base.upscale(lr, z))
    mask = torch.tensor([True, False])
    pair = model.upscale(torch.cat([lr, lr]), torch.cat([z, z]), restore=mask)
    # (batched convolutions may differ from single ones in the last float bits)
    assert torch.allclose(pair[0], out[0], atol=1e-5) and torch.allclose(pair[1], base.upscale(lr, z)[0], atol=1e-5)
    assert (pair[0] - pair[1]).abs().max() > 1e-3
    path = tmp_path / "r.safetensors"
    save_weights(model, path, {"test": "1"})
    back = load_irn(path)
    assert back.config == cfg and torch.equal(back.upscale(lr, z), out)
    # files written before restorers existed still load, and as restorer-free models
    with safe_open("hcd_pipeline/weights/tiny-irn-x2.safetensors", framework="pt") as fh:
        assert "restore_blocks" not in json.loads(fh.metadata()["config"])
    assert base.restorer is None and base.without_restorer() is base


def test_codec_models_use_their_restorer_for_jpeg_only():
    model = load_model("irn-x2-jpeg")
    assert model.restorer is not None  # type: ignore[attr-defined]
    assert for_lr_format(model, "jpeg") is model
    for fmt in ("png", "webp"):
        view = for_lr_format(model, fmt)
        assert view.restorer is None  # type: ignore[attr-defined]
    plain = load_model("irn-x2")
    assert for_lr_format(plain, "png") is plain
    # the frozen-chain codec model makes exactly irn-x2's LR
    hr = _photo(64, 64)
    with torch.no_grad():
        assert torch.equal(model.downscale(hr)[0], plain.downscale(hr)[0])


def test_codec_batch_draws_qualities_and_clean_crops():
    cfg = TrainConfig(codec="jpeg", codec_q_min=80, codec_q_max=80, codec_clean=0.5, patch=32)
    lr = _photo(32, 32).repeat(16, 1, 1, 1)
    out, coded = codec_batch(lr, cfg, torch.Generator().manual_seed(0))
    assert 0 < int(coded.sum()) < 16
    assert torch.equal(out[~coded], lr[~coded])
    assert torch.equal(out[coded][0], jpeg_sim(lr[:1], 80)[0])


def test_training_with_a_codec_fine_tunes_the_restorer_only_when_frozen(tmp_path):
    cfg = TrainConfig(
        scale=2, data=str(SAMPLES), val=str(SAMPLES), out=str(tmp_path / "run"), blocks=1, width=8, patch=32, batch=2,
        steps=4, warmup=1, init="tiny-irn-x2", init_lr_scale=0.0, restore_blocks=1, restore_width=4, codec="jpeg",
        z_train=0.0, threads=1, ckpt_every=2, val_every=4,
    )  # fmt: skip
    base = load_model("tiny-irn-x2")
    path = train(cfg, progress=False)
    tuned = load_irn(path)
    for k, v in base.state_dict().items():
        assert torch.equal(tuned.state_dict()[k], v), f"{k} moved although the chain was frozen"
    assert tuned.restorer is not None and tuned.restorer.tail.weight.abs().sum() > 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 0 and "val_psnr_jpeg" in log[0] and log[-1]["step"] == 4


def test_training_settings_are_checked():
    with pytest.raises(SettingsError, match="multiple of 32"):
        TrainConfig(codec="jpeg", patch=48).check()
    with pytest.raises(SettingsError, match="qualities"):
        TrainConfig(codec="jpeg", patch=64, codec_q_min=95, codec_q_max=70).check()
    with pytest.raises(SettingsError, match="z std"):
        train(TrainConfig(init="tiny-irn-x2", blocks=1, width=8, z_train=1.0, data=str(SAMPLES), val="", steps=1, patch=32))


def test_weights_that_hold_only_a_difference_need_their_exact_base(tmp_path):
    import shutil

    from hcd_pipeline.core.errors import WeightsError
    from hcd_pipeline.models.weights import read_weights

    base_file = tmp_path / "base.safetensors"
    shutil.copy("hcd_pipeline/weights/tiny-irn-x2.safetensors", base_file)
    base = load_irn(base_file)
    model = IRN(IRNConfig(**{**base.config.to_dict(), "restore_blocks": 1, "restore_width": 4}))
    model.load_state_dict(base.state_dict(), strict=False)
    delta = tmp_path / "delta.safetensors"
    written = save_weights(model, delta, {"data": "test"}, base=base_file)
    assert written == len([k for k in model.state_dict() if k.startswith("restorer.")])
    lr = torch.rand(1, 3, 8, 8)
    z = torch.zeros(model.z_shape(lr.shape))
    assert torch.equal(load_irn(delta).upscale(lr, z), model.upscale(lr, z))
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(delta, other / "delta.safetensors")
    with pytest.raises(WeightsError, match="base.safetensors, which is not beside it"):
        read_weights(other / "delta.safetensors")
    shutil.copy("hcd_pipeline/weights/tiny-irn-x4.safetensors", base_file)  # a different file under the base's name
    with pytest.raises(WeightsError, match="not the file it was made from"):
        read_weights(delta)


def test_cli_trains_within_a_time_budget_and_exports_a_difference(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from hcd_pipeline.models.registry import MODELS, weights_path

    hcd = str(Path(sys.executable).parent / "hcd")
    run = tmp_path / "run"
    args = [hcd, "--quiet", "train", "--scale", "2", "--data", str(SAMPLES), "--val", "", "--out", str(run), "--blocks", "1",
            "--width", "8", "--patch", "32", "--batch", "2", "--warmup", "2", "--threads", "1", "--z-train", "0", "--init",
            "tiny-irn-x2", "--init-lr-scale", "0", "--restore-blocks", "1", "--restore-width", "4", "--codec", "jpeg",
            "--codec-quality", "80-90", "--steps", "100000", "--time-budget", "4", "--ckpt-every", "1000"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ck = torch.load(run / "checkpoint.pt", weights_only=False)
    assert 30 < ck["step"] == ck["total"] < 100000  # the schedule was fitted to the budget and the run ended there
    base = tmp_path / "tiny-irn-x2.safetensors"
    base.write_bytes(weights_path(MODELS["tiny-irn-x2"]).read_bytes())
    dst = tmp_path / "tiny-jpeg.safetensors"
    exp = subprocess.run([hcd, "export", str(run / "irn-x2.safetensors"), str(dst), "--base", str(base)], capture_output=True, text=True)
    assert exp.returncode == 0, exp.stderr
    with safe_open(str(dst), framework="pt") as fh:
        assert set(fh.keys()) == {k for k in load_irn(dst).state_dict() if k.startswith("restorer.")}
    again = subprocess.run([hcd, "export", str(run / "irn-x2.safetensors"), str(dst), "--base", str(base)], capture_output=True, text=True)
    assert again.returncode != 0 and "--force" in again.stderr
