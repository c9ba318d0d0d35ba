"""The table of available models and :func:`load_model`.

Shipped weights live in ``hcd_pipeline/weights/`` (provenance in each file's header and in ``docs/training.md``).
Names carry tags, as timm names weights (``name.tag``); a bare name means its default tag (:data:`DEFAULT_TAGS`).
A tag names one weights file, so an LR is always upscaled by the weights that made it (sidecars record the tagged
name and the file's ``weights_sha256``). ``.v1`` / ``.v2`` are training generations stored as float32, as trained
(not shipped: users who made LRs with them keep the file and pass it with ``--weights``); ``-fp16`` tags hold the
same weights stored as float16 (half the bytes; the model still computes in float32; Set5 means unchanged at
0.001 dB, ``docs/models.md``), which is what ships.

``irn-x2`` / ``irn-x4`` are the default IRNs (4 blocks per level); ``irn-x2.v3-fp16`` / ``irn-x4.v4-fp16``, the
same grown to IRN's 8 blocks and trained on, are opt-in (exported as float16 only; ``docs/training.md``; ``.v2-fp16``,
their first 8-block files, and ``irn-x4.v3-fp16`` each shipped in one release and are known by their sha256).
``irn-x2-jpeg`` / ``irn-x4-jpeg`` are the codec-robust models: the
shipped chain unchanged (their files hold only the restorer and name the chain's file as their base) plus an LR
restorer trained with JPEG between downscaler and upscaler, used for LRs stored as JPEG (:func:`for_lr_format`).
``irn-x2-jpeg-joint`` / ``irn-x4-jpeg-joint`` fine-tune the chain too, with the LR tied to bicubic (``--lambda-fit``
8x its default): their own LRs differ, reconstruct better from JPEG and worse from PNG (``docs/training.md``), so
they are for archives that store the LR as JPEG; ``.v2`` is ``.v1``'s recipe trained 3-4x longer. ``edsr-x2`` /
``edsr-x4`` are the SR pair (:mod:`.edsr`): the standard bicubic thumbnail, upscaled by an EDSR-baseline network
trained here; HCD optimises the thumbnail for that network (weights stored as float16). ``tiny-irn-x2`` /
``tiny-irn-x4`` are test-sized models (one block per level, width 8, trained for a few hundred steps, 0.4 MB) that
keep CI and users' own smoke tests fast; they are not meant for real images.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from hcd_pipeline.core.errors import SettingsError, WeightsError
from hcd_pipeline.models.bicubic import BicubicRescaler
from hcd_pipeline.models.edsr_weights import FORMAT as EDSR_FORMAT
from hcd_pipeline.models.edsr_weights import edsr_from_state_dict, is_edsr_state_dict, load_edsr
from hcd_pipeline.models.protocol import Rescaler
from hcd_pipeline.models.weights import FORMAT as IRN_FORMAT
from hcd_pipeline.models.weights import file_sha256, load_irn, load_original_checkpoint, read_state_dict

__all__ = [
    "ModelSpec",
    "MODELS",
    "DEFAULT_MODELS",
    "DEFAULT_TAGS",
    "DEPRECATED",
    "recorded_name",
    "RESTORED_FORMATS",
    "load_model",
    "for_lr_format",
    "resolve_name",
    "codec_model_hint",
    "model_fingerprint",
    "weights_path",
    "weights_file",
    "load_weights_file",
    "safetensors_header",
]

RESTORED_FORMATS = ("jpeg",)
"""Stored-LR formats that a codec-robust model's restorer was trained for (``hcd train --codec jpeg``)."""


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the model table.

    Attributes:
        name: what users type (``--model``).
        kind: ``"irn"`` (IRN weights), ``"sr"`` (bicubic down + EDSR up, EDSR weights) or ``"bicubic"`` (no weights,
            any integer scale).
        scale: fixed scale of the weights, or None for scale-free models.
        weights: file name under ``hcd_pipeline/weights/``, or None (the bicubic pair, and tags not shipped).
        description: one line for ``hcd models``.
        sha256: for a tag whose weights are not shipped, the short sha256 of its file (what sidecars recorded as
            ``weights_sha256``), so that users can tell the file they kept.
    """

    name: str
    kind: str
    scale: int | None
    weights: str | None
    description: str
    sha256: str | None = None

    @property
    def shipped(self) -> bool:
        return self.weights is not None or self.kind == "bicubic"


def _irn(name: str, scale: int, description: str, *, fp32_sha: str, tag: str = "v1", note: str = "") -> dict[str, ModelSpec]:
    """One IRN generation as two table rows: ``name.tag`` (its float32 file, as trained; not shipped) and
    ``name.tag-fp16`` (the same weights stored as float16: shipped, half the bytes, Set5 means unchanged at 0.001 dB,
    ``docs/models.md``)."""
    fp32, fp16 = f"{name}.{tag}", f"{name}.{tag}-fp16"
    return {
        fp32: ModelSpec(fp32, "irn", scale, None, f"{description}; float32 (not shipped: --weights FILE)", fp32_sha),
        fp16: ModelSpec(fp16, "irn", scale, f"{fp16}.safetensors", f"{description}; stored as float16{note}"),
    }


MODELS: dict[str, ModelSpec] = {
    **_irn("irn-x2", 2, "IRN x2 trained here on BSD200", fp32_sha="93019e7206844e46", note="; the default at x2"),
    **_irn("irn-x4", 4, "IRN x4 trained here on BSD200", fp32_sha="4528b2f64c009ea8", note="; the default at x4"),
    # The 8-block generations (#25), opt-in until the GPU runs bring them to the published IRN's quality: the defaults
    # grown to IRN's 8 blocks per level and trained on (CPU, docs/training.md); exported as float16 only. .v2 (session
    # 14) shipped for one release; .v3 (session 15) is .v2 trained on and replaces it in the package. At x4, .v4
    # (session 16) is .v3 trained on and replaces it; at x2 the same run did not beat .v3, which stays.
    "irn-x2.v2-fp16": ModelSpec("irn-x2.v2-fp16", "irn", 2, None, "irn-x2 grown to 8 blocks per level, session 14 (not shipped"
                                " since .v3: --weights FILE)", sha256="2f128cc093c70a53"),
    "irn-x4.v2-fp16": ModelSpec("irn-x4.v2-fp16", "irn", 4, None, "irn-x4 grown to 8 blocks per level, session 14 (not shipped"
                                " since .v3: --weights FILE)", sha256="93615583c34590cf"),
    "irn-x2.v3-fp16": ModelSpec("irn-x2.v3-fp16", "irn", 2, "irn-x2.v3-fp16.safetensors", "irn-x2 grown to IRN's 8 blocks per"
                                " level and trained on: Set5 +0.88 dB plain at 1.9x the time; stored as float16"),
    "irn-x4.v3-fp16": ModelSpec("irn-x4.v3-fp16", "irn", 4, None, "irn-x4 grown to 8 blocks per level, session 15 (not shipped"
                                " since .v4: --weights FILE)", sha256="db423dce61bb1d14"),
    "irn-x4.v4-fp16": ModelSpec("irn-x4.v4-fp16", "irn", 4, "irn-x4.v4-fp16.safetensors", "irn-x4 grown to IRN's 8 blocks per"
                                " level and trained on: Set5 +0.96 dB plain at 1.9x the time; stored as float16"),
    **_irn("irn-x2-jpeg", 2, "irn-x2 + an LR restorer for JPEG-stored LRs (same LR as irn-x2)", fp32_sha="0369c145c408d653"),
    **_irn("irn-x4-jpeg", 4, "irn-x4 + an LR restorer for JPEG-stored LRs (same LR as irn-x4)", fp32_sha="c4b2b2edb676ee64"),
    "irn-x2-jpeg-joint.v1": ModelSpec(
        "irn-x2-jpeg-joint.v1",
        "irn",
        2,
        None,
        "irn-x2 fine-tuned with JPEG between its halves, LR tied to bicubic, + restorer (not shipped: --weights FILE)",
        sha256="0f28ff351a2afd91",
    ),
    "irn-x4-jpeg-joint.v1": ModelSpec(
        "irn-x4-jpeg-joint.v1",
        "irn",
        4,
        None,
        "irn-x4 fine-tuned with JPEG between its halves, LR tied to bicubic, + restorer (not shipped: --weights FILE)",
        sha256="6ceb4dbb35940109",
    ),
    **_irn("irn-x2-jpeg-joint", 2, "v1's recipe trained 4x longer on larger crops: for LRs stored as JPEG (its own LR)", tag="v2",
           fp32_sha="814c9343fc6dae25"),
    **_irn("irn-x4-jpeg-joint", 4, "v1's recipe trained 3x longer on larger crops: for LRs stored as JPEG (its own LR)", tag="v2",
           fp32_sha="1db9c9a6175142ed"),
    "edsr-x2": ModelSpec(
        "edsr-x2", "sr", 2, "edsr-x2.safetensors", "SR pair: MATLAB bicubic down + EDSR-baseline x2 up, trained here on BSD200"
    ),
    "edsr-x4": ModelSpec(
        "edsr-x4", "sr", 4, "edsr-x4.safetensors", "SR pair: MATLAB bicubic down + EDSR-baseline x4 up, trained here on BSD200"
    ),
    "bicubic": ModelSpec("bicubic", "bicubic", None, None, "MATLAB bicubic down + bicubic up; needs --scale"),
    "tiny-irn-x2": ModelSpec("tiny-irn-x2", "irn", 2, "tiny-irn-x2.safetensors", "test-sized IRN x2 for CI"),
    "tiny-irn-x4": ModelSpec("tiny-irn-x4", "irn", 4, "tiny-irn-x4.safetensors", "test-sized IRN x4 for CI"),
}  # fmt: skip
DEFAULT_MODELS = {2: "irn-x2", 4: "irn-x4"}
DEFAULT_TAGS = {
    "irn-x2": "v1-fp16",
    "irn-x4": "v1-fp16",
    "irn-x2-jpeg": "v1-fp16",
    "irn-x4-jpeg": "v1-fp16",
    "irn-x2-jpeg-joint": "v2-fp16",
    "irn-x4-jpeg-joint": "v2-fp16",
}
"""A name without a tag means its default tag: the current generation, as shipped."""
DEPRECATED = {"irn-x2-jpeg-joint-v2": "irn-x2-jpeg-joint.v2-fp16", "irn-x4-jpeg-joint-v2": "irn-x4-jpeg-joint.v2-fp16"}
"""Names of earlier releases that users may still type -> the shipped tagged name (a warning says so)."""
RECORDED = {
    **{name: f"{name}.v1" for name in ("irn-x2", "irn-x4", "irn-x2-jpeg", "irn-x4-jpeg", "irn-x2-jpeg-joint", "irn-x4-jpeg-joint")},
    "irn-x2-jpeg-joint-v2": "irn-x2-jpeg-joint.v2",
    "irn-x4-jpeg-joint-v2": "irn-x4-jpeg-joint.v2",
}
"""Model names as sidecars and ``job.json`` files of earlier releases recorded them -> the tagged name of the weights
they were made with (before tags, a bare name meant the first generation, stored as float32; this release records
tagged names)."""


_WARNED: set[str] = set()


def recorded_name(name: str) -> str:
    """The tagged name of a model name read from an output of any release (see :data:`RECORDED`)."""
    return RECORDED.get(name, name)


def weights_path(spec: ModelSpec) -> Path:
    """Path of a shipped weights file."""
    if spec.weights is None:
        raise SettingsError(f"model {spec.name!r} has no weights file")
    return Path(str(resources.files("hcd_pipeline") / "weights" / spec.weights))


def weights_file(model: str) -> Path | None:
    """The weights file behind ``model``: a table name's shipped file (None for a model without weights, the
    bicubic pair; a bare name means its default tag), anything else taken as a path."""
    spec = MODELS.get(resolve_name(model, None))
    if spec is None:
        return Path(model)
    return weights_path(spec) if spec.weights is not None else None


def model_fingerprint(name: str, weights: str | Path | None = None) -> str:
    """Short sha256 of the weights a model uses (``"none"`` for the bicubic pair)."""
    if weights is not None:
        return file_sha256(weights)
    spec = MODELS.get(resolve_name(name, None))
    if spec is None:
        return "none"
    if spec.weights is None:
        return spec.sha256 or "none"  # a tag not shipped: its file's, as sidecars recorded it
    return file_sha256(weights_path(spec))


def safetensors_header(path: str | Path) -> dict[str, str]:
    """The metadata of a ``.safetensors`` file (``format``, ``config``, ``provenance``, ...)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable .safetensors file ({exc})") from exc


