"""Settings of a pipeline run (what ``hcd run`` flags and job specs fill in)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any, get_type_hints

from hcd_pipeline.core.device import GPU_MODES
from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.downscaler import MEMORY_CHOICES, DownscaleSettings
from hcd_pipeline.hcd.settings import DEFAULT_PRESET, METHODS, PRESETS
from hcd_pipeline.io.lr_formats import DEFAULT_QUALITY, LR_FORMATS
from hcd_pipeline.io.metadata import METADATA_POLICIES
from hcd_pipeline.io.storage import StorageOptions
from hcd_pipeline.models.registry import MODELS, resolve_name

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
PLAIN_DECODE_BATCH = 256
"""Items per decode task for plain downscaling (milliseconds per image: per-task costs must be spread thin)."""


def _f(default: Any, help: str, *, spec: str = "top", cli: bool = True, choices: tuple[str, ...] | None = None, fp: str = "") -> Any:  # noqa: A002
    """A :class:`PipelineSettings` field and what the job spec, the CLI and the fingerprint make of it.

    ``spec``: where a job spec holds it (``top``, ``required``, ``resources``, ``actors``, ``storage``); ``cli``:
    whether ``hcd run`` has a ``--flag`` for it; ``choices``: allowed values; ``fp``: in the result fingerprint
    ``always``, ``unless-default`` (added later: only when set, so that earlier fingerprints stay valid) or not.
    """
    meta = {"help": help, "spec": spec, "cli": cli, "choices": choices, "fp": fp}
    if callable(default):
        return field(default_factory=default, metadata=meta)
    if default is None and spec == "required":
        return field(metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class PipelineSettings:
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

    input: str = _f(None, "folder, s3://bucket/prefix/, glob, list file (.txt) or .tar shard", spec="required", cli=False)
    output: str = _f(None, "output folder or s3:// prefix", spec="required", cli=False)
    model: str | None = _f(None, "model name (hcd models); default irn-x2 / irn-x4 by scale", fp="always")
    scale: int | None = _f(None, "scale factor; needed for scale-free models (bicubic)", fp="always")
    weights: str | None = _f(None, "weights file instead of a named model (ours, original IRN / EDSR, BasicSR EDSR)", fp="always")
    method: str = _f("hcd", "plain, lr, hr or hcd", choices=METHODS, fp="always")
    preset: str = _f(DEFAULT_PRESET, "HCD preset", choices=tuple(sorted(PRESETS)))
    overrides: dict[str, Any] = _f(dict, "HCD settings that differ from the preset (hcd run: --set KEY=VALUE)", cli=False)
    seed: int = _f(0, "z seed", fp="always")
    min_actors: int = _f(1, "smallest model actor pool", spec="actors", cli=False)
    max_actors: int = _f(1, "largest model actor pool", spec="actors", cli=False)
    batch_size: int | None = _f(None, "images per model-stage call")
    num_gpus: float = _f(0.0, "GPUs per model actor (never taken from the submitting machine)", spec="resources")
    threads: int = _f(1, "torch threads (CPUs) per model actor", spec="resources", fp="always")
    limit: int | None = _f(None, "only the first N input items")
    part_rows: int = _f(256, "unused since schema 2; kept so that old specs load", cli=False)
    decode_batch: int | None = _f(None, "input items per decode task")
    decode_cpus: float = _f(0.5, "CPUs per decode task", spec="resources")
    write_cpus: float = _f(0.5, "CPUs per write task", spec="resources")
    decode_tasks: int | None = _f(None, "most decode tasks at once", spec="resources")
    write_tasks: int | None = _f(None, "most write tasks at once", spec="resources")
    progress_interval: float = _f(30.0, "seconds between progress lines in logs")
    storage: StorageOptions = _f(StorageOptions, "object-storage connection (endpoint_url, anon, region)", spec="storage", cli=False)
    address: str | None = _f(None, "Ray cluster address (default: start a local Ray)")
    memory: str = _f("auto", "HCD memory mode, as hcd downscale --memory", choices=MEMORY_CHOICES, fp="unless-default")
    tile: int | None = _f(None, "LR tile side, as hcd downscale --tile (0: whole image)", fp="unless-default")
    hcd_batch: int | None = _f(None, "same-size images optimised together (default: by device memory)")
    gpu_mode: str = _f("deterministic", "CUDA numerics of GPU actors", choices=GPU_MODES)
    allow_mixed_devices: bool = _f(False, "add GPU outputs to a CPU output (or back)")
    lr_format: str = _f("png", "stored LR file: png, jpeg or webp (lossy files are judged as decoded)", choices=LR_FORMATS,
                        fp="unless-default")  # fmt: skip
    lr_quality: int = _f(DEFAULT_QUALITY, "JPEG / WebP quality of the stored LR (1-100)", fp="unless-default")
    metadata: str = _f("keep", "the source's ICC profile and EXIF in the LR file: keep (without GPS), all, none", choices=METADATA_POLICIES,
                       fp="unless-default")  # fmt: skip
    simulated_gpus: bool = _f(False, "GPU actors run on the CPU (tests of autoscaling on a simulated cluster only)", cli=False)
    simulated_image_seconds: float = _f(0.0, "with simulated_gpus: each image holds its model actor at least this long", cli=False)

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
        self.downscale_settings()  # checks memory and tile

    def model_batch(self) -> int | None:
        """Images per model-stage call: ``batch_size``; unset: a whole decoded block for plain, 1 for optimisation on
        CPU actors and :data:`GPU_MODEL_BATCH` on GPU actors (same-size images among them are optimised together)."""
        if self.batch_size:
            return self.batch_size
        if self.method == "plain":
            return None
        return GPU_MODEL_BATCH if self.device_kind() == "cuda" else 1

    def decode_rows(self) -> int:
        """Input items per decode task."""
        return self.decode_batch or self.model_batch() or PLAIN_DECODE_BATCH

    def downscale_settings(self) -> DownscaleSettings:
        return DownscaleSettings(
            model=self.model,
            scale=self.scale,
            weights=self.weights,
            method=self.method,
            preset=self.preset,
            overrides=dict(self.overrides),
            seed=self.seed,
            threads=self.threads,
            device=self.device_kind(),
            memory=self.memory,
            tile=self.tile,
            batch=self.hcd_batch,
            gpu_mode=self.gpu_mode,
            lr_format=self.lr_format,
            lr_quality=self.lr_quality,
            metadata=self.metadata,
        )

    def device_kind(self) -> str:
        """``cuda`` when model actors get GPUs (and are not simulated), else ``cpu``: from the settings, never from the
        submitting machine."""
        return "cuda" if self.num_gpus > 0 and not self.simulated_gpus else "cpu"

    def result_fingerprint(self) -> dict[str, Any]:
        """What determines the output bytes; a rerun into the same output must match it (but for ``device`` and
        ``gpu_mode`` with ``allow_mixed_devices``). The HCD settings are resolved (``hcd``), not named: two
        spellings of the same settings (a preset, or another preset with overrides) are one fingerprint. Which
        fields count is their ``fp`` metadata (one definition: :func:`_f`)."""
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
    return {f.name: f for f in fields(PipelineSettings)}


def field_types(name: str) -> tuple[type, ...]:
    """The Python types a job spec may give for a field (None always allowed for optional ones)."""
    hint = get_type_hints(PipelineSettings)[name]
    args = getattr(hint, "__args__", None)
    types = tuple(a for a in args if a is not type(None)) if args and type(None) in args else (hint,)
    types = tuple(getattr(t, "__origin__", t) for t in types)
    return (int, float) if types == (float,) else types


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
