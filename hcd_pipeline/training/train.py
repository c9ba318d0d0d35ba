"""Training of the learned models with their original losses, resumable at any step, optionally data-parallel.

``family = "irn"`` (IRN, ``shared/reference/published.md``), per image summed over pixels, averaged over the batch:
``lambda_fit * L2(LR, bicubic LR) + Charbonnier(HR, upscale(round(LR), z ~ N(0, 1))) + sum(z^2)``.
``family = "sr"`` (the SR pair, EDSR's loss): mean ``L1(HR, upscale(round(bicubic LR)))``: the network learns to
upscale the 8-bit thumbnail a standard bicubic downscale stores; ``blocks`` / ``width`` are EDSR's residual blocks and
channels (EDSR-baseline: 16, 64).

Codec-robust models (``codec = "jpeg"``): the reconstruction term decodes what a JPEG of the rounded LR would
give (:func:`~hcd_pipeline.jpeg.simulate.jpeg_sim`, one quality per crop drawn from ``codec_q_min..codec_q_max``;
a share ``codec_clean`` of the crops skips the codec, and the restorer, as a PNG LR would). Such runs usually start
from shipped weights (``init``; ``init_lr_scale = 0`` freezes them) and add an LR restorer (``restore_blocks``) that
the upscaler applies to decoded LRs first; validation then also scores the real codec (Pillow's libjpeg) at
``val_quality``.

Resuming: every ``ckpt_every`` steps the weights, optimiser, step and the state of the generator that
drives cropping, augmentation and z are written atomically to ``OUT/checkpoint.pt``; a restarted run
continues from it and, on CPU, reaches the same parameters as an uninterrupted run bit for bit.
Data-parallel: start with ``torchrun --nproc-per-node N -m hcd_pipeline.cli train ...`` (gloo on CPU,
NCCL on GPUs); each rank draws its own crops, gradients are averaged.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from hcd_pipeline.core.device import device_mode
from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.core.metrics import score_pair
from hcd_pipeline.core.resize import imresize
from hcd_pipeline.io.images import atomic_write_bytes, list_images, read_image
from hcd_pipeline.io.lr_formats import roundtrip
from hcd_pipeline.jpeg.simulate import SIMULATED_CODECS, jpeg_sim
from hcd_pipeline.models.edsr import EDSRConfig, SRRescaler
from hcd_pipeline.models.edsr_weights import save_edsr
from hcd_pipeline.models.irn import IRN, IRNConfig, quantize_ste
from hcd_pipeline.models.weights import load_irn, save_weights

__all__ = ["FAMILIES", "TrainConfig", "train", "load_training_images", "validate", "export_checkpoint", "build_model"]

FAMILIES = ("irn", "sr")
"""Model families ``hcd train`` trains: IRN, and the SR pair (bicubic down, EDSR up)."""

Model = IRN | SRRescaler


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (recorded in the checkpoint and in the exported weights)."""

    scale: int = 2
    data: str = "../shared/data/BSD200/HR"
    val: str = "../shared/data/Set5/HR"
    out: str = "runs/irn-x2"
    blocks: int = 4
    width: int = 32
    patch: int = 48
    batch: int = 16
    steps: int = 6000
    lr: float = 1e-3
    lr_min: float = 1e-5
    warmup: int = 100
    lambda_fit: float | None = None  # None: 4 at x2, 16 at x4 (the original recipe)
    lambda_ce: float = 1.0
    z_train: float = 1.0  # std of the z fed to the decoder in the loss (IRN: 1; 0 trains a z = 0 decoder)
    weight_decay: float = 1e-5
    clip: float = 10.0
    seed: int = 0
    ckpt_every: int = 50
    val_every: int = 250
    log_every: int = 10
    threads: int = 0  # 0: leave torch's default
    device: str = "auto"
    init: str = ""  # weights to start from: a model name of the table or a .safetensors / .pth file ("" : random)
    init_lr_scale: float = 0.1  # learning-rate factor of the weights loaded from ``init`` (new layers: 1)
    restore_blocks: int = 0  # LR restorer before the inverse chain (IRNConfig.restore_blocks)
    restore_width: int = 64
    codec: str = "none"  # "none" or "jpeg": what the reconstruction loss puts between downscaler and upscaler
    codec_q_min: int = 70
    codec_q_max: int = 95
    codec_clean: float = 0.1  # share of crops that skip the codec
    val_quality: int = 90  # quality of the real codec in validation (with a codec)
    time_budget_s: float = 0.0  # > 0: end (and export) after about this many seconds; the schedule is fitted to it
    family: str = "irn"  # "irn" or "sr" (bicubic down + EDSR up; blocks / width are EDSR's)
    export_dtype: str = "float32"  # how the exported SR weights are stored ("float16" halves the file)

    def fit_weight(self) -> float:
        if self.lambda_fit is not None:
            return self.lambda_fit
        return 4.0 if self.scale == 2 else 16.0

    def model_config(self) -> IRNConfig | EDSRConfig:
        if self.family == "sr":
            return EDSRConfig(scale=self.scale, blocks=self.blocks, width=self.width)
        return IRNConfig(
            scale=self.scale,
            blocks=self.blocks,
            width=self.width,
            z_std=self.z_train,
            restore_blocks=self.restore_blocks,
            restore_width=self.restore_width,
        )

    def check(self) -> None:
        """Refuse settings that cannot train (clear errors before any work)."""
        if self.family not in FAMILIES:
            raise SettingsError(f"training family {self.family!r}: expected one of {FAMILIES}")
        if self.family == "sr" and (self.codec != "none" or self.restore_blocks):
            raise SettingsError("the SR family trains without a codec or an LR restorer (--codec none, --restore-blocks 0)")
        if self.export_dtype not in ("float32", "float16"):
            raise SettingsError(f"export dtype {self.export_dtype!r}: expected float32 or float16")
        if self.codec not in SIMULATED_CODECS:
            raise SettingsError(f"training codec {self.codec!r}: expected one of {SIMULATED_CODECS}")
        if not 1 <= self.codec_q_min <= self.codec_q_max <= 100:
            raise SettingsError(f"codec qualities {self.codec_q_min}..{self.codec_q_max}: expected 1 <= min <= max <= 100")
        if not 0.0 <= self.codec_clean <= 1.0:
            raise SettingsError(f"codec_clean {self.codec_clean}: expected a share in [0, 1]")
        if self.codec != "none" and self.patch % (16 * self.scale):
            raise SettingsError(f"patch {self.patch}: with a codec it must be a multiple of {16 * self.scale} (whole LR MCUs)")


