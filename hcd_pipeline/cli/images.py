"""Single-image commands: ``models``, ``downscale``, ``upscale``, ``roundtrip``, ``compare``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from hcd_pipeline.cli.group import handle_errors, main, no_progress
from hcd_pipeline.cli.options import downscaler, each_input, expand_inputs, model_options, refuse_overwrite, refuse_source, settings_options
from hcd_pipeline.core.errors import HcdError, SettingsError
from hcd_pipeline.core.metrics import psnr_gain, score_pair
from hcd_pipeline.io import jsonfile as jsonutil
from hcd_pipeline.io.images import atomic_write_bytes, encode_png, read_image
from hcd_pipeline.io.lr_formats import LR_EXTENSIONS
from hcd_pipeline.io.metadata import embed_metadata


@main.command()
@click.option("--all", "show_all", is_flag=True, help="also the tags of earlier releases that are not shipped")
def models(show_all: bool) -> None:
    """List the available models: the name to type, and the tag of the weights it loads."""
    from hcd_pipeline.models.registry import DEFAULT_TAGS, MODELS

    typed = {f"{name}.{tag}": name for name, tag in DEFAULT_TAGS.items()}  # the tag a bare name means
    shown = [spec for spec in MODELS.values() if spec.shipped or show_all]
    names = {spec.name: f"{typed[spec.name]} ({spec.name})" if spec.name in typed else spec.name for spec in shown}
    width = max(len(n) for n in names.values())
    for spec in shown:
        scale = f"x{spec.scale}" if spec.scale else "any"
        kept = "" if spec.shipped else f" [your file's sha256 starts {spec.sha256}]"
        click.echo(f"{names[spec.name]:{width}s} {scale:4s} {spec.description}{kept}")
    hidden = sum(not spec.shipped for spec in MODELS.values())
    if hidden and not show_all:
        click.echo(f"({hidden} tags of earlier releases are not shipped; LRs made with them need the file you kept: hcd models --all)")


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="output folder")
@settings_options
@click.option("--force", is_flag=True, help="overwrite existing outputs")
@handle_errors
def downscale(inputs: tuple[str, ...], out_dir: str, force: bool, **opts: Any) -> None:
    """Downscale images to optimised 8-bit LR files (PNG, or JPEG / WebP), each with a JSON sidecar."""
    ds = downscaler(**opts)
    method = opts["method"]
    out = Path(out_dir)
    claimed: dict[Path, Path] = {}  # output name -> the input that took it in this command
    pairs = expand_inputs(inputs, out)
    sources = {p.resolve() for p, _ in pairs}

    def one(src: Path, sub: Path) -> None:
        dest = out / sub / (src.stem + LR_EXTENSIONS[opts["lr_format"]])
        side = dest.with_suffix(".json")
        refuse_source(dest, sources)
        refuse_source(side, sources)
        if dest in claimed:  # x.png and x.jpg: --force must not let the second replace the first
            raise FileExistsError(f"{src}: its output {dest} is {claimed[dest]}'s in this command; downscale it separately")
        claimed[dest] = src
        refuse_overwrite(dest, force)
        refuse_overwrite(side, force)
        img = read_image(src)
        steps = ds.hcd.hr_steps + ds.hcd.lr_steps if method != "plain" else 0
        with tqdm(total=steps, desc=src.name, leave=False, disable=no_progress() or steps == 0) as bar:
            res = ds.process(img, progress=lambda: bar.update(1))
        # The sidecar is written last: an LR with a sidecar is complete.
        atomic_write_bytes(dest, res.data)
        atomic_write_bytes(side, (jsonutil.dumps(res.sidecar, indent=1) + "\n").encode())
        gain = ""
        if res.plain and res.optimised:
            gain = f" plain {res.plain.psnr_y:.2f} dB -> {res.optimised.psnr_y:.2f} dB (Y)"
        click.echo(f"{src} -> {dest}{gain}")

    each_input(pairs, one, (HcdError, FileExistsError, OSError))


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False))
@model_options
@click.option("--seed", type=int, default=None, help="z seed (default: the sidecar's)")
@click.option("--decode", type=click.Choice(["draw", "zero"]), default=None, help="z policy (default: the sidecar's)")
@click.option("--bit-depth", type=click.Choice(["8", "16"]), default="8", show_default=True)
@click.option("--force", is_flag=True, help="overwrite existing outputs")
@handle_errors
def upscale(
    inputs: tuple[str, ...],
    out_dir: str,
    model: str | None,
    scale: int | None,
    weights: str | None,
    device: str,
    seed: int | None,
    decode: str | None,
    bit_depth: str,
    force: bool,
) -> None:
    """Upscale LR PNGs with the model, seed and z policy named in their sidecars."""
    from hcd_pipeline.downscaler import upscale_stored

    out = Path(out_dir)
    pairs = expand_inputs(inputs, out)
    sources = {p.resolve() for p, _ in pairs}

    def one(src: Path, sub: Path) -> None:
        side_path = src.with_suffix(".json")
        try:
            side: dict[str, Any] = json.loads(side_path.read_text()) if side_path.exists() else {}
        except ValueError as exc:
            raise SettingsError(f"{side_path}: not a JSON sidecar ({exc})") from exc
        lr_image = read_image(src)
        rec, alpha = upscale_stored(lr_image, side, model=model, scale=scale, weights=weights, device=device, seed=seed, decode=decode)
        dest = out / sub / (src.stem + ".png")
        refuse_source(dest, sources)
        refuse_overwrite(dest, force)
        # The LR's ICC profile and EXIF (what its policy kept of the source's) go on to the upscaled image.
        size = (int(rec.shape[-1]), int(rec.shape[-2]))
        data, _ = embed_metadata(encode_png(rec, alpha, bit_depth=int(bit_depth)), "png", lr_image.metadata, "all", size)
        atomic_write_bytes(dest, data)
        click.echo(f"{src} -> {dest}")

    each_input(pairs, one, (HcdError, FileExistsError, OSError, ValueError, KeyError))


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@settings_options
@click.option("-o", "--output", "--json", "json_out", type=click.Path(dir_okay=False), help="also write the numbers as JSON to this file")
@handle_errors
def roundtrip(inputs: tuple[str, ...], json_out: str | None, **opts: Any) -> None:
    """Print per image PSNR/SSIM (Y and RGB) of plain downscaling vs the chosen method, and time."""
    ds = downscaler(**opts)
    method = opts["method"]
    rows = []
    click.echo(f"{'image':24s} {'plain Y':>9s} {method + ' Y':>9s} {'gain':>7s} {'SSIM Y':>7s} {'RGB':>7s} {'sec':>6s}")
    for src in inputs:
        res = ds.process(read_image(src))
        if res.plain is None or res.optimised is None:
            raise HcdError(f"{src}: too small to score")
        row = {"image": src, "plain": res.plain.__dict__, "optimised": res.optimised.__dict__, "seconds": res.sidecar["seconds"]}
        rows.append(row)
        gain = psnr_gain(res.optimised.psnr_y, res.plain.psnr_y)
        click.echo(
            f"{Path(src).name:24s} {res.plain.psnr_y:9.4f} {res.optimised.psnr_y:9.4f} {gain:+7.3f} "
            f"{res.optimised.ssim_y:7.4f} {res.optimised.psnr_rgb:7.3f} {float(res.sidecar['seconds']):6.2f}"  # type: ignore[arg-type]
        )
    if json_out:
        atomic_write_bytes(json_out, (jsonutil.dumps({"settings": ds.describe(), "images": rows}, indent=1) + "\n").encode())


@main.command()
@click.argument("hr", type=click.Path(dir_okay=False))
@click.argument("sr", type=click.Path(dir_okay=False))
@click.option("--crop", type=int, default=0, show_default=True, help="border pixels to ignore")
@handle_errors
def compare(hr: str, sr: str, crop: int) -> None:
    """PSNR / SSIM (Y and RGB) of an image against a reference."""
    a, b = read_image(hr).pixels, read_image(sr).pixels
    if a.shape != b.shape:
        raise HcdError(f"{sr}: size {tuple(b.shape)} differs from {hr} {tuple(a.shape)}")
    sc = score_pair(a, b, crop)
    click.echo(json.dumps(sc.__dict__))
