"""Property-based tests: I/O round trips, padding and cropping, the resize, and a reader fuzz."""

from __future__ import annotations

import io

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hcd_pipeline.core.errors import ImageReadError
from hcd_pipeline.core.resize import imresize, pad_symmetric
from hcd_pipeline.io.images import decode_image, encode_png

shapes = st.tuples(st.sampled_from([1, 3]), st.integers(1, 24), st.integers(1, 24))


@given(shape=shapes, depth=st.sampled_from([8, 16]), alpha=st.booleans(), seed=st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_png_round_trip_is_exact(shape, depth, alpha, seed):
    g = torch.Generator().manual_seed(seed)
    peak = 255 if depth == 8 else 65535
    x = torch.randint(0, peak + 1, shape, generator=g).double() / peak
    a = torch.randint(0, peak + 1, (1, *shape[1:]), generator=g).double() / peak if alpha else None
    img = decode_image(encode_png(x, a, bit_depth=depth), "prop.png")
    assert img.bit_depth == depth and img.pixels.shape == shape
    assert torch.equal(torch.round(img.pixels.double() * peak), torch.round(x * peak))
    if alpha:
        assert img.alpha is not None and torch.equal(torch.round(img.alpha.double() * peak), torch.round(a * peak))


@given(h=st.integers(1, 30), w=st.integers(1, 30), m=st.integers(1, 8))
def test_symmetric_padding_then_crop_is_identity(h, w, m):
    x = torch.arange(h * w, dtype=torch.float64).reshape(1, h, w)
    p = pad_symmetric(x, m)
    assert p.shape[-2] % m == 0 and p.shape[-1] % m == 0
    assert p.shape[-2] - h < m and p.shape[-1] - w < m
    assert torch.equal(p[..., :h, :w], x)
    # mirrored with the edge repeated: the first padded row equals the last row
    if p.shape[-2] > h:
        assert torch.equal(p[..., h, :w], x[..., h - 1, :])


@given(h=st.integers(2, 40), w=st.integers(2, 40), rows=st.integers(1, 50), cols=st.integers(1, 50), c=st.floats(-2, 2))
@settings(max_examples=60, deadline=None)
def test_resize_preserves_constants_and_batches(h, w, rows, cols, c):
    x = torch.full((2, h, w), c, dtype=torch.float64)
    y = imresize(x, size=(rows, cols))
    assert y.shape == (2, rows, cols)
    assert torch.allclose(y, torch.full_like(y, c), atol=1e-9)


def _valid_pngs() -> list[bytes]:
    out = []
    for mode, shape in (("RGB", (9, 7, 3)), ("L", (9, 7)), ("RGBA", (5, 6, 4)), ("P", (8, 8))):
        arr = np.random.default_rng(len(out)).integers(0, 256, shape, dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr, mode=mode if mode != "P" else "L").convert(mode).save(buf, format="PNG")
        out.append(buf.getvalue())
    jpg = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(jpg, format="JPEG")
    out.append(jpg.getvalue())
    out.append(encode_png(torch.rand(3, 5, 4), bit_depth=16))
    return out


VALID = _valid_pngs()


@given(data=st.binary(max_size=256))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_reader_fuzz_random_bytes_only_raise_the_documented_error(data):
    try:
        decode_image(data, "fuzz.bin")
    except ImageReadError as exc:
        assert "fuzz.bin" in str(exc)


@given(idx=st.integers(0, len(VALID) - 1), cuts=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
       trunc=st.integers(0, 10_000))  # fmt: skip
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_reader_fuzz_mutated_images_only_raise_the_documented_error(idx, cuts, trunc):
    data = bytearray(VALID[idx])
    for pos, val in cuts:
        data[pos % len(data)] = val
    data = data[: max(1, len(data) - trunc % len(data))]
    try:
        img = decode_image(bytes(data), "mutated.png")
    except ImageReadError as exc:
        assert "mutated.png" in str(exc)
    else:
        assert img.pixels.dtype == torch.float32 and 0 <= float(img.pixels.min()) and float(img.pixels.max()) <= 1
