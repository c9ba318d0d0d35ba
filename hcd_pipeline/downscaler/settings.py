"""What determines a stored LR (:class:`ImageSettings`, :class:`DownscaleSettings`) and the constants of the memory,
tile and batch policy."""

from __future__ import annotations

from dataclasses import dataclass, fields

from hcd_pipeline.core.device import GPU_MODES, PRECISIONS
from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.core.settings_fields import setting, setting_fields
from hcd_pipeline.hcd.settings import DEFAULT_PRESET, METHODS, PRESETS, HCDSettings, get_preset
from hcd_pipeline.io.lr_formats import DEFAULT_QUALITY, LR_FORMATS, check_format
from hcd_pipeline.io.metadata import METADATA_POLICIES

AUTO_TILE_PIXELS = 4096 * 1024
"""HR images with more pixels than this (4 MP: DIV2K's 2040 x 1356 fits whole) are optimised in tiles unless
``tile = 0``. Below it the whole image is optimised at once, with the memory-light backward when large."""
AUTO_TILE = 192
"""LR tile side used by the automatic tiling."""
LOW_MEMORY_PIXELS = 512 * 512
"""With ``memory="auto"``, optimised regions (whole image or tile) with more HR pixels than this use the
``low`` memory mode: plain autograd keeps every activation of every coupling block (``docs/results.md``,
"Speed", has the measured peaks)."""
MEMORY_MODES = {"fast": "store", "low": "recompute", "lowest": "reversible"}
"""``DownscaleSettings.memory`` -> the model's backward mode (``IRN.BACKWARDS``); "auto" picks fast or low."""
MEMORY_CHOICES = ("auto", *MEMORY_MODES)
"""Every value ``DownscaleSettings.memory`` (``--memory``) takes."""
STEP_BYTES_PER_PIXEL = {"fast": 11_900, "low": 1_100, "lowest": 1_050}
"""Peak bytes of one HCD step per HR pixel in each memory mode: the HR step (the larger) measured at 512 x 512 on
irn-x2 (``docs/results.md``, "Speed": 2.9 / 0.27 / 0.26 GiB), with 5 % headroom. On CUDA the memory policy sizes
layouts and batches from these and the device's free memory; on the CPU from :data:`LOW_MEMORY_PIXELS`."""
MAX_BATCH = 16
"""Most images optimised together in one model call."""


