"""The ``hcd`` command line.

Every command prints a one-line ``error: <file>: <reason>`` and exits with status 1 on bad input
(status 2 for usage errors) and writes outputs atomically. Overwriting: commands that write into a folder of
per-image outputs (``downscale``, ``upscale``) and commands that write weights (``export``, ``convert``) refuse to
replace an existing file without ``--force``; commands whose output is a result they regenerate (``eval -o``,
``roundtrip -o``, ``report``, ``bench``) replace it (README, "Commands"). Nothing is written where no ``-o`` points,
but for ``report`` (into the run output it reads, when that is one local folder).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from hcd_pipeline.core.errors import HcdError, SettingsError
from hcd_pipeline.core.metrics import psnr_gain, score_pair
from hcd_pipeline.downscaler import MEMORY_CHOICES
from hcd_pipeline.hcd.settings import DEFAULT_PRESET, METHODS, PRESETS
from hcd_pipeline.io import jsonfile as jsonutil
from hcd_pipeline.io.images import atomic_write_bytes, encode_png, list_images, read_image
from hcd_pipeline.io.lr_formats import DEFAULT_QUALITY, LR_EXTENSIONS, LR_FORMATS
from hcd_pipeline.io.metadata import METADATA_POLICIES, embed_metadata
from hcd_pipeline.jpeg.simulate import SIMULATED_CODECS

__all__ = ["main"]


def _verbosity() -> int:
    """-1 with ``hcd --quiet``, 1 with ``hcd --verbose``, else 0."""
    ctx = click.get_current_context(silent=True)
    params = ctx.find_root().params if ctx else {}
    return -1 if params.get("quiet") else (1 if params.get("verbose") else 0)


def _quiet() -> bool:
    # Progress bars only on a terminal: CI logs stay readable.
    return _verbosity() < 0 or not sys.stderr.isatty()


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (HcdError, FileNotFoundError, FileExistsError, PermissionError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except Exception as exc:  # what we did not foresee: one line; the traceback with --verbose
            if _verbosity() > 0:
                raise
            if isinstance(exc, ConnectionError):  # a Ray cluster or an object store that does not answer
                click.echo(f"error: {exc} (is it up? the address comes from --address or RAY_ADDRESS)", err=True)
            else:
                click.echo(f"error: {type(exc).__name__}: {exc} (hcd --verbose ... shows where)", err=True)
            sys.exit(1)

    return inner


@click.group()
@click.version_option(package_name="hcd_pipeline")
@click.option("--quiet", "-q", is_flag=True, help="no progress display, only results and errors")
@click.option("--verbose", "-v", is_flag=True, help="also Ray's own logs and warnings")
def main(quiet: bool, verbose: bool) -> None:
    """hcd: Hierarchical Collaborative Downscaling, from one image to a Ray cluster."""
    if not verbose:
        # Ray's core workers warn about their own internals (actor arguments in the object store) on stderr.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")


def _start_ray_quietly(settings: Any) -> None:
    """Start Ray with the process's stderr set aside: its C++ start-up lines are not for users. Shown on failure."""
    import tempfile

    from hcd_pipeline.pipeline.runner import init_ray

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as cap:
        os.dup2(cap.fileno(), 2)
        try:
            init_ray(settings)
        except BaseException:
            os.dup2(saved, 2)
            cap.seek(0)
            sys.stderr.write(cap.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _stop_on_sigterm() -> None:
    """SIGTERM (how schedulers and ``kill`` stop a job) stops a run as Ctrl-C does. Installed after Ray starts: Ray's
    core otherwise answers it with a stack dump and rc 134."""
    import signal

    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)


def _quiet_exit(code: int) -> None:
    """Stop Ray without its shutdown chatter, then exit with ``code``; finished work is on storage already."""
    import ray

    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        ray.shutdown()
    finally:
        os._exit(code)  # noqa: SLF001 - no atexit hooks: Ray's would print again


def _quiet_ray_data() -> None:
    """Ray Data's console handler silenced but for critical errors (its log file under the Ray session keeps everything).

    Ray Data announces every execution at INFO, warns about its own switches (the progress bars that ours replace)
    and prints the stack of a failed operator at ERROR before raising it; our progress, summary, failed rows and the
    one ``error:`` line of a failed run say what matters. ``hcd --verbose`` keeps them all.
    """
    import ray.data  # noqa: F401 - importing it installs the handlers

    for h in logging.getLogger("ray.data").handlers:
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            h.setLevel(logging.CRITICAL)


