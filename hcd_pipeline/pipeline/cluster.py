"""The Ray a run uses: a cluster address checked before Ray starts (one line, not minutes of retries), a local Ray
started with room for the I/O stages, and the check that a run's stages fit a fixed cluster."""

from __future__ import annotations

import os

from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.pipeline.settings import PipelineSettings

LOCAL_EXTRA_CPUS = 1
"""Logical CPUs a local Ray gets beyond ``os.cpu_count()`` (for the I/O-bound decode and write stages)."""


def is_local(settings: PipelineSettings) -> bool:
    """Whether the run starts its own Ray (no ``address`` and no ``$RAY_ADDRESS``, as inside a submitted job)."""
    return not (settings.address or os.environ.get("RAY_ADDRESS"))


def check_ray_address(address: str | None) -> None:
    """Refuse a dashboard URL as the cluster to join (``address`` or ``$RAY_ADDRESS``): ``hcd submit`` and ``hcd
    status`` talk to the dashboard (http://HEAD:8265), a run joins the cluster's GCS (HEAD:6379) or starts a local Ray.
    Ray's own error is a multi-line ValueError after seconds of start-up."""
    given, where = (address, "--address") if address else (os.environ.get("RAY_ADDRESS"), "RAY_ADDRESS")
    if given and given.split("://", 1)[0].lower() in ("http", "https"):
        raise SettingsError(
            f"{where}={given} is a Ray dashboard URL (for hcd submit / hcd status); hcd run joins a cluster by its GCS "
            f"address (HEAD:6379 or 'auto'), or runs on a local Ray when {where} is unset (env -u RAY_ADDRESS hcd run ...)"
        )


def check_ray_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail in one line when the cluster address (``host:port`` or ``ray://host:port``, from ``address`` or
    ``$RAY_ADDRESS``) does not accept a TCP connection: Ray itself retries for minutes and logs every attempt."""
    import socket

    given = address or os.environ.get("RAY_ADDRESS")
    if not given or given in ("auto", "local"):
        return
    hostport = given.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # not host:port: Ray's own parsing decides
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise SettingsError(f"Ray cluster {given}: cannot connect ({exc}); is the cluster up (hcd status, ray status)?") from exc


def init_ray(settings: PipelineSettings, verbose: bool = False) -> None:
    """Start (or join) the Ray that ``settings`` name: ``address`` / ``$RAY_ADDRESS``, else a local one."""
    import ray

    check_ray_address(settings.address)
    if not ray.is_initialized():
        # Workers' own logs (and Ray's start-up warnings) only when asked for: our errors come back as rows.
        level = "INFO" if verbose else "ERROR"
        if not is_local(settings):
            # Inside a submitted job RAY_ADDRESS points at the cluster.
            ray.init(address=settings.address or None, log_to_driver=verbose, logging_level=level)
        else:
            # One logical CPU beyond the machine's for the decode and write stages, which mostly wait on storage:
            # N single-threaded model actors on N cores then still leave room for them.
            ray.init(address="local", num_cpus=(os.cpu_count() or 1) + LOCAL_EXTRA_CPUS, include_dashboard=False,
                     log_to_driver=verbose, configure_logging=True, logging_level=level)  # fmt: skip
    ctx = ray.data.DataContext.get_current()
    # Our own progress (done / failed / img/s / ETA) replaces Ray's per-operator bars.
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def check_fits(settings: PipelineSettings, resources: dict[str, float]) -> None:
    """Refuse settings whose stages cannot all run at once on ``resources`` (``ray.cluster_resources()``).

    With every CPU held by model actors the decode tasks never start and the run would wait forever. Checked
    on a fixed cluster (a local Ray); an autoscaling cluster grows to fit and is not checked.
    """
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    need_cpu = settings.max_actors * settings.threads + settings.decode_cpus + settings.write_cpus
    if need_cpu > cpus + 1e-9:
        raise SettingsError(
            f"{settings.max_actors} model actor(s) x {settings.threads} thread(s) + decode_cpus {settings.decode_cpus} + write_cpus "
            f"{settings.write_cpus} = {need_cpu:g} CPUs, but Ray has {cpus:g}: use fewer actors or threads (--actors, --threads)"
        )
    if settings.num_gpus and settings.max_actors * settings.num_gpus > gpus + 1e-9:
        raise SettingsError(
            f"{settings.max_actors} model actor(s) x {settings.num_gpus} GPU(s), but Ray has {gpus:g} GPUs: use fewer actors "
            "(--actors), or --num-gpus 0 to run the model on CPUs (e.g. a GPU job spec on a laptop)"
        )