def load_weights_file(path: str | Path, scale: int | None = None) -> torch.nn.Module:
    """Load a weights file of any supported family, strictly, by its content (not its name).

    ``.safetensors``: ours, IRN (``hcd_pipeline.irn/1``) or EDSR (``hcd_pipeline.edsr/1``) by the header's format.
    Anything else is read as a PyTorch checkpoint: the original IRN's (Haar levels), the original EDSR code's
    (``head.0``, ``body.K.body.N``, ``tail``) or BasicSR's (``conv_first``, ``conv_after_body``, ``upsample``).
    ``scale`` (if given) must equal the file's. Raises :class:`WeightsError` naming the file otherwise."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{p}: weights file not found")
    if p.suffix == ".safetensors":
        fmt = safetensors_header(p).get("format")
        if fmt == EDSR_FORMAT:
            return load_edsr(p, scale)
        if fmt != IRN_FORMAT:
            raise WeightsError(f"{p}: header format is {fmt!r}, expected {IRN_FORMAT!r} or {EDSR_FORMAT!r}")
        return load_irn(p, scale)
    sd = read_state_dict(p)
    if is_edsr_state_dict(sd):
        return edsr_from_state_dict(sd, str(p), scale)
    if any(k.endswith("haar_weights") for k in sd):
        return load_original_checkpoint(p, scale)
    raise WeightsError(
        f"{p}: tensors are neither IRN's (operations.K.haar_weights, ...) nor EDSR's (head.0.weight or conv_first.weight, "
        f"...); found e.g. {sorted(sd)[:3]}"
    )


def for_lr_format(model: Rescaler, lr_format: str) -> Rescaler:
    """The model that upscales an LR stored as ``lr_format``: a codec-robust model (one with an LR restorer) uses
    its restorer only for the formats of :data:`RESTORED_FORMATS`, and is the plain chain for PNG (and WebP, which
    it was not trained for); other models are returned as they are."""
    if lr_format in RESTORED_FORMATS or getattr(model, "restorer", None) is None:
        return model
    return model.without_restorer()  # type: ignore[attr-defined, no-any-return]


def resolve_name(name: str | None, scale: int | None) -> str:
    """The table name :func:`load_model` loads for ``name`` / ``scale``: ``name`` with its default tag (and a
    deprecated name mapped, with a warning), else the default model of ``scale`` (:data:`DEFAULT_MODELS`), else
    ``irn-x2``."""
    if name is not None:
        if name in DEPRECATED:
            if name not in _WARNED:  # once per name and process: every layer resolves the name it is given
                _WARNED.add(name)
                warnings.warn(f"model name {name!r} is deprecated: it is {DEPRECATED[name]!r}", FutureWarning, stacklevel=2)
            return DEPRECATED[name]
        return f"{name}.{DEFAULT_TAGS[name]}" if name in DEFAULT_TAGS else name
    if scale is None:
        return resolve_name(DEFAULT_MODELS[2], None)  # the documented default model
    if scale not in DEFAULT_MODELS:
        raise SettingsError(f"no default model for scale {scale}; choose one of {sorted(MODELS)}")
    return resolve_name(DEFAULT_MODELS[scale], None)


def codec_model_hint(name: str | None, scale: int | None, lr_format: str) -> str | None:
    """One line of advice when LRs are stored in a format that a shipped codec model suits better than the chosen
    default IRN (None otherwise): the CLI prints it, the library never changes the model behind a user's back."""
    try:
        chosen = resolve_name(name, scale)
    except SettingsError:  # no default model at this scale: nothing to suggest
        return None
    chosen = chosen.split(".")[0]  # the name without its tag
    if lr_format not in RESTORED_FORMATS or chosen not in DEFAULT_MODELS.values():
        return None
    # JPEG q90 with HCD in the file on both sides, Set14 to Set5 (docs/results.md, "Stored as JPEG or WebP")
    joint, same_lr = {"irn-x2": ("2.4-3.0", "1.9-2.4"), "irn-x4": ("1.5-2.1", "1.1-1.5")}[chosen]
    return (
        f"note: {chosen}'s upscaler never saw {lr_format.upper()}; from {lr_format.upper()} LRs --model {chosen}-jpeg-joint "
        f"reconstructs {joint} dB better (q90), --model {chosen}-jpeg {same_lr} dB better with {chosen}'s own LR "
        "(docs/lr_formats.md)"
    )


