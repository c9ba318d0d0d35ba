"""Settings of a pipeline run (what ``hcd run`` flags and job specs fill in)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import Field, asdict, dataclass, fields
from typing import Any

from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.core.settings_fields import field_types as _field_types
from hcd_pipeline.core.settings_fields import setting
from hcd_pipeline.core.settings_fields import setting_fields as _setting_fields
from hcd_pipeline.downscaler.settings import DownscaleSettings, ImageSettings
from hcd_pipeline.io.storage import StorageOptions
from hcd_pipeline.models.registry import DEFAULT_MODELS, MODELS, recorded_name, resolve_name

__all__ = [
    "PipelineSettings",
    "PLAIN_DECODE_BATCH",
    "settings_from_dict",
    "fingerprint_hash",
    "setting_fields",
    "field_types",
    "parse_actors",
    "canonical_model",
]

GPU_MODEL_BATCH = 8
"""Images per model-stage call on GPU actors when ``batch_size`` is unset."""
GPU_SIZE_WINDOW = 4
"""Model calls' worth of images that a decode task orders by size on GPU actors when ``size_window`` is unset."""
PLAIN_DECODE_BATCH = 256
"""Items per decode task for plain downscaling (milliseconds per image: per-task costs must be spread thin)."""


@dataclass(frozen=True, kw_only=True)
class PipelineSettings(ImageSettings):
    """One pipeline job.

    Attributes:
        input: folder, ``s3://bucket/prefix/``, a glob (``s3://b/p/*.jpg``), a list file (``.txt``:
            one URI or relative key per line) or a single ``.tar`` shard; folders and prefixes may
            hold image files and ``.tar`` shards of images (webdataset style).
        output: folder or ``s3://`` prefix; gets ``lr/``, ``metrics/`` and ``job.json``.
        model, scale, weights, method, preset, overrides, seed: as for ``hcd downscale``.
        min_actors, max_actors: size of the autoscaling model actor pool (equal for a fixed pool).
        batch_size: images per model-stage call (None: one decode task's output for ``method="plain"``,
            else 1); each call's rows become one Parquet part, written as soon as its images are.
        num_gpus: GPUs per model actor (0 on CPU machines; 1 to give each actor a GPU).
        threads: torch threads per model actor (and CPUs reserved for it).
        decode_batch: input items (files or tar shards) per decode task (None: ``batch_size``, so that each
            model call gets one decode task's images; 256 for ``method="plain"`` without a batch size). A
            decode task's output is cut into blocks of at most 128 MiB (Ray Data's block size) whatever its count.
        decode_cpus, write_cpus: CPUs reserved per decode / write task (fractions allowed).
        decode_tasks, write_tasks: most decode / write tasks at once (None: as many as the CPUs allow).
        limit: only the first N input items (in listing order: key order for folders and prefixes).
        part_rows: unused since schema 2 (parts are written per model batch); kept so that old specs load.
        progress_interval: seconds between progress lines when the output is not a terminal.
        storage: endpoint / anonymous access for object storage.
        address: Ray cluster address (None: start a local Ray).
        memory, tile: as ``hcd downscale --memory / --tile`` (``auto`` / None: by image size, and on a GPU by
            its free memory).
        size_window: how many model calls' worth of input items each decode task takes; it hands its images on
            ordered by size, so that a mixed-size archive still fills the calls with same-size images (which are
            optimised together). None: :data:`GPU_SIZE_WINDOW` on GPU actors, 1 on the CPU (one image per call).
        hcd_batch: same-size images optimised together inside a model call (None: 1 on CPU actors, as many as
            fit in the GPU's free memory on GPU actors, at most ``batch_size``); see ``Downscaler.batch_items``.
        gpu_mode: CUDA numerics of GPU actors, ``deterministic`` (default) or ``fast`` (TF32, autotuned cuDNN).
        allow_mixed_devices: let this run add outputs made on another device kind (CPU vs GPU) to an output made
            with the same settings; refused by default, since their bytes differ (``job.json`` records the kind).
        simulated_gpus: model actors still ask Ray for ``num_gpus`` (so an autoscaler launches GPU nodes for them) but
            run on the CPU: for a simulated cluster whose "GPU" nodes have none (``benchmarks/autoscaling.py``).
        simulated_image_seconds: with ``simulated_gpus``, the least time each image holds its model actor (the
            actor sleeps out the rest): a GPU's work time that does not depend on how busy the simulating CPUs are, so
            that the backlog, and the pool's growth, are the same on a laptop and in CI.
            Without it a GPU actor on a node without CUDA fails with one line, never falls back silently.
    """

    input: str = setting(None, "folder, s3://bucket/prefix/, glob, list file (.txt) or .tar shard", spec="required", cli=False)
    output: str = setting(None, "output folder or s3:// prefix", spec="required", cli=False)
    min_actors: int = setting(1, "smallest model actor pool", spec="actors", cli=False)
    max_actors: int = setting(1, "largest model actor pool", spec="actors", cli=False)
    batch_size: int | None = setting(None, "images per model-stage call")
    num_gpus: float = setting(0.0, "GPUs per model actor (never taken from the submitting machine)", spec="resources")
    limit: int | None = setting(None, "only the first N input items")
    part_rows: int = setting(256, "unused since schema 2; kept so that old specs load", cli=False)
    decode_batch: int | None = setting(None, "input items per decode task")
    decode_cpus: float = setting(0.5, "CPUs per decode task", spec="resources")
    write_cpus: float = setting(0.5, "CPUs per write task", spec="resources")
    decode_tasks: int | None = setting(None, "most decode tasks at once", spec="resources")
    write_tasks: int | None = setting(None, "most write tasks at once", spec="resources")
    progress_interval: float = setting(30.0, "seconds between progress lines in logs")
    storage: StorageOptions = setting(StorageOptions, "object-storage connection (endpoint_url, anon, region)", spec="storage", cli=False)
    address: str | None = setting(None, "Ray cluster address (default: start a local Ray)")
    hcd_batch: int | None = setting(None, "same-size images optimised together (default: by device memory)")
    size_window: int | None = setting(
        None, "model calls' worth of images that each decode task orders by size, so that same-size images share a call"
        " (default: 4 on GPU actors, 1 on the CPU)",
    )  # fmt: skip
    allow_mixed_devices: bool = setting(False, "add GPU outputs to a CPU output (or back)")
    simulated_gpus: bool = setting(False, "GPU actors run on the CPU (tests of autoscaling on a simulated cluster only)", cli=False)
    simulated_image_seconds: float = setting(0.0, "with simulated_gpus: each image holds its model actor at least this long", cli=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.metadata["choices"] and getattr(self, f.name) not in f.metadata["choices"]:
                raise SettingsError(f"{f.name} {getattr(self, f.name)!r}: expected one of {list(f.metadata['choices'])}")
        if not 1 <= self.min_actors <= self.max_actors:
            raise SettingsError(f"actors: need 1 <= min ({self.min_actors}) <= max ({self.max_actors})")
        if (self.batch_size is not None and self.batch_size < 1) or self.threads < 1 or self.part_rows < 1 or self.num_gpus < 0:
            raise SettingsError("batch_size, threads and part_rows must be >= 1 and num_gpus >= 0")
        if (
            (self.decode_batch is not None and self.decode_batch < 1)
            or self.decode_cpus <= 0
            or self.write_cpus <= 0
            or self.progress_interval <= 0
        ):
            raise SettingsError("decode_batch must be >= 1; decode_cpus, write_cpus and progress_interval > 0")
        for name in ("decode_tasks", "write_tasks"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise SettingsError(f"{name} must be >= 1 or unset, got {v}")
        if self.size_window is not None and self.size_window < 1:
            raise SettingsError(f"size_window must be >= 1 or unset, got {self.size_window}")
        if self.limit is not None and self.limit < 1:
            raise SettingsError(f"limit must be >= 1, got {self.limit}")
        if self.simulated_image_seconds and (not self.simulated_gpus or not 0 < self.simulated_image_seconds <= 60):
            raise SettingsError("simulated_image_seconds: only with simulated_gpus, and in (0, 60] seconds")
        if not self.input or not self.output:
            raise SettingsError("input and output URIs are required")
        if self.scale is not None and (isinstance(self.scale, bool) or not isinstance(self.scale, int) or self.scale < 2):
            raise SettingsError(f"scale must be an integer >= 2, got {self.scale!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise SettingsError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        self.downscale_settings()  # the image settings' own checks (memory, tile, formats) and the actors' (hcd_batch)

    def model_batch(self) -> int | None:
        """Images per model-stage call: ``batch_size``; unset: a whole decoded block for plain, 1 for optimisation on
        CPU actors and :data:`GPU_MODEL_BATCH` on GPU actors (same-size images among them are optimised together)."""
        if self.batch_size:
            return self.batch_size
        if self.method == "plain":
            return None
        return GPU_MODEL_BATCH if self.device_kind() == "cuda" else 1

    def decode_rows(self) -> int:
        """Input items per decode task: ``decode_batch``, else the model calls' images times the size window."""
        if self.decode_batch:
            return self.decode_batch
        batch = self.model_batch()
        if batch is None:
            return PLAIN_DECODE_BATCH
        return batch * (self.size_window or (GPU_SIZE_WINDOW if self.device_kind() == "cuda" else 1))

    def downscale_settings(self) -> DownscaleSettings:
        """The per-image settings of this job (every :class:`ImageSettings` field as it is) on the actors' device."""
        return DownscaleSettings(**self.image_settings(), device=self.device_kind(), hcd_batch=self.hcd_batch)

    def device_kind(self) -> str:
        """``cuda`` when model actors get GPUs (and are not simulated), else ``cpu``: from the settings, never from the
        submitting machine."""
        return "cuda" if self.num_gpus > 0 and not self.simulated_gpus else "cpu"

    def result_fingerprint(self) -> dict[str, Any]:
        """What determines the output bytes; a rerun into the same output must match it (but for ``device`` and
        ``gpu_mode`` with ``allow_mixed_devices``). The HCD settings are resolved (``hcd``), not named: two
        spellings of the same settings (a preset, or another preset with overrides) are one fingerprint. Which
        fields count is their ``fp`` metadata (one definition: :func:`~hcd_pipeline.core.settings_fields.setting`)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.metadata["fp"] == "always" or (f.metadata["fp"] == "unless-default" and v != f.default):
                out[f.name] = v
        out["model"], out["scale"] = canonical_model(self.model, self.scale, self.weights)
        return {
            **out,
            **({"device": self.device_kind()} if self.device_kind() != "cpu" else {}),
            # The preset resolved: a preset name alone would let a release that changes a preset resume old outputs.
            "hcd": self.downscale_settings().hcd_settings().to_dict(),
            **({"gpu_mode": self.gpu_mode} if self.device_kind() != "cpu" and self.gpu_mode != "deterministic" else {}),
        }

    def fingerprint_hash(self) -> str:
        return fingerprint_hash(self.result_fingerprint())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def canonical_model(model: str | None, scale: int | None, weights: str | None) -> tuple[str | None, int | None]:
    """``(model, scale)`` as the fingerprint records them: a named model resolved (no model -> the default of the
    scale, see :func:`resolve_name`) with its fixed scale, so that naming the default and leaving it out are one
    setting. A weights file is kept as given (its model and scale are read from the file)."""
    if weights:
        return model, scale
    try:
        name = resolve_name(model, scale)
    except SettingsError:
        return model, scale  # refused with its own message where the model is loaded
    spec = MODELS.get(name)
    return name, (spec.scale if spec and spec.scale else scale)


def recorded_model(model: str | None, scale: int | None, weights: str | None) -> tuple[str | None, int | None]:
    """``(model, scale)`` of a ``job.json`` of any release, as :func:`canonical_model` gives them for this one: names
    read as they meant then (:func:`~hcd_pipeline.models.registry.recorded_name`), and None, which the first releases
    recorded for the default model, as that release's default of the scale (its first generation)."""
    if weights:
        return model, scale
    if model is None and (scale or 2) in DEFAULT_MODELS:
        model = DEFAULT_MODELS[scale or 2]
    return canonical_model(recorded_name(model) if model else model, scale, weights)


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    """The short hash ``job.json`` stores of a :meth:`PipelineSettings.result_fingerprint`."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def settings_from_dict(d: dict[str, Any]) -> PipelineSettings:
    """The settings that the driver sent as a dict (``PipelineSettings.to_dict``)."""
    d = dict(d)
    d["storage"] = StorageOptions(**d.get("storage", {}))
    return PipelineSettings(**d)


def setting_fields() -> dict[str, Field[Any]]:
    """The fields of :class:`PipelineSettings` by name (with their spec / CLI / fingerprint metadata)."""
    return _setting_fields(PipelineSettings)


def field_types(name: str) -> tuple[type, ...]:
    """The Python types a job spec may give for a field (None always allowed for optional ones)."""
    return _field_types(PipelineSettings, name)


def parse_actors(value: int | str | dict[str, Any]) -> tuple[int, int]:
    """Actor pool bounds from ``N``, ``"MIN-MAX"`` (the CLI) or ``{min, max}`` (job specs)."""
    if isinstance(value, dict):
        extra = set(value) - {"min", "max"}
        if extra:
            raise SettingsError(f"actors takes min and max, got {sorted(extra)}")
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, int):
                raise SettingsError(f"actors.{k} must be a whole number, got {type(v).__name__} {v!r}")
        lo = value.get("min", 1)
        return lo, value.get("max", lo)
    if isinstance(value, int):
        return value, value
    lo_s, _, hi_s = str(value).partition("-")
    try:
        return int(lo_s), int(hi_s or lo_s)
    except ValueError as exc:
        raise SettingsError(f"actors: expected N or MIN-MAX, got {value!r}") from exc