def _expand_inputs(inputs: tuple[str, ...], out: Path) -> list[tuple[Path, Path]]:
    """Files and folders named on the command line -> ``(file, output subfolder)`` pairs: a folder's images
    (recursive, sorted) keep their subfolders under the output, and the output's own files are skipped when it
    lies inside the folder (a rerun does not process its own results). Raises when that leaves nothing."""
    pairs: list[tuple[Path, Path]] = []
    out_abs = out.resolve()
    for item in map(Path, inputs):
        if not item.is_dir():
            pairs.append((item, Path(".")))
            continue
        pairs += [(p, p.parent.relative_to(item)) for p in list_images(item) if out_abs not in p.resolve().parents]
    if not pairs:
        raise HcdError(f"{', '.join(inputs)}: no image files in this directory (outside the output folder {out})")
    return pairs


def _refuse_source(dest: Path, sources: set[Path]) -> None:
    """Never write over an input of the same command (``-o`` naming the photos' own folder, with or without --force)."""
    if dest.resolve() in sources:
        raise FileExistsError(f"{dest}: is an input of this command; choose another output folder")


def _refuse_overwrite(path: str | Path, force: bool) -> None:
    if Path(path).exists() and not force:
        raise FileExistsError(f"{path}: exists (use --force to overwrite)")


_DEVICE = click.option(
    "--device", default="auto", show_default=True, help="torch device: cpu, cuda, cuda:1, or auto (CUDA when this process sees one)"
)


EXTRAS = {"pipeline": ("ray", "pyarrow", "fsspec", "yaml"), "s3": ("s3fs",), "report": ("pyarrow", "fsspec")}
"""What each optional part of the install brings (pyproject.toml's extras): the core (downscale, upscale, eval,
models on local files) needs none of them."""


