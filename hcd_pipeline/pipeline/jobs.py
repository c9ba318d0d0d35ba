"""Job specifications (YAML or TOML files in ``jobs/``): validated before anything runs or is submitted.

A spec names the input and output URIs and the settings of :class:`PipelineSettings`::

    name: archive-x2
    input: s3://my-archive/photos/
    output: s3://my-archive-lr/x2/
    model: irn-x2
    method: hcd
    preset: default
    seed: 0
    actors: {min: 1, max: 8}      # or a number for a fixed pool
    resources: {num_gpus: 1, threads: 4}  # per model actor; also decode_cpus, write_cpus, decode_tasks, write_tasks
    memory: auto                  # fast | low | lowest (hcd downscale --memory); tile: N for --tile
    storage: {endpoint_url: null, anon: false, region: eu-west-1}
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import SettingsError
from ..models.registry import MODELS
from ..storage import StorageOptions
from .settings import PipelineSettings

__all__ = ["JobSpec", "load_job", "SPEC_ENV", "SPEC_NAME_ENV"]

_TOP = {"name", "description", "input", "output", "model", "scale", "weights", "method", "preset", "overrides", "seed",
        "actors", "batch_size", "limit", "part_rows", "resources", "storage", "address", "memory", "tile", "decode_batch",
        "progress_interval"}  # fmt: skip
_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "description": (str,),
    "input": (str,),
    "output": (str,),
    "model": (str,),
    "scale": (int,),
    "weights": (str,),
    "method": (str,),
    "preset": (str,),
    "overrides": (dict,),
    "seed": (int,),
    "memory": (str,),
    "tile": (int,),
    "actors": (int, dict),
    "batch_size": (int,),
    "limit": (int,),
    "part_rows": (int,),
    "decode_batch": (int,),
    "progress_interval": (int, float),
    "resources": (dict,),
    "storage": (dict,),
    "address": (str,),
}


_RESOURCES = {"num_gpus", "threads", "decode_cpus", "write_cpus", "decode_tasks", "write_tasks"}


class JobSpec:
    """A validated job: its name, the pipeline settings, and where it came from."""

    def __init__(self, name: str, settings: PipelineSettings, path: Path) -> None:
        self.name = name
        self.settings = settings
        self.path = path


SPEC_ENV = "HCD_JOB_SPEC"
SPEC_NAME_ENV = "HCD_JOB_SPEC_NAME"


def _load_raw(path: Path) -> dict[str, Any]:
    if str(path).startswith("env:"):
        # A submitted job carries its spec in the environment (see submit.py).
        text = os.environ.get(str(path)[4:], "")
        path = Path(os.environ.get(SPEC_NAME_ENV, "job.yaml"))
        if not text:
            raise SettingsError(f"{path}: job spec environment variable is empty")
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise SettingsError(f"{path}: cannot read job spec ({exc.strerror or exc})") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'} ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: a job spec is a mapping of settings, got {type(data).__name__}")
    return data


def load_job(path: str | Path) -> JobSpec:
    """Read and validate a job spec; every problem is reported with the file name and the key."""
    p = Path(path)
    raw = _load_raw(p)
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise SettingsError(f"{p}: unknown keys {unknown}; allowed: {sorted(_TOP)}")
    for key in ("input", "output"):
        if key not in raw:
            raise SettingsError(f"{p}: missing required key {key!r}")
    for key, value in raw.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, _TYPES[key]):
            want = " or ".join(t.__name__ for t in _TYPES[key])
            raise SettingsError(f"{p}: {key} must be {want}, got {type(value).__name__} {value!r}")
    actors = raw.get("actors", 1)
    if isinstance(actors, int):
        lo = hi = actors
    else:
        extra = set(actors) - {"min", "max"}
        if extra:
            raise SettingsError(f"{p}: actors takes min and max, got {sorted(extra)}")
        lo, hi = int(actors.get("min", 1)), int(actors.get("max", actors.get("min", 1)))
    res = dict(raw.get("resources") or {})
    bad_res = set(res) - _RESOURCES
    if bad_res:
        raise SettingsError(f"{p}: resources takes {sorted(_RESOURCES)}, got {sorted(bad_res)}")
    st = dict(raw.get("storage") or {})
    allowed_st = {f.name for f in fields(StorageOptions)}
    if set(st) - allowed_st:
        raise SettingsError(f"{p}: storage takes {sorted(allowed_st)}, got {sorted(set(st) - allowed_st)}")
    if any(k in st for k in ("key", "secret", "token", "aws_access_key_id", "aws_secret_access_key")) or any(
        k in (st.get("extra") or {}) for k in ("key", "secret", "token")
    ):
        raise SettingsError(f"{p}: credentials do not belong in job specs; use the environment or the instance role")
    try:
        settings = PipelineSettings(
            input=raw["input"],
            output=raw["output"],
            model=raw.get("model"),
            scale=raw.get("scale"),
            weights=raw.get("weights"),
            method=raw.get("method", "hcd"),
            preset=raw.get("preset", "default"),
            overrides=dict(raw.get("overrides") or {}),
            seed=int(raw.get("seed", 0)),
            min_actors=lo,
            max_actors=hi,
            batch_size=raw.get("batch_size"),
            num_gpus=float(res.get("num_gpus", 0)),
            threads=int(res.get("threads", 1)),
            decode_cpus=float(res.get("decode_cpus", 0.5)),
            write_cpus=float(res.get("write_cpus", 0.5)),
            decode_tasks=res.get("decode_tasks"),
            write_tasks=res.get("write_tasks"),
            decode_batch=raw.get("decode_batch"),
            progress_interval=float(raw.get("progress_interval", 30.0)),
            limit=raw.get("limit"),
            part_rows=int(raw.get("part_rows", 256)),
            storage=StorageOptions(**st),
            address=raw.get("address"),
            memory=raw.get("memory", "auto"),
            tile=raw.get("tile"),
        )
        settings.downscale_settings().hcd_settings()  # validates preset overrides
        if settings.model is not None and settings.model not in MODELS:
            raise SettingsError(f"unknown model {settings.model!r}; available: {sorted(MODELS)}")
    except SettingsError as exc:
        raise SettingsError(f"{p}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{p}: {exc}") from exc
    return JobSpec(str(raw.get("name") or p.stem), settings, p)
