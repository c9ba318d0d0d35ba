"""``hcd convert``: an original checkpoint of any supported family -> this package's ``.safetensors``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.models.edsr import SRRescaler
from hcd_pipeline.models.edsr_weights import save_edsr
from hcd_pipeline.models.registry import load_weights_file, safetensors_header
from hcd_pipeline.models.weights import file_sha256, save_weights

__all__ = ["convert_weights"]


def convert_weights(src: str | Path, dst: str | Path, *, dtype: str = "float32", base: str | Path | None = None) -> str:
    """Load ``src`` strictly (:func:`~hcd_pipeline.models.registry.load_weights_file`: IRN or EDSR, original or
    BasicSR layout) and write it to ``dst`` with provenance (the source's name and SHA-256; one of our files keeps its
    own provenance too). IRN only: ``dtype`` ``"float16"`` stores half the bytes, ``base`` writes only the tensors
    that differ from that file. Returns a one-line description of what was converted."""
    model = load_weights_file(src)
    converted = {"source": Path(src).name, "source_sha256": file_sha256(src, 64), "converted_by": "hcd convert"}
    c = model.config  # type: ignore[union-attr]
    if isinstance(model, SRRescaler):
        if dtype != "float32" or base is not None:
            raise SettingsError(f"{src}: EDSR files are stored as float16 already; --dtype and --base are for IRN files")
        save_edsr(model, dst, converted)
        return f"EDSR x{c.scale}, {c.blocks} blocks, width {c.width}"
    # One of our files (the header says IRN, since the model is): keep its training provenance (a header read only).
    own = json.loads(safetensors_header(src).get("provenance") or "{}") if Path(src).suffix == ".safetensors" else {}
    provenance = {**own, "converted_from": converted["source"], "converted_from_sha256": converted["source_sha256"],
                  "converted_by": f"hcd convert --dtype {dtype}"} if own else converted  # fmt: skip
    save_weights(model, dst, provenance, dtype=getattr(torch, dtype), base=base)  # type: ignore[arg-type]
    return f"IRN x{c.scale}, {c.blocks} blocks, width {c.width}, {dtype}"
