"""No harm: the stored LR is never worse than plain downscaling by the PSNR the rows report; infinite and
undefined values have one meaning everywhere."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from PIL import Image

from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.core.metrics import psnr_gain
from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
from hcd_pipeline.hcd.optimise import collaborative_downscale
from hcd_pipeline.hcd.settings import get_preset
from hcd_pipeline.io.images import DecodedImage
from hcd_pipeline.models import load_model
from hcd_pipeline.report.build import build_report, format_text, render_html

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _image(pixels: torch.Tensor, name: str) -> DecodedImage:
    return DecodedImage(pixels.float(), None, 8, "RGB", name)


def _synthetic(n: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, n).view(1, 1, n).expand(3, n, n)
    bars = torch.ones(3, n, n)
    bars[:, :, ::4] = 0.0  # black-on-white text-like strokes
    photo = (
        torch.from_numpy(__import__("numpy").asarray(Image.open(SAMPLES / "astronaut_crop.png").convert("RGB"))[:n, :n]).permute(2, 0, 1)
        / 255
    )
    return {
        "flat_white": torch.ones(3, n, n),
        "flat_grey": torch.full((3, n, n), 0.5),
        "gradient": ramp.clone(),
        "bars": bars,
        "noise": torch.rand(3, n, n, generator=g),
        "photo": photo,
    }


@pytest.mark.parametrize("model,scale", [("tiny-irn-x2", None), ("bicubic", 2)])
@pytest.mark.parametrize("method", ["lr", "hr", "hcd"])
def test_stored_lr_never_below_plain(model, scale, method):
    ds = Downscaler(DownscaleSettings(model=model, scale=scale, method=method, seed=1))
    for name, px in _synthetic().items():
        out = ds.process(_image(px, name))
        assert out.optimised is not None and out.plain is not None
        assert out.optimised.psnr_y >= out.plain.psnr_y, (name, out.plain.psnr_y, out.optimised.psnr_y)
        side = out.sidecar
        assert side["kept"] in ("plain", "optimised") and side["judge"] == "y"
        if side["kept"] == "plain":
            assert side["changed_values"] == 0 and out.optimised == out.plain
        else:
            assert out.optimised.psnr_y > out.plain.psnr_y
        json.dumps(side, allow_nan=False)  # infinite PSNRs are written as strings, never as bare Infinity


def test_flat_image_is_perfect_and_keeps_plain():
    ds = Downscaler(DownscaleSettings(model="bicubic", scale=2, method="hcd"))
    out = ds.process(_image(torch.full((3, 32, 32), 0.5), "flat"))
    assert math.isinf(out.plain.psnr_y) and out.sidecar["kept"] == "plain"
    assert out.sidecar["metrics"]["plain"]["psnr_y"] == "inf" and float(out.sidecar["metrics"]["plain"]["psnr_y"]) == math.inf
    assert psnr_gain(out.optimised.psnr_y, out.plain.psnr_y) == 0.0


def test_tiled_run_keeps_no_harm():
    ds = Downscaler(DownscaleSettings(model="tiny-irn-x2", method="hcd", tile=12, overlap=4, seed=2))
    for name, px in _synthetic(48).items():
        out = ds.process(_image(px, name))
        assert out.sidecar["tile"] == 12
        assert out.optimised.psnr_y >= out.plain.psnr_y, name


def test_keep_best_follows_the_judge_not_the_loss():
    # A judge that prefers plain above everything: keep-best must store plain whatever the loss says.
    model = load_model("tiny-irn-x2")
    hr = _synthetic()["photo"].unsqueeze(0)
    plain_only = collaborative_downscale(model, hr, settings=get_preset("default"), generator=torch.Generator().manual_seed(0),
                                         judge=lambda lr, z: 1.0 if torch.equal(lr, plain_lr) else 0.0)  # fmt: skip
    assert plain_only.kept == "plain" and plain_only.changed == 0
    free = collaborative_downscale(model, hr, settings=get_preset("default", judge="loss"), generator=torch.Generator().manual_seed(0))
    assert free.judged == {} and free.changed > 0


plain_lr = None


@pytest.fixture(autouse=True)
def _plain_lr():
    global plain_lr
    model = load_model("tiny-irn-x2")
    with torch.no_grad():
        lr, _ = model.downscale(_synthetic()["photo"].unsqueeze(0))
    plain_lr = torch.round(lr.clamp(0, 1) * 255) / 255


def test_report_with_perfect_reconstructions_and_empty_groups(tmp_path):
    from hcd_pipeline.pipeline.schema import rows_to_table

    inf = math.inf
    base = {"status": "ok", "model": "bicubic", "scale": 2, "method": "hcd", "preset": "default", "seconds": 0.1, "ssim_y": 1.0,
            "plain_ssim_y": 1.0}  # fmt: skip
    rows = [
        {**base, "key": "flat.png", "plain_psnr_y": inf, "psnr_y": inf, "gain_y": psnr_gain(inf, inf)},
        {**base, "key": "photo.png", "plain_psnr_y": 30.0, "psnr_y": 30.5, "gain_y": 0.5},
        {**base, "key": "solved.png", "plain_psnr_y": 40.0, "psnr_y": inf, "gain_y": psnr_gain(inf, 40.0)},
        {"key": "bad.png", "status": "failed", "error": "ImageReadError: bad.png: truncated"},
    ]
    rep = build_report(rows_to_table(rows))
    g = rep["groups"][0]
    assert g["gain_y"]["n"] == 2 and g["gain_y"]["n_inf"] == 1 and g["gain_y"]["mean"] == pytest.approx(0.25)
    assert g["psnr_y"]["n"] == 1 and g["psnr_y"]["n_inf"] == 2
    assert all(math.isfinite(p["gain"]) for p in rep["points"])
    text = format_text(rep)
    assert "nan" not in text.lower()
    html = render_html(rep)
    assert "<svg" in html
    empty = build_report(rows_to_table([rows[-1]]))
    assert empty["groups"] == [] and "nan" not in format_text(empty).lower()
    render_html(empty)
    assert pa.table({"x": [1]}).num_rows == 1


def test_patience_ends_a_stage_early_and_keeps_no_harm():
    model = load_model("tiny-irn-x2")
    hr = _synthetic()["gradient"].unsqueeze(0)
    full = collaborative_downscale(model, hr, settings=get_preset("default", judge_every=1), generator=torch.Generator().manual_seed(0))
    short = collaborative_downscale(model, hr, settings=get_preset("default", judge_every=1, patience=1),
                                    generator=torch.Generator().manual_seed(0))  # fmt: skip
    cfg = get_preset("default")
    assert len(short.losses) < len(full.losses) == cfg.hr_steps + cfg.lr_steps
    assert short.judged["stored"] >= short.judged["plain"]
    with pytest.raises(Exception, match="patience"):
        get_preset("default", patience=-1)


def test_metrics_from_the_judges_reconstructions_equal_fresh_ones():
    """The rows' scores reuse the judge's reconstructions: they equal scoring fresh upscales of both LRs."""
    from hcd_pipeline.core.metrics import score_pair
    from hcd_pipeline.downscaler import upscale_lr

    img = _image(_synthetic(48)["photo"], "photo")
    ds = Downscaler(DownscaleSettings(model="tiny-irn-x2", overrides={"lr_steps": 6}))
    out = ds.process(img)
    assert out.sidecar["kept"] == "optimised"
    plain_lr = Downscaler(DownscaleSettings(model="tiny-irn-x2", method="plain")).process(img, metrics=False).lr
    for lr, scores in ((out.lr, out.optimised), (plain_lr, out.plain)):
        rec = upscale_lr(ds.model, lr, seed=0, decode=ds.hcd.decode)
        assert score_pair(img.pixels, rec, 2) == scores


def test_colour_guard_keeps_rgb_at_or_above_plain():
    """``judge="y+rgb"``: Y-PSNR decides among iterates whose RGB PSNR is at least the plain LR's. On this pepper crop
    the Y judge alone stores a JPEG whose colours are worse than plain (RGB 28.15 vs 28.52 dB; Y +1.5 dB); the guard
    keeps an iterate that is better in both (Y 33.68, RGB 28.59), in the JPEG file and in pixel HCD (PNG) alike."""
    from hcd_pipeline.hcd.judge import ReconstructionJudge
    from hcd_pipeline.io.images import read_image

    img = read_image(Path(__file__).parent / "data" / "pepper_crop96.png")

    def run(judge: str, lr_format: str = "jpeg"):  # noqa: ANN202
        overrides = {"lr_steps": 16, "optimizer": "bb", "judge": judge}
        return Downscaler(DownscaleSettings(model="irn-x2-jpeg-joint", lr_format=lr_format, overrides=overrides)).process(img)

    y_only, guarded = run("y"), run("y+rgb")
    assert y_only.optimised.psnr_rgb < y_only.plain.psnr_rgb - 0.2  # the problem the guard exists for
    assert guarded.sidecar["judge"] == "y+rgb" and guarded.sidecar["kept"] == "optimised"
    assert guarded.optimised.psnr_rgb >= guarded.plain.psnr_rgb
    assert guarded.optimised.psnr_y > guarded.plain.psnr_y + 0.5
    png = run("y+rgb", "png")
    assert png.sidecar["kept"] == "optimised" and png.optimised.psnr_rgb >= png.plain.psnr_rgb
    with pytest.raises(SettingsError, match="y\\+rgb"):
        ReconstructionJudge(load_model("tiny-irn-x2"), [img.pixels], channels="lab")
