"""Upscaling a stored LR exactly as it was scored: the sidecar's model, seed and z policy; mismatches refused."""

from __future__ import annotations

from pathlib import Path

import torch

from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.core.resize import imresize
from hcd_pipeline.hcd.optimise import decode_z
from hcd_pipeline.hcd.settings import get_preset
from hcd_pipeline.io.images import DecodedImage
from hcd_pipeline.io.lr_formats import LR_EXTENSIONS
from hcd_pipeline.models.protocol import Rescaler
from hcd_pipeline.models.registry import for_lr_format, load_model, model_fingerprint, recorded_name, resolve_name


def upscale_lr(
    model: Rescaler,
    lr: torch.Tensor,
    *,
    seed: int,
    decode: str,
    source_size: tuple[int, int] | None = None,
    channels: int = 3,
) -> torch.Tensor:
    """Upscale a stored LR (3, h, w) the way :class:`Downscaler` scored it -> (C, H, W) in [0, 1].

    ``decode`` and ``seed`` must be the sidecar's (``decode_z`` and ``seed``): the z is drawn exactly as
    during downscaling, so the result equals the reconstruction that was measured.
    """
    dev = next((p.device for p in getattr(model, "parameters", lambda: iter(()))()), torch.device("cpu"))
    x = lr.unsqueeze(0).to(dev)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    z = decode_z(model, x.shape, get_preset("official", decode=decode), gen, dev)
    with torch.no_grad():
        rec = model.upscale(x, z)[0].clamp(0, 1).cpu()
    if channels == 1:
        rec = rec.mean(0, keepdim=True)
    if source_size is not None:
        w, h = source_size
        rec = rec[:, :h, :w]
    return rec


def stored_lr_format(name: str, sidecar: dict[str, object]) -> str:
    """The format of a stored LR: the sidecar's ``lr_format``, else the file name's extension (PNG if unknown)."""
    fmt = sidecar.get("lr_format")
    if isinstance(fmt, str) and fmt:
        return fmt
    by_extension = {ext: f for f, ext in LR_EXTENSIONS.items()} | {".jpeg": "jpeg"}
    return by_extension.get(Path(name).suffix.lower(), "png")


def upscale_stored(
    lr: DecodedImage,
    sidecar: dict[str, object],
    *,
    model: str | None = None,
    scale: int | None = None,
    weights: str | None = None,
    device: str = "cpu",
    seed: int | None = None,
    decode: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A stored LR image and its sidecar -> (reconstruction (C, H, W), alpha (1, H, W) or None), in [0, 1].

    The model, seed, z policy, source size and channels come from the sidecar unless given; a ``model`` that
    contradicts the sidecar, or installed weights that differ from those the LR was made with, are refused. The
    LR's alpha (if any) is upscaled with MATLAB bicubic and cropped like the image.
    """
    if not isinstance(sidecar, dict):
        raise SettingsError(f"{lr.name}: its sidecar is not a JSON object (got {type(sidecar).__name__})")
    recorded = recorded_name(str(sidecar["model"])) if sidecar.get("model") else None  # as earlier releases named it
    name = resolve_name(model, None) if model else recorded
    if weights is None and (name is None or str(name).startswith("file:")):
        raise SettingsError(f"{lr.name}: no sidecar model; give --model/--scale or --weights")
    if model and recorded and name != recorded:
        raise SettingsError(f"{lr.name}: sidecar says model {recorded!r}, but --model {model} was given")
    sc = scale or sidecar.get("scale")
    net = load_model(None if weights else str(name), scale=int(sc) if sc else None, weights=weights, device=device)  # type: ignore[call-overload]
    net = for_lr_format(net, stored_lr_format(lr.name, sidecar))
    if sidecar.get("weights_sha256") and weights is None and model_fingerprint(str(name)) != sidecar["weights_sha256"]:
        raise SettingsError(f"{lr.name}: weights of {name!r} differ from those the LR was made with ({sidecar['weights_sha256']})")
    if lr.pixels.shape[0] != 3:
        raise SettingsError(f"{lr.name}: LR images are RGB, got {lr.pixels.shape[0]} channel(s)")
    size = sidecar.get("source_size")
    if isinstance(size, list | tuple) and len(size) == 2:
        # The LR of a W x H source is ceil(W / s) x ceil(H / s): a sidecar of another image or scale does not fit it.
        want = (-(-int(size[0]) // net.scale), -(-int(size[1]) // net.scale))
        if (lr.width, lr.height) != want:
            raise SettingsError(
                f"{lr.name}: LR is {lr.width}x{lr.height}, but its sidecar's source {size[0]}x{size[1]} at x{net.scale} gives "
                f"{want[0]}x{want[1]}: the sidecar belongs to another image or model"
            )
    rec = upscale_lr(
        net,
        lr.pixels,
        seed=seed if seed is not None else int(sidecar.get("seed", 0)),  # type: ignore[arg-type]
        decode=decode or str(sidecar.get("decode_z", "draw")),
        source_size=(int(size[0]), int(size[1])) if isinstance(size, list | tuple) else None,
        channels=int(sidecar.get("channels", 3)),  # type: ignore[arg-type]
    )
    alpha = None
    if lr.alpha is not None:
        alpha = imresize(lr.alpha.double(), float(net.scale)).clamp(0, 1).float()[:, : rec.shape[-2], : rec.shape[-1]]
    return rec, alpha