def load_training_images(folder: str | Path, min_side: int) -> list[torch.Tensor]:
    """Decode every RGB image of ``folder`` into a uint8 (3, H, W) tensor, in sorted name order."""
    images = []
    for path in list_images(folder):
        img = read_image(path)
        if img.pixels.shape[0] != 3 or min(img.pixels.shape[-2:]) < min_side:
            continue
        images.append(torch.round(img.pixels * 255).to(torch.uint8))
    if not images:
        raise ValueError(f"no RGB training images of at least {min_side} px found in {folder}")
    return images


def sample_batch(images: list[torch.Tensor], patch: int, batch: int, gen: torch.Generator) -> torch.Tensor:
    """Random crops with random flips and 90-degree rotations -> (batch, 3, patch, patch) in [0, 1]."""
    out = []
    for _ in range(batch):
        img = images[int(torch.randint(len(images), (1,), generator=gen))]
        h, w = img.shape[-2:]
        top = int(torch.randint(h - patch + 1, (1,), generator=gen))
        left = int(torch.randint(w - patch + 1, (1,), generator=gen))
        crop = img[:, top : top + patch, left : left + patch]
        aug = torch.randint(8, (1,), generator=gen).item()
        if aug & 1:
            crop = crop.flip(-1)
        crop = torch.rot90(crop, int(aug) >> 1, (-2, -1))
        out.append(crop)
    return torch.stack(out).float() / 255.0


def codec_batch(lr: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The LR batch (B, 3, h, w), 8-bit levels, as the upscaler would read it back from the codec of ``cfg``,
    and the (B,) mask of the crops that went through the codec (the others skip it, as a PNG would).

    Draws one quality per crop and which crops skip the codec from ``gen``."""
    b = lr.shape[0]
    qualities = torch.randint(cfg.codec_q_min, cfg.codec_q_max + 1, (b,), generator=gen).tolist()
    coded = (torch.rand(b, generator=gen) >= cfg.codec_clean).to(lr.device)
    return torch.where(coded[:, None, None, None], jpeg_sim(lr, qualities), lr), coded


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
        # A lossless LR is upscaled without the restorer (as the service does for PNG), a decoded one with it.
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


def _lr_at(cfg: TrainConfig, step: int, total: int | None = None) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``lr_min`` at ``total`` (default ``cfg.steps``)."""
    total = cfg.steps if total is None else total
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, total - cfg.warmup)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(1.0, t)))