def _need(extra: str) -> None:
    """One line naming the extra to install when a command's optional packages are missing."""
    import importlib.util

    def absent(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is None
        except (ImportError, ValueError):  # a broken or blocked installation counts as missing
            return True

    missing = [m for m in EXTRAS[extra] if absent(m)]
    if missing:
        raise HcdError(f"this command needs {', '.join(missing)}: pip install 'hcd_pipeline[{extra}]' (or [all])")


def _cores() -> int:
    """CPU cores this process may run on (its affinity, as containers and job schedulers set it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _parse_threads(_ctx: Any, _param: Any, value: str | int | None) -> int | None:
    """``--threads N`` or ``auto`` (this process's cores)."""
    if value is None:
        return None
    if str(value) == "auto":
        return _cores()
    try:
        n = int(value)
    except ValueError as exc:
        raise click.BadParameter(f"expected a whole number or auto, got {value!r}") from exc
    if n < 1:
        raise click.BadParameter(f"expected >= 1, got {n}")
    return n


def _model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = _DEVICE(fn)
    fn = click.option("--weights", type=click.Path(dir_okay=False), help=WEIGHTS_HELP)(fn)
    fn = click.option("--scale", type=int, help="scale factor; needed for scale-free models (bicubic)")(fn)
    fn = click.option("--model", default=None, help="model name (hcd models); default irn-x2 / irn-x4 by --scale, irn-x2 if neither")(fn)
    return fn


@main.command()
def models() -> None:
    """List the available models."""
    from hcd_pipeline.models.registry import MODELS

    width = max(len(name) for name in MODELS)
    for spec in MODELS.values():
        scale = f"x{spec.scale}" if spec.scale else "any"
        click.echo(f"{spec.name:{width}s} {scale:4s} {spec.description}")


def _downscaler(**opts: Any) -> Any:
    """The Downscaler for the shared options of downscale / roundtrip (``_model_options``, ``_settings_options``)."""
    from hcd_pipeline.downscaler import Downscaler, DownscaleSettings

    settings = DownscaleSettings(**opts)
    _hint_codec_model(settings)
    if settings.device == "auto" and _verbosity() >= 0:
        import torch

        if torch.cuda.is_available():  # say so: the bytes differ from a CPU run's (the sidecar records the device)
            click.echo(f"[hcd] computing on {torch.cuda.get_device_name(0)} (--device auto; --device cpu for the CPU)", err=True)
    return Downscaler(settings)


def _hint_codec_model(settings: Any) -> None:
    """Say on stderr when a shipped codec model suits the stored format better (``codec_model_hint``); ``settings``:
    a DownscaleSettings or PipelineSettings (both name model, weights, scale and lr_format). A weights file is the
    user's own model: no advice."""
    from hcd_pipeline.models.registry import codec_model_hint

    hint = None if settings.weights else codec_model_hint(settings.model, settings.scale, settings.lr_format)
    if hint and _verbosity() >= 0:  # also in logs, unlike progress bars: it is advice, once per command
        click.echo(hint, err=True)


def _settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--memory",
        type=click.Choice(MEMORY_CHOICES),
        default="auto",
        show_default=True,
        help="gradients through IRN: fast keeps every activation; low recomputes them block by block; lowest also"
        " rebuilds block inputs from outputs; auto: low above 0.26 MP",
    )(fn)
    fn = click.option(
        "--tile", type=click.IntRange(min=0), default=None, help="LR tile side for tiled HCD; 0: whole image [default: tiles above 4 MP]"
    )(fn)
    fn = click.option("--threads", default="1", show_default=True, callback=_parse_threads,
                      help="torch threads, or auto (this machine's cores: faster; the output bits depend on the count)")(fn)  # fmt: skip
    fn = click.option("--lr-format", type=click.Choice(LR_FORMATS), default="png", show_default=True,
                      help="stored LR file; jpeg / webp are judged as decoded (never worse than plain at that format)")(fn)  # fmt: skip
    fn = click.option("--lr-quality", type=click.IntRange(1, 100), default=DEFAULT_QUALITY, show_default=True,
                      help="JPEG / WebP quality")(fn)  # fmt: skip
    fn = click.option("--metadata", type=click.Choice(METADATA_POLICIES), default="keep", show_default=True,
                      help="the source's ICC profile and EXIF in the LR file: keep (GPS dropped), all, none")(fn)  # fmt: skip
    fn = click.option("--seed", type=int, default=0, show_default=True, help="seed for z and random starts")(fn)
    fn = click.option("--preset", type=click.Choice(sorted(PRESETS)), default=DEFAULT_PRESET, show_default=True)(fn)
    fn = click.option("--method", type=click.Choice(METHODS), default="hcd", show_default=True)(fn)
    fn = click.option("--set", "overrides", multiple=True, callback=_parse_overrides, metavar="KEY=VALUE", help=_SET_HELP)(fn)
    return fn


WEIGHTS_HELP = "weights file: ours (.safetensors) or an original IRN, EDSR or BasicSR-EDSR checkpoint"
_SET_HELP = "override one HCD setting of the preset (repeatable), e.g. --set judge=rgb --set lr_steps=10"


def _parse_overrides(_ctx: Any, _param: Any, values: tuple[str, ...]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs -> a dict; values are read as JSON (numbers, true/false) or else kept as text."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="output folder")
@_model_options
@_settings_options
@click.option("--force", is_flag=True, help="overwrite existing outputs")
@_handle_errors
def downscale(inputs: tuple[str, ...], out_dir: str, force: bool, **opts: Any) -> None:
    """Downscale images to optimised 8-bit LR files (PNG, or JPEG / WebP), each with a JSON sidecar."""
    ds = _downscaler(**opts)
    method = opts["method"]
    out = Path(out_dir)
    failures = []
    claimed: dict[Path, Path] = {}  # output name -> the input that took it in this command
    pairs = _expand_inputs(inputs, out)
    sources = {p.resolve() for p, _ in pairs}
    for src, sub in tqdm(pairs, desc="images", disable=_quiet() or len(pairs) < 2):
        dest = out / sub / (src.stem + LR_EXTENSIONS[opts["lr_format"]])
        side = dest.with_suffix(".json")
        try:
            _refuse_source(dest, sources)
            _refuse_source(side, sources)
            if dest in claimed:  # x.png and x.jpg: --force must not let the second replace the first
                raise FileExistsError(f"{src}: its output {dest} is {claimed[dest]}'s in this command; downscale it separately")
            claimed[dest] = src
            _refuse_overwrite(dest, force)
            _refuse_overwrite(side, force)
            img = read_image(src)
            steps = ds.hcd.hr_steps + ds.hcd.lr_steps if method != "plain" else 0
            with tqdm(total=steps, desc=src.name, leave=False, disable=_quiet() or steps == 0) as bar:
                res = ds.process(img, progress=lambda: bar.update(1))
            # The sidecar is written last: an LR with a sidecar is complete.
            atomic_write_bytes(dest, res.data)
            atomic_write_bytes(side, (jsonutil.dumps(res.sidecar, indent=1) + "\n").encode())
            gain = ""
            if res.plain and res.optimised:
                gain = f" plain {res.plain.psnr_y:.2f} dB -> {res.optimised.psnr_y:.2f} dB (Y)"
            click.echo(f"{src} -> {dest}{gain}")
        except (HcdError, FileExistsError, OSError) as exc:
            failures.append(str(exc))
            click.echo(f"error: {exc}", err=True)
    if failures:
        click.echo(f"{len(failures)} of {len(pairs)} failed", err=True)
        sys.exit(1)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False))
