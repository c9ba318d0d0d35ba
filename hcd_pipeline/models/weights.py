"""IRN weights: our ``.safetensors`` format and the original IRN ``.pth`` checkpoints.

Our format: a safetensors file whose header metadata holds ``format = "hcd_pipeline.irn/1"``,
``config`` (the :class:`IRNConfig` as JSON) and ``provenance`` (JSON: data, steps, command, ...).
A file may hold only the tensors that differ from another file (a codec-robust model that adds a restorer to a
shipped chain): its header then names ``base`` (a file name in the same folder) and ``base_sha256``; reading it
reads the base first, checks its hash, and lays the file's own tensors over it.
Original checkpoints (``IRN_x2.pth`` / ``IRN_x4.pth`` from the IRN authors) are plain state_dicts with
the same keys, possibly with a ``module.`` prefix or inside a wrapper dict; their architecture is
fixed (8 blocks per level, width 32), their scale is read from the keys.

Every loader is strict: missing, unexpected or mis-shaped tensors raise
:class:`~hcd_pipeline.core.errors.WeightsError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from hcd_pipeline.core.errors import WeightsError
from hcd_pipeline.io.images import atomic_write_bytes
from hcd_pipeline.models.irn import IRN, IRNConfig

__all__ = [
    "FORMAT",
    "save_weights",
    "read_weights",
    "load_irn",
    "load_original_checkpoint",
    "read_state_dict",
    "convert_checkpoint",
    "file_sha256",
    "save_bytes",
]

FORMAT = "hcd_pipeline.irn/1"
_WRAPPER_KEYS = ("state_dict", "params", "params_ema", "model", "netG", "network")


def file_sha256(path: str | Path, length: int = 16) -> str:
    """Hex sha256 of a file (first ``length`` characters), recorded with every output."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def save_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """``safetensors.torch.save`` with a canonical header: the same tensors and metadata give the same bytes.

    The safetensors writer keeps the metadata in a hash map whose order changes from call to call, so two exports of
    one checkpoint had different sha256s, and fingerprints (sidecars, ``init_sha256``) are of bytes. The header's JSON
    is rewritten with sorted keys and padded with spaces to 8 bytes, as the format allows; offsets are relative to the
    data, which is copied unchanged."""
    raw = save(tensors, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8 : 8 + n]), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + raw[8 + n :]


def save_weights(
    model: IRN, path: str | Path, provenance: dict[str, str], *, base: str | Path | None = None, dtype: torch.dtype = torch.float32
) -> int:
    """Write ``model``'s trainable tensors and config to ``path`` atomically (.safetensors), stored as ``dtype``
    (float32, or float16: half the bytes; the model computes in float32 whatever the file holds).

    With ``base`` (one of our files, which must sit in the folder of ``path`` when it is read), only the tensors
    that are absent from it or differ from it are written. Returns the number of tensors written."""
    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"IRN weights are stored as float32 or float16, not {dtype}")
    tensors = {k: v.detach().cpu().to(dtype).contiguous() for k, v in model.state_dict().items() if not k.endswith("haar_weights")}
    meta = {"format": FORMAT, "config": json.dumps(model.config.to_dict()), "provenance": json.dumps(provenance)}
    if dtype != torch.float32:  # files of float32 tensors keep the header of earlier releases
        meta["dtype"] = str(dtype).removeprefix("torch.")
    if base is not None:
        _, base_tensors, _ = read_weights(base)
        tensors = {k: v for k, v in tensors.items() if k not in base_tensors or not torch.equal(base_tensors[k], v)}
        meta.update(base=Path(base).name, base_sha256=file_sha256(base, 64))
    atomic_write_bytes(path, save_bytes(tensors, meta))
    return len(tensors)


def read_weights(path: str | Path) -> tuple[IRNConfig, dict[str, torch.Tensor], dict[str, str]]:
    """Read one of our ``.safetensors`` files -> (config, tensors, provenance)."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{p}: weights file not found")
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{p}: not a readable .safetensors file ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{p}: header format is {meta.get('format')!r}, expected {FORMAT!r}")
    try:
        config = IRNConfig(**json.loads(meta["config"]))
        provenance = json.loads(meta.get("provenance", "{}"))
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{p}: header config is invalid ({exc})") from exc
    if meta.get("base"):
        base = p.parent / Path(meta["base"]).name
        if not base.is_file():
            raise WeightsError(f"{p}: holds only what differs from {base.name}, which is not beside it")
        if file_sha256(base, 64) != meta.get("base_sha256"):
            raise WeightsError(f"{p}: its base {base} is not the file it was made from (sha256 differs)")
        _, base_tensors, _ = read_weights(base)
        tensors = {**base_tensors, **tensors}
    return config, tensors, provenance


