"""The hcd command through its installed entry point: files in, files out, exact round trips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hcd_pipeline.imageio import read_image
from hcd_pipeline.metrics import score_pair
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