@_model_options
@click.option("--seed", type=int, default=None, help="z seed (default: the sidecar's)")
@click.option("--decode", type=click.Choice(["draw", "zero"]), default=None, help="z policy (default: the sidecar's)")
@click.option("--bit-depth", type=click.Choice(["8", "16"]), default="8", show_default=True)
@click.option("--force", is_flag=True, help="overwrite existing outputs")
@_handle_errors
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
    failures = []
    pairs = _expand_inputs(inputs, out)
    sources = {p.resolve() for p, _ in pairs}
    for src, sub in tqdm(pairs, desc="images", disable=_quiet() or len(pairs) < 2):
        try:
            side_path = src.with_suffix(".json")
            try:
                side: dict[str, Any] = json.loads(side_path.read_text()) if side_path.exists() else {}
            except ValueError as exc:
                raise SettingsError(f"{side_path}: not a JSON sidecar ({exc})") from exc
            lr_image = read_image(src)
            rec, alpha = upscale_stored(lr_image, side, model=model, scale=scale, weights=weights, device=device, seed=seed, decode=decode)
            dest = out / sub / (src.stem + ".png")
            _refuse_source(dest, sources)
            _refuse_overwrite(dest, force)
            # The LR's ICC profile and EXIF (what its policy kept of the source's) go on to the upscaled image.
            size = (int(rec.shape[-1]), int(rec.shape[-2]))
            data, _ = embed_metadata(encode_png(rec, alpha, bit_depth=int(bit_depth)), "png", lr_image.metadata, "all", size)
            atomic_write_bytes(dest, data)
            click.echo(f"{src} -> {dest}")
        except (HcdError, FileExistsError, OSError, ValueError, KeyError) as exc:
            failures.append(str(exc))
            click.echo(f"error: {exc}", err=True)
    if failures:
        click.echo(f"{len(failures)} of {len(pairs)} failed", err=True)
        sys.exit(1)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@_model_options
@_settings_options
@click.option("-o", "--output", "--json", "json_out", type=click.Path(dir_okay=False), help="also write the numbers as JSON to this file")
@_handle_errors
def roundtrip(inputs: tuple[str, ...], json_out: str | None, **opts: Any) -> None:
    """Print per image PSNR/SSIM (Y and RGB) of plain downscaling vs the chosen method, and time."""
    ds = _downscaler(**opts)
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


def _eval_row(r: dict[str, Any]) -> str:
    cells = f"{r['psnr_y']:8.3f} {r['ssim_y']:7.4f} {r['psnr_rgb']:8.3f} {r['ssim_rgb']:7.4f}"
    return f"{r['image']:18s} {cells} {r['gain_y']:+7.3f} {r['seconds']:6.2f}"