@dataclass(frozen=True, kw_only=True)
class ImageSettings:
    """What determines the stored LR of one image, declared once: ``hcd downscale`` / ``roundtrip`` flags, ``hcd run``
    flags, job-spec keys and the result fingerprint are all derived from these fields (:func:`~hcd_pipeline.core.
    settings_fields.setting`). :class:`DownscaleSettings` adds where it runs; the pipeline's settings add the job's."""

    model: str | None = setting(None, "model name (hcd models); default irn-x2 / irn-x4 by --scale, irn-x2 if neither", fp="always")
    scale: int | None = setting(None, "scale factor; needed for scale-free models (bicubic)", fp="always")
    weights: str | None = setting(
        None, "weights file: ours (.safetensors) or an original IRN, EDSR or BasicSR-EDSR checkpoint", fp="always"
    )
    method: str = setting("hcd", "plain (the model's own LR), lr, hr or hcd (the optimised LR)", choices=METHODS, fp="always")
    preset: str = setting(DEFAULT_PRESET, "HCD preset (docs/hcd.md)", choices=tuple(sorted(PRESETS)))
    overrides: dict[str, object] = setting(dict, "HCD settings that differ from the preset (--set KEY=VALUE)", cli=False)
    seed: int = setting(0, "seed for z and random starts", fp="always")
    threads: int = setting(
        1, "torch threads, or auto (this machine's cores: faster; the output bits depend on the count)", spec="resources",
        fp="always", parse="threads",
    )  # fmt: skip
    tile: int | None = setting(
        None, "LR tile side for tiled HCD; 0: whole image [default: tiles above 4 MP]", fp="unless-default", bounds=(0, None)
    )
    overlap: int = setting(16, "LR pixels that neighbouring tiles share (blended)", fp="unless-default", bounds=(0, None))
    memory: str = setting(
        "auto", "gradients through IRN: fast keeps every activation; low recomputes them block by block; lowest also"
        " rebuilds block inputs from outputs; auto: low above 0.26 MP", choices=MEMORY_CHOICES, fp="unless-default",
    )  # fmt: skip
    gpu_mode: str = setting("deterministic", "CUDA numerics: deterministic, or fast (TF32, autotuned cuDNN)", choices=GPU_MODES)
    precision: str = setting(
        "fp32", "numerics of the optimisation's model calls: fp32, tf32 (CUDA tensor cores), bf16 (autocast); what is"
        " judged and scored stays float32", choices=PRECISIONS, fp="unless-default",
    )  # fmt: skip
    lr_format: str = setting(
        "png", "stored LR file; jpeg / webp are judged as decoded (never worse than plain at that format)", choices=LR_FORMATS,
        fp="unless-default",
    )  # fmt: skip
    lr_quality: int = setting(DEFAULT_QUALITY, "JPEG / WebP quality", fp="unless-default", bounds=(1, 100))
    codec_aware: bool = setting(
        True, "with --lr-format jpeg: optimise the JPEG file's DCT coefficients (else the pixels, judged as decoded)",
        fp="unless-default",
    )  # fmt: skip
    metadata: str = setting(
        "keep", "the source's ICC profile and EXIF in the LR file: keep (GPS dropped), all, none", choices=METADATA_POLICIES,
        fp="unless-default",
    )  # fmt: skip

    def __post_init__(self) -> None:
        methods = setting_fields(type(self))["method"].metadata["choices"]  # a subclass may declare more (eval: official)
        if self.method not in methods:
            raise SettingsError(f"unknown method {self.method!r}; expected one of {methods}")
        check_format(self.lr_format, self.lr_quality)
        if self.metadata not in METADATA_POLICIES:
            raise SettingsError(f"metadata {self.metadata!r}: expected one of {METADATA_POLICIES}")
        if self.memory not in MEMORY_CHOICES:
            raise SettingsError(f"unknown memory mode {self.memory!r}; expected one of {MEMORY_CHOICES}")
        if self.gpu_mode not in GPU_MODES:
            raise SettingsError(f"unknown gpu_mode {self.gpu_mode!r}; expected one of {GPU_MODES}")
        if self.precision not in PRECISIONS:
            raise SettingsError(f"precision {self.precision!r}: expected one of {PRECISIONS}")
        if self.tile is not None and self.tile < 0:
            raise SettingsError(f"tile must be >= 0 (0: whole image), got {self.tile}")
        if self.overlap < 0:
            raise SettingsError(f"overlap must be >= 0, got {self.overlap}")

    def image_settings(self) -> dict[str, object]:
        """The :class:`ImageSettings` fields of these settings, by name (a fresh copy of ``overrides``)."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), dict) else v) for f in fields(ImageSettings)}


@dataclass(frozen=True, kw_only=True)
class DownscaleSettings(ImageSettings):
    """Everything that determines the stored LR (recorded in every sidecar and Parquet row): the image settings and
    where they run. ``device`` comes from the commands' ``--device`` (default ``auto`` there, ``cpu`` here)."""

    device: str = setting("cpu", "cpu, cuda, cuda:N or auto", cli=False)
    hcd_batch: int | None = setting(
        None, "same-size images optimised together in one model call (None: 1 on the CPU, from free memory on CUDA)", cli=False
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hcd_batch is not None and not 1 <= self.hcd_batch <= MAX_BATCH:
            raise SettingsError(f"hcd_batch must be between 1 and {MAX_BATCH}, got {self.hcd_batch}")

    def hcd_settings(self) -> HCDSettings:
        return get_preset(self.preset, **self.overrides)
