"""hcd_pipeline: better small images at scale with Hierarchical Collaborative Downscaling.

Layers, one folder each, bottom up (imports only go down; docs/architecture.md): :mod:`.core` (resize, metrics,
devices) <- :mod:`.io` (images, LR formats, storage) <- :mod:`.jpeg` <- :mod:`.models` <- :mod:`.hcd` (the method)
<- :mod:`.downscaler` (one image) <- :mod:`.pipeline` (Ray Data), :mod:`.evaluation`, :mod:`.training` <-
:mod:`.report` <- :mod:`.cli`.
"""

from hcd_pipeline._version import __version__
from hcd_pipeline.core.errors import HcdError, ImageReadError, ImageWriteError, SettingsError, WeightsError
from hcd_pipeline.core.metrics import Scores, psnr, rgb_to_y, score_pair, ssim
from hcd_pipeline.core.resize import imresize
from hcd_pipeline.downscaler import Downscaler, DownscaleSettings, upscale_lr
from hcd_pipeline.hcd.optimise import HCDResult, collaborative_downscale
from hcd_pipeline.hcd.settings import PRESETS, HCDSettings, get_preset
from hcd_pipeline.io.images import DecodedImage, decode_image, encode_png, read_image, write_png
from hcd_pipeline.models import IRN, BicubicRescaler, IRNConfig, Rescaler, load_model

__all__ = [
    "__version__",
    "HcdError",
    "ImageReadError",
    "ImageWriteError",
    "SettingsError",
    "WeightsError",
    "imresize",
    "psnr",
    "ssim",
    "rgb_to_y",
    "score_pair",
    "Scores",
    "DecodedImage",
    "read_image",
    "decode_image",
    "encode_png",
    "write_png",
    "IRN",
    "IRNConfig",
    "BicubicRescaler",
    "Rescaler",
    "load_model",
    "HCDSettings",
    "HCDResult",
    "PRESETS",
    "get_preset",
    "collaborative_downscale",
    "Downscaler",
    "DownscaleSettings",
    "upscale_lr",
]