@main.command(name="eval")
@_model_options
@click.option("--data", default="Set5", show_default=True, help="set name (Set5, Set14, B100, Urban100) or folder")
@click.option("--method", type=click.Choice(["plain", "lr", "hr", "hcd", "official", "all"]), default="plain", show_default=True)
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=DEFAULT_PRESET, show_default=True)
@click.option("--draws", type=int, default=1, show_default=True, help="z draws (seeds 0..N-1), scores averaged")
@click.option("--decode", type=click.Choice(["draw", "zero"]), default=None, help="decoder z policy (default: the preset's)")
@click.option("--limit", type=int, default=None, help="only the first N images")
@click.option(
    "-o",
    "--output",
    "--json",
    "json_out",
    type=click.Path(dir_okay=False),
    default=None,
    help="also write the numbers as JSON to this file (default: print only)",
)
@_handle_errors
def eval_cmd(
    model: str | None,
    scale: int | None,
    weights: str | None,
    device: str,
    data: str,
    method: str,
    preset: str,
    draws: int,
    decode: str | None,
    limit: int | None,
    json_out: str | None,
) -> None:
    """Evaluate a model and method on a set with the standard protocol (Y-PSNR / SSIM, border crop)."""
    from hcd_pipeline.evaluation.evaluate import EVAL_METHODS, EvalSettings, evaluate

    methods = EVAL_METHODS if method == "all" else (method,)
    results = {}
    for m in methods:
        cfg = EvalSettings(
            model=model,
            scale=scale,
            data=data,
            method=m,
            preset=preset,
            draws=draws,
            decode=decode,
            weights=weights,
            limit=limit,
            device=device,
        )
        res = evaluate(cfg)
        results[m] = res
        st = res["settings"]
        click.echo(
            f"# {st['model']} x{st['scale']} on {data}, method {m}"
            + (f" (preset {preset})" if m not in ("plain", "official") else "")
            + f", {draws} draw(s)"
        )  # type: ignore[index]
        click.echo(f"{'image':18s} {'PSNR-Y':>8s} {'SSIM-Y':>7s} {'PSNR':>8s} {'SSIM':>7s} {'gain':>7s} {'sec':>6s}")
        for r in [*res["images"], {"image": "mean", **res["mean"]}]:  # type: ignore[dict-item]
            click.echo(_eval_row(r))
    if json_out:  # never into the current folder unasked
        atomic_write_bytes(json_out, (jsonutil.dumps(results if method == "all" else results[method], indent=1) + "\n").encode())
        click.echo(f"wrote {json_out}")


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
@_handle_errors
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

    q_min, q_max = _parse_range(codec_quality, "--codec-quality")
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
    path = run_train(cfg, progress=not _quiet(), command="hcd " + " ".join(sys.argv[1:]))
    click.echo(f"wrote {path}")


def _parse_range(text: str, flag: str) -> tuple[int, int]:
    """``"70-95"`` -> (70, 95); ``"90"`` -> (90, 90)."""
    lo, _, hi = text.partition("-")
    try:
        return int(lo), int(hi or lo)
    except ValueError:
        raise click.BadParameter(f"expected MIN-MAX integers (e.g. 70-95), got {text!r}", param_hint=flag) from None


def _run_header(settings: Any) -> str:
    """One line before Ray starts: what runs, where, on what (the model resolved, as the fingerprint records it)."""
    from hcd_pipeline.pipeline.settings import canonical_model

    model, scale = canonical_model(settings.model, settings.scale, settings.weights)
    what = f"weights {settings.weights}" if settings.weights else f"model {model}"
    pool = f"{settings.min_actors}" if settings.min_actors == settings.max_actors else f"{settings.min_actors}-{settings.max_actors}"
    where = settings.address or os.environ.get("RAY_ADDRESS") or "a local Ray"
    gpus = f", {settings.num_gpus:g} GPU each" if settings.num_gpus else ""
    method = settings.method if settings.method == "plain" else f"{settings.method} (preset {settings.preset})"
    return (f"[hcd] {settings.input} -> {settings.output}: {what}" + (f" x{scale}" if scale else "") + f", {method}, "
            f"{settings.lr_format} LRs; {pool} model actor(s) x {settings.threads} thread(s){gpus} on {where}; starting ...")  # fmt: skip


def _print_summary(summary: Any, output: str) -> None:
    click.echo(
        f"run {summary.run_id}: {summary.items} items, {summary.done} done, {summary.failed} failed, "
        f"{summary.skipped} skipped (complete before), {summary.seconds:.1f} s, {summary.images_per_second:.3f} img/s"
    )
    if summary.recovered:
        click.echo(f"  {summary.recovered} images of an interrupted run kept (rows rebuilt from their sidecars)")
    for part in summary.set_aside:
        click.echo(f"  set aside an unreadable metric part: {part} (its images were recovered from their sidecars or redone)", err=True)
    t = summary.table
    if t.get("scored"):
        n = t["scored"]
        mean = {k: t[f"sum_{k}"] / n for k in ("plain_psnr_y", "psnr_y", "gain_y", "ssim_y", "seconds")}
        click.echo(
            f"table {output}/metrics.parquet: {t['ok']} ok of {t['rows']} images; mean Y-PSNR plain {mean['plain_psnr_y']:.3f} dB "
            f"-> {mean['psnr_y']:.3f} dB (gain {mean['gain_y']:+.3f} dB), SSIM-Y {mean['ssim_y']:.4f}, {mean['seconds']:.2f} s/image"
        )
    elif t:
        click.echo(f"table {output}/metrics.parquet: {t['ok']} ok of {t['rows']} images")
    for reason, count in sorted(summary.failed_by_reason.items()):
        click.echo(f"  failed ({reason}): {count}", err=True)
    for f in summary.failures[:20]:
        click.echo(f"  {f['key']}: {f['error']}", err=True)


