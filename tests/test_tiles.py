"""Tiled HCD: every pixel covered, seams blended, result as good as the whole image."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from hcd_pipeline import collaborative_downscale, load_model, read_image
from hcd_pipeline.core.metrics import score_pair
from hcd_pipeline.hcd.tiles import tile_starts, tiled_collaborative_downscale
from tests.conftest import SAMPLES


@given(length=st.integers(1, 400), tile=st.integers(2, 64), overlap=st.integers(0, 16))
def test_tiles_cover_every_pixel_with_the_overlap(length, tile, overlap):
    if overlap >= tile:
        overlap = tile - 1
    starts = tile_starts(length, tile, overlap)
    covered = torch.zeros(length, dtype=torch.bool)
    for s in starts:
        assert 0 <= s and s + min(tile, length) <= length
        covered[s : s + min(tile, length)] = True
    assert covered.all()
    for a, b in zip(starts, starts[1:], strict=False):
        assert b - a <= tile - overlap


def _psnr(model, hr, res):
    with torch.no_grad():
        return score_pair(hr[0], model.upscale(res.lr, res.z)[0].clamp(0, 1), model.scale).psnr_y


def test_tiled_matches_whole_image_and_changes_the_last_tiles():
    model = load_model("bicubic", scale=2)
    hr = read_image(SAMPLES / "astronaut_crop.png").pixels.unsqueeze(0)
    whole = collaborative_downscale(model, hr, generator=torch.Generator().manual_seed(0))
    tiled = tiled_collaborative_downscale(model, hr, tile=24, overlap=8, generator=torch.Generator().manual_seed(0))
    assert abs(_psnr(model, hr, whole) - _psnr(model, hr, tiled)) < 0.05
    assert _psnr(model, hr, tiled) > _psnr(model, hr, type(whole)(lr=whole.plain_lr, plain_lr=whole.plain_lr, z=None)) + 0.5
    changed = tiled.lr != tiled.plain_lr
    assert changed[..., -8:, :].any() and changed[..., :, -8:].any()  # the last row / column of tiles too
    assert torch.equal(torch.round(tiled.lr * 255), tiled.lr * 255)
