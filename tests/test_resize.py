"""imresize against MATLAB's own outputs (shared/reference), plus gradients and dtypes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hcd_pipeline.core.resize import imresize


def _cases(shared):
    data = json.loads((shared / "reference" / "matlab_imresize.json").read_text())
    return data["cases"]


def _input(case, shared) -> torch.Tensor:
    spec = case["input"]
    if spec["kind"] == "ramp":
        return torch.arange(spec["rows"] * spec["cols"], dtype=torch.float64).reshape(spec["rows"], spec["cols"])
    if spec["kind"] == "impulses":
        x = torch.zeros(spec["rows"], spec["cols"], dtype=torch.float64)
        for r, c, v in spec["impulses"]:
            x[r, c] = v
        return x
    arr = np.asarray(Image.open(shared / spec["path"]).convert("RGB"), dtype=np.float64) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)


def test_all_sixteen_matlab_cases(shared):
    cases = _cases(shared)
    assert len(cases) == 16
    npz = np.load(shared / "reference" / "matlab_imresize_butterfly.npz")
    for case in cases:
        x = _input(case, shared)
        y = imresize(x, size=tuple(case["output_size"]), antialiasing=case["antialiasing"])
        if "expected" in case:
            expected = np.asarray(case["expected"])
        else:
            expected = npz[case["expected_npz_key"]].transpose(2, 0, 1)
        assert y.shape == expected.shape, case["name"]
        err = np.abs(y.numpy() - expected).max()
        assert err < 1e-6, f"{case['name']}: max error {err}"


def test_batched_float32_matches_float64():
    x = torch.rand(2, 3, 17, 23, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y64 = imresize(x, 0.5)
    y32 = imresize(x.float(), 0.5)
    assert y32.dtype == torch.float32 and y64.shape == (2, 3, 9, 12)
    assert (y32.double() - y64).abs().max() < 1e-5
    # Each image of a batch is resized independently.
    assert torch.allclose(imresize(x[1], 0.5), y64[1])


def test_gradient_flows_and_matches_finite_difference():
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64, requires_grad=True, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(lambda t: imresize(t, 0.5), (x,))
    assert torch.autograd.gradcheck(lambda t: imresize(t, size=(11, 13)), (x,))


def test_constant_image_is_preserved_and_upscale_inverts_scale():
    x = torch.full((3, 10, 14), 0.25, dtype=torch.float64)
    assert torch.allclose(imresize(x, 0.25), torch.full((3, 3, 4), 0.25, dtype=torch.float64))
    assert imresize(x, 4.0).shape == (3, 40, 56)


@pytest.mark.parametrize("bad", [dict(), dict(scale=0.5, size=(2, 2)), dict(scale=-1.0), dict(size=(0, 3))])
def test_bad_arguments_raise(bad):
    with pytest.raises(ValueError):
        imresize(torch.rand(4, 4), **bad)
    with pytest.raises(TypeError):
        imresize(torch.ones(4, 4, dtype=torch.int64), 0.5)