def _pipeline_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One ``--flag`` per :class:`PipelineSettings` field marked ``cli`` (type, choices and help from the field)."""
    from dataclasses import MISSING

    from hcd_pipeline.pipeline.settings import field_types, setting_fields

    for name, f in reversed(setting_fields().items()):
        if not f.metadata["cli"]:
            continue
        types = field_types(name)
        flag = "--" + name.replace("_", "-")
        # default=None so that a job spec's value stands unless the flag is given; the field's default is shown.
        shown = f.metadata["help"] + (f" [default: {f.default}]" if f.default not in (None, MISSING) else "")
        if bool in types:
            fn = click.option(flag, is_flag=True, default=None, help=shown)(fn)
            continue
        kind: Any = click.Choice(f.metadata["choices"]) if f.metadata["choices"] else (float if float in types else types[0])
        fn = click.option(flag, type=kind, default=None, help=shown)(fn)
    return fn


@main.command()
@click.option("--job", "job_file", type=click.Path(dir_okay=False), help="job spec (YAML/TOML); flags below override it")
@click.option("-i", "--input", "input_uri", help="folder, s3://bucket/prefix/, glob, list file (.txt) or .tar shard")
@click.option("-o", "--output", "output_uri", help="output folder or s3:// prefix")
@click.option(
    "--actors", type=str, default=None, help="actor pool size N, MIN-MAX to autoscale, or auto (a core each, local runs) [default: 1]"
)
@click.option("--set", "overrides", multiple=True, callback=_parse_overrides, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint (MinIO, Ceph, ...)")
@click.option("--anon", is_flag=True, default=None, help="anonymous object-storage access")
@_pipeline_options
@_handle_errors
def run(job_file: str | None, input_uri: str | None, output_uri: str | None, **flags: Any) -> None:
    """Run the pipeline: images from a folder or object storage -> optimised LR + Parquet metrics."""
    from dataclasses import replace

    _need("pipeline")
    from hcd_pipeline.io.storage import StorageOptions
    from hcd_pipeline.pipeline import PipelineSettings, run_pipeline
    from hcd_pipeline.pipeline.jobs import load_job
    from hcd_pipeline.pipeline.runner import preflight
    from hcd_pipeline.pipeline.settings import parse_actors, setting_fields

    base = load_job(job_file).settings if job_file else None
    if base is None:
        if not input_uri or not output_uri:
            raise HcdError("give --input and --output, or --job FILE")
        # GPUs per actor come from the flag or the job spec, never from this machine: it may be a laptop or a CPU head.
        base = PipelineSettings(input=input_uri, output=output_uri)
    upd: dict[str, Any] = {}
    if input_uri:
        upd["input"] = input_uri
    if output_uri:
        upd["output"] = output_uri
    if flags.get("overrides"):
        upd["overrides"] = {**base.overrides, **flags["overrides"]}
    known = setting_fields()
    upd.update({k: v for k, v in flags.items() if k in known and known[k].metadata["cli"] and v is not None})
    if flags.get("actors") == "auto":  # one single-threaded actor per core of this machine, for a local Ray only
        if base.address or os.environ.get("RAY_ADDRESS"):
            raise HcdError("--actors auto sizes a local run by this machine's cores; on a cluster give N or MIN-MAX")
        threads = flags.get("threads") or base.threads
        upd["min_actors"] = upd["max_actors"] = max(1, _cores() // threads)
    elif flags.get("actors"):
        upd["min_actors"], upd["max_actors"] = parse_actors(str(flags["actors"]))
    if flags.get("endpoint_url") or flags.get("anon"):
        upd["storage"] = StorageOptions(endpoint_url=flags.get("endpoint_url") or base.storage.endpoint_url, anon=bool(flags.get("anon")))
    try:
        settings = replace(base, **upd)
    except (TypeError, ValueError) as exc:
        raise HcdError(str(exc)) from exc
    _hint_codec_model(settings)
    preflight(settings)  # before Ray starts: a bad input or output is one line at once
    if _verbosity() >= 0:  # something on screen at once: Ray and the stages' workers take seconds to start
        click.echo(_run_header(settings), err=True)
    if _verbosity() <= 0:
        _quiet_ray_data()
        _start_ray_quietly(settings)
    # A bar in a terminal; in logs (submitted jobs) a line every progress_interval seconds.
    _stop_on_sigterm()
    try:
        summary = run_pipeline(settings, progress=_verbosity() >= 0, verbose=_verbosity() > 0, preflighted=True)
    except KeyboardInterrupt as exc:
        name = str(exc) if str(exc).startswith("SIG") else "SIGINT"
        click.echo(f"\nstopped by {name}: finished images are kept in {settings.output}; the same command resumes", err=True)
        _quiet_exit(143 if name == "SIGTERM" else 130)
    _print_summary(summary, settings.output)
    if summary.failed:
        sys.exit(1)


_ADDRESS = click.option("--address", default=None, help="Ray dashboard address (default $RAY_ADDRESS or http://127.0.0.1:8265)")


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@_ADDRESS
@click.option("--wait", is_flag=True, help="wait for the job to finish and exit non-zero if it failed")
@_handle_errors
def submit(spec: str, address: str | None, wait: bool) -> None:
    """Submit a job spec to a Ray cluster (Job Submission API); prints the job id."""
    import time

    _need("pipeline")
    from hcd_pipeline.pipeline.submit import job_logs, job_status, submit_job

    job_id = submit_job(spec, address)
    click.echo(job_id)
    if wait:
        while (state := job_status(job_id, address)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
            time.sleep(2)
        click.echo(state, err=True)
        if state != "SUCCEEDED":
            click.echo(job_logs(job_id, address)[-4000:], err=True)
            sys.exit(1)


@main.command()
@click.argument("job_id")
@_ADDRESS
@_handle_errors
def status(job_id: str, address: str | None) -> None:
    """Status of a submitted job (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
    _need("pipeline")
    from hcd_pipeline.pipeline.submit import job_status

    click.echo(job_status(job_id, address))


@main.command()
@click.argument("job_id")
@_ADDRESS
@_handle_errors
def logs(job_id: str, address: str | None) -> None:
    """Logs of a submitted job."""
    _need("pipeline")
    from hcd_pipeline.pipeline.submit import job_logs

    click.echo(job_logs(job_id, address), nl=False)


@main.command()
@click.argument("uris", nargs=-1, required=True)
@click.option("--worst", type=int, default=10, show_default=True, help="how many worst / best images to list")
@click.option(
    "-o",
    "--output",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="folder for report.json and report.html [default: the run output, when it is one local folder]",
)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="JSON path [default: beside the HTML]")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), default=None, help="HTML path [default: OUTPUT/report.html]")
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint")
@click.option("--anon", is_flag=True, help="anonymous object-storage access")
@_handle_errors
def report(
    uris: tuple[str, ...], worst: int, out_dir: str | None, json_out: str | None, html_out: str | None, endpoint_url: str | None, anon: bool
) -> None:
    """Quality report over the Parquet tables of one or more run outputs (local or s3://)."""
    _need("report")
    from hcd_pipeline.io.storage import StorageOptions
    from hcd_pipeline.report.build import build_report, format_text, load_tables, render_html, run_info

    # Every file goes where the user pointed: --output for both, else the JSON beside the HTML; unasked, into the run
    # output when it is one local folder, never into the current folder.
    if not (out_dir or html_out):
        if len(uris) != 1 or "://" in uris[0]:
            raise HcdError("say where the report goes: -o DIR (or --html FILE); the default is the run output, for one local folder only")
        out_dir = uris[0]
    html_out = html_out or str(Path(out_dir or ".") / "report.html")
    json_out = json_out or str(Path(html_out).with_suffix(".json"))

    opts = StorageOptions(endpoint_url=endpoint_url, anon=anon)
    rep = {"runs": run_info(list(uris), opts), **build_report(load_tables(list(uris), opts), worst=worst)}
    click.echo(format_text(rep))
    atomic_write_bytes(json_out, (jsonutil.dumps({k: v for k, v in rep.items() if k != "points"}, indent=1) + "\n").encode())
    atomic_write_bytes(html_out, render_html(rep, opts).encode())
    click.echo(f"wrote {json_out} and {html_out}")


