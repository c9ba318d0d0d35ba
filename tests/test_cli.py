"""The hcd command through its installed entry point: files in, files out, exact round trips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hcd_pipeline.core.metrics import score_pair
from hcd_pipeline.io.images import read_image
from tests.conftest import SAMPLES

HCD = str(Path(sys.executable).parent / "hcd")


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([HCD, *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"hcd {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_downscale_upscale_reproduces_reported_psnr(tmp_path):
    srcs = [str(SAMPLES / n) for n in ("astronaut_crop.png", "camera_crop_gray.png", "chelsea_crop_alpha.png")]
    lr_dir, hr_dir = tmp_path / "lr", tmp_path / "hr"
    run("downscale", *srcs, "-o", str(lr_dir), "--model", "tiny-irn-x2", "--seed", "3")
    rt = run("roundtrip", srcs[0], "--model", "tiny-irn-x2", "--seed", "3", "--json", str(tmp_path / "rt.json"))
    assert "astronaut_crop.png" in rt.stdout
    run("upscale", *(str(lr_dir / (Path(s).stem + ".png")) for s in srcs), "-o", str(hr_dir))
    for src in srcs:
        stem = Path(src).stem
        side = json.loads((lr_dir / f"{stem}.json").read_text())
        orig = read_image(src)
        lr = read_image(lr_dir / f"{stem}.png")
        assert lr.width == -(-orig.width // 2) and lr.height == -(-orig.height // 2)
        assert (lr.alpha is not None) == (orig.alpha is not None)
        up = read_image(hr_dir / f"{stem}.png")
        assert up.pixels.shape == orig.pixels.shape
        sc = score_pair(orig.pixels, up.pixels, 2)
        assert sc.psnr_y == side["metrics"]["optimised"]["psnr_y"]
        assert side["model"] == "tiny-irn-x2" and side["seed"] == 3 and side["method"] == "hcd"
    rt_json = json.loads((tmp_path / "rt.json").read_text())
    side0 = json.loads((lr_dir / "astronaut_crop.json").read_text())
    assert rt_json["images"][0]["optimised"]["psnr_y"] == side0["metrics"]["optimised"]["psnr_y"]


def test_bad_inputs_fail_cleanly(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    proc = run(
        "downscale", str(bad), str(SAMPLES / "coffee_crop.png"), "-o", str(out), "--model", "tiny-irn-x2", "--method", "plain", check=False
    )
    assert proc.returncode == 1
    assert "bad.png" in proc.stderr and "1 of 2 failed" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["coffee_crop.json", "coffee_crop.png"]
    again = run("downscale", str(SAMPLES / "coffee_crop.png"), "-o", str(out), "--model", "tiny-irn-x2", "--method", "plain", check=False)
    assert again.returncode == 1 and "--force" in again.stderr
    proc = run("downscale", str(SAMPLES / "coffee_crop.png"), "-o", str(out), "--model", "bicubic", check=False)
    assert proc.returncode == 1 and "--scale" in proc.stderr
    proc = run("downscale", str(SAMPLES / "coffee_crop.png"), "-o", str(out), "--model", "tiny-irn-x2", "--scale", "4", check=False)
    assert proc.returncode == 1 and "x2" in proc.stderr


def test_eval_bicubic_table_and_json(tmp_path, shared):
    js = tmp_path / "e.json"
    proc = run("eval", "--model", "bicubic", "--scale", "4", "--data", str(shared / "data" / "Set5" / "HR"), "--json", str(js))
    assert "butterfly.png" in proc.stdout and "mean" in proc.stdout
    res = json.loads(js.read_text())
    assert res["settings"]["scale"] == 4 and len(res["images"]) == 5
    assert res["mean"]["psnr_y"] == pytest.approx(28.431, abs=0.005)
    assert res["mean"]["ssim_y"] == pytest.approx(0.8113, abs=0.0005)


def test_alpha_values_and_16_bit_upscale(tmp_path):
    """The LR's alpha is the MATLAB-bicubic downscale of the source alpha; the upscaled alpha its bicubic upscale;
    --bit-depth 16 writes a 16-bit PNG whose values round to the 8-bit output's."""
    import torch

    from hcd_pipeline.core.resize import imresize, pad_symmetric

    src = SAMPLES / "chelsea_crop_alpha.png"
    run("downscale", str(src), "-o", str(tmp_path / "lr"), "--model", "tiny-irn-x2", "--set", "lr_steps=2")
    orig, lr = read_image(src), read_image(tmp_path / "lr" / "chelsea_crop_alpha.png")

    want = torch.round(imresize(pad_symmetric(orig.alpha.double(), 2), 0.5).clamp(0, 1) * 255)
    assert torch.equal(torch.round(lr.alpha.double() * 255), want)
    lrp = str(tmp_path / "lr" / "chelsea_crop_alpha.png")
    run("upscale", lrp, "-o", str(tmp_path / "up8"))
    run("upscale", lrp, "-o", str(tmp_path / "up16"), "--bit-depth", "16")
    up8, up16 = read_image(tmp_path / "up8" / "chelsea_crop_alpha.png"), read_image(tmp_path / "up16" / "chelsea_crop_alpha.png")
    assert up8.bit_depth == 8 and up16.bit_depth == 16 and up16.pixels.shape == (3, orig.height, orig.width)
    assert (torch.round(up16.pixels * 255) - torch.round(up8.pixels * 255)).abs().max() <= 1  # 16 bits round to the 8-bit output
    want_up = imresize(lr.alpha.double(), 2.0).clamp(0, 1)[:, : orig.height, : orig.width]
    assert (up8.alpha.double() - want_up).abs().max() <= 0.5 / 255 + 1e-9
    assert (up8.alpha - orig.alpha).abs().mean() < 0.05  # and it is the source's alpha, resampled


