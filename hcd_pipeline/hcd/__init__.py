"""Hierarchical Collaborative Downscaling (HCD; Xu, Guo et al., ICCV 2023): the LR image optimised for a fixed upscaler.

:mod:`.settings` (settings and presets), :mod:`.judge` (the no-harm judge), :mod:`.descent` (the one optimisation
loop and its per-item step rules), :mod:`.optimise` (HCD over HR and LR pixels), :mod:`.tiles` (large images in
overlapping tiles), :mod:`.jpeg_file` (HCD over a JPEG file's DCT coefficients). Everything here is I/O-free:
tensors in, tensors out; randomness only from a given generator.
"""

from hcd_pipeline.hcd.descent import BarzilaiBorwein, Descent, Evaluation, NormalisedGradient, TextbookAdam, descend
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
    "descend",
    "Evaluation",
    "Descent",
    "BarzilaiBorwein",
    "NormalisedGradient",
    "TextbookAdam",
]
