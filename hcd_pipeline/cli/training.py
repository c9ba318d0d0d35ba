"""Models: ``train``, ``export`` (a checkpoint to shipped weights), ``convert`` (an original checkpoint to ours)."""

from __future__ import annotations

import sys
from typing import Any

import click

from hcd_pipeline.cli.group import handle_errors, main, no_progress
from hcd_pipeline.cli.options import options_from, parse_range, refuse_overwrite
from hcd_pipeline.training.config import TrainConfig


@main.command()
@click.option("-o", "--output", "--out", "out", default=None, help="run folder (default runs/<family>-x<scale>)")
@click.option("--codec-quality", default="70-95", show_default=True, help="JPEG qualities drawn per crop, MIN-MAX")
@options_from(TrainConfig)
@handle_errors
def train(out: str | None, codec_quality: str, **settings: Any) -> None:
    """Train an IRN or the SR pair's EDSR with their original losses (or fine-tune an IRN with a codec in the loop);
    rerun to resume. Every flag but -o and --codec-quality is a TrainConfig field (its help is the field's)."""
    from hcd_pipeline.training.train import train as run_train

    q_min, q_max = parse_range(codec_quality, "--codec-quality")
    out = out or f"runs/{'edsr' if settings['family'] == 'sr' else 'irn'}-x{settings['scale']}"
    cfg = TrainConfig(out=out, codec_q_min=q_min, codec_q_max=q_max, **settings)
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
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="stored tensor type of an IRN file (the model computes in float32 either way)")  # fmt: skip
@click.option("--base", type=click.Path(dir_okay=False), default=None, help="IRN: write only what differs from this file")
@click.option("--force", is_flag=True, help="replace an existing weights file")
@handle_errors
def convert(src: str, dst: str, dtype: str, base: str | None, force: bool) -> None:
    """Convert an original checkpoint to .safetensors: IRN (IRN_x2.pth / IRN_x4.pth), EDSR (the original code's
    edsr_baseline_x2.pt, ...) or BasicSR's EDSR (EDSR_Mx2_*.pth); the family is read from the tensors. One of our
    IRN files is re-stored (--dtype float16: half the bytes) with its provenance kept."""
    from hcd_pipeline.models.convert import convert_weights

    refuse_overwrite(dst, force)
    click.echo(f"{src} -> {dst} ({convert_weights(src, dst, dtype=dtype, base=base)})")
