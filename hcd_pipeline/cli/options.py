"""Options and checks shared by the commands: model and settings options, threads, output folders that never
overwrite a source, optional extras."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hcd_pipeline.cli.group import no_progress, verbosity
from hcd_pipeline.core.errors import HcdError
from hcd_pipeline.io.images import list_images


def expand_inputs(inputs: tuple[str, ...], out: Path) -> list[tuple[Path, Path]]:
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


def refuse_source(dest: Path, sources: set[Path]) -> None:
    """Never write over an input of the same command (``-o`` naming the photos' own folder, with or without --force)."""
    if dest.resolve() in sources:
        raise FileExistsError(f"{dest}: is an input of this command; choose another output folder")


def refuse_overwrite(path: str | Path, force: bool) -> None:
    if Path(path).exists() and not force:
        raise FileExistsError(f"{path}: exists (use --force to overwrite)")


DEVICE = click.option(
    "--device", default="auto", show_default=True, help="torch device: cpu, cuda, cuda:1, or auto (CUDA when this process sees one)"
)


EXTRAS = {"pipeline": ("ray", "pyarrow", "fsspec", "yaml"), "s3": ("s3fs",), "report": ("pyarrow", "fsspec")}
"""What each optional part of the install brings (pyproject.toml's extras): the core (downscale, upscale, eval,
models on local files) needs none of them."""


def need(extra: str) -> None:
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


def cores() -> int:
    """CPU cores this process may run on (its affinity, as containers and job schedulers set it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parse_threads(_ctx: Any, _param: Any, value: str | int | None) -> int | None:
    """``--threads N`` or ``auto`` (this process's cores)."""
    if value is None:
        return None
    if str(value) == "auto":
        return cores()
    try:
        n = int(value)
    except ValueError as exc:
        raise click.BadParameter(f"expected a whole number or auto, got {value!r}") from exc
    if n < 1:
        raise click.BadParameter(f"expected >= 1, got {n}")
    return n


def model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--model``, ``--scale``, ``--weights`` (help from their :class:`ImageSettings` declarations) and ``--device``,
    for the commands that load a model without taking the image settings (``upscale``, ``eval``)."""
    from hcd_pipeline.core.settings_fields import setting_fields
    from hcd_pipeline.downscaler.settings import ImageSettings

    declared = setting_fields(ImageSettings)
    fn = DEVICE(fn)
    fn = click.option("--weights", type=click.Path(dir_okay=False), help=declared["weights"].metadata["help"])(fn)
    fn = click.option("--scale", type=int, help=declared["scale"].metadata["help"])(fn)
    fn = click.option("--model", default=None, help=declared["model"].metadata["help"])(fn)
    return fn


def each_input(pairs: list[tuple[Path, Path]], work: Callable[[Path, Path], None], errors: tuple[type[BaseException], ...]) -> None:
    """``work(file, output subfolder)`` for every pair, with a progress bar: a failure of one input (one of ``errors``)
    is an ``error:`` line and the next input goes on; after the last, any failure ends the command with status 1."""
    from tqdm import tqdm

    failures = []
    for src, sub in tqdm(pairs, desc="images", disable=no_progress() or len(pairs) < 2):
        try:
            work(src, sub)
        except errors as exc:
            failures.append(str(exc))
            click.echo(f"error: {exc}", err=True)
    if failures:
        click.echo(f"{len(failures)} of {len(pairs)} failed", err=True)
        sys.exit(1)


def downscaler(**opts: Any) -> Any:
    """The Downscaler for the shared options of downscale / roundtrip (``model_options``, ``settings_options``)."""
    from hcd_pipeline.downscaler import Downscaler, DownscaleSettings

    settings = DownscaleSettings(**opts)
    hint_codec_model(settings)
    if settings.device == "auto" and verbosity() >= 0:
        import torch

        if torch.cuda.is_available():  # say so: the bytes differ from a CPU run's (the sidecar records the device)
            click.echo(f"[hcd] computing on {torch.cuda.get_device_name(0)} (--device auto; --device cpu for the CPU)", err=True)
    return Downscaler(settings)


def hint_codec_model(settings: Any) -> None:
    """Say on stderr when a shipped codec model suits the stored format better (``codec_model_hint``); ``settings``:
    a DownscaleSettings or PipelineSettings (both name model, weights, scale and lr_format). A weights file is the
    user's own model: no advice."""
    from hcd_pipeline.models.registry import codec_model_hint

    hint = None if settings.weights else codec_model_hint(settings.model, settings.scale, settings.lr_format)
    if hint and verbosity() >= 0:  # also in logs, unlike progress bars: it is advice, once per command
        click.echo(hint, err=True)


def options_from(cls: type, *, layered: bool = False, skip: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """One ``--flag`` per field of the settings dataclass ``cls`` declared with ``cli`` (name, type, choices, bounds,
    parser and help from the field: :func:`~hcd_pipeline.core.settings_fields.setting`).

    ``skip``: fields the command declares itself (``eval``'s ``--method`` also takes ``all``).
    ``layered``: the flags override a job spec, so each defaults to None (the spec's value, else the field's, stands)
    and the field's default is shown in the help; otherwise the field's default is the flag's.
    """
    from dataclasses import MISSING

    from hcd_pipeline.core.settings_fields import default_of, field_types, setting_fields

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name, f in reversed(setting_fields(cls).items()):
            if not f.metadata["cli"] or name in skip:
                continue
            types, default = field_types(cls, name), default_of(f)
            flag = f.metadata.get("flag") or "--" + name.replace("_", "-")
            shown = f.metadata["help"] + (f" [default: {default}]" if default not in (None, MISSING) else "")
            common: dict[str, Any] = {"default": None, "help": shown} if layered else {"default": default, "help": f.metadata["help"],
                                                                                       "show_default": default is not None}  # fmt: skip
            if bool in types:
                decls = [f"{flag}/--no-{flag[2:]}"] if default else [flag]
                fn = click.option(*decls, name, is_flag=True, **common)(fn)
                continue
            if f.metadata["parse"] == "threads":
                fn = click.option(flag, name, callback=parse_threads, **{**common, "default": None if layered else str(default)})(fn)
                continue
            kind: Any = float if float in types else types[0]
            if f.metadata["choices"] and kind is int:  # offered as text, handed on as the field's integers
                fn = click.option(flag, name, type=click.Choice([str(c) for c in f.metadata["choices"]]),
                                  callback=lambda _c, _p, v: None if v is None else int(v), **common)(fn)  # fmt: skip
                continue
            if f.metadata["choices"]:
                kind = click.Choice([str(c) for c in f.metadata["choices"]])
            elif f.metadata["bounds"]:
                kind = click.IntRange(*f.metadata["bounds"])
            fn = click.option(flag, name, type=kind, **common)(fn)
        return fn

    return decorate


def settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``hcd downscale`` / ``roundtrip``: the device, every image setting (:class:`ImageSettings`) and ``--set``."""
    from hcd_pipeline.downscaler.settings import DownscaleSettings

    return DEVICE(options_from(DownscaleSettings)(set_option(fn)))


def set_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--set KEY=VALUE`` (repeatable): the image settings' ``overrides``."""
    return click.option("--set", "overrides", multiple=True, callback=parse_overrides, metavar="KEY=VALUE", help=SET_HELP)(fn)


SET_HELP = "override one HCD setting of the preset (repeatable), e.g. --set judge=rgb --set lr_steps=10"


def parse_overrides(_ctx: Any, _param: Any, values: tuple[str, ...]) -> dict[str, Any]:
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


def parse_range(text: str, flag: str) -> tuple[int, int]:
    """``"70-95"`` -> (70, 95); ``"90"`` -> (90, 90)."""
    lo, _, hi = text.partition("-")
    try:
        return int(lo), int(hi or lo)
    except ValueError:
        raise click.BadParameter(f"expected MIN-MAX integers (e.g. 70-95), got {text!r}", param_hint=flag) from None
