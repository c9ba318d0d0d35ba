"""hcd_pipeline: better small images at scale with Hierarchical Collaborative Downscaling.

Layers, bottom up: maths (:mod:`.resize`, :mod:`.metrics`, :mod:`.hcd`) <- models (:mod:`.models`)
<- single-image service (:mod:`.service`) <- pipeline (:mod:`.pipeline`) <- CLI (:mod:`.cli`).
"""

from ._version import __version__
from .errors import HcdError, ImageReadError, ImageWriteError, SettingsError, WeightsError
from .hcd import PRESETS, HCDResult, HCDSettings, collaborative_downscale, get_preset
from .imageio import DecodedImage, decode_image, encode_png, read_image, write_png
from .metrics import Scores, psnr, rgb_to_y, score_pair, ssim
from .models import IRN, BicubicRescaler, IRNConfig, Rescaler, load_model
from .resize import imresize
from .service import Downscaler, DownscaleSettings, upscale_lr

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
