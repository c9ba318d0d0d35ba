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
drives cropping, augmentation and z are written atomically to ``OUT/checkpoint.pt``, with the wall seconds spent so
far; a restarted run continues from it and, on CPU, reaches the same parameters as an uninterrupted run bit for bit.
The exported weights' provenance records the steps, the data, the command, the config, the wall seconds summed over
every part of the run (``train_seconds``), the devices (``device``: the GPU's name, or ``cpu (N threads)``; a run
resumed elsewhere lists each, ``"A + B"``) and the short sha256 of the ``--init`` weights (``init_sha256``).
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
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from hcd_pipeline.core.device import device_mode, precision_mode
from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.io.images import atomic_write_bytes
from hcd_pipeline.models.edsr import SRRescaler
from hcd_pipeline.models.edsr_weights import save_edsr
from hcd_pipeline.models.weights import load_irn, save_weights
from hcd_pipeline.training.config import Model, TrainConfig
from hcd_pipeline.training.data import load_training_images, sample_batch
from hcd_pipeline.training.objective import build_model, irn_loss, sr_loss, validate


def _lr_at(cfg: TrainConfig, step: int, total: int | None = None) -> float:
    """0 for the ``prime`` steps (Adam's moments fill, the weights stay), then linear warm-up, then cosine decay from
    ``lr`` to ``lr_min`` at ``total`` (default ``cfg.steps``)."""
    total = cfg.steps if total is None else total
    if step < cfg.prime:
        return 0.0
    step, total = step - cfg.prime, total - cfg.prime
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, total - cfg.warmup)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(1.0, t)))


def init_from(model: Model, source: str) -> set[str]:
    """Copy the weights of ``source`` (a model name of the table, or a weights file) into ``model``.

    IRN: the chain's scale and width must match; it may have fewer coupling blocks per level than the run, which then
    grows it (the added blocks start as the identity: :func:`_grown_name`); a restorer that ``source`` lacks stays new. SR pair: blocks and
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
    if (mine.width, mine.clamp, mine.channels) != (theirs.width, theirs.clamp, theirs.channels) or mine.blocks < theirs.blocks:
        raise SettingsError(
            f"{path}: init weights are IRN x{theirs.scale} blocks={theirs.blocks} width={theirs.width}; "
            f"the run asks for blocks={mine.blocks} width={mine.width} (blocks may grow, nothing else may change)"
        )
    if mine.z_std != theirs.z_std:
        raise SettingsError(f"{path}: init weights were trained with z std {theirs.z_std}, the run with {mine.z_std} (--z-train)")
    own = model.state_dict()
    renamed = {_grown_name(k, theirs.blocks, mine.blocks): v for k, v in src.state_dict().items()}
    taken = {k: v for k, v in renamed.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(taken, strict=False)
    return {k for k in taken if not k.endswith("haar_weights")}


def _grown_name(key: str, old_blocks: int, new_blocks: int) -> str:
    """A chain parameter's name in a chain with ``new_blocks`` coupling blocks per level instead of ``old_blocks``.

    Each level is a Haar step then its blocks (``operations.{level * (blocks + 1) + j}``, j = 0 the Haar step): the
    old blocks keep their place in their level, and the blocks added after them start as the identity (their last
    convolutions are zero), so a grown model starts as exactly the model it grew from."""
    if not key.startswith("operations."):
        return key
    _, index, rest = key.split(".", 2)
    level, j = divmod(int(index), old_blocks + 1)
    return f"operations.{level * (new_blocks + 1) + j}.{rest}"


def _atomic_torch_save(obj: object, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _device_name(device: torch.device) -> str:
    """The device a run trained on, for provenance: the GPU's name, or ``cpu (N threads)``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    n = torch.get_num_threads()
    return f"{device.type} ({n} thread{'' if n == 1 else 's'})"


def _devices_so_far(earlier: str, now: str) -> str:
    """The devices of a run resumed on ``now`` after parts on ``earlier`` (``"A + B"``, each named once, in order)."""
    names = [d for d in earlier.split(" + ") if d]
    return " + ".join(names if now in names else [*names, now])


def _init_fingerprint(source: str) -> str:
    """Short sha256 of the weights a run started from (``--init``): a table name's tag can stop being shipped (the
    registry then keeps its sha256), so provenance names the file by content, not only by the name it was given.
    ``""`` for a run without ``--init``, or whose file is gone."""
    from hcd_pipeline.models.registry import MODELS, model_fingerprint, resolve_name
    from hcd_pipeline.models.weights import file_sha256

    if not source:
        return ""
    if resolve_name(source, None) in MODELS:
        return model_fingerprint(source)
    return file_sha256(source) if Path(source).is_file() else ""


