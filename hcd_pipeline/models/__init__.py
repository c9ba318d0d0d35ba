"""Rescaling models: IRN, the MATLAB bicubic pair, the model table and weight formats."""

from .bicubic import BicubicRescaler
from .irn import IRN, IRNConfig
from .protocol import Rescaler
from .registry import DEFAULT_MODELS, MODELS, ModelSpec, load_model
from .weights import convert_checkpoint, load_irn, load_original_checkpoint, save_weights

__all__ = [
    "IRN",
    "IRNConfig",
    "BicubicRescaler",
    "Rescaler",
    "ModelSpec",
    "MODELS",
    "DEFAULT_MODELS",
    "load_model",
    "load_irn",
    "load_original_checkpoint",
    "convert_checkpoint",
    "save_weights",
]