def test_weights_files_are_not_overwritten_without_force(tmp_path):
    from hcd_pipeline.models.registry import MODELS, weights_path

    dst = tmp_path / "w.safetensors"
    dst.write_bytes(b"keep")
    ckpt = weights_path(MODELS["tiny-irn-x2"])
    proc = run("convert", str(ckpt), str(dst), check=False)
    assert proc.returncode == 1 and "use --force" in proc.stderr and dst.read_bytes() == b"keep"


def test_folders_in_one_output_convention_and_nothing_in_the_current_folder(tmp_path):
    """Folders are accepted where files are (subfolders kept, the output's own files skipped on a rerun); no command
    writes over its own inputs, even with --force; eval and report write only where they are told (report: into the
    run output by default), never into the current folder."""
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (photos / "a.png").write_bytes((SAMPLES / "coffee_crop.png").read_bytes())
    (photos / "sub" / "b.png").write_bytes((SAMPLES / "astronaut_crop.png").read_bytes())
    plain = ["--model", "bicubic", "--scale", "2", "--method", "plain"]
    work = tmp_path / "cwd"
    work.mkdir()

    def hcd(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([HCD, *args], capture_output=True, text=True, timeout=600, cwd=work)
        assert not check or proc.returncode == 0, proc.stderr
        return proc

    for _ in range(2):  # the second run skips photos/lr (its own output) and overwrites only with --force
        hcd("downscale", str(photos), "--output", str(photos / "lr"), *plain, "--force", "--threads", "auto")
    assert sorted(str(p.relative_to(photos)) for p in photos.rglob("*.png")) == ["a.png", "lr/a.png", "lr/sub/b.png", "sub/b.png"]
    before = (photos / "a.png").read_bytes()
    proc = hcd("downscale", str(photos / "a.png"), "-o", str(photos), *plain, "--force", check=False)
    assert proc.returncode == 1 and "is an input of this command" in proc.stderr
    assert (photos / "a.png").read_bytes() == before
    hcd("upscale", str(photos / "lr"), "-o", str(tmp_path / "up"))
    assert sorted(str(p.relative_to(tmp_path / "up")) for p in (tmp_path / "up").rglob("*.png")) == ["a.png", "sub/b.png"]
    proc = hcd("eval", *plain, "--data", str(photos / "sub"))
    assert "b.png" in proc.stdout and "wrote" not in proc.stdout
    hcd("eval", *plain, "--data", str(photos / "sub"), "-o", str(tmp_path / "e.json"))
    assert json.loads((tmp_path / "e.json").read_text())["images"][0]["image"] == "b.png"
    assert list(work.iterdir()) == []
    proc = hcd("downscale", "--threads", "0", str(photos / "a.png"), "-o", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2 and "--threads" in proc.stderr


def test_unforeseen_errors_are_one_line_and_tracebacks_need_verbose():
    """A cluster that does not answer (hcd status against a closed port): one error line; the traceback only with
    --verbose."""
    proc = run("status", "raysubmit_x", "--address", "http://127.0.0.1:9", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "127.0.0.1:9" in proc.stderr
    loud = run("--verbose", "status", "raysubmit_x", "--address", "http://127.0.0.1:9", check=False)
    assert loud.returncode == 1 and "Traceback" in loud.stderr


def test_a_16bit_lzw_tiff_scan_through_the_cli_and_defaults_in_help(tmp_path):
    import numpy as np
    import tifffile

    scan = np.random.default_rng(4).integers(0, 65536, size=(24, 20, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "scan.tif", scan, photometric="rgb", compression="lzw")
    run("downscale", str(tmp_path / "scan.tif"), "-o", str(tmp_path / "lr"), "--model", "bicubic", "--scale", "2", "--method", "plain")
    side = json.loads((tmp_path / "lr" / "scan.json").read_text())
    assert side["source_bit_depth"] == 16 and side["lr_size"] == [10, 12]
    helptext = run("run", "--help").stdout
    assert "[default: hcd]" in helptext and "[default: 1]" in helptext and "[default: keep]" in helptext


def test_models_lists_what_ships_and_names_the_tag_each_name_loads():
    shipped = run("models").stdout
    lines = {line.split()[0]: line for line in shipped.splitlines() if line and not line.startswith("(")}
    assert "(irn-x2.v1-fp16)" in lines["irn-x2"] and "the default at x2" in lines["irn-x2"]  # the bare name and its tag
    assert "irn-x2.v1" not in lines and "93019e7206844e46" not in shipped  # float32 tags of earlier releases: not shipped
    assert "11 tags of earlier releases are not shipped" in shipped
    assert "8 blocks per level" in lines["irn-x2.v3-fp16"] and "irn-x4.v4-fp16" in lines  # the opt-in 8-block models
    assert "irn-x2.v2-fp16" not in lines and "irn-x4.v3-fp16" not in lines  # each shipped in one release, then replaced
    everything = run("models", "--all").stdout
    assert "irn-x2.v1 " in everything and "93019e7206844e46" in everything and "not shipped" in everything
    assert "irn-x2.v2-fp16 " in everything and "2f128cc093c70a53" in everything  # LRs made with it name this file
    assert "irn-x4.v3-fp16 " in everything and "db423dce61bb1d14" in everything