def init_from(model: Model, source: str) -> set[str]:
    """Copy the weights of ``source`` (a model name of the table, or a weights file) into ``model``.

    IRN: the chain (scale, blocks, width) must match; a restorer that ``source`` lacks stays new. SR pair: blocks and
    width must match, the scale may differ (a x2 network starts a x4 run; the upsampler of another scale stays new).
    Returns the names of the parameters that were loaded (they train at ``init_lr_scale`` times the learning rate)."""
    from hcd_pipeline.models.registry import load_weights_file, weights_file

    path = weights_file(source) or Path(source)  # a model without weights fails below as a missing file, naming it
    if isinstance(model, SRRescaler):
        other = load_weights_file(path)
        if not isinstance(other, SRRescaler) or (other.config.blocks, other.config.width) != (model.config.blocks, model.config.width):
            raise SettingsError(f"{path}: init weights are not an EDSR of blocks={model.config.blocks} width={model.config.width}")
        own_sd = model.state_dict()
        got = {k: v for k, v in other.state_dict().items() if k in own_sd and own_sd[k].shape == v.shape}
        model.load_state_dict(got, strict=False)
        return {k for k in got if "_mean." not in k}
    src = load_irn(path, model.scale)
    mine, theirs = model.config, src.config
    if (mine.blocks, mine.width, mine.clamp, mine.channels) != (theirs.blocks, theirs.width, theirs.clamp, theirs.channels):
        raise SettingsError(
            f"{path}: init weights are IRN x{theirs.scale} blocks={theirs.blocks} width={theirs.width}; "
            f"the run asks for blocks={mine.blocks} width={mine.width}"
        )
    if mine.z_std != theirs.z_std:
        raise SettingsError(f"{path}: init weights were trained with z std {theirs.z_std}, the run with {mine.z_std} (--z-train)")
    own = model.state_dict()
    taken = {k: v for k, v in src.state_dict().items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(taken, strict=False)
    return {k for k in taken if not k.endswith("haar_weights")}


def _atomic_torch_save(obj: object, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train(cfg: TrainConfig, *, progress: bool = True, command: str = "") -> Path:
    """Train (or resume) an IRN; returns the path of the exported ``.safetensors`` weights."""
    cfg.check()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    world = 1
    device = _pick_device(cfg.device)
    if distributed:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        rank, world = dist.get_rank(), dist.get_world_size()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"

    # nn.Module init draws from the global generator: fork it so the caller's state is untouched,
    # and seed it from the run seed so every rank starts from the same weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(cfg)
    loaded = init_from(model, cfg.init) if cfg.init else set()
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in model.named_parameters() if p.requires_grad and n not in loaded], "scale": 1.0},
        {"params": [p for n, p in model.named_parameters() if p.requires_grad and n in loaded], "scale": cfg.init_lr_scale},
    ]
    opt = torch.optim.Adam([g for g in groups if g["params"]], lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    step = 0
    total = cfg.steps  # the schedule's length; a time budget refits it once the speed is known
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        saved = TrainConfig(**ck["config"])
        if saved.model_config() != cfg.model_config():
            raise ValueError(f"{ckpt_path}: checkpoint is {saved.model_config()}, run asks for {cfg.model_config()}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generators"][rank])
        step = int(ck["step"])
        total = int(ck.get("total", cfg.steps))
    if distributed:
        for p in model.parameters():  # identical start on every rank
            dist.broadcast(p.data, 0)

    images = load_training_images(cfg.data, cfg.patch)
    val_images = load_training_images(cfg.val, 16) if rank == 0 and cfg.val else []
    log = open(out / "log.jsonl", "a") if rank == 0 else None
    bar = tqdm(total=total, initial=step, disable=not progress or rank != 0, desc=f"train x{cfg.scale}")
    t0 = time.time()
    fit_w = cfg.fit_weight()
    val_q = cfg.val_quality if cfg.codec == "jpeg" else None
    # Training numerics: TF32 and cuDNN autotuning on a GPU (restored when training ends); no effect on a CPU.
    with device_mode(device, "fast"):
        if step == 0 and val_images and log is not None:  # where the run starts (the init model's scores)
            scores = validate(model, val_images, jpeg_quality=val_q)
            log.write(json.dumps({"step": 0, "total": total, **{f"val_{k}": v for k, v in scores.items()}}) + "\n")
            log.flush()
            t0 = time.time()
        # A time budget refits the schedule's length at these steps (counted from this start) to the speed measured
        # since the 10th: the first steps include cuDNN autotuning and warm-up, and fitting once at step 30 ended GPU
        # runs after ~70 % of their budget; later refits see validation time too.
        start, refits, mark = step, (30, 100, 300, 1000) if cfg.time_budget_s > 0 and not distributed else (), (step, t0)
        while step < total:
            for group in opt.param_groups:
                group["lr"] = _lr_at(cfg, step, total) * group.get("scale", 1.0)
            hr = sample_batch(images, cfg.patch, cfg.batch, gen).to(device)

            if isinstance(model, SRRescaler):
                loss, parts = sr_loss(model, hr)
            else:
                loss, parts = irn_loss(model, hr, fit_w, cfg.lambda_ce, gen, cfg.z_train, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if distributed:
                # Plain gradient averaging: the loss uses the network in both directions, which a
                # DistributedDataParallel wrapper (forward only) would not see.
                for p in params:
                    if p.grad is not None:
                        dist.all_reduce(p.grad)
                        p.grad /= world
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            opt.step()
            step += 1
            bar.update(1)
            if step - start == 10:
                mark = (step, time.time())
            if step - start in refits:
                # 3 % of the time left kept in reserve (the last validation and the export); never past --steps.
                rate = (time.time() - mark[1]) / (step - mark[0])
                total = min(cfg.steps, max(step + 1, int(step + 0.97 * (cfg.time_budget_s - (time.time() - t0)) / rate)))
                bar.total = total
            if rank == 0 and log is not None:
                rec: dict[str, float | int] = {}
                if step % cfg.log_every == 0:
                    rec = {
                        "step": step,
                        "loss": loss.item(),
                        **parts,
                        "grad_norm": float(gnorm),
                        "lr": _lr_at(cfg, step - 1, total),
                        "elapsed_s": round(time.time() - t0, 1),
                    }
                if val_images and (step % cfg.val_every == 0 or step == total):
                    scores = validate(model, val_images, jpeg_quality=val_q)
                    rec = {**rec, "step": step, "total": total, **{f"val_{k}": v for k, v in scores.items()}}
                    bar.set_postfix(psnr=f"{rec['val_psnr_z0']:.2f}")
                if rec:
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
            if step % cfg.ckpt_every == 0 or step == total:
                gens = [gen.get_state()]
                if distributed:
                    gathered: list[object] = [None] * world
                    dist.all_gather_object(gathered, gen.get_state())
                    gens = gathered  # type: ignore[assignment]
                if rank == 0:
                    _atomic_torch_save(
                        {
                            "model": model.state_dict(),
                            "optimizer": opt.state_dict(),
                            "step": step,
                            "total": total,
                            "generators": gens,
                            "config": asdict(cfg),
                        },
                        ckpt_path,
                    )
    bar.close()
    if log is not None:
        log.close()
    final = out / f"{'edsr' if cfg.family == 'sr' else 'irn'}-x{cfg.scale}.safetensors"
    if rank == 0:
        provenance = {"data": cfg.data, "steps": str(step), "command": command, "train_config": json.dumps(asdict(cfg))}
        _save(model, final, provenance, cfg.export_dtype)
    if distributed:
        # Record a hash of each rank's parameters: identical hashes show the ranks stayed in sync.
        digest = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters())).hexdigest()
        (out / f"rank{rank}.sha256").write_text(digest + "\n")
        dist.barrier()
        dist.destroy_process_group()
    return final


