"""Hierarchical Collaborative Downscaling (HCD; Xu, Guo et al., ICCV 2023).

The rescaling model stays fixed; the LR image is optimised for the upscaler by gradient descent on
the reconstruction loss, first through a perturbation ``d`` of the HR image (HR domain), then through a
perturbation ``e`` of the 8-bit LR image (LR domain). The result is an ordinary 8-bit LR image.

The settings and presets are :mod:`.settings`'s; the judge is :mod:`.judge`'s.

Everything here is I/O-free: tensors in, tensors out. Randomness comes only from ``generator``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from hcd_pipeline.core.device import precision_mode
from hcd_pipeline.core.errors import SettingsError
from hcd_pipeline.hcd.descent import BarzilaiBorwein, Evaluation, NormalisedGradient, descend, per_item, scores
from hcd_pipeline.hcd.judge import Judge, reconstruction_psnr
from hcd_pipeline.hcd.settings import DEFAULT_PRESET, METHODS, PRESETS, HCDSettings
from hcd_pipeline.models.irn import quantize_ste
from hcd_pipeline.models.protocol import Rescaler


@dataclass
class HCDResult:
    """Output of :func:`collaborative_downscale`.

    Attributes:
        lr: the 8-bit LR image to store, float (B, 3, h, w) holding multiples of 1/255.
        plain_lr: the plain downscaler's 8-bit LR, same shape.
        z: the z the decoder should use (None for models without a latent), (B, Cz, h, w).
        losses: per-step loss (MSE in [0, 1] units), HR stage then LR stage.
        changed: number of LR values that differ from ``plain_lr``.
        seconds: wall time per stage (``"hr"``, ``"lr"``, ``"total"``).
        kept: ``"plain"`` when the stored LR is the plain one (nothing optimised, or no iterate beat it under
            the judge), else ``"optimised"``.
        judged: the judge's values (dB) of the plain and the stored LR, ``{"plain": .., "stored": ..}``; empty
            with ``judge="loss"``. ``inf`` is a perfect reconstruction.
        items: for a batch (B > 1), one result per item with that item's losses, changes, choice and judged
            values (``seconds`` there are the batch's divided by B); the batch result's own ``losses`` are the
            per-step means over items, ``changed`` the sum, ``kept`` "optimised" if any item was. Empty for B = 1.
    """

    lr: torch.Tensor
    plain_lr: torch.Tensor
    z: torch.Tensor | None
    losses: list[float] = field(default_factory=list)
    changed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    kept: str = "optimised"
    judged: dict[str, float] = field(default_factory=dict)
    items: list[HCDResult] = field(default_factory=list)

    def split(self) -> list[HCDResult]:
        """One result per item (B = 1 each): a batch's ``items``, else this result itself."""
        return self.items or [self]


Generators = torch.Generator | Sequence[torch.Generator] | None
"""Where random numbers come from: one generator for the whole batch, or one per item (item i's numbers from
generator i, so that each item gets exactly the numbers it would get alone), or None (torch's default)."""


def _round8(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255.0) / 255.0


def _draw(kind: str, shape: tuple[int, ...] | torch.Size, gens: Generators, device: torch.device) -> torch.Tensor:
    """``torch.rand`` / ``randn`` of ``shape`` on ``device``; with one generator per item, item i's slice is drawn
    from generator i (on the generator's device: a CPU generator gives a GPU model the same numbers)."""
    fn = torch.randn if kind == "randn" else torch.rand
    if gens is None or isinstance(gens, torch.Generator):
        dev = gens.device if gens is not None else device
        return fn(tuple(shape), generator=gens, device=dev).to(device)
    if len(gens) != shape[0]:
        raise ValueError(f"{len(gens)} generators for a batch of {shape[0]}")
    return torch.cat([fn((1, *shape[1:]), generator=g, device=g.device).to(device) for g in gens])


def decode_z(
    model: Rescaler, lr_shape: torch.Size | tuple[int, ...], settings: HCDSettings, generator: Generators, device: torch.device
) -> torch.Tensor | None:
    """The z the decoder uses for an LR of ``lr_shape``: zeros, or N(0, 1) drawn from ``generator`` (per item)."""
    shape = model.z_shape(lr_shape)
    if shape is None:
        return None
    if settings.decode == "zero":
        return torch.zeros(shape, device=device)
    return _draw("randn", shape, generator, device) * _z_std(model)


def _z_std(model: Rescaler) -> float:
    return float(getattr(model, "z_std", 1.0))


def _random_ball(like: torch.Tensor, radius: float, budget: str, gen: Generators) -> torch.Tensor:
    if budget == "pixel":
        return (2 * _draw("rand", like.shape, gen, like.device) - 1) * radius
    d = _draw("randn", like.shape, gen, like.device)
    n = per_item(d.flatten(1).norm(dim=1), d)
    r = _draw("rand", n.shape, gen, like.device)
    return d * r / n * radius


def _project(d: torch.Tensor, base: torch.Tensor, radius: float, budget: str) -> torch.Tensor:
    """Project a perturbation onto the budget (per item) and keep ``base + d`` inside [0, 1]."""
    if budget == "pixel":
        d = d.clamp(-radius, radius)
    else:
        n = per_item(d.flatten(1).norm(dim=1), d)
        d = d * torch.clamp(radius / (n + 1e-12), max=1.0)
    return torch.max(torch.min(d, 1 - base), -base)


def _optimise(
    base: torch.Tensor,
    radius: float,
    steps: int,
    settings: HCDSettings,
    loss_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    gen: Generators,
    losses: list[list[float]],
    tick: Callable[[], None] | None,
    score: Callable[[torch.Tensor], torch.Tensor] | None = None,
    best: tuple[torch.Tensor, torch.Tensor] | None = None,
    candidate: Callable[[torch.Tensor], torch.Tensor] | None = None,
    numerics: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Minimise each item's ``loss_fn(base + d)`` over d in the budget (:func:`~.descent.descend` over one pixel
    perturbation); returns (the chosen points, their values).

    ``loss_fn`` returns (per-item loss (B,), candidates): a candidate is what would be kept for the point (e.g. the
    rounded LR). With ``keep_best`` the candidate with the highest ``score`` (or the lowest loss when ``score`` is
    None) wins, starting from ``best`` (values, candidates) when given; the values are None without ``keep_best``.
    ``candidate(point)``: the candidate without the loss (lets the last point be judged without a forward pass).
    """
    b = base.shape[0]
    d0 = _random_ball(base, radius, settings.budget, gen) if settings.random_start else torch.zeros_like(base)

    def make_optimizer(points: list[torch.Tensor]) -> torch.optim.Optimizer:
        if settings.optimizer == "adam":
            return torch.optim.Adam(points, lr=settings.step)
        if settings.optimizer == "bb":
            return BarzilaiBorwein(points, settings.step)
        return NormalisedGradient(points, settings.step)

    def evaluate(points: list[torch.Tensor]) -> Evaluation:
        return Evaluation(*loss_fn(base + points[0]))

    got = descend(
        [d0], steps, make_optimizer, evaluate, lambda points: [_project(points[0], base, radius, settings.budget)],
        best=best if best is not None else (torch.full((b,), -math.inf, dtype=torch.float64), base), losses=losses,
        keep_best=settings.keep_best, judge_every=settings.judge_every, patience=settings.patience, score=score,
        candidate=None if candidate is None else (lambda points: candidate(base + points[0])),
        # The start point given with `best` was judged already: judging it again would count it as stale.
        judge_start=best is None or settings.random_start, tick=tick, numerics=numerics,
    )  # fmt: skip
    if not settings.keep_best:
        return (base + got.final[0]).detach(), None
    return got.chosen, got.value  # type: ignore[return-value]


def collaborative_downscale(
    model: Rescaler,
    hr: torch.Tensor,
    *,
    method: str = "hcd",
    settings: HCDSettings | None = None,
    generator: Generators = None,
    progress: Callable[[], None] | None = None,
    z: torch.Tensor | None = None,
    judge: Judge | None = None,
    precision: str = "fp32",
) -> HCDResult:
    """Optimise the 8-bit LR images of ``hr`` for ``model``'s upscaler (a batch: each item on its own).

    No harm: unless ``settings.judge == "loss"``, an item's stored LR is its plain LR unless an iterate's 8-bit
    reconstruction beats the plain one under the judge (strictly: a tie keeps plain).

    Batches: every loss, step, projection, keep-best and stopping decision is per item, and with one generator
    per item each item's random numbers are those it would draw alone, so an item's result equals running it
    alone up to the floating-point differences of batched convolutions (``tests/test_batch.py`` measures them).

    Args:
        model: any :class:`~hcd_pipeline.models.protocol.Rescaler` (frozen parameters).
        hr: (B, 3, H, W) or (3, H, W) in [0, 1]; H and W multiples of ``model.scale``.
        method: ``"plain"`` (no optimisation), ``"hr"`` (HR stage only), ``"lr"`` (LR stage only,
            from the plain LR), ``"hcd"`` (both).
        settings: defaults to ``PRESETS["default"]``.
        generator: source of every random number (random start, z draws): one, or one per item; seed it for
            bit-identical results. The decoder's z is drawn first, so it depends only on the seed.
        progress: called once per optimisation step (for progress bars).
        z: the decoder's z, if already drawn (tiles use slices of one image-wide z); else drawn here.
        judge: ``judge(lr, z) -> dB per item`` for keep-best and the no-harm rule; default
            :func:`reconstruction_psnr` over ``hr`` with ``settings.judge``'s channels.
        precision: numerics of the optimisation's model calls (:data:`~hcd_pipeline.core.device.PRECISIONS`); the
            plain LR, the judge and the no-harm choice always run in float32.

    Returns:
        :class:`HCDResult`; ``result.lr`` is exactly the images to store; ``result.split()`` gives one result
        per item.
    """
    if method not in METHODS:
        raise SettingsError(f"unknown method {method!r}; expected one of {METHODS}")
    cfg = settings or PRESETS[DEFAULT_PRESET]
    x = hr.unsqueeze(0) if hr.dim() == 3 else hr
    s = model.scale
    if x.dim() != 4 or x.shape[-2] % s or x.shape[-1] % s:
        raise ValueError(f"hr must be (B, C, H, W) with sides divisible by {s}, got {tuple(hr.shape)}")
    x = x.detach()
    b = x.shape[0]
    t_start = time.perf_counter()

    def numerics() -> contextlib.AbstractContextManager[None]:
        return precision_mode(x.device, precision)

    with torch.no_grad():
        lr_cont, _ = model.downscale(x)
        plain = _round8(lr_cont)
    z_dec = z if z is not None else decode_z(model, plain.shape, cfg, generator, x.device)

    def z_for_pass() -> torch.Tensor | None:
        if cfg.z_opt == "decode" or z_dec is None:
            return z_dec
        return _draw("randn", z_dec.shape, generator, x.device) * _z_std(model)

    def mse(a: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return ((a - ref) ** 2).flatten(1).mean(1)  # per item

    losses: list[list[float]] = [[] for _ in range(b)]
    seconds = {"hr": 0.0, "lr": 0.0}
    if cfg.judge == "loss" or method == "plain":
        judge_fn = None
    else:
        judge_fn = judge or reconstruction_psnr(model, x, channels=cfg.judge)

    def lr_score(lr_cand: torch.Tensor) -> torch.Tensor:
        return scores(judge_fn(lr_cand, z_dec), b)  # type: ignore[misc]

    nan = torch.full((b,), math.nan, dtype=torch.float64)
    plain_score = lr_score(plain) if judge_fn else nan
    hr_pert: torch.Tensor = x
    best_value: torch.Tensor | None = plain_score if judge_fn else None
    if method in ("hr", "hcd") and cfg.hr_steps > 0:
        t0 = time.perf_counter()

        def hr_loss(xp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            lr_c, _ = model.downscale(xp)
            rec = model.upscale(quantize_ste(lr_c), z_for_pass())
            return mse(rec, x), xp

        def hr_score(xp: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return lr_score(_round8(model.downscale(xp)[0]))

        hr_pert, best_value = _optimise(
            x, cfg.hr_radius, cfg.hr_steps, cfg, hr_loss, generator, losses, progress,
            score=hr_score if judge_fn else None, best=(plain_score, x) if judge_fn else None, candidate=lambda xp: xp,
            numerics=numerics,
        )  # fmt: skip
        seconds["hr"] = time.perf_counter() - t0
    with torch.no_grad():
        lr0 = plain if hr_pert is x else _round8(model.downscale(hr_pert)[0])
    if judge_fn and best_value is None:
        best_value = lr_score(lr0)  # no keep-best in the HR stage: what it ended on
    lr_final = lr0
    if method in ("lr", "hcd") and cfg.lr_steps > 0:
        t0 = time.perf_counter()
        target = hr_pert if cfg.lr_target == "perturbed" else x

        def lr_loss(lr_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            lr_used = quantize_ste(lr_in) if cfg.lr_round else lr_in
            return mse(model.upscale(lr_used, z_for_pass()), target), _round8(lr_in)

        lr_final, value = _optimise(
            lr0, cfg.lr_radius, cfg.lr_steps, cfg, lr_loss, generator, losses, progress,
            score=lr_score if judge_fn else None, best=(best_value, lr0) if judge_fn and best_value is not None else None,
            candidate=_round8, numerics=numerics,
        )  # fmt: skip
        best_value = value
        seconds["lr"] = time.perf_counter() - t0
    stored = _round8(lr_final)
    judged: list[dict[str, float]] = [{} for _ in range(b)]
    if judge_fn:
        stored_score = best_value if cfg.keep_best and best_value is not None else lr_score(stored)
        keep = stored_score > plain_score  # a tie, a loss, or NaN keeps the plain LR
        stored = torch.where(per_item(keep, stored).to(stored.device), stored, plain)
        stored_score = torch.where(keep, stored_score, plain_score)
        judged = [{"plain": float(p), "stored": float(q)} for p, q in zip(plain_score.tolist(), stored_score.tolist(), strict=True)]
    seconds["total"] = time.perf_counter() - t_start
    changed = (torch.round(stored * 255) != torch.round(plain * 255)).flatten(1).sum(1).tolist()
    items = [
        HCDResult(
            lr=stored[i : i + 1],
            plain_lr=plain[i : i + 1],
            z=None if z_dec is None else z_dec[i : i + 1],
            losses=losses[i],
            changed=int(changed[i]),
            seconds={k: v / b for k, v in seconds.items()},
            kept="plain" if changed[i] == 0 else "optimised",
            judged=judged[i],
        )  # fmt: skip
        for i in range(b)
    ]
    if b == 1:
        return items[0]
    return HCDResult(
        lr=stored, plain_lr=plain, z=z_dec, losses=[sum(v) / b for v in zip(*losses, strict=False)] if losses[0] else [],
        changed=int(sum(changed)), seconds=seconds, kept="optimised" if any(c for c in changed) else "plain", items=items,
    )  # fmt: skip
