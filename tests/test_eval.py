"""The evaluation protocol reproduces the field's bicubic numbers (published.md, Y kept as float)."""

from __future__ import annotations

import pytest

from hcd_pipeline.evaluation.evaluate import EvalSettings, evaluate

# Set5, Y as float (IRN / BasicSR convention): published.md and issue text.
EXPECTED = {2: (33.682, 0.9305), 4: (28.431, 0.8113)}


@pytest.mark.parametrize("scale", [2])  # x4 runs through the CLI in test_cli.py
def test_set5_bicubic_matches_reference(shared, scale):
    res = evaluate(EvalSettings(model="bicubic", scale=scale, data=str(shared / "data" / "Set5" / "HR")))
    psnr, ssim = EXPECTED[scale]
    assert res["mean"]["psnr_y"] == pytest.approx(psnr, abs=0.005)
    assert res["mean"]["ssim_y"] == pytest.approx(ssim, abs=0.0005)
    assert [r["image"] for r in res["images"]] == ["baby.png", "bird.png", "butterfly.png", "head.png", "woman.png"]
