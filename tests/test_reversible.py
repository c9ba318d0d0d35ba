"""Memory-light backward through IRN's invertible chain (hcd_pipeline.models.reversible)."""

from __future__ import annotations

import pytest
import torch

from hcd_pipeline.hcd.optimise import collaborative_downscale
from hcd_pipeline.hcd.settings import PRESETS
from hcd_pipeline.models.irn import IRN, IRNConfig


def _perturbed_irn(scale: int) -> IRN:
    """A tiny IRN with non-zero couplings (fresh IRNs start at the identity coupling)."""
    gen = torch.Generator().manual_seed(3)
    model = IRN(IRNConfig(scale=scale, blocks=2, width=8)).double()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.05)
    return model


def _grads(model: IRN, x: torch.Tensor, backward: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.backward = backward
    model.zero_grad()
    xx = x.clone().requires_grad_(True)
    lr, z = model.downscale(xx)
    rec = model.upscale(lr * 1.01, z * 0.5)  # off the identity, so the inverse chain's gradient matters too
    ((rec**2).sum() + (lr**3).sum()).backward()
    return xx.grad, [p.grad.clone() for p in model.parameters() if p.requires_grad]  # type: ignore[return-value]


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("backward", ["recompute", "reversible"])
def test_memory_light_gradients_equal_plain_autograd(scale, backward):
    model = _perturbed_irn(scale)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g_plain, p_plain = _grads(model, x, "store")
    g_low, p_low = _grads(model, x, backward)
    assert g_plain.abs().max() > 1e-3  # the check below is not vacuous
    torch.testing.assert_close(g_low, g_plain, rtol=1e-9, atol=1e-11)
    assert len(p_low) == len(p_plain) > 0
    for a, b in zip(p_low, p_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_unknown_backward_is_refused():
    model = IRN(IRNConfig(scale=2, blocks=1, width=4))
    model.backward = "cheap"
    with pytest.raises(ValueError, match="store"):
        model.downscale(torch.rand(1, 3, 8, 8, requires_grad=True))


def _saved_bytes(model: IRN, x: torch.Tensor) -> int:
    """Bytes autograd keeps for the backward of downscale + upscale of ``x``."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lr, z = model.downscale(x)
        model.upscale(lr, z).sum()
    return total


def test_memory_modes_keep_what_they_promise():
    model = IRN(IRNConfig(scale=2, blocks=4, width=8)).requires_grad_(False)
    x = torch.rand(1, 3, 32, 32).requires_grad_(True)
    image = x.numel() * 4
    saved = {}
    for mode in IRN.BACKWARDS:
        model.backward = mode
        saved[mode] = _saved_bytes(model, x)
    assert saved["reversible"] <= 2 * image  # the output of each chain (downscale, upscale), nothing per layer
    assert saved["recompute"] <= 2 * (len(model.operations) + 1) * image  # plus the tensors between operations
    assert saved["store"] > 20 * saved["reversible"]
    assert saved["store"] > 2 * saved["recompute"]


def test_hcd_with_memory_light_backward_matches_plain_autograd():
    model = IRN(IRNConfig(scale=2, blocks=2, width=8)).requires_grad_(False)
    hr = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    results = {}
    for mode in IRN.BACKWARDS:
        model.backward = mode
        results[mode] = collaborative_downscale(model, hr, settings=PRESETS["default"], generator=torch.Generator().manual_seed(5))
    ref = results["store"]
    assert ref.changed > 0
    assert torch.equal(results["recompute"].lr, ref.lr)  # exact gradients: the same stored LR
    rev = results["reversible"]
    assert torch.allclose(torch.tensor(rev.losses), torch.tensor(ref.losses), rtol=1e-4)
    # Float rounding of rebuilt activations may flip a rare LR value by one 8-bit level, never more.
    diff = (rev.lr - ref.lr).abs() * 255
    assert diff.max() <= 1.0 + 1e-4 and (diff > 0.5).float().mean() < 0.01


def test_downscaler_chooses_tiles_and_memory_by_size():
    from hcd_pipeline.core.errors import SettingsError
    from hcd_pipeline.downscaler import Downscaler, DownscaleSettings

    x2 = Downscaler(DownscaleSettings(model="tiny-irn-x2"))
    assert x2.layout(256, 256) == (0, "fast")  # small: plain autograd, whole image
    assert x2.layout(1356, 2040) == (0, "low")  # DIV2K-sized: whole image, memory-light backward
    assert x2.layout(3000, 2000) == (192, "fast")  # over 4 MP: 384-px HR tiles, small enough for plain autograd
    x4 = Downscaler(DownscaleSettings(model="tiny-irn-x4"))
    assert x4.layout(3000, 2000) == (192, "low")  # 768-px HR tiles: memory-light
    forced = Downscaler(DownscaleSettings(model="tiny-irn-x2", tile=0, memory="lowest"))
    assert forced.layout(3000, 2000) == (0, "lowest")
    with pytest.raises(SettingsError, match="memory mode"):
        Downscaler(DownscaleSettings(model="tiny-irn-x2", memory="small"))


def test_downscaler_memory_mode_is_recorded_and_scoped():
    from hcd_pipeline.downscaler import Downscaler, DownscaleSettings
    from hcd_pipeline.io.images import DecodedImage

    pixels = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(2))
    image = DecodedImage(name="t.png", pixels=pixels, alpha=None, bit_depth=8, source_mode="RGB")
    outs = {}
    for memory in ("fast", "low"):
        ds = Downscaler(DownscaleSettings(model="tiny-irn-x2", memory=memory))
        outs[memory] = ds.process(image)
        assert outs[memory].sidecar["memory"] == memory
        assert ds.model.backward == "store"  # the mode is set only while processing
    assert outs["low"].png == outs["fast"].png  # "low" computes the exact gradient
