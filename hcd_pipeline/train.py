"""IRN training with the original losses, resumable at any step, optionally data-parallel.

Loss (IRN, ``shared/reference/published.md``), per image summed over pixels, averaged over the batch:
``lambda_fit * L2(LR, bicubic LR) + Charbonnier(HR, upscale(round(LR), z ~ N(0, 1))) + sum(z^2)``.

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

from .imageio import atomic_write_bytes, list_images, read_image
from .metrics import score_pair
from .models.irn import IRN, IRNConfig, quantize_ste
from .models.weights import save_weights
from .resize import imresize

__all__ = ["TrainConfig", "train", "load_training_images", "validate", "export_checkpoint"]


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

    def fit_weight(self) -> float:
        if self.lambda_fit is not None:
            return self.lambda_fit
        return 4.0 if self.scale == 2 else 16.0

    def model_config(self) -> IRNConfig:
        return IRNConfig(scale=self.scale, blocks=self.blocks, width=self.width, z_std=self.z_train)


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


def irn_loss(
    model: IRN, hr: torch.Tensor, fit_weight: float, ce_weight: float, gen: torch.Generator, z_std: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """The IRN training objective for a batch ``hr`` (B, 3, P, P) in [0, 1]."""
    lr_ref = imresize(hr, 1.0 / model.scale).detach()
    lr, z = model.downscale(hr)
    b = hr.shape[0]
    l_fit = fit_weight * ((lr - lr_ref) ** 2).sum() / b
    l_ce = ce_weight * (z**2).sum() / b
    # Drawn even when z_std = 0 so that the generator's sequence does not depend on it.
    z_draw = torch.randn(z.shape, generator=gen).to(hr.device) * z_std
    rec = model.upscale(quantize_ste(lr), z_draw)
    l_rec = torch.sqrt((rec - hr) ** 2 + 1e-6).sum() / b
    loss = l_fit + l_rec + l_ce
    return loss, {"fit": l_fit.item(), "rec": l_rec.item(), "ce": l_ce.item()}


@torch.no_grad()
def validate(model: IRN, images: list[torch.Tensor], seed: int = 0) -> dict[str, float]:
    """Mean Y-PSNR / SSIM on ``images`` (uint8 (3, H, W)) with z = 0 and with one z draw."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    s = model.scale
    res: dict[str, list[float]] = {"psnr_z0": [], "psnr_zdraw": [], "ssim_z0": []}
    for img in images:
        h, w = img.shape[-2:]
        hr = (img[:, : h - h % s, : w - w % s].float() / 255).unsqueeze(0).to(dev)
        lr, _ = model.downscale(hr)
        lr = quantize_ste(lr)
        for key, z_scale in (("z0", 0.0), ("zdraw", 1.0)):
            sr = model.upscale(lr, generator=gen, z_scale=z_scale).clamp(0, 1)
            sc = score_pair(hr[0].cpu(), sr[0].cpu(), s)
            res[f"psnr_{key}"].append(sc.psnr_y)
            if key == "z0":
                res["ssim_z0"].append(sc.ssim_y)
    model.train()
    return {k: sum(v) / len(v) for k, v in res.items()}


def _lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``lr_min``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(1.0, t)))


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
        model = IRN(cfg.model_config()).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    step = 0
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        saved = TrainConfig(**ck["config"])
        if saved.model_config() != cfg.model_config():
            raise ValueError(f"{ckpt_path}: checkpoint is {saved.model_config()}, run asks for {cfg.model_config()}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generators"][rank])
        step = int(ck["step"])
    if distributed:
        for p in model.parameters():  # identical start on every rank
            dist.broadcast(p.data, 0)

    images = load_training_images(cfg.data, cfg.patch)
    val_images = load_training_images(cfg.val, 16) if rank == 0 and cfg.val else []
    log = open(out / "log.jsonl", "a") if rank == 0 else None
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress or rank != 0, desc=f"train x{cfg.scale}")
    t0 = time.time()
    fit_w = cfg.fit_weight()
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, step)
        hr = sample_batch(images, cfg.patch, cfg.batch, gen).to(device)

        loss, parts = irn_loss(model, hr, fit_w, cfg.lambda_ce, gen, cfg.z_train)
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
        if rank == 0 and log is not None:
            rec: dict[str, float | int] = {}
            if step % cfg.log_every == 0:
                rec = {
                    "step": step,
                    "loss": loss.item(),
                    **parts,
                    "grad_norm": float(gnorm),
                    "lr": _lr_at(cfg, step - 1),
                    "elapsed_s": round(time.time() - t0, 1),
                }
            if val_images and (step % cfg.val_every == 0 or step == cfg.steps):
                rec = {**rec, "step": step, **{f"val_{k}": v for k, v in validate(model, val_images).items()}}
                bar.set_postfix(psnr=f"{rec['val_psnr_z0']:.2f}")
            if rec:
                log.write(json.dumps(rec) + "\n")
                log.flush()
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            gens = [gen.get_state()]
            if distributed:
                gathered: list[object] = [None] * world
                dist.all_gather_object(gathered, gen.get_state())
                gens = gathered  # type: ignore[assignment]
            if rank == 0:
                _atomic_torch_save(
                    {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "generators": gens, "config": asdict(cfg)},
                    ckpt_path,
                )
    bar.close()
    if log is not None:
        log.close()
    final = out / f"irn-x{cfg.scale}.safetensors"
    if rank == 0:
        save_weights(
            model,
            final,
            provenance={"data": cfg.data, "steps": str(step), "command": command, "train_config": json.dumps(asdict(cfg))},
        )
    if distributed:
        # Record a hash of each rank's parameters: identical hashes show the ranks stayed in sync.
        digest = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters())).hexdigest()
        (out / f"rank{rank}.sha256").write_text(digest + "\n")
        dist.barrier()
        dist.destroy_process_group()
    return final


def export_checkpoint(checkpoint: str | Path, dest: str | Path, command: str = "") -> int:
    """Write the weights of a training checkpoint as ``.safetensors`` (e.g. to ship a run in progress).

    Returns the step the checkpoint was taken at.
    """
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = TrainConfig(**ck["config"])
    model = IRN(cfg.model_config())
    model.load_state_dict(ck["model"])
    step = int(ck["step"])
    save_weights(
        model, dest, provenance={"data": cfg.data, "steps": str(step), "command": command, "train_config": json.dumps(ck["config"])}
    )
    return step
