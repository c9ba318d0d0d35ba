"""Measuring: ``eval`` (standard sets), ``report`` (a run's Parquet tables), ``bench`` (the benchmark tables)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hcd_pipeline.cli.group import handle_errors, main
from hcd_pipeline.cli.options import DEVICE, need, options_from, set_option
from hcd_pipeline.core.errors import HcdError
from hcd_pipeline.core.settings_fields import setting_fields
from hcd_pipeline.evaluation.evaluate import EVAL_METHODS, EvalSettings
from hcd_pipeline.io import jsonfile as jsonutil
from hcd_pipeline.io.images import atomic_write_bytes


def _eval_row(r: dict[str, Any]) -> str:
    cells = f"{r['psnr_y']:8.3f} {r['ssim_y']:7.4f} {r['psnr_rgb']:8.3f} {r['ssim_rgb']:7.4f}"
    return f"{r['image']:18s} {cells} {r['gain_y']:+7.3f} {r['seconds']:6.2f}"


@main.command(name="eval")
@DEVICE
@options_from(EvalSettings, skip=("method",))
@click.option(
    "--method", type=click.Choice([*EVAL_METHODS, "all"]), default="plain", show_default=True,
    help=setting_fields(EvalSettings)["method"].metadata["help"] + "; all: each in turn",
)  # fmt: skip
@set_option
@click.option(
    "-o",
    "--output",
    "--json",
    "json_out",
    type=click.Path(dir_okay=False),
    default=None,
    help="also write the numbers as JSON to this file (default: print only)",
)
@handle_errors
def eval_cmd(method: str, json_out: str | None, **opts: Any) -> None:
    """Evaluate a model and method on a set with the standard protocol (Y-PSNR / SSIM, border crop); takes every
    setting of ``hcd downscale``."""
    from hcd_pipeline.evaluation.evaluate import evaluate

    methods = EVAL_METHODS if method == "all" else (method,)
    results = {}
    for m in methods:
        cfg = EvalSettings(**opts, method=m)
        res = evaluate(cfg)
        results[m] = res
        st = res["settings"]
        click.echo(
            f"# {st['model']} x{st['scale']} on {cfg.data}, method {m}"
            + (f" (preset {cfg.preset})" if m not in ("plain", "official") else "")
            + f", {cfg.draws} draw(s)"
        )  # type: ignore[index]
        click.echo(f"{'image':18s} {'PSNR-Y':>8s} {'SSIM-Y':>7s} {'PSNR':>8s} {'SSIM':>7s} {'gain':>7s} {'sec':>6s}")
        for r in [*res["images"], {"image": "mean", **res["mean"]}]:  # type: ignore[dict-item]
            click.echo(_eval_row(r))
    if json_out:  # never into the current folder unasked
        atomic_write_bytes(json_out, (jsonutil.dumps(results if method == "all" else results[method], indent=1) + "\n").encode())
        click.echo(f"wrote {json_out}")


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
@handle_errors
def report(
    uris: tuple[str, ...], worst: int, out_dir: str | None, json_out: str | None, html_out: str | None, endpoint_url: str | None, anon: bool
) -> None:
    """Quality report over the Parquet tables of one or more run outputs (local or s3://)."""
    need("report")
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


@main.command(hidden=True, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@handle_errors
def bench() -> None:
    """Moved: the docs' benchmark tables are made by the repository's benchmarks (the library writes no docs)."""
    raise HcdError("hcd bench moved to the repository: python -m benchmarks.bench ... (same options; from a source checkout)")