@main.command()
@click.option("--sets", default="Set5", show_default=True, help="comma-separated set names or folders")
@click.option("--scales", default="2,4", show_default=True)
@click.option("--methods", default="bicubic,plain,lr,hr,hcd,official", show_default=True)
@click.option("--draws", type=int, default=1, show_default=True)
@click.option("--limit", type=int, default=None, help="only the first N images of each set")
@click.option("-o", "--output", "--out", "out", default="docs", show_default=True, type=click.Path(file_okay=False))
@click.option("--render-only", is_flag=True, help="rewrite results.md from results.json and eval/*.json without running anything")
@_DEVICE
@_handle_errors
def bench(sets: str, scales: str, methods: str, draws: int, limit: int | None, out: str, render_only: bool, device: str) -> None:
    """Compare methods over sets and scales; writes results.md/json, PNG plots and comparison.html."""
    from hcd_pipeline.evaluation.bench import BENCH_METHODS, render_results, run_bench

    if render_only:
        if not (Path(out) / "results.json").exists():
            raise HcdError(f"{Path(out) / 'results.json'}: not found; run hcd bench without --render-only first")
        render_results(Path(out))
        click.echo(f"wrote {out}/results.md")
        return

    ms = [m.strip() for m in methods.split(",") if m.strip()]
    bad = [m for m in ms if m not in BENCH_METHODS]
    if bad:
        raise HcdError(f"--methods: unknown {bad}; choose from {BENCH_METHODS}")
    run_bench([s.strip() for s in sets.split(",")], [int(s) for s in scales.split(",")], ms, draws, Path(out), limit=limit,
              command="hcd bench " + " ".join(sys.argv[2:]), device=device)  # fmt: skip
    click.echo(f"wrote {out}/results.md, results.json, comparison.html and plots")