def _save(model: Model, path: str | Path, provenance: dict[str, str], dtype: str = "float32", base: str | Path | None = None) -> None:
    if isinstance(model, SRRescaler):
        if base is not None:
            raise SettingsError("--base applies to IRN weights only")
        save_edsr(model, path, provenance, dtype=getattr(torch, dtype))
    else:
        save_weights(model, path, provenance=provenance, base=base)


def export_checkpoint(
    checkpoint: str | Path, dest: str | Path, command: str = "", *, base: str | Path | None = None, dtype: str | None = None
) -> int:
    """Write the weights of a training checkpoint (or of a ``.safetensors`` file, e.g. one a GPU run exported) as
    ``.safetensors``; with ``base``, only the tensors that differ from that file (IRN, see ``save_weights``);
    ``dtype`` (SR pair): float32 or float16, default the run's ``export_dtype``.

    Returns the step the checkpoint was taken at (for a weights file: its provenance's ``steps``, else 0).
    """
    if Path(checkpoint).suffix == ".safetensors":
        from hcd_pipeline.models.edsr_weights import FORMAT as EDSR_FORMAT
        from hcd_pipeline.models.registry import load_weights_file, safetensors_header

        meta = safetensors_header(checkpoint)
        provenance = json.loads(meta.get("provenance", "{}"))
        model = load_weights_file(checkpoint)
        if command:
            provenance = {**provenance, "export_command": command}
        stored = meta.get("dtype", "float32") if meta.get("format") == EDSR_FORMAT else "float32"
        _save(model, dest, provenance, dtype or stored, base)
        return int(provenance.get("steps", 0) or 0)
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = TrainConfig(**ck["config"])
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg)
    model.load_state_dict(ck["model"])
    step = int(ck["step"])
    provenance = {"data": cfg.data, "steps": str(step), "command": command, "train_config": json.dumps(ck["config"])}
    _save(model, dest, provenance, dtype or cfg.export_dtype, base)
    return step
