"""What training minimises and how it is validated: IRN's loss, the SR pair's L1, Set5-style validation."""

from __future__ import annotations

import torch

from hcd_pipeline.core.metrics import score_pair
from hcd_pipeline.core.resize import imresize
from hcd_pipeline.io.lr_formats import roundtrip
from hcd_pipeline.models.edsr import EDSRConfig, SRRescaler
from hcd_pipeline.models.irn import IRN, quantize_ste
from hcd_pipeline.training.config import Model, TrainConfig
from hcd_pipeline.training.data import codec_batch


def build_model(cfg: TrainConfig) -> Model:
    """A freshly initialised model of ``cfg``'s family (initialisation draws from the global generator)."""
    config = cfg.model_config()
    return SRRescaler(config) if isinstance(config, EDSRConfig) else IRN(config)


def sr_loss(model: SRRescaler, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """EDSR's objective for a batch ``hr`` (B, 3, P, P) in [0, 1]: mean L1 between ``hr`` and the upscale of its
    bicubic LR rounded to 8 bits (what a stored thumbnail holds)."""
    lr = (torch.round(imresize(hr, 1.0 / model.scale).clamp(0, 1) * 255) / 255).detach()
    l_rec = (model.upscale(lr) - hr).abs().mean()
    return l_rec, {"rec": l_rec.item()}


def irn_loss(
    model: IRN,
    hr: torch.Tensor,
    fit_weight: float,
    ce_weight: float,
    gen: torch.Generator,
    z_std: float = 1.0,
    cfg: TrainConfig | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The IRN training objective for a batch ``hr`` (B, 3, P, P) in [0, 1]; ``cfg`` adds its codec."""
    lr_ref = imresize(hr, 1.0 / model.scale).detach()
    lr, z = model.downscale(hr)
    b = hr.shape[0]
    l_fit = fit_weight * ((lr - lr_ref) ** 2).sum() / b
    l_ce = ce_weight * (z**2).sum() / b
    # Drawn even when z_std = 0 so that the generator's sequence does not depend on it.
    z_draw = torch.randn(z.shape, generator=gen).to(hr.device) * z_std
    lr_stored = quantize_ste(lr)
    restore: bool | torch.Tensor = True
    if cfg is not None and cfg.codec != "none":
        # A lossless LR is upscaled without the restorer (as the downscaler does for PNG), a decoded one with it.
        lr_stored, restore = codec_batch(lr_stored, cfg, gen)
    rec = model.upscale(lr_stored, z_draw, restore=restore)
    l_rec = torch.sqrt((rec - hr) ** 2 + 1e-6).sum() / b
    loss = l_fit + l_rec + l_ce
    return loss, {"fit": l_fit.item(), "rec": l_rec.item(), "ce": l_ce.item()}


@torch.no_grad()
def validate(model: Model, images: list[torch.Tensor], seed: int = 0, jpeg_quality: int | None = None) -> dict[str, float]:
    """Mean Y-PSNR / SSIM on ``images`` (uint8 (3, H, W)) with z = 0 and with one z draw; with ``jpeg_quality``
    also ``psnr_jpeg`` (z = 0, the LR through the real codec at that quality) and ``lr_psnr_bicubic``
    (Y-PSNR of the LR against the bicubic LR: how natural the stored image stays). A model without a latent (the
    SR pair) has only ``psnr_z0`` / ``ssim_z0``."""
    if isinstance(model, SRRescaler):
        return _validate_sr(model, images)
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    s = model.scale
    res: dict[str, list[float]] = {"psnr_z0": [], "psnr_zdraw": [], "ssim_z0": []}
    if jpeg_quality is not None:
        res.update(psnr_jpeg=[], lr_psnr_bicubic=[])
    for img in images:
        h, w = img.shape[-2:]
        hr = (img[:, : h - h % s, : w - w % s].float() / 255).unsqueeze(0).to(dev)
        lr, _ = model.downscale(hr)
        lr = quantize_ste(lr)
        for key, z_scale in (("z0", 0.0), ("zdraw", 1.0)):
            sr = model.upscale(lr, generator=gen, z_scale=z_scale, restore=False).clamp(0, 1)
            sc = score_pair(hr[0].cpu(), sr[0].cpu(), s)
            res[f"psnr_{key}"].append(sc.psnr_y)
            if key == "z0":
                res["ssim_z0"].append(sc.ssim_y)
        if jpeg_quality is not None:
            decoded = roundtrip(lr, "jpeg", jpeg_quality)
            sr = model.upscale(decoded, z_scale=0.0).clamp(0, 1)
            res["psnr_jpeg"].append(score_pair(hr[0].cpu(), sr[0].cpu(), s).psnr_y)
            bic = imresize(hr, 1.0 / s).clamp(0, 1)
            res["lr_psnr_bicubic"].append(score_pair(bic[0].cpu(), lr[0].cpu(), 0).psnr_y)
    model.train()
    return {k: sum(v) / len(v) for k, v in res.items()}


def _validate_sr(model: SRRescaler, images: list[torch.Tensor]) -> dict[str, float]:
    model.eval()
    dev = next(model.parameters()).device
    s = model.scale
    psnrs, ssims = [], []
    for img in images:
        h, w = img.shape[-2:]
        hr = (img[:, : h - h % s, : w - w % s].float() / 255).unsqueeze(0).to(dev)
        lr = quantize_ste(model.downscale(hr)[0].clamp(0, 1))
        sc = score_pair(hr[0].cpu(), model.upscale(lr).clamp(0, 1)[0].cpu(), s)
        psnrs.append(sc.psnr_y)
        ssims.append(sc.ssim_y)
    model.train()
    return {"psnr_z0": sum(psnrs) / len(psnrs), "ssim_z0": sum(ssims) / len(ssims)}
