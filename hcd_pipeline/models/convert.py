"""``hcd convert``: an original checkpoint of any supported family -> this package's ``.safetensors``."""

from __future__ import annotations

from pathlib import Path

from hcd_pipeline.models.edsr import SRRescaler
from hcd_pipeline.models.edsr_weights import save_edsr
from hcd_pipeline.models.registry import load_weights_file
from hcd_pipeline.models.weights import file_sha256, save_weights

__all__ = ["convert_weights"]


def convert_weights(src: str | Path, dst: str | Path) -> str:
    """Load ``src`` strictly (:func:`~hcd_pipeline.models.registry.load_weights_file`: IRN or EDSR, original or
    BasicSR layout) and write it to ``dst`` with provenance (the source's name and SHA-256). Returns a one-line
    description of what was converted."""
    model = load_weights_file(src)
    provenance = {"source": Path(src).name, "source_sha256": file_sha256(src, 64), "converted_by": "hcd convert"}
    c = model.config  # type: ignore[union-attr]
    if isinstance(model, SRRescaler):
        save_edsr(model, dst, provenance)
        return f"EDSR x{c.scale}, {c.blocks} blocks, width {c.width}"
    save_weights(model, dst, provenance)  # type: ignore[arg-type]
    return f"IRN x{c.scale}, {c.blocks} blocks, width {c.width}"
