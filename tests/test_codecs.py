"""Stored LR formats: JPEG / WebP files, judged as decoded (never worse than plain at the same format)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hcd_pipeline.core.metrics import score_pair
from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
from hcd_pipeline.io.images import decode_image, read_image
from hcd_pipeline.io.lr_formats import decode_lr, encode_lr, roundtrip
from tests.conftest import SAMPLES

HCD = str(Path(sys.executable).parent / "hcd")


def test_codec_roundtrip_is_deterministic_and_lossy():
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    for fmt in ("jpeg", "webp"):
        a, b = roundtrip(x, fmt, 75), roundtrip(x, fmt, 75)
        assert torch.equal(a, b) and not torch.equal(a, torch.round(x * 255) / 255)
        assert torch.equal(a[1], decode_lr(encode_lr(x[1], None, fmt, 75)))
    assert torch.equal(roundtrip(x, "png"), torch.round(x * 255) / 255)


@pytest.mark.parametrize("fmt,quality", [("jpeg", 75), ("webp", 80)])
def test_lossy_lr_is_judged_as_decoded_and_never_below_plain(fmt, quality):
    img = read_image(SAMPLES / "astronaut_crop.png")
    for method in ("lr", "hcd"):
        ds = Downscaler(DownscaleSettings(model="tiny-irn-x2", method=method, lr_format=fmt, lr_quality=quality))
        out = ds.process(img)
        side = out.sidecar
        assert side["lr_format"] == fmt and side["lr_quality"] == quality and side["lr_bytes"] == len(out.data)
        assert out.optimised.psnr_y >= out.plain.psnr_y  # no harm at the same format and quality
        # The row's score is the decoded file's reconstruction: rebuild it from the bytes.
        rec = ds.model.upscale(decode_lr(out.data).unsqueeze(0), None)[0].clamp(0, 1)
        assert score_pair(img.pixels, rec, 2).psnr_y == pytest.approx(out.optimised.psnr_y, abs=1e-9)


def test_cli_jpeg_round_trip_and_alpha_refused(tmp_path):
    srcs = [str(SAMPLES / "astronaut_crop.png"), str(SAMPLES / "chelsea_crop_alpha.png")]
    proc = subprocess.run([HCD, "downscale", *srcs, "-o", str(tmp_path / "lr"), "--model", "tiny-irn-x2", "--lr-format", "jpeg",
                           "--lr-quality", "85", "--set", "lr_steps=3"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1 and "JPEG has no alpha channel" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "lr").iterdir()) == ["astronaut_crop.jpg", "astronaut_crop.json"]  # nothing partial
    side = json.loads((tmp_path / "lr" / "astronaut_crop.json").read_text())
    assert side["lr_bytes"] == (tmp_path / "lr" / "astronaut_crop.jpg").stat().st_size
    up = subprocess.run([HCD, "upscale", str(tmp_path / "lr" / "astronaut_crop.jpg"), "-o", str(tmp_path / "up")], capture_output=True,
                        text=True, timeout=300)  # fmt: skip
    assert up.returncode == 0, up.stderr
    rec = read_image(tmp_path / "up" / "astronaut_crop.png")
    got = score_pair(read_image(srcs[0]).pixels, rec.pixels, 2).psnr_y
    assert got == pytest.approx(float(side["metrics"]["optimised"]["psnr_y"]), abs=1e-6)


def test_pipeline_stores_webp_and_resumes(ray_local, small_images, tmp_path):
    """hcd run with lr_format webp: .webp files beside their sidecars, rows with format, quality and bytes; a rerun
    finds them done (and rows rebuilt from sidecars point at the .webp)."""
    import pyarrow.parquet as pq

    from hcd_pipeline.pipeline import PipelineSettings, read_metrics, run_pipeline

    out = tmp_path / "out"
    s = PipelineSettings(input=str(small_images), output=str(out), model="tiny-irn-x2", method="lr", overrides={"lr_steps": 2},
                         lr_format="webp", lr_quality=70)  # fmt: skip
    first = run_pipeline(s, progress=False)
    assert first.done == 4 and first.failed == 0
    rows = read_metrics(str(out)).to_pylist()
    for r in rows:
        assert r["lr_uri"].endswith(".webp") and r["lr_format"] == "webp" and r["lr_quality"] == 70
        assert r["lr_bytes"] == Path(r["lr_uri"]).stat().st_size and r["psnr_y"] >= r["plain_psnr_y"]
    for p in (out / "metrics" / "parts").glob("*.parquet"):
        p.unlink()  # as if the run died after writing its images: rows come back from the sidecars
    (out / "metrics.parquet").unlink()
    again = run_pipeline(s, progress=False)
    assert again.recovered == 4 and again.done == 0
    assert all(r["lr_uri"].endswith(".webp") for r in pq.read_table(out / "metrics.parquet").to_pylist())


def test_pipeline_refuses_alpha_for_jpeg_as_a_failed_row(ray_local, small_images, tmp_path):
    """hcd run with lr_format jpeg: an image with transparency is a failed row saying why, and nothing of it is
    stored (the model stage once dropped the alpha and stored it as JPEG); the others are stored as JPEG."""
    from hcd_pipeline.pipeline import PipelineSettings, read_metrics, run_pipeline

    out = tmp_path / "out"
    s = PipelineSettings(input=str(small_images), output=str(out), model="tiny-irn-x2", method="lr", overrides={"lr_steps": 2},
                         lr_format="jpeg", lr_quality=85)  # fmt: skip
    res = run_pipeline(s, progress=False)
    assert (res.done, res.failed) == (3, 1)
    rows = {r["key"]: r for r in read_metrics(str(out)).to_pylist()}
    assert rows["d.png"]["status"] == "failed" and "JPEG has no alpha channel" in rows["d.png"]["error"]
    assert all(r["lr_uri"].endswith(".jpg") for k, r in rows.items() if k != "d.png")
    assert not list(out.rglob("d.*"))


def test_jpeg_coefficients_round_trip_and_the_decoder_model():
    """jpeglib writes exactly the coefficients given; the torch decoder matches libjpeg's within a level."""
    import numpy as np

    from hcd_pipeline.jpeg.coefficients import read_coefficients, write_coefficients
    from hcd_pipeline.jpeg.decoder import decode_coefficients

    x = read_image(SAMPLES / "astronaut_crop.png").pixels[:, :60, :70]
    c = read_coefficients(encode_lr(x, None, "jpeg", 90))
    y = c.y + np.random.default_rng(0).integers(-1, 2, c.y.shape)
    data = write_coefficients(c, y, c.cb, c.cr)
    back = read_coefficients(data)
    assert np.array_equal(back.y, y) and np.array_equal(back.cb, c.cb) and back.size == (60, 70)

    def t(a):  # noqa: ANN001, ANN202
        return torch.from_numpy(a.astype("float32"))

    model = decode_coefficients(t(y), t(c.cb), t(c.cr), t(c.qt_luma), t(c.qt_chroma), c.size)
    assert float((model - decode_lr(data).unsqueeze(0)).abs().mean()) * 255 < 1.0


