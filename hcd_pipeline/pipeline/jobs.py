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

Every other field of :class:`PipelineSettings` whose ``spec`` metadata is ``top`` is a top-level key of the same
name (e.g. ``batch_size``, ``hcd_batch``, ``gpu_mode``, ``progress_interval``); `hcd run --help` lists them all.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.io.storage import StorageOptions
from hcd_pipeline.models.registry import MODELS, resolve_name
from hcd_pipeline.pipeline.settings import PipelineSettings, field_types, parse_actors, setting_fields

__all__ = ["JobSpec", "load_job", "SPEC_ENV", "SPEC_NAME_ENV"]

_SPEC_ONLY = {"name": (str,), "description": (str,), "actors": (int, dict), "resources": (dict,), "storage": (dict,)}
"""Keys of a spec that are not one :class:`PipelineSettings` field each; every other key is a field (``spec: top``)."""


def _top_keys() -> dict[str, tuple[type, ...]]:
    top = {n: field_types(n) for n, f in setting_fields().items() if f.metadata["spec"] in ("top", "required")}
    return {**top, **_SPEC_ONLY}


def _resource_keys() -> set[str]:
    return {n for n, f in setting_fields().items() if f.metadata["spec"] == "resources"}


class JobSpec:
    """A validated job: its name, the pipeline settings, and where it came from."""

    def __init__(self, name: str, settings: PipelineSettings, path: Path, raw: dict[str, Any] | None = None) -> None:
        self.name = name
        self.settings = settings
        self.path = path
        self.raw = raw or {}  # the validated mapping (what ``hcd submit`` ships: no comments, no credentials)


SPEC_ENV = "HCD_JOB_SPEC"
SPEC_NAME_ENV = "HCD_JOB_SPEC_NAME"
MAX_SPEC_BYTES = 1 << 20
"""Largest job spec read (a spec is a page of settings; a larger file is not one)."""
_SECRET = re.compile(r"secret|passw|token|credential|private|(^|_)key($|_)|access_?key|session", re.IGNORECASE)
"""Names of settings that hold credentials, at any depth of ``storage`` (``aws_secret_access_key``, ``token``, ...)."""


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors' aliases: a few hundred bytes of nested aliases expand to gigabytes (a "billion laughs"
    bomb), and settings never need them."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: ANN401 - PyYAML's untyped API
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in job specs", event.start_mark)
        return super().compose_node(parent, index)


def _secret_keys(value: Any, where: str) -> list[str]:  # noqa: ANN401 - any parsed YAML value
    """Dotted names of the credential-like keys in ``value`` (nested mappings and lists)."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            name = f"{where}.{k}"
            if _SECRET.search(str(k)):
                found.append(name)
            found += _secret_keys(v, name)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _secret_keys(v, f"{where}[{i}]")
    return found


def _load_raw(path: Path) -> dict[str, Any]:
    if str(path).startswith("env:"):
        # A submitted job carries its spec in the environment (see submit.py).
        text = os.environ.get(str(path)[4:], "")
        path = Path(os.environ.get(SPEC_NAME_ENV, "job.yaml"))
        if not text:
            raise SettingsError(f"{path}: job spec environment variable is empty")
    else:
        try:
            if path.stat().st_size > MAX_SPEC_BYTES:
                raise SettingsError(f"{path}: {path.stat().st_size} bytes; a job spec is at most {MAX_SPEC_BYTES} bytes")
            text = path.read_text()
        except OSError as exc:
            raise SettingsError(f"{path}: cannot read job spec ({exc.strerror or exc})") from exc
        except UnicodeDecodeError as exc:
            raise SettingsError(f"{path}: a job spec is UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if len(text) > MAX_SPEC_BYTES:
        raise SettingsError(f"{path}: {len(text)} characters; a job spec is at most {MAX_SPEC_BYTES} bytes")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        first = " ".join(str(exc).split())
        raise SettingsError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'} ({first})") from exc
    except RecursionError as exc:
        raise SettingsError(f"{path}: nested too deeply to be a job spec") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: a job spec is a mapping of settings, got {type(data).__name__}")
    return data


def load_job(path: str | Path) -> JobSpec:
    """Read and validate a job spec; every problem is reported with the file name and the key.

    Keys, types and defaults come from :class:`PipelineSettings` (its fields' metadata), the one settings model.
    """
    p = Path(path)
    raw = _load_raw(p)
    top, resources = _top_keys(), _resource_keys()
    unknown = sorted(set(raw) - set(top))
    if unknown:
        raise SettingsError(f"{p}: unknown keys {unknown}; allowed: {sorted(top)}")
    for key in ("input", "output"):
        if key not in raw:
            raise SettingsError(f"{p}: missing required key {key!r}")
    res = dict(raw.get("resources") or {}) if isinstance(raw.get("resources"), dict) else {}
    bad_res = set(res) - resources
    if bad_res:
        raise SettingsError(f"{p}: resources takes {sorted(resources)}, got {sorted(bad_res)}")
    checks = [(k, v, top[k]) for k, v in raw.items()] + [(f"resources.{k}", v, field_types(k)) for k, v in res.items()]
    for key, value, types in checks:
        if value is None:
            continue
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            want = " or ".join(t.__name__ for t in types)
            raise SettingsError(f"{p}: {key} must be {want}, got {type(value).__name__} {value!r}")
    st = dict(raw.get("storage") or {})
    secrets = _secret_keys(st, "storage")
    if secrets:
        raise SettingsError(
            f"{p}: {', '.join(secrets)}: credentials do not belong in job specs (they travel with submitted jobs); "
            "use the environment (AWS_ACCESS_KEY_ID, ...), the shared config files or the instance role"
        )
    allowed_st = {f.name for f in fields(StorageOptions)}
    if set(st) - allowed_st:
        raise SettingsError(f"{p}: storage takes {sorted(allowed_st)}, got {sorted(set(st) - allowed_st)}")
    if isinstance(st.get("endpoint_url"), str) and "@" in st["endpoint_url"].split("://", 1)[-1].split("/", 1)[0]:
        raise SettingsError(f"{p}: storage.endpoint_url: credentials do not belong in job specs (user:password@ in the URL)")
    st_types = {"endpoint_url": (str,), "anon": (bool,), "region": (str,), "extra": (dict,)}
    for k, v in st.items():
        if v is not None and not isinstance(v, st_types[k]):
            raise SettingsError(f"{p}: storage.{k} must be {st_types[k][0].__name__}, got {type(v).__name__} {v!r}")
    try:
        lo, hi = parse_actors(raw.get("actors", 1))
        kwargs: dict[str, Any] = {k: v for k, v in raw.items() if k not in _SPEC_ONLY and v is not None}
        kwargs.update({k: v for k, v in res.items() if v is not None})
        settings = PipelineSettings(**kwargs, min_actors=lo, max_actors=hi, storage=StorageOptions(**st))
        settings.downscale_settings().hcd_settings()  # validates preset overrides
        if settings.model is not None and resolve_name(settings.model, settings.scale) not in MODELS:
            raise SettingsError(f"unknown model {settings.model!r}; available: {sorted(MODELS)}")
    except SettingsError as exc:
        raise SettingsError(f"{p}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{p}: {exc}") from exc
    return JobSpec(str(raw.get("name") or p.stem), settings, p, raw)
