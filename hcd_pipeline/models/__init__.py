"""Rescaling models: IRN, the MATLAB bicubic pair, the model table and weight formats."""

from hcd_pipeline.models.bicubic import BicubicRescaler
from hcd_pipeline.models.irn import IRN, IRNConfig
from hcd_pipeline.models.protocol import Rescaler
from hcd_pipeline.models.registry import DEFAULT_MODELS, MODELS, ModelSpec, load_model
from hcd_pipeline.models.weights import convert_checkpoint, load_irn, load_original_checkpoint, save_weights

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
