"""The pipeline: ``run`` (locally or on the cluster it is started on), ``submit`` / ``status`` / ``logs`` (Ray jobs)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from hcd_pipeline.cli.group import handle_errors, main, verbosity
from hcd_pipeline.cli.options import SET_HELP, cores, hint_codec_model, need, options_from, parse_overrides
from hcd_pipeline.core.errors import HcdError
from hcd_pipeline.pipeline.console import quiet_exit, quiet_ray_data, start_ray_quietly, stop_on_sigterm
from hcd_pipeline.pipeline.settings import PipelineSettings


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


@main.command()
@click.option("--job", "job_file", type=click.Path(dir_okay=False), help="job spec (YAML/TOML); flags below override it")
@click.option("-i", "--input", "input_uri", help="folder, s3://bucket/prefix/, glob, list file (.txt) or .tar shard")
@click.option("-o", "--output", "output_uri", help="output folder or s3:// prefix")
@click.option(
    "--actors", type=str, default=None, help="actor pool size N, MIN-MAX to autoscale, or auto (a core each, local runs) [default: 1]"
)
@click.option("--set", "overrides", multiple=True, callback=parse_overrides, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint (MinIO, Ceph, ...)")
@click.option("--anon", is_flag=True, default=None, help="anonymous object-storage access")
@options_from(PipelineSettings, layered=True)
@handle_errors
def run(job_file: str | None, input_uri: str | None, output_uri: str | None, **flags: Any) -> None:
    """Run the pipeline: images from a folder or object storage -> optimised LR + Parquet metrics."""
    from dataclasses import replace

    need("pipeline")
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
        upd["min_actors"] = upd["max_actors"] = max(1, cores() // threads)
    elif flags.get("actors"):
        upd["min_actors"], upd["max_actors"] = parse_actors(str(flags["actors"]))
    if flags.get("endpoint_url") or flags.get("anon"):
        upd["storage"] = StorageOptions(endpoint_url=flags.get("endpoint_url") or base.storage.endpoint_url, anon=bool(flags.get("anon")))
    try:
        settings = replace(base, **upd)
    except (TypeError, ValueError) as exc:
        raise HcdError(str(exc)) from exc
    hint_codec_model(settings)
    preflight(settings)  # before Ray starts: a bad input or output is one line at once
    if verbosity() >= 0:  # something on screen at once: Ray and the stages' workers take seconds to start
        click.echo(_run_header(settings), err=True)
    if verbosity() <= 0:
        quiet_ray_data()
        start_ray_quietly(settings)
    # A bar in a terminal; in logs (submitted jobs) a line every progress_interval seconds.
    stop_on_sigterm()
    try:
        summary = run_pipeline(settings, progress=verbosity() >= 0, verbose=verbosity() > 0, preflighted=True)
    except KeyboardInterrupt as exc:
        name = str(exc) if str(exc).startswith("SIG") else "SIGINT"
        click.echo(f"\nstopped by {name}: finished images are kept in {settings.output}; the same command resumes", err=True)
        quiet_exit(143 if name == "SIGTERM" else 130)
    _print_summary(summary, settings.output)
    if summary.failed:
        sys.exit(1)


ADDRESS = click.option("--address", default=None, help="Ray dashboard address (default $RAY_ADDRESS or http://127.0.0.1:8265)")


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@ADDRESS
@click.option("--wait", is_flag=True, help="wait for the job to finish and exit non-zero if it failed")
@handle_errors
def submit(spec: str, address: str | None, wait: bool) -> None:
    """Submit a job spec to a Ray cluster (Job Submission API); prints the job id."""
    import time

    need("pipeline")
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
@ADDRESS
@handle_errors
def status(job_id: str, address: str | None) -> None:
    """Status of a submitted job (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."""
    need("pipeline")
    from hcd_pipeline.pipeline.submit import job_status

    click.echo(job_status(job_id, address))


@main.command()
@click.argument("job_id")
@ADDRESS
@handle_errors
def logs(job_id: str, address: str | None) -> None:
    """Logs of a submitted job."""
    need("pipeline")
    from hcd_pipeline.pipeline.submit import job_logs

    click.echo(job_logs(job_id, address), nl=False)
