"""What determines a stored LR (:class:`DownscaleSettings`) and the memory, tile and batch constants its layout policy uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from hcd_pipeline.core.device import GPU_MODES
from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.hcd.settings import DEFAULT_PRESET, METHODS, HCDSettings, get_preset
from hcd_pipeline.io.lr_formats import DEFAULT_QUALITY, check_format
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


@dataclass(frozen=True)
class DownscaleSettings:
    """Everything that determines the stored LR (recorded in every sidecar and Parquet row)."""

    model: str | None = None
    scale: int | None = None
    weights: str | None = None
    method: str = "hcd"
    preset: str = DEFAULT_PRESET
    overrides: dict[str, object] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    threads: int = 1  # torch intra-op threads during processing: part of what fixes the output bits
    tile: int | None = None  # LR pixels per tile side; None: tile images over AUTO_TILE_PIXELS; 0: never
    overlap: int = 16
    memory: str = "auto"  # fast | low | lowest (MEMORY_MODES); auto: from the image size (and free GPU memory)
    batch: int | None = None  # same-size images optimised together; None: 1 on the CPU, from free memory on CUDA
    gpu_mode: str = "deterministic"  # GPU_MODES: CUDA numerics (deterministic, or TF32 + autotuned cuDNN)
    lr_format: str = "png"  # codecs.LR_FORMATS: the stored LR file (lossy formats are judged as decoded)
    lr_quality: int = DEFAULT_QUALITY  # JPEG / WebP quality
    codec_aware: bool = True  # with lr_format jpeg: optimise the JPEG file's DCT coefficients (jpeg_hcd)
    metadata: str = "keep"  # METADATA_POLICIES: the source's ICC profile and EXIF in the LR file (keep: without GPS)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SettingsError(f"unknown method {self.method!r}; expected one of {METHODS}")
        check_format(self.lr_format, self.lr_quality)
        if self.metadata not in METADATA_POLICIES:
            raise SettingsError(f"metadata {self.metadata!r}: expected one of {METADATA_POLICIES}")
        if self.memory not in MEMORY_CHOICES:
            raise SettingsError(f"unknown memory mode {self.memory!r}; expected one of {MEMORY_CHOICES}")
        if self.gpu_mode not in GPU_MODES:
            raise SettingsError(f"unknown gpu_mode {self.gpu_mode!r}; expected one of {GPU_MODES}")
        if self.batch is not None and not 1 <= self.batch <= MAX_BATCH:
            raise SettingsError(f"batch must be between 1 and {MAX_BATCH}, got {self.batch}")
        if self.tile is not None and self.tile < 0:
            raise SettingsError(f"tile must be >= 0 (0: whole image), got {self.tile}")

    def hcd_settings(self) -> HCDSettings:
        return get_preset(self.preset, **self.overrides)
