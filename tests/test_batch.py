"""Batched HCD: every item of a batch gets what it would get alone (per-item loss, step, keep-best, stopping)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hcd_pipeline.hcd.optimise import collaborative_downscale
from hcd_pipeline.hcd.settings import get_preset
from hcd_pipeline.models import load_model

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _crops(n: int = 4, side: int = 32) -> torch.Tensor:
    """n different side x side crops of a sample photo, (n, 3, side, side) in [0, 1]."""
    img = torch.from_numpy(np.array(Image.open(SAMPLES / "astronaut_crop.png").convert("RGB"))).permute(2, 0, 1).float() / 255
    return torch.stack([img[:, 7 * i : 7 * i + side, 11 * i : 11 * i + side] for i in range(n)])


VARIANTS = {
    "official (pgd, random start, fresh z)": ("official", {}),
    "default (adam, judge)": ("default", {}),
    "bb, judge every step": ("default", {"optimizer": "bb", "hr_steps": 0, "lr_steps": 6, "judge_every": 1}),
    "adam, patience 1 (items stop at different steps)": ("default", {"patience": 1, "judge_every": 1, "lr_steps": 12}),
    "loss judge": ("default", {"judge": "loss"}),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_batch_items_equal_runs_alone(variant):
    preset, over = VARIANTS[variant]
    cfg = get_preset(preset, **over)
    model = load_model("tiny-irn-x2")
    hr = _crops()
    batch = collaborative_downscale(model, hr, settings=cfg, generator=[torch.Generator().manual_seed(i) for i in range(4)])
    items = batch.split()
    assert len(items) == 4 and batch.lr.shape[0] == 4
    for i, item in enumerate(items):
        alone = collaborative_downscale(model, hr[i], settings=cfg, generator=torch.Generator().manual_seed(i))
        # Batched convolutions add in another order: allow float noise in losses and at most a few LR values one
        # level apart (measured: none on this model and machine).
        diff = (torch.round(item.lr * 255) - torch.round(alone.lr * 255)).abs()
        assert diff.max() <= 1 and int((diff > 0).sum()) <= 3, variant
        assert len(item.losses) == len(alone.losses)
        np.testing.assert_allclose(item.losses, alone.losses, rtol=1e-4, atol=1e-9)
        assert item.kept == alone.kept
        assert item.judged.keys() == alone.judged.keys()
        for k in alone.judged:
            assert item.judged[k] == pytest.approx(alone.judged[k], abs=0.02)
        assert torch.equal(item.plain_lr, alone.plain_lr)


def test_patience_stops_items_separately():
    """With patience, items stop at different steps: their loss histories have different lengths, as alone."""
    cfg = get_preset("default", hr_steps=0, lr_steps=12, patience=1, judge_every=1)
    model = load_model("tiny-irn-x2")
    hr = torch.cat([_crops(3), torch.full((1, 3, 32, 32), 0.5)])  # a flat image stops at once
    res = collaborative_downscale(model, hr, method="lr", settings=cfg)
    lengths = [len(r.losses) for r in res.split()]
    assert lengths[3] < 12 and len(set(lengths)) > 1, lengths
    for i in range(4):
        assert len(collaborative_downscale(model, hr[i], method="lr", settings=cfg).losses) == lengths[i]


def test_bb_beats_adam_at_equal_steps():
    """The Barzilai-Borwein step (the default's optimiser) reaches a lower loss than Adam in the same steps."""
    model = load_model("tiny-irn-x2")
    hr = _crops(1, 48)
    out = {}
    for opt, step in (("adam", 1 / 255), ("bb", 1 / 255)):
        cfg = get_preset("default", optimizer=opt, step=step, hr_steps=0, lr_steps=8, judge="loss", keep_best=False)
        out[opt] = collaborative_downscale(model, hr, method="lr", settings=cfg).losses[-1]
    assert out["bb"] < out["adam"], out


def test_downscaler_batch_equals_alone_and_keeps_failures_apart():
    """optimise_batch: same-size images together (one grey, one with an odd size padded to the same), a bad image
    failing alone, each result's bytes and choice equal to optimise() of that image."""
    from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
    from hcd_pipeline.io.images import DecodedImage

    hr = _crops(3)
    images = [
        DecodedImage(hr[0], None, 8, "RGB", "a"),
        DecodedImage(hr[1].mean(0, keepdim=True), None, 8, "L", "grey"),
        DecodedImage(hr[2][:, :31, :31], None, 8, "RGB", "odd"),  # pads to 32 x 32
        DecodedImage(torch.full((3, 32, 32), float("nan")), None, 8, "RGB", "bad"),
    ]
    ds = Downscaler(DownscaleSettings(model="tiny-irn-x2", hcd_batch=4, preset="default", overrides={"lr_steps": 6}))
    outs = ds.optimise_batch(images)
    assert isinstance(outs[3], Exception) and "NaN" in str(outs[3])
    for img, out in zip(images[:3], outs[:3], strict=True):
        assert not isinstance(out, Exception)
        assert out.batch == 3 and out.device["kind"] == "cpu"
        alone = Downscaler(DownscaleSettings(model="tiny-irn-x2", hcd_batch=1, preset="default", overrides={"lr_steps": 6})).optimise(img)
        assert alone.batch == 1
        assert int((out.lr.int() - alone.lr.int()).abs().max()) <= 1, img.name
        assert out.kept == alone.kept and out.rec.shape == alone.rec.shape


def test_tiles_batched_equal_tiles_one_at_a_time():
    from hcd_pipeline.hcd.tiles import tiled_collaborative_downscale

    model = load_model("tiny-irn-x2")
    hr = _crops(1, 96)
    cfg = get_preset("default", lr_steps=4)
    one = tiled_collaborative_downscale(model, hr, tile=20, overlap=4, settings=cfg, generator=torch.Generator().manual_seed(0))
    many = tiled_collaborative_downscale(model, hr, tile=20, overlap=4, settings=cfg, generator=torch.Generator().manual_seed(0), batch=4)
    diff = (torch.round(one.lr * 255) - torch.round(many.lr * 255)).abs()
    assert diff.max() <= 1 and int((diff > 0).sum()) <= 3 and len(one.losses) == len(many.losses)