def _load_strict(model: IRN, tensors: dict[str, torch.Tensor], name: str, *, with_haar: bool) -> None:
    expected = {k: v.shape for k, v in model.state_dict().items() if with_haar or not k.endswith("haar_weights")}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"{name}: tensors do not match IRN x{model.scale} (blocks={model.config.blocks}, width={model.config.width}): "
            f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    for k, shape in expected.items():
        if tensors[k].shape != shape:
            raise WeightsError(f"{name}: tensor {k} has shape {tuple(tensors[k].shape)}, expected {tuple(shape)}")
        if not torch.isfinite(tensors[k]).all():
            raise WeightsError(f"{name}: tensor {k} contains NaN or inf")
    model.load_state_dict(tensors, strict=False)
    if with_haar:
        ref = IRN(model.config).state_dict()
        for k in expected:
            if k.endswith("haar_weights") and not torch.equal(tensors[k].float(), ref[k]):
                raise WeightsError(f"{name}: {k} is not the fixed Haar filter bank")


def _unwrap(obj: object, name: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], dict):
                return _unwrap(obj[key], name)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {re.sub(r"^module\.", "", k): v for k, v in obj.items()}
    raise WeightsError(f"{name}: expected a state_dict (a dict of tensors), found {type(obj).__name__}")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a PyTorch checkpoint (tensors only: ``weights_only`` loading), unwrapped from the usual
    wrappers (``state_dict``, ``params``, ``params_ema``, ...) and without a ``module.`` prefix."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{p}: checkpoint file not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise WeightsError(f"{p}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0]})") from exc
    return _unwrap(obj, str(p))


def load_original_checkpoint(path: str | Path, scale: int | None = None) -> IRN:
    """Load an original IRN checkpoint (``IRN_x2.pth`` / ``IRN_x4.pth``) strictly.

    The scale is inferred from the number of Haar levels in the file; if ``scale`` is given it must
    agree (a x4 file asked for as x2 is refused).
    """
    p = Path(path)
    sd = read_state_dict(p)
    levels = sum(1 for k in sd if k.endswith("haar_weights"))
    if levels == 0:
        raise WeightsError(f"{p}: no Haar levels found; not an IRN checkpoint")
    found = 2**levels
    if scale is not None and scale != found:
        raise WeightsError(f"{p}: checkpoint is IRN x{found}, but x{scale} was asked for")
    model = IRN(IRNConfig(scale=found, blocks=8, width=32))
    _load_strict(model, {k: v.float() for k, v in sd.items()}, str(p), with_haar=True)
    return model.eval()


def load_irn(path: str | Path, scale: int | None = None) -> IRN:
    """Load IRN weights from our ``.safetensors`` or an original ``.pth``; check the scale if given."""
    p = Path(path)
    if p.suffix == ".safetensors":
        config, tensors, _ = read_weights(p)
        if scale is not None and config.scale != scale:
            raise WeightsError(f"{p}: weights are IRN x{config.scale}, but x{scale} was asked for")
        model = IRN(config)
        _load_strict(model, tensors, str(p), with_haar=False)
        return model.eval()
    return load_original_checkpoint(p, scale)


def convert_checkpoint(src: str | Path, dst: str | Path) -> IRNConfig:
    """Convert an original IRN ``.pth`` into our ``.safetensors`` (provenance records the source hash)."""
    model = load_original_checkpoint(src)
    save_weights(model, dst, {"source": Path(src).name, "source_sha256": file_sha256(src, 64), "converted_by": "hcd convert"})
    return model.config