def test_jpeg_file_mode_stores_the_optimised_file():
    """JPEG with codec_aware (the default): the stored bytes are the optimised coefficients' file; the row's score is
    that file's decode, never below the plain LR's JPEG."""
    img = read_image(SAMPLES / "astronaut_crop.png")
    ds = Downscaler(DownscaleSettings(model="irn-x2", lr_format="jpeg", lr_quality=90, overrides={"lr_steps": 6}))
    out = ds.process(img)
    assert out.optimised.psnr_y > out.plain.psnr_y  # measurable on a real model (bird of Set5: +0.53 dB at 8 steps)
    assert out.sidecar["kept"] == "optimised" and out.sidecar["codec_aware"]
    assert out.data != encode_lr(decode_lr(out.data), None, "jpeg", 90)  # not an encoding of pixels: the coefficients
    rec = ds.model.upscale(decode_lr(out.data).unsqueeze(0), None)[0].clamp(0, 1)
    assert score_pair(img.pixels, rec, 2).psnr_y == pytest.approx(out.optimised.psnr_y, abs=1e-9)


def _plain_png_and_jpeg(img, models: tuple[str, ...]) -> dict[tuple[str, str], tuple[float, bytes]]:  # noqa: ANN001
    """(model, png|jpeg) -> (Y-PSNR of the plain LR's reconstruction, the stored file) at JPEG q90."""
    got = {}
    for model in models:
        for fmt in ("png", "jpeg"):
            out = Downscaler(DownscaleSettings(model=model, method="plain", lr_format=fmt, lr_quality=90)).process(img)
            got[model, fmt] = (out.plain.psnr_y, out.data)
    return got


