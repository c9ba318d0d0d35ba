"""Hierarchical Collaborative Downscaling (HCD; Xu, Guo et al., ICCV 2023): the LR image optimised for a fixed upscaler.

:mod:`.settings` (settings and presets), :mod:`.judge` (the no-harm judge), :mod:`.optimise` (the optimisation of
LR pixels), :mod:`.tiles` (large images in overlapping tiles), :mod:`.jpeg_file` (the optimisation of a JPEG file's
DCT coefficients). Everything here is I/O-free: tensors in, tensors out; randomness only from a given generator.
"""

from hcd_pipeline.hcd.judge import Judge, ReconstructionJudge, reconstruction_psnr
from hcd_pipeline.hcd.optimise import HCDResult, collaborative_downscale, decode_z
from hcd_pipeline.hcd.settings import DEFAULT_PRESET, JUDGES, METHODS, PRESETS, HCDSettings, get_preset

__all__ = [
    "HCDSettings",
    "HCDResult",
    "PRESETS",
    "DEFAULT_PRESET",
    "METHODS",
    "JUDGES",
    "get_preset",
    "collaborative_downscale",
    "decode_z",
    "Judge",
    "ReconstructionJudge",
    "reconstruction_psnr",
]
