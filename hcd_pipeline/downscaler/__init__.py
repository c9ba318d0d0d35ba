"""One image in, one stored LR (and its sidecar) out: the per-image layer under the pipeline and the CLI.

:mod:`.settings` (what determines the LR), :mod:`.downscaler` (the model, layout, HCD, no-harm), :mod:`.record`
(scores, sidecar and file without the model), :mod:`.upscale` (a stored LR back to full size).
"""

from hcd_pipeline.downscaler.downscaler import Downscaler
from hcd_pipeline.downscaler.record import DownscaleOutput, ImageInfo, ModelResult, Recorder, bicubic_thumbnail, lr_fidelity
from hcd_pipeline.downscaler.settings import (
    AUTO_TILE,
    AUTO_TILE_PIXELS,
    LOW_MEMORY_PIXELS,
    MAX_BATCH,
    MEMORY_CHOICES,
    MEMORY_MODES,
    STEP_BYTES_PER_PIXEL,
    DownscaleSettings,
)
from hcd_pipeline.downscaler.upscale import stored_lr_format, upscale_lr, upscale_stored

__all__ = [
    "DownscaleSettings",
    "Downscaler",
    "Recorder",
    "ImageInfo",
    "ModelResult",
    "DownscaleOutput",
    "bicubic_thumbnail",
    "lr_fidelity",
    "upscale_lr",
    "upscale_stored",
    "stored_lr_format",
    "AUTO_TILE",
    "AUTO_TILE_PIXELS",
    "LOW_MEMORY_PIXELS",
    "MAX_BATCH",
    "MEMORY_CHOICES",
    "MEMORY_MODES",
    "STEP_BYTES_PER_PIXEL",
]
