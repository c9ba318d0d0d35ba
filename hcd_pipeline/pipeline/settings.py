"""Settings of a pipeline run (what ``hcd run`` flags and job specs fill in)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import SettingsError
from ..hcd import DEFAULT_PRESET, METHODS, PRESETS
from ..service import DownscaleSettings
from ..storage import StorageOptions

__all__ = ["PipelineSettings"]


@dataclass(frozen=True)
class PipelineSettings:
    """One pipeline job.

    Attributes:
        input: folder, ``s3://bucket/prefix/``, a glob (``s3://b/p/*.jpg``), a list file (``.txt``:
            one URI or relative key per line) or a single ``.tar`` shard; folders and prefixes may
            hold image files and ``.tar`` shards of images (webdataset style).
        output: folder or ``s3://`` prefix; gets ``lr/``, ``metrics/`` and ``job.json``.
        model, scale, weights, method, preset, overrides, seed: as for ``hcd downscale``.
        min_actors, max_actors: size of the autoscaling actor pool (equal for a fixed pool).
        batch_size: input items per actor call.
        num_gpus: GPUs per actor (0 on CPU machines; 1 to give each actor a GPU).
        threads: torch threads per CPU actor (and CPUs reserved for it).
        limit: only the first N input items (after sorting).
        part_rows: metric rows per Parquet part file.
        storage: endpoint / anonymous access for object storage.
        address: Ray cluster address (None: start a local Ray).
        memory, tile: as ``hcd downscale --memory / --tile`` (``auto`` / None: by image size).
    """

    input: str
    output: str
    model: str | None = None
    scale: int | None = None
    weights: str | None = None
    method: str = "hcd"
    preset: str = DEFAULT_PRESET
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    min_actors: int = 1
    max_actors: int = 1
    batch_size: int = 1
    num_gpus: float = 0.0
    threads: int = 1
    limit: int | None = None
    part_rows: int = 256
    storage: StorageOptions = field(default_factory=StorageOptions)
    address: str | None = None
    memory: str = "auto"
    tile: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SettingsError(f"method {self.method!r}: expected one of {METHODS}")
        if self.preset not in PRESETS:
            raise SettingsError(f"preset {self.preset!r}: expected one of {sorted(PRESETS)}")
        if not 1 <= self.min_actors <= self.max_actors:
            raise SettingsError(f"actors: need 1 <= min ({self.min_actors}) <= max ({self.max_actors})")
        if self.batch_size < 1 or self.threads < 1 or self.part_rows < 1 or self.num_gpus < 0:
            raise SettingsError("batch_size, threads and part_rows must be >= 1 and num_gpus >= 0")
        if self.limit is not None and self.limit < 1:
            raise SettingsError(f"limit must be >= 1, got {self.limit}")
        if not self.input or not self.output:
            raise SettingsError("input and output URIs are required")
        self.downscale_settings()  # checks memory and tile

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
            device="cuda" if self.num_gpus > 0 else "cpu",
            memory=self.memory,
            tile=self.tile,
        )

    def result_fingerprint(self) -> dict[str, Any]:
        """What determines the output bytes; a rerun into the same output must match it."""
        return {
            "model": self.model,
            "scale": self.scale,
            "weights": self.weights,
            "method": self.method,
            "preset": self.preset,
            "overrides": self.overrides,
            "seed": self.seed,
            "threads": self.threads,
            # Added later: recorded only when set, so that the fingerprints of earlier runs stay valid.
            **({"memory": self.memory} if self.memory != "auto" else {}),
            **({"tile": self.tile} if self.tile is not None else {}),
        }

    def fingerprint_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.result_fingerprint(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
