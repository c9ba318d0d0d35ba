"""EDSR weights: our ``.safetensors`` format and the checkpoints of the original EDSR code and of BasicSR.

Our format: a safetensors file whose header holds ``format = "hcd_pipeline.edsr/1"``, ``config`` (the
:class:`EDSRConfig` as JSON), ``provenance`` (JSON) and ``dtype`` (what the tensors are stored as; the network
always computes in float32). The fixed mean shifts are not stored.

Original EDSR checkpoints (``edsr_baseline_x2-1bfb4c7f.pt``, ...; a plain state_dict) use this package's own key
names; BasicSR's (``EDSR_Mx2_*.pth``: ``{"params": ...}``, ``conv_first``, ``body.K.conv1``, ``conv_after_body``,
``upsample.N``, ``conv_last``) are renamed onto them. The architecture is read from the shapes (width from the head,
blocks from the body, scale from the upsampler); ``res_scale`` is not stored in either layout and is taken as the
original code's defaults: 1.0 for widths up to 64 (EDSR-baseline), 0.1 above (EDSR). Loading is strict: a tensor
missing, left over, mis-shaped or not finite, or mean shifts that are not the DIV2K mean, raise
:class:`~hcd_pipeline.core.errors.WeightsError` naming the file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from hcd_pipeline.core.errors import WeightsError
from hcd_pipeline.io.images import atomic_write_bytes
from hcd_pipeline.models.edsr import EDSR, EDSRConfig, SRRescaler
from hcd_pipeline.models.weights import save_bytes

__all__ = [
    "FORMAT",
    "save_edsr",
    "load_edsr",
    "edsr_from_state_dict",
    "is_edsr_state_dict",
    "to_original_state_dict",
]

FORMAT = "hcd_pipeline.edsr/1"
_MEAN_KEYS = ("sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias")
_BASICSR = [
    (r"^conv_first\.", "head.0."),
    (r"^body\.(\d+)\.conv1\.", r"body.\1.body.0."),
    (r"^body\.(\d+)\.conv2\.", r"body.\1.body.2."),
    (r"^upsample\.(\d+)\.", r"tail.0.\1."),
    (r"^conv_last\.", "tail.1."),
]


def _trainable(model: SRRescaler) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.net.state_dict().items() if k not in _MEAN_KEYS}


def save_edsr(model: SRRescaler, path: str | Path, provenance: dict[str, str], *, dtype: torch.dtype = torch.float32) -> int:
    """Write ``model``'s tensors (``dtype``: float32 or float16) and config to ``path`` atomically; returns the count."""
    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"EDSR weights are stored as float32 or float16, not {dtype}")
    tensors = {k: v.detach().cpu().to(dtype).contiguous() for k, v in _trainable(model).items()}
    meta = {
        "format": FORMAT,
        "config": json.dumps(model.config.to_dict()),
        "provenance": json.dumps(provenance),
        "dtype": str(dtype).removeprefix("torch."),
    }
    atomic_write_bytes(path, save_bytes(tensors, meta))
    return len(tensors)


def is_edsr_state_dict(sd: dict[str, torch.Tensor]) -> bool:
    """Whether ``sd`` looks like EDSR in the original or the BasicSR key layout."""
    return "head.0.weight" in sd or "conv_first.weight" in sd


def _rename_basicsr(sd: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if k.startswith("conv_after_body."):
            k = f"body.{blocks}." + k.removeprefix("conv_after_body.")
        else:
            for pattern, repl in _BASICSR:
                k = re.sub(pattern, repl, k)
        out[k] = v
    return out


def _infer_config(sd: dict[str, torch.Tensor], name: str) -> EDSRConfig:
    head = sd.get("head.0.weight")
    if head is None or head.ndim != 4:
        raise WeightsError(f"{name}: no head.0.weight (a 3x3 convolution from RGB); not an EDSR checkpoint")
    width = int(head.shape[0])
    blocks = sum(1 for k in sd if re.fullmatch(r"body\.\d+\.body\.0\.weight", k))
    ups = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"tail\.0\.(\d+)\.weight", k)))
    if not ups or blocks == 0:
        raise WeightsError(f"{name}: found {blocks} residual blocks and {len(ups)} upsampler convolutions; not an EDSR checkpoint")
    first = sd[f"tail.0.{ups[0]}.weight"]
    if len(ups) == 1 and first.shape[0] == 9 * width:
        scale = 3
    else:
        scale = 2 ** len(ups)
    try:
        return EDSRConfig(scale=scale, blocks=blocks, width=width, res_scale=1.0 if width <= 64 else 0.1)
    except ValueError as exc:
        raise WeightsError(f"{name}: {exc}") from exc


def _load_strict(model: SRRescaler, sd: dict[str, torch.Tensor], name: str, *, with_means: bool) -> None:
    expected = {k: v.shape for k, v in model.net.state_dict().items() if with_means or k not in _MEAN_KEYS}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    c = model.config
    if missing or unexpected:
        raise WeightsError(
            f"{name}: tensors do not match EDSR x{c.scale} (blocks={c.blocks}, width={c.width}): {len(missing)} missing "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    for k, shape in expected.items():
        if sd[k].shape != shape:
            raise WeightsError(f"{name}: tensor {k} has shape {tuple(sd[k].shape)}, expected {tuple(shape)}")
        if not torch.isfinite(sd[k]).all():
            raise WeightsError(f"{name}: tensor {k} contains NaN or inf")
    if with_means:
        ref = EDSR(c).state_dict()
        for k in _MEAN_KEYS:
            if not torch.allclose(sd[k].float(), ref[k], atol=1e-3):
                raise WeightsError(f"{name}: {k} is not the DIV2K mean shift EDSR uses (rgb_range 255)")
    model.net.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)


def edsr_from_state_dict(sd: dict[str, torch.Tensor], name: str, scale: int | None = None) -> SRRescaler:
    """An :class:`SRRescaler` from an original-EDSR or BasicSR state_dict (prefix ``module.`` already removed)."""
    if "conv_first.weight" in sd:  # BasicSR: no mean-shift tensors, the mean is a constant of its module
        blocks = sum(1 for k in sd if re.fullmatch(r"body\.\d+\.conv1\.weight", k))
        sd = _rename_basicsr(sd, blocks)
        with_means = False
    else:
        with_means = True
    config = _infer_config(sd, name)
    if scale is not None and config.scale != scale:
        raise WeightsError(f"{name}: checkpoint is EDSR x{config.scale}, but x{scale} was asked for")
    model = SRRescaler(config)
    _load_strict(model, sd, name, with_means=with_means)
    return model.eval()


def load_edsr(path: str | Path, scale: int | None = None) -> SRRescaler:
    """Load one of our EDSR ``.safetensors`` files strictly; check the scale if given."""
    p = Path(path)
    try:
        with safe_open(str(p), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{p}: not a readable .safetensors file ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{p}: header format is {meta.get('format')!r}, expected {FORMAT!r}")
    try:
        config = EDSRConfig(**json.loads(meta["config"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{p}: header config is invalid ({exc})") from exc
    if scale is not None and config.scale != scale:
        raise WeightsError(f"{p}: weights are EDSR x{config.scale}, but x{scale} was asked for")
    model = SRRescaler(config)
    _load_strict(model, tensors, str(p), with_means=False)
    return model.eval()


def to_original_state_dict(model: SRRescaler) -> dict[str, torch.Tensor]:
    """``model``'s weights in the original EDSR code's layout (mean shifts included), as its ``.pt`` files hold."""
    return {k: v.detach().cpu().clone() for k, v in model.net.state_dict().items()}
