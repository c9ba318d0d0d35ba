"""Models: ``train``, ``export`` (a checkpoint to shipped weights), ``convert`` (an original checkpoint to ours)."""

from __future__ import annotations

import sys

import click

from hcd_pipeline.cli.group import handle_errors, main, no_progress
from hcd_pipeline.cli.options import parse_range, refuse_overwrite
from hcd_pipeline.jpeg.simulate import SIMULATED_CODECS


@main.command()
@click.option("--scale", type=click.Choice(["2", "4"]), default="2", show_default=True)
@click.option("--data", default="../shared/data/BSD200/HR", show_default=True, type=click.Path(file_okay=False))
@click.option("--val", default="../shared/data/Set5/HR", show_default=True, help="validation folder ('' for none)")
@click.option("-o", "--output", "--out", "out", default=None, help="run folder (default runs/<family>-x<scale>)")
@click.option("--blocks", type=int, default=4, show_default=True, help="coupling blocks per level")
@click.option("--width", type=int, default=32, show_default=True, help="dense-block growth channels")
@click.option("--patch", type=int, default=48, show_default=True, help="HR patch size")
@click.option("--batch", type=int, default=16, show_default=True)
@click.option("--steps", type=int, default=3600, show_default=True)
@click.option("--lr", "lr_", type=float, default=1e-3, show_default=True, help="peak learning rate")
@click.option("--warmup", type=int, default=100, show_default=True)
@click.option("--lambda-fit", type=float, default=None, help="weight of L2(LR, bicubic LR) (default: 4 at x2, 16 at x4)")
@click.option("--z-train", type=float, default=1.0, show_default=True, help="std of z in the reconstruction loss (0: z = 0 decoder)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=0, help="torch threads (0: torch default)")
@click.option("--ckpt-every", type=int, default=50, show_default=True)
@click.option("--val-every", type=int, default=250, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--init", default="", help="start from these weights: a model name (irn-x2) or a weights file")
@click.option("--init-lr-scale", type=float, default=0.1, show_default=True, help="learning-rate factor of the --init weights")
@click.option("--restore-blocks", type=int, default=0, show_default=True, help="LR restorer blocks applied before upscaling (0: none)")
@click.option("--restore-width", type=int, default=64, show_default=True, help="LR restorer channels")
@click.option(
    "--codec",
    type=click.Choice(SIMULATED_CODECS),
    default="none",
    show_default=True,
    help="codec between downscaler and upscaler in the loss",
)
@click.option("--codec-quality", default="70-95", show_default=True, help="JPEG qualities drawn per crop, MIN-MAX")
@click.option("--codec-clean", type=float, default=0.1, show_default=True, help="share of crops that skip the codec")
@click.option("--val-quality", type=int, default=90, show_default=True, help="real-codec quality scored in validation (with --codec)")
@click.option("--time-budget", type=float, default=0.0, help="seconds: fit the schedule to end within about this time (0: --steps)")
@click.option("--family", type=click.Choice(["irn", "sr"]), default="irn", show_default=True,
              help="irn: IRN; sr: bicubic down + EDSR up (--blocks / --width are EDSR's: 16 / 64 for EDSR-baseline)")  # fmt: skip
@click.option("--export-dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="storage type of the exported SR weights (computed in float32)")  # fmt: skip
@handle_errors
def train(
    scale: str,
    data: str,
    val: str,
    out: str | None,
    blocks: int,
    width: int,
    patch: int,
    batch: int,
    steps: int,
    lr_: float,
    warmup: int,
    lambda_fit: float | None,
    z_train: float,
    seed: int,
    threads: int,
    ckpt_every: int,
    val_every: int,
    device: str,
    init: str,
    init_lr_scale: float,
    restore_blocks: int,
    restore_width: int,
    codec: str,
    codec_quality: str,
    codec_clean: float,
    val_quality: int,
    time_budget: float,
    family: str,
    export_dtype: str,
) -> None:
    """Train an IRN or the SR pair's EDSR with their original losses (or fine-tune an IRN with a codec in the loop);
    rerun to resume."""
    from hcd_pipeline.training.train import TrainConfig
    from hcd_pipeline.training.train import train as run_train

    q_min, q_max = parse_range(codec_quality, "--codec-quality")
    cfg = TrainConfig(
        scale=int(scale),
        data=data,
        val=val,
        out=out or f"runs/{'edsr' if family == 'sr' else 'irn'}-x{scale}",
        blocks=blocks,
        width=width,
        patch=patch,
        batch=batch,
        steps=steps,
        lr=lr_,
        warmup=warmup,
        lambda_fit=lambda_fit,
        z_train=z_train,
        seed=seed,
        threads=threads,
        ckpt_every=ckpt_every,
        val_every=val_every,
        device=device,
        init=init,
        init_lr_scale=init_lr_scale,
        restore_blocks=restore_blocks,
        restore_width=restore_width,
        codec=codec,
        codec_q_min=q_min,
        codec_q_max=q_max,
        codec_clean=codec_clean,
        val_quality=val_quality,
        time_budget_s=time_budget,
        family=family,
        export_dtype=export_dtype,
    )
    path = run_train(cfg, progress=not no_progress(), command="hcd " + " ".join(sys.argv[1:]))
    click.echo(f"wrote {path}")


@main.command(name="export")
@click.argument("checkpoint", type=click.Path(dir_okay=False, exists=True))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--command", "train_command", default="", help="the training command, recorded as provenance")
@click.option("--base", default=None, type=click.Path(dir_okay=False), help="write only what differs from this weights file")
@click.option("--force", is_flag=True, help="replace an existing weights file")
@handle_errors
def export_cmd(checkpoint: str, dst: str, train_command: str, force: bool, base: str | None) -> None:
    """Export a training checkpoint's (or a weights file's) weights to .safetensors (e.g. a run still in progress).

    With --base, only what differs from that weights file is written (it must sit beside DST when loaded)."""
    from hcd_pipeline.training.train import export_checkpoint

    refuse_overwrite(dst, force)
    step = export_checkpoint(checkpoint, dst, train_command, base=base)
    click.echo(f"{checkpoint} (step {step}) -> {dst}")


@main.command()
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="replace an existing weights file")
@handle_errors
def convert(src: str, dst: str, force: bool) -> None:
    """Convert an original checkpoint to .safetensors: IRN (IRN_x2.pth / IRN_x4.pth), EDSR (the original code's
    edsr_baseline_x2.pt, ...) or BasicSR's EDSR (EDSR_Mx2_*.pth); the family is read from the tensors."""
    from hcd_pipeline.models.convert import convert_weights

    refuse_overwrite(dst, force)
    click.echo(f"{src} -> {dst} ({convert_weights(src, dst)})")
