"""The no-harm judge: the quality (dB) of 8-bit LR candidates, measured on their 8-bit reconstructions exactly as
the metric rows measure them."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

import torch

from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.hcd.settings import JUDGES
from hcd_pipeline.models.protocol import Rescaler

Judge = Callable[[torch.Tensor, "torch.Tensor | None"], "torch.Tensor | float | list[float]"]
"""``judge(lr, z) -> dB``: the quality of 8-bit LR candidates (B, 3, h, w), higher is better: one value per item
(a (B,) tensor or a list; a float for B = 1)."""


class ReconstructionJudge:
    """The default judge: PSNR (dB) of the 8-bit reconstruction of an LR against ``hr`` rounded to 8 bits.

    ``hr``: (B, C, H, W) in [0, 1], or B tensors (C, H, W) of any sizes (sources before padding); ``channels``:
    ``"y"`` (BT.601 luma; a one-channel image is its own luma), ``"rgb"``, or ``"y+rgb"`` (Y, but ``-inf`` for an LR
    whose RGB PSNR is below that of the first LR judged, which every caller makes the plain LR); ``crop``: border pixels left out
    (default: the scale, the field's protocol); ``view``: maps item i's reconstruction (3, H', W') onto its
    source's channels and region (one callable for every item, or one per item; default: as it is). Calling it
    returns a (B,) float64 tensor (one upscale pass for the whole batch). ``decoded``: maps LR candidates to what
    users get from the stored file (``io.lr_formats.roundtrip`` for JPEG / WebP), so that a lossy file is judged as decoded.
    :class:`~hcd_pipeline.downscaler.Downscaler` passes each source's own region and channels, so that the judge
    equals the metric rows' ``psnr_y`` / ``psnr_rgb``; it then takes the reconstructions the judge already made
    (:meth:`reconstruction`) instead of upscaling the plain and the stored LR again.
    """

    KEEP = 16
    """Reconstructions remembered per item (the first, the plain LR's, is always kept)."""

    def __init__(
        self,
        model: Rescaler,
        hr: torch.Tensor | Sequence[torch.Tensor],
        *,
        channels: str = "y",
        crop: int | None = None,
        view: Callable[[torch.Tensor], torch.Tensor] | Sequence[Callable[[torch.Tensor], torch.Tensor]] | None = None,
        decoded: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        from hcd_pipeline.core.metrics import rgb_to_y, to_uint8_levels

        self.model, self.channels, self.decoded = model, channels, decoded
        self.crop = model.scale if crop is None else crop
        self.views = list(view) if isinstance(view, Sequence) else [view] * len(hr)
        psnr_judges = tuple(j for j in JUDGES if j != "loss")
        if channels not in psnr_judges:
            raise SettingsError(f"judge channels must be one of {psnr_judges}, got {channels!r}")
        self.rgb_refs = [to_uint8_levels(item) for item in hr]
        self.refs = [r if channels == "rgb" else rgb_to_y(r) for r in self.rgb_refs]
        self._recs: list[dict[bytes, torch.Tensor]] = [{} for _ in self.refs]
        self._rgb_floor: list[float | None] = [None] * len(self.refs)  # "y+rgb": the first (plain) LR's RGB PSNR

    @staticmethod
    def _key(lr_item: torch.Tensor) -> bytes:
        levels = torch.round(lr_item.detach().clamp(0, 1) * 255).to(torch.uint8).cpu().numpy().tobytes()
        return hashlib.blake2b(levels, digest_size=16).digest()

    def __call__(self, lr: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        from hcd_pipeline.core.metrics import psnr, rgb_to_y, to_uint8_levels

        seen = self.decoded(lr) if self.decoded is not None else lr  # a lossy file: what users decode from it
        with torch.no_grad():
            recs = self.model.upscale(seen, z).clamp(0, 1)
        out = []
        for i, (rec, ref, v) in enumerate(zip(recs, self.refs, self.views, strict=True)):
            rec8 = to_uint8_levels(v(rec) if v is not None else rec).to(ref.device)
            cache = self._recs[i]
            if len(cache) >= self.KEEP:
                cache.pop(list(cache)[1])  # the oldest after the first (the plain LR's)
            cache[self._key(lr[i])] = rec8.to(torch.uint8).cpu()
            value = psnr(ref, rec8 if self.channels == "rgb" else rgb_to_y(rec8), self.crop)
            if self.channels == "y+rgb":
                rgb = psnr(self.rgb_refs[i], rec8, self.crop)
                floor = self._rgb_floor[i]
                if floor is None:
                    self._rgb_floor[i] = rgb
                elif rgb < floor:
                    value = -math.inf  # worse than plain in colour: never kept, whatever its Y
            out.append(value)
        return torch.tensor(out, dtype=torch.float64)

    def reconstruction(self, i: int, lr_item: torch.Tensor) -> torch.Tensor | None:
        """Item i's 8-bit reconstruction (uint8, source channels and region) of an LR this judge judged, else None."""
        return self._recs[i].get(self._key(lr_item))


reconstruction_psnr = ReconstructionJudge
"""The default judge, by its function-style name (``reconstruction_psnr(model, hr, channels="y")``)."""