def test_codec_robust_model_restores_jpeg_and_leaves_png_alone(tmp_path):
    """irn-x2-jpeg: the same LR as irn-x2; its JPEG LRs upscale better (CLI upscale included), its PNG LRs equally."""
    img = read_image(SAMPLES / "astronaut_crop.png")
    scores = _plain_png_and_jpeg(img, ("irn-x2", "irn-x2-jpeg"))
    assert scores["irn-x2", "png"] == scores["irn-x2-jpeg", "png"]  # same bytes, same score
    assert scores["irn-x2", "jpeg"][1] == scores["irn-x2-jpeg", "jpeg"][1]  # same JPEG file
    assert scores["irn-x2-jpeg", "jpeg"][0] > scores["irn-x2", "jpeg"][0] + 0.3
    proc = subprocess.run([HCD, "downscale", str(SAMPLES / "astronaut_crop.png"), "-o", str(tmp_path / "lr"), "--model", "irn-x2-jpeg",
                           "--method", "plain", "--lr-format", "jpeg"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    up = subprocess.run([HCD, "upscale", str(tmp_path / "lr" / "astronaut_crop.jpg"), "-o", str(tmp_path / "up")], capture_output=True,
                        text=True, timeout=300)  # fmt: skip
    assert up.returncode == 0, up.stderr
    got = score_pair(img.pixels, read_image(tmp_path / "up" / "astronaut_crop.png").pixels, 2).psnr_y
    assert got == pytest.approx(scores["irn-x2-jpeg", "jpeg"][0], abs=1e-6)


def test_joint_codec_model_trades_png_for_jpeg_and_keeps_its_lr_near_bicubic(monkeypatch):
    """irn-x2-jpeg-joint (tag v2: chain fine-tuned with JPEG, LR tied to bicubic): from a JPEG q90 LR it reconstructs
    better than irn-x2-jpeg (+0.63 dB on this crop; v1 gave +0.45, v2 +0.18 more), from a PNG LR worse; its LR is its
    own (not irn-x2's) and stays within 40 dB of MATLAB bicubic's. The deprecated name -v2 is the same model."""
    from hcd_pipeline.core.metrics import psnr
    from hcd_pipeline.models.registry import load_model

    img = read_image(SAMPLES / "astronaut_crop.png")
    got = _plain_png_and_jpeg(img, ("irn-x2-jpeg", "irn-x2-jpeg-joint"))
    assert got["irn-x2-jpeg-joint", "jpeg"][0] > got["irn-x2-jpeg", "jpeg"][0] + 0.4
    from hcd_pipeline.models import registry

    monkeypatch.setattr(registry, "_WARNED", set())  # the warning comes once per process and name
    with pytest.warns(FutureWarning, match="deprecated"):
        old = _plain_png_and_jpeg(img, ("irn-x2-jpeg-joint-v2",))
    assert old["irn-x2-jpeg-joint-v2", "jpeg"] == got["irn-x2-jpeg-joint", "jpeg"]
    with torch.no_grad():
        bicubic = load_model("bicubic", scale=2).downscale(img.pixels.unsqueeze(0))[0][0].clamp(0, 1)  # (lr, z)
    joint = "irn-x2-jpeg-joint"
    assert got[joint, "png"][0] < got["irn-x2-jpeg", "png"][0] - 1.0
    assert got[joint, "png"][1] != got["irn-x2-jpeg", "png"][1]
    assert psnr(decode_lr(got[joint, "png"][1]) * 255, torch.round(bicubic * 255)) > 40.0, joint


def test_a_generation_that_is_not_shipped_is_one_line_naming_its_file(tmp_path):
    """Tags not shipped (irn-x2-jpeg-joint.v1, the float32 files): loading one by name says how to use the kept file;
    an LR whose sidecar records a name of earlier releases is read as what it meant then and is not upscaled by the
    shipped float16 weights."""
    from hcd_pipeline.core.errors import WeightsError
    from hcd_pipeline.downscaler import upscale_stored
    from hcd_pipeline.models.registry import load_model

    with pytest.raises(WeightsError, match=r"not shipped.*--weights FILE.*0f28ff351a2afd91"):
        load_model("irn-x2-jpeg-joint.v1")
    with pytest.raises(WeightsError, match=r"not shipped.*--weights FILE.*93019e7206844e46"):
        load_model("irn-x2.v1")  # the float32 file of the default x2 model, as trained
    with pytest.raises(WeightsError, match=r"not shipped.*--weights FILE.*2f128cc093c70a53"):
        load_model("irn-x2.v2-fp16")  # the first 8-block file: shipped in one release, replaced by .v3-fp16
    with pytest.raises(WeightsError, match=r"not shipped.*--weights FILE.*db423dce61bb1d14"):
        load_model("irn-x4.v3-fp16")  # shipped in one release, replaced by .v4-fp16 (session 16)
    # A deprecated name on the command line: one note, not a Python warning with its source line.
    proc = subprocess.run([HCD, "downscale", str(SAMPLES / "coffee_crop.png"), "-o", str(tmp_path / "d"), "--method", "plain",
                           "--model", "irn-x2-jpeg-joint-v2"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["note: model name 'irn-x2-jpeg-joint-v2' is deprecated: it is 'irn-x2-jpeg-joint.v2-fp16'"]
    img = read_image(SAMPLES / "astronaut_crop.png")
    out = Downscaler(DownscaleSettings(model="irn-x2-jpeg-joint", method="plain", lr_format="jpeg")).process(img)
    assert out.sidecar["model"] == "irn-x2-jpeg-joint.v2-fp16"
    lr = decode_image(out.data, "a.jpg")
    upscale_stored(lr, out.sidecar)  # as recorded now: fine
    for then, sha in (("irn-x2-jpeg-joint", "0f28ff351a2afd91"), ("irn-x2-jpeg-joint-v2", "814c9343fc6dae25")):
        old = {**out.sidecar, "model": then, "weights_sha256": sha}  # as earlier releases wrote it
        with pytest.raises(WeightsError, match=f"not shipped.*{sha}"):
            upscale_stored(lr, old)
    png = Downscaler(DownscaleSettings(method="plain")).process(img)
    assert png.sidecar["model"] == "irn-x2.v1-fp16"
    old = {**png.sidecar, "model": "irn-x2", "weights_sha256": "93019e7206844e46"}  # the default model, earlier releases
    with pytest.raises(WeightsError, match="not shipped.*93019e7206844e46"):
        upscale_stored(decode_image(png.data, "a.png"), old)


def test_cli_suggests_a_codec_model_for_jpeg_and_only_then(tmp_path):
    """A default IRN with --lr-format jpeg gets one line of advice on stderr (the model is not changed); PNG or a
    codec model get none."""
    from hcd_pipeline.models.registry import codec_model_hint

    assert "irn-x4-jpeg-joint" in codec_model_hint(None, 4, "jpeg")
    assert codec_model_hint("irn-x2", None, "png") is None and codec_model_hint("irn-x2-jpeg", None, "jpeg") is None
    assert codec_model_hint("bicubic", 3, "jpeg") is None and codec_model_hint(None, 3, "jpeg") is None
    src = str(SAMPLES / "astronaut_crop.png")
    for extra, said, model in (
        ([], True, "irn-x2.v1-fp16"),  # sidecars record the tagged name of the weights
        (["--lr-format", "png"], False, "irn-x2.v1-fp16"),
        (["--model", "irn-x2-jpeg"], False, "irn-x2-jpeg.v1-fp16"),
    ):
        args = [HCD, "downscale", src, "-o", str(tmp_path / "lr"), "--method", "plain", "--lr-format", "jpeg", "--force", *extra]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert ("--model irn-x2-jpeg-joint " in proc.stderr) == said, proc.stderr
        assert json.loads((tmp_path / "lr" / "astronaut_crop.json").read_text())["model"] == model


def test_jpeg_adam_bits_and_chroma_terms(monkeypatch):
    """``optimizer=adam`` in JPEG file mode: Adam on the luma loss plus a chroma term and a bits term. The bits term keeps
    the file small (without it Adam's gain was bought with bytes, ``jpeg_hcd.RATE_WEIGHT``); the chroma term keeps the
    colours (without it Adam buys Y-PSNR with RGB, ``jpeg_hcd.CHROMA_WEIGHT``). Judged on the decoded file, the result
    beats the plain one."""
    from hcd_pipeline.hcd import jpeg_file as jpeg_hcd

    img = read_image(SAMPLES / "astronaut_crop.png")

    def run() -> object:
        settings = DownscaleSettings(model="irn-x2-jpeg-joint", lr_format="jpeg", lr_quality=90,
                                     overrides={"lr_steps": 12, "optimizer": "adam"})  # fmt: skip
        return Downscaler(settings).process(img)

    shipped, rate = run(), jpeg_hcd.RATE_WEIGHT
    assert shipped.sidecar["hcd"]["optimizer"] == "adam" and shipped.sidecar["kept"] == "optimised"
    # the constants that shape the file are recorded with it
    assert shipped.sidecar["jpeg_optimizer"] == {"name": "adam", "adam_step": 0.5, "chroma_weight": 0.1, "rate_weight": 0.2}
    assert shipped.optimised.psnr_y > shipped.plain.psnr_y + 0.3  # 33.11 vs 32.25 dB here
    monkeypatch.setattr(jpeg_hcd, "RATE_WEIGHT", 0.0)
    no_rate = run()
    assert no_rate.sidecar["jpeg_optimizer"]["rate_weight"] == 0.0
    assert len(shipped.data) < 0.99 * len(no_rate.data)  # 2,991 vs 3,073 bytes
    monkeypatch.setattr(jpeg_hcd, "RATE_WEIGHT", rate)
    monkeypatch.setattr(jpeg_hcd, "CHROMA_WEIGHT", 0.0)
    assert run().optimised.psnr_rgb < shipped.optimised.psnr_rgb - 1.0  # 27.68 vs 29.82 dB: colour spent on luma
    with pytest.raises(ValueError, match="JPEG optimizer"):
        jpeg_hcd.optimise_jpeg(lambda x: x, img.pixels[None], img.pixels[None], 90, lambda x: 0.0, optimizer="lbfgs")
