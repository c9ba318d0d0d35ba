"""IRN: invertibility, original checkpoint compatibility, our weight format, strict loading."""

from __future__ import annotations

import pytest
import torch

from hcd_pipeline.core.errors import WeightsError
from hcd_pipeline.models import IRN, IRNConfig, load_irn, load_model, load_original_checkpoint, save_weights
from hcd_pipeline.models.registry import MODELS
from hcd_pipeline.models.weights import convert_checkpoint, read_weights


def _randomised(cfg: IRNConfig, seed: int = 0) -> IRN:
    torch.manual_seed(seed)
    m = IRN(cfg)
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.normal_(0, 0.05)
    return m.eval()


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_exact_invertibility(scale):
    m = _randomised(IRNConfig(scale=scale, blocks=2, width=8))
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(scale))
    lr, z = m.downscale(x)
    assert lr.shape == (2, 3, 32 // scale, 48 // scale)
    assert z.shape == (2, 3 * (scale**2 - 1), 32 // scale, 48 // scale)
    assert (m.upscale(lr, z) - x).abs().max() < 3e-5  # float32 rounding only
    m64, x64 = m.double(), x.double()
    assert (m64.upscale(*m64.downscale(x64)) - x64).abs().max() < 1e-12  # exact up to float64 rounding


def test_upscale_z_policies_are_seeded():
    m = _randomised(IRNConfig(scale=2, blocks=1, width=8))
    lr = torch.rand(1, 3, 8, 8)
    a = m.upscale(lr, generator=torch.Generator().manual_seed(7))
    b = m.upscale(lr, generator=torch.Generator().manual_seed(7))
    c = m.upscale(lr, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    zero = m.upscale(lr, z_scale=0.0)
    assert torch.equal(zero, m.upscale(lr, torch.zeros(1, 9, 8, 8)))


@pytest.mark.parametrize("scale,count", [(2, 1_668_000), (4, 4_355_376)])
def test_original_architecture_element_counts(scale, count):
    sd = IRN(IRNConfig(scale=scale)).state_dict()
    assert sum(v.numel() for v in sd.values()) == count
    assert "operations.0.haar_weights" in sd and "operations.1.F.conv1.weight" in sd


def _original_style_checkpoint(tmp_path, scale, wrap=None, prefix=""):
    m = _randomised(IRNConfig(scale=scale), seed=scale)
    sd = {prefix + k: v for k, v in m.state_dict().items()}
    obj = {wrap: sd} if wrap else sd
    path = tmp_path / f"IRN_x{scale}.pth"
    torch.save(obj, path)
    return m, path


@pytest.mark.parametrize("wrap,prefix", [(None, ""), (None, "module."), ("state_dict", "module."), ("params", "")])
def test_original_checkpoint_loads_strictly(tmp_path, wrap, prefix):
    ref, path = _original_style_checkpoint(tmp_path, 2, wrap, prefix)
    m = load_original_checkpoint(path)
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(m.downscale(x)[0], ref.downscale(x)[0])
    via_registry = load_model(weights=path, scale=2)
    assert torch.equal(via_registry.downscale(x)[0], ref.downscale(x)[0])


def test_original_checkpoint_errors(tmp_path):
    _, path4 = _original_style_checkpoint(tmp_path, 4)
    with pytest.raises(WeightsError, match="x4, but x2"):
        load_original_checkpoint(path4, scale=2)
    truncated = tmp_path / "trunc.pth"
    truncated.write_bytes(path4.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="trunc.pth"):
        load_original_checkpoint(truncated)
    sd = torch.load(path4)
    sd.pop("operations.3.G.conv2.bias")
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="1 missing"):
        load_original_checkpoint(tmp_path / "missing.pth")
    sd = torch.load(path4)
    sd["operations.1.F.conv1.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(WeightsError, match="shape"):
        load_original_checkpoint(tmp_path / "shape.pth")
    sd = torch.load(path4)
    sd["operations.1.F.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(sd, tmp_path / "nan.pth")
    with pytest.raises(WeightsError, match="NaN"):
        load_original_checkpoint(tmp_path / "nan.pth")
    with pytest.raises(WeightsError, match="not found"):
        load_original_checkpoint(tmp_path / "absent.pth")


def test_safetensors_round_trip_and_conversion(tmp_path):
    ref, path = _original_style_checkpoint(tmp_path, 2)
    out = tmp_path / "irn.safetensors"
    cfg = convert_checkpoint(path, out)
    assert cfg == IRNConfig(scale=2, blocks=8, width=32)
    config, tensors, prov = read_weights(out)
    assert config == cfg and prov["source"] == "IRN_x2.pth" and len(prov["source_sha256"]) == 64
    m = load_irn(out, 2)
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(m.downscale(x)[0], ref.downscale(x)[0])
    with pytest.raises(WeightsError, match="x2, but x4"):
        load_irn(out, 4)
    small = _randomised(IRNConfig(scale=2, blocks=1, width=4))
    save_weights(small, tmp_path / "small.safetensors", {"data": "none"})
    assert read_weights(tmp_path / "small.safetensors")[0].blocks == 1
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(out.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="corrupt.safetensors"):
        load_irn(corrupt)


def test_saving_the_same_weights_twice_writes_the_same_bytes(tmp_path):
    """#25: fingerprints (sidecars, ``init_sha256``) are of file bytes, and the safetensors writer orders the header's
    metadata differently from call to call: ``save_bytes`` writes a canonical header, for IRN and EDSR files alike,
    that safetensors still reads, metadata and tensors intact."""
    import json

    from safetensors import safe_open

    from hcd_pipeline.models.edsr import EDSRConfig, SRRescaler
    from hcd_pipeline.models.edsr_weights import save_edsr
    from hcd_pipeline.models.weights import file_sha256

    irn = _randomised(IRNConfig(scale=2, blocks=1, width=4))
    prov = {"data": "BSD200 ×4", "steps": "3", "command": "hcd train --out runs/é", "device": "cpu"}  # non-ASCII kept
    shas = set()
    for i in range(6):
        save_weights(irn, tmp_path / f"irn{i}.safetensors", prov, dtype=torch.float16)
        shas.add(file_sha256(tmp_path / f"irn{i}.safetensors"))
    assert len(shas) == 1
    raw = (tmp_path / "irn0.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    assert n % 8 == 0 and list(header["__metadata__"]) == sorted(header["__metadata__"])  # data stays 8-byte aligned
    with safe_open(str(tmp_path / "irn0.safetensors"), "pt") as fh:
        assert fh.metadata() == header["__metadata__"] and fh.metadata()["dtype"] == "float16"
    config, tensors, read_prov = read_weights(tmp_path / "irn0.safetensors")
    sd = irn.state_dict()
    assert config == irn.config and read_prov == prov and all(torch.equal(v, sd[k].half()) for k, v in tensors.items())
    sr = SRRescaler(EDSRConfig(scale=2, blocks=1, width=8))
    for i in range(4):
        save_edsr(sr, tmp_path / f"sr{i}.safetensors", prov)
    assert len({file_sha256(tmp_path / f"sr{i}.safetensors") for i in range(4)}) == 1


@pytest.mark.parametrize("name", [name for name, spec in MODELS.items() if spec.weights])  # every shipped weights file
def test_shipped_models_load_with_provenance(name):
    import json

    from hcd_pipeline.models.registry import safetensors_header, weights_path

    spec = MODELS[name]
    prov = json.loads(safetensors_header(weights_path(spec))["provenance"])  # every family's header carries it
    assert prov.get("command") and prov.get("data")
    m = load_model(name)
    assert m.scale == spec.scale
    assert all(not p.requires_grad for p in m.parameters())


def test_latent_prior_is_part_of_the_config(tmp_path):
    m = _randomised(IRNConfig(scale=2, blocks=1, width=4, z_std=0.0))
    lr = torch.rand(1, 3, 6, 6)
    assert torch.equal(m.upscale(lr, generator=torch.Generator().manual_seed(1)), m.upscale(lr, torch.zeros(1, 9, 6, 6)))
    assert not torch.equal(m.upscale(lr, z_scale=1.0), m.upscale(lr, z_scale=0.0))
    save_weights(m, tmp_path / "z0.safetensors", {"data": "none"})
    assert load_irn(tmp_path / "z0.safetensors").z_std == 0.0


def test_weights_shipped_in_the_package_stay_within_36_mb():
    # The wheel carries the current generation and, while it is opt-in, the 8-block second generation of irn-x2 /
    # irn-x4 (12 MB; docs/models.md, "Tags"): 36 MB at most. The tree with them must still travel to a lent GPU with
    # its training data (64 MiB in all).
    from tests.conftest import ROOT

    files = list((ROOT / "hcd_pipeline" / "weights").glob("*.safetensors"))
    assert files and sum(p.stat().st_size for p in files) <= 36_000_000, sorted((p.name, p.stat().st_size) for p in files)
    # Every shipped file is a row of the table, and every row that ships has its file.
    assert {p.name for p in files} == {s.weights for s in MODELS.values() if s.weights}


def test_convert_stores_our_weights_as_float16_with_their_provenance(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from hcd_pipeline.models.registry import weights_path
    from hcd_pipeline.models.weights import file_sha256

    src = weights_path(MODELS["tiny-irn-x2"])
    dst, restorer = tmp_path / "half.safetensors", tmp_path / "restorer-half.safetensors"
    hcd = str(Path(sys.executable).parent / "hcd")
    proc = subprocess.run([hcd, "convert", str(src), str(dst), "--dtype", "float16"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    _, tensors, prov = read_weights(dst)
    _, full, prov_src = read_weights(src)
    assert {t.dtype for t in tensors.values()} == {torch.float16} and dst.stat().st_size < 0.6 * src.stat().st_size
    assert {k: v for k, v in prov.items() if k in prov_src} == prov_src  # the training provenance is kept
    assert prov["converted_from_sha256"] == file_sha256(src, 64) and "float16" in prov["converted_by"]
    assert all(torch.equal(tensors[k], full[k].half()) for k in full)  # exactly the rounded tensors
    a, b = load_irn(src), load_irn(dst)
    assert all(p.dtype == torch.float32 for p in b.parameters())  # computes in float32 whatever the file holds
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert (a.downscale(x)[0] - b.downscale(x)[0]).abs().max() < 2e-3
    # --base: only what differs from the base is written; nothing differs here, and it loads through its base.
    proc = subprocess.run([hcd, "convert", str(dst), str(restorer), "--dtype", "float16", "--base", str(dst)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert restorer.stat().st_size < 2000
    assert all(torch.equal(p, q) for p, q in zip(load_irn(restorer).parameters(), b.parameters(), strict=True))
