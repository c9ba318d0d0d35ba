"""The source's ICC profile and EXIF in the stored LR (hcd_pipeline.io.metadata), by value, through the CLI entry point
and the pipeline: rights and dates kept, orientation applied and reset, GPS dropped unless asked, pixels unchanged."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from tests.conftest import SAMPLES

HCD = str(Path(sys.executable).parent / "hcd")
TAGS = {0x013B: "Ann Artist", 0x8298: "(c) 2024 Ann Artist", 0x0132: "2024:01:02 03:04:05", 0x010F: "Canon", 0x0110: "EOS R5"}
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _photo(path: Path) -> None:
    """A 40 x 30 JPEG (stored landscape, orientation 6: shown 30 wide, 40 high) with EXIF, GPS and an ICC profile."""
    exif = Image.Exif()
    for tag, value in TAGS.items():
        exif[tag] = value
    exif[0x0112] = 6
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 30.0)})
    exif.get_ifd(0x8769)[0x9003] = "2024:01:02 03:04:05"
    Image.open(SAMPLES / "coffee_crop.png").convert("RGB").crop((0, 0, 40, 30)).save(path, "JPEG", quality=95, exif=exif.tobytes(),
                                                                                      icc_profile=ICC)  # fmt: skip


def _hcd(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([HCD, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_lr_keeps_icc_and_exif_without_gps_and_with_orientation_reset(tmp_path, fmt):
    _photo(tmp_path / "photo.jpg")
    runs = {}
    for policy in ("keep", "all", "none"):
        out = tmp_path / policy
        _hcd("downscale", str(tmp_path / "photo.jpg"), "-o", str(out), "--model", "bicubic", "--scale", "2", "--set", "lr_steps=2",
             "--lr-format", fmt, "--metadata", policy)  # fmt: skip
        lr = next(p for p in out.iterdir() if p.suffix != ".json")
        runs[policy] = (lr.read_bytes(), json.loads(lr.with_suffix(".json").read_text())["metadata"])
    data, said = runs["keep"]
    im = Image.open(io.BytesIO(data))
    assert im.size == (15, 20)  # the orientation was applied to the pixels ...
    exif = im.getexif()
    assert exif[0x0112] == 1  # ... so the LR says top-left
    assert {tag: exif.get(tag) for tag in TAGS} == TAGS
    assert exif.get_ifd(0x8769)[0x9003] == "2024:01:02 03:04:05"
    assert not exif.get_ifd(0x8825) and 0x8825 not in exif  # no GPS by default
    assert im.info["icc_profile"] == ICC
    assert said == {"policy": "keep", "icc_profile": True, "gps": "dropped",
                    "exif": ["Artist", "Copyright", "DateTime", "DateTimeOriginal", "Make", "Model"]}  # fmt: skip
    all_exif = Image.open(io.BytesIO(runs["all"][0])).getexif()
    assert all_exif.get_ifd(0x8825)[1] == "N" and runs["all"][1]["gps"] == "kept"
    bare = Image.open(io.BytesIO(runs["none"][0]))
    assert "icc_profile" not in bare.info and not len(bare.getexif()) and runs["none"][1]["icc_profile"] is False
    # The same pixels whatever the policy: metadata is spliced into the file, never re-encoded.
    assert all(np.array_equal(np.asarray(Image.open(io.BytesIO(d))), np.asarray(bare)) for d, _ in runs.values())


def test_upscale_carries_the_lr_profile_and_exif(tmp_path):
    _photo(tmp_path / "photo.jpg")
    _hcd("downscale", str(tmp_path / "photo.jpg"), "-o", str(tmp_path / "lr"), "--model", "bicubic", "--scale", "2", "--method", "plain")
    _hcd("upscale", str(tmp_path / "lr"), "-o", str(tmp_path / "up"))
    up = Image.open(tmp_path / "up" / "photo.png")
    assert up.size == (30, 40) and up.info["icc_profile"] == ICC and up.getexif()[0x8298] == TAGS[0x8298]


def test_pipeline_lr_equals_the_cli_lr_with_metadata(ray_local, tmp_path):
    from hcd_pipeline.pipeline import PipelineSettings, run_pipeline

    (tmp_path / "in").mkdir()
    _photo(tmp_path / "in" / "photo.jpg")
    settings = PipelineSettings(input=str(tmp_path / "in"), output=str(tmp_path / "out"), model="bicubic", scale=2,
                                overrides={"lr_steps": 2})  # fmt: skip
    assert run_pipeline(settings, progress=False).done == 1
    _hcd("downscale", str(tmp_path / "in" / "photo.jpg"), "-o", str(tmp_path / "cli"), "--model", "bicubic", "--scale", "2", "--set",
         "lr_steps=2")  # fmt: skip
    stored = (tmp_path / "out" / "lr" / "photo.jpg.png").read_bytes()
    assert stored == (tmp_path / "cli" / "photo.png").read_bytes()
    assert Image.open(io.BytesIO(stored)).info["icc_profile"] == ICC
