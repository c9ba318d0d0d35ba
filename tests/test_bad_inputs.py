"""Every command on bad input: one line naming the file and the reason, non-zero exit, no partial output.

docs/hardening.md lists these cases and what the user sees.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hcd_pipeline import Downscaler, DownscaleSettings
from hcd_pipeline.core.errors import ImageReadError
from hcd_pipeline.io.images import DecodedImage
from tests.conftest import SAMPLES

HCD = str(Path(sys.executable).parent / "hcd")


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(k, b):
        return struct.pack(">I", len(b)) + k + b + struct.pack(">I", zlib.crc32(k + b) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    good = (SAMPLES / "coffee_crop.png").read_bytes()
    (d / "text.png").write_text("not an image")
    (d / "empty.png").write_bytes(b"")
    (d / "trunc.png").write_bytes(good[: len(good) // 2])
    buf = d / "full.jpg"
    Image.open(SAMPLES / "coffee_crop.png").save(buf, quality=90)
    (d / "trunc.jpg").write_bytes(buf.read_bytes()[:300])
    (d / "adir.png").mkdir()
    (d / "zero.png").write_bytes(_png_header_only(0, 0))
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(d / "one.png")
    (d / "bomb.png").write_bytes(_png_header_only(50000, 50000))
    return d


@pytest.mark.parametrize(
    "name,reason",
    [
        ("text.png", "not a recognised image"),
        ("empty.png", "empty file"),
        ("trunc.png", "truncated or corrupt"),
        ("trunc.jpg", "truncated or corrupt"),
        ("adir.png", "directory"),
        ("zero.png", "zero size"),
        ("one.png", "smaller than the scale"),
        ("bomb.png", "decompression bomb"),
        ("missing.png", "cannot read"),
    ],
)
def test_downscale_bad_file_one_line_error(bad_dir, tmp_path, name, reason):
    out = tmp_path / "out"
    proc = subprocess.run([HCD, "downscale", str(bad_dir / name), "-o", str(out), "--model", "tiny-irn-x2", "--method", "plain"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith("error: ") and name in first and reason in first, proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_unwritable_output_and_bad_weights(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    proc = subprocess.run([HCD, "downscale", str(SAMPLES / "coffee_crop.png"), "-o", str(blocker / "out"), "--model", "tiny-irn-x2",
                           "--method", "plain"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1 and "cannot write" in proc.stderr
    corrupt = tmp_path / "w.safetensors"
    corrupt.write_bytes(b"\x00" * 100)
    for weights, reason in ((tmp_path / "none.pth", "not found"), (corrupt, "not a readable")):
        proc = subprocess.run([HCD, "downscale", str(SAMPLES / "coffee_crop.png"), "-o", str(tmp_path / "o"), "--weights", str(weights)],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 1 and str(weights.name) in proc.stderr and reason in proc.stderr


def test_upscale_refuses_lr_made_with_another_model(tmp_path):
    lr_dir = tmp_path / "lr"
    subprocess.run([HCD, "downscale", str(SAMPLES / "coffee_crop.png"), "-o", str(lr_dir), "--model", "tiny-irn-x2", "--method", "plain"],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    proc = subprocess.run([HCD, "upscale", str(lr_dir / "coffee_crop.png"), "-o", str(tmp_path / "hr"), "--model", "irn-x2"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1 and "tiny-irn-x2" in proc.stderr and "coffee_crop.png" in proc.stderr
    assert not (tmp_path / "hr").exists() or not any((tmp_path / "hr").iterdir())


def test_nan_input_is_refused():
    ds = Downscaler(DownscaleSettings(model="tiny-irn-x2", method="plain"))
    px = torch.rand(3, 16, 16)
    px[0, 3, 3] = float("nan")
    with pytest.raises(ImageReadError, match="nan.png: pixel values contain NaN"):
        ds.process(DecodedImage(px, None, 8, "RGB", "nan.png"))