@main.command(name="export")
@click.argument("checkpoint", type=click.Path(dir_okay=False, exists=True))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--command", "train_command", default="", help="the training command, recorded as provenance")
@click.option("--base", default=None, type=click.Path(dir_okay=False), help="write only what differs from this weights file")
@click.option("--force", is_flag=True, help="replace an existing weights file")
@_handle_errors
def export_cmd(checkpoint: str, dst: str, train_command: str, force: bool, base: str | None) -> None:
    """Export a training checkpoint's (or a weights file's) weights to .safetensors (e.g. a run still in progress).

    With --base, only what differs from that weights file is written (it must sit beside DST when loaded)."""
    from hcd_pipeline.training.train import export_checkpoint

    _refuse_overwrite(dst, force)
    step = export_checkpoint(checkpoint, dst, train_command, base=base)
    click.echo(f"{checkpoint} (step {step}) -> {dst}")


@main.command()
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="replace an existing weights file")
@_handle_errors
def convert(src: str, dst: str, force: bool) -> None:
    """Convert an original checkpoint to .safetensors: IRN (IRN_x2.pth / IRN_x4.pth), EDSR (the original code's
    edsr_baseline_x2.pt, ...) or BasicSR's EDSR (EDSR_Mx2_*.pth); the family is read from the tensors."""
    from hcd_pipeline.models.convert import convert_weights

    _refuse_overwrite(dst, force)
    click.echo(f"{src} -> {dst} ({convert_weights(src, dst)})")


@main.command()
@click.argument("hr", type=click.Path(dir_okay=False))
@click.argument("sr", type=click.Path(dir_okay=False))
@click.option("--crop", type=int, default=0, show_default=True, help="border pixels to ignore")
@_handle_errors
def compare(hr: str, sr: str, crop: int) -> None:
    """PSNR / SSIM (Y and RGB) of an image against a reference."""
    a, b = read_image(hr).pixels, read_image(sr).pixels
    if a.shape != b.shape:
        raise HcdError(f"{sr}: size {tuple(b.shape)} differs from {hr} {tuple(a.shape)}")
    sc = score_pair(a, b, crop)
    click.echo(json.dumps(sc.__dict__))


if __name__ == "__main__":
    main()