def load_model(
    name: str | None = None,
    *,
    scale: int | None = None,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> Rescaler:
    """Load a model by table name, or from a weights file of any supported family.

    Args:
        name: a key of :data:`MODELS`; None picks the default model for ``scale`` (``irn-x2`` without one).
        scale: required for scale-free models (``bicubic``); checked against fixed-scale models.
        weights: a ``.safetensors`` (ours) or a PyTorch checkpoint (original IRN or EDSR, BasicSR's EDSR); overrides
            the table's (see :func:`load_weights_file`).
        device: where to put the model (``"auto"``: CUDA if visible; see :func:`~hcd_pipeline.core.device.resolve_device`).

    Returns:
        A frozen (``requires_grad = False``) model in eval mode that follows :class:`Rescaler`.
    """
    if weights is not None:
        model: torch.nn.Module = load_weights_file(weights, scale)
    else:
        name = resolve_name(name, scale)
        spec = MODELS.get(name)
        if spec is None:
            raise SettingsError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
        if not spec.shipped:
            raise WeightsError(
                f"{name}: its weights are not shipped with this release; pass the file you kept with --weights FILE "
                f"(its sha256 starts {spec.sha256}; git history of hcd_pipeline/weights/ has it)"
            )
        if spec.kind == "bicubic":
            if scale is None:
                raise SettingsError(f"model {name!r} is scale-free: give --scale")
            model = BicubicRescaler(int(scale))
        else:
            if scale is not None and spec.scale != scale:
                raise SettingsError(f"model {name!r} is x{spec.scale}, but --scale {scale} was given")
            path = weights_path(spec)
            if not path.is_file():
                raise WeightsError(f"{path}: shipped weights for {name!r} are missing from the installation")
            model = load_edsr(path, spec.scale) if spec.kind == "sr" else load_irn(path, spec.scale)
    from hcd_pipeline.core.device import resolve_device

    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval().to(resolve_device(device) if isinstance(device, str) else device)  # type: ignore[return-value]