def _provenance(
    cfg_dict: dict[str, object], step: int, command: str, seconds: float | None, device: str, init_sha256: str = ""
) -> dict[str, str]:
    """The provenance an exported weights file carries: data, steps, command, the run's config, and (where known)
    the training wall seconds summed over every resumed part of the run, the devices it ran on, and the short sha256
    of the ``--init`` weights it started from."""
    prov = {"data": str(cfg_dict["data"]), "steps": str(step), "command": command, "train_config": json.dumps(cfg_dict)}
    if seconds is not None:
        prov["train_seconds"] = f"{seconds:.1f}"
    if device:
        prov["device"] = device
    if init_sha256:
        prov["init_sha256"] = init_sha256
    return prov


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
    init_sha = _init_fingerprint(cfg.init)
    devices = _device_name(device)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in model.named_parameters() if p.requires_grad and n not in loaded], "scale": 1.0},
        {"params": [p for n, p in model.named_parameters() if p.requires_grad and n in loaded], "scale": cfg.init_lr_scale},
    ]
    # Fused Adam on GPUs (one kernel for all parameters); the CPU keeps the reference implementation, whose resumed
    # runs reach an uninterrupted run's parameters bit for bit.
    opt = torch.optim.Adam([g for g in groups if g["params"]], lr=cfg.lr, weight_decay=cfg.weight_decay,
                           fused=device.type == "cuda")  # fmt: skip
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    step = 0
    spent = 0.0  # wall seconds of the earlier parts of a resumed run (checkpoint "train_seconds")
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
        spent = float(ck.get("train_seconds", 0.0))
        init_sha = ck.get("init_sha256", init_sha)
        devices = _devices_so_far(ck.get("device_name", ""), devices)
    if distributed:
        for p in model.parameters():  # identical start on every rank
            dist.broadcast(p.data, 0)

    images = load_training_images(cfg.data, cfg.patch)
    val_images = load_training_images(cfg.val, 16) if rank == 0 and cfg.val else []
    log = open(out / "log.jsonl", "a") if rank == 0 else None
    bar = tqdm(total=total, initial=step, disable=not progress or rank != 0, desc=f"train x{cfg.scale}")
    t0 = t_run = time.time()  # t0: the schedule's clock (after the first validation); t_run: this part's wall time
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
        last = (step, time.time())  # the last log line's step and time: steps/s between log lines
        while step < total:
            for group in opt.param_groups:
                group["lr"] = _lr_at(cfg, step, total) * group.get("scale", 1.0)
            hr = sample_batch(images, cfg.patch, cfg.batch, gen).to(device)

            with precision_mode(device, cfg.precision):  # the recomputing backwards run in the forward's numerics
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
            elif refits and time.time() - t0 > cfg.time_budget_s:
                total = bar.total = step  # over the budget before the schedule's next fit (slow steps): stop here
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
                        "steps_per_s": round((step - last[0]) / max(time.time() - last[1], 1e-9), 3),
                    }
                    last = (step, time.time())
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
                            "train_seconds": spent + time.time() - t_run,
                            "device_name": devices,
                            "init_sha256": init_sha,
                        },
                        ckpt_path,
                    )
    bar.close()
    if log is not None:
        log.close()
    final = out / f"{'edsr' if cfg.family == 'sr' else 'irn'}-x{cfg.scale}.safetensors"
    if rank == 0:
        provenance = _provenance(asdict(cfg), step, command, spent + time.time() - t_run, devices, init_sha)
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
        save_weights(model, path, provenance=provenance, base=base, dtype=getattr(torch, dtype))


def export_checkpoint(
    checkpoint: str | Path, dest: str | Path, command: str = "", *, base: str | Path | None = None, dtype: str | None = None
) -> int:
    """Write the weights of a training checkpoint (or of a ``.safetensors`` file, e.g. one a GPU run exported) as
    ``.safetensors``; with ``base``, only the tensors that differ from that file (IRN, see ``save_weights``);
    ``dtype``: float32 or float16, default the run's ``export_dtype`` (a weights file: what it holds).

    Returns the step the checkpoint was taken at (for a weights file: its provenance's ``steps``, else 0).
    """
    if Path(checkpoint).suffix == ".safetensors":
        from hcd_pipeline.models.registry import load_weights_file, safetensors_header

        meta = safetensors_header(checkpoint)
        provenance = json.loads(meta.get("provenance", "{}"))
        model = load_weights_file(checkpoint)
        if command:
            provenance = {**provenance, "export_command": command}
        stored = meta.get("dtype", "float32")
        _save(model, dest, provenance, dtype or stored, base)
        return int(provenance.get("steps", 0) or 0)
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = TrainConfig(**ck["config"])
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg)
    model.load_state_dict(ck["model"])
    step = int(ck["step"])
    seconds = ck.get("train_seconds")  # absent in checkpoints written before it was recorded
    init_sha = ck.get("init_sha256")
    if init_sha is None:  # written before it was recorded: the --init weights' fingerprint as they resolve now
        init_sha = _init_fingerprint(str(ck["config"].get("init") or ""))
    provenance = _provenance(ck["config"], step, command, None if seconds is None else float(seconds), ck.get("device_name", ""), init_sha)
    _save(model, dest, provenance, dtype or cfg.export_dtype, base)
    return step
