"""The one optimisation loop of HCD, over LR pixels, HR pixels or a JPEG file's coefficients.

:func:`descend` minimises a per-item loss over a list of tensors (every one with the batch in dim 0: a pixel
perturbation (B, 3, H, W), or the three coefficient planes of a JPEG file (1, ...)) by a step rule, projects every
iterate onto its budget, and keeps the best iterate under a judge. The step rules are ``torch.optim`` optimisers
that act per item: :class:`BarzilaiBorwein`, :class:`NormalisedGradient`, ``torch.optim.Adam`` (pixels) and
:class:`TextbookAdam` (coefficients; the arithmetic that stored JPEG files were made with).

Tensors in, tensors out; no randomness (a random start is the caller's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

__all__ = ["Evaluation", "Descent", "descend", "BarzilaiBorwein", "NormalisedGradient", "TextbookAdam"]

Points = list[torch.Tensor]
Candidate = torch.Tensor | list[torch.Tensor]


def per_item(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) with ``like``'s number of dimensions, for per-item scalars."""
    return x.view(-1, *([1] * (like.dim() - 1)))


@dataclass
class Evaluation:
    """What ``loss_fn`` returns for a point: the per-item loss (B,) that is recorded (and minimised unless
    ``objective`` is given), the candidate the point would be stored as (e.g. the rounded LR), and optionally the
    scalar whose gradient the step follows instead of ``loss.sum()``."""

    loss: torch.Tensor
    candidate: Candidate
    objective: torch.Tensor | None = None


@dataclass
class Descent:
    """What :func:`descend` chose: per item the best candidate and its value (None without keep-best: then the
    candidate is the last point's), the last point, and how many iterates were judged."""

    chosen: Candidate | None
    value: torch.Tensor | None
    final: Points
    judged: int


def _where(mask: torch.Tensor, new: Candidate, old: Candidate) -> Candidate:
    if isinstance(new, torch.Tensor):
        return torch.where(per_item(mask, new).to(new.device), new.detach(), old)  # type: ignore[arg-type]
    return [torch.where(per_item(mask, n).to(n.device), n.detach(), o) for n, o in zip(new, old, strict=True)]


def _detached(c: Candidate, *, copy: bool = True) -> Candidate:
    """``c`` out of the graph; a copy (``copy``) when it is kept while the points move on."""
    if isinstance(c, torch.Tensor):
        return c.detach().clone() if copy else c.detach()
    return [t.detach().clone() if copy else t.detach() for t in c]


class _Best:
    """Keep-best state of a batch: per item the best value so far, its candidate and how stale it is."""

    def __init__(self, value: torch.Tensor, cand: Candidate) -> None:
        self.value, self.cand = value.clone(), _detached(cand)
        self.stale = torch.zeros_like(value, dtype=torch.long)

    def consider(self, value: torch.Tensor, cand: Candidate, active: torch.Tensor) -> None:
        better = (value > self.value) & active  # strictly better: a tie keeps the earlier (NaN never wins)
        self.value = torch.where(better, value, self.value)
        self.cand = _where(better, cand, self.cand)
        self.stale = torch.where(better, torch.zeros_like(self.stale), self.stale + 1)


def scores(value: torch.Tensor | float | list[float], batch: int) -> torch.Tensor:
    """A judge's answer as a (B,) float64 CPU tensor."""
    t = torch.as_tensor(value, dtype=torch.float64).flatten().cpu()
    if t.numel() != batch:
        raise ValueError(f"the judge gave {t.numel()} values for a batch of {batch}")
    return t


def descend(
    start: Points,
    steps: int,
    make_optimizer: Callable[[Points], torch.optim.Optimizer],
    loss_fn: Callable[[Points], Evaluation],
    project: Callable[[Points], Points],
    *,
    best: tuple[torch.Tensor, Candidate],
    losses: list[list[float]],
    keep_best: bool = True,
    judge_every: int = 1,
    patience: int = 0,
    score: Callable[[Candidate], torch.Tensor] | None = None,
    candidate: Callable[[Points], Candidate] | None = None,
    judge_start: bool = True,
    tick: Callable[[], None] | None = None,
    numerics: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> Descent:
    """Minimise each item's loss from ``start`` (projected) for ``steps`` steps; every item moves as it would alone.

    Per step: ``loss_fn(points)`` (inside ``numerics()``, the precision policy), the loss recorded into
    ``losses[item]``, every ``judge_every``-th iterate judged (``score(candidate) -> (B,)``, outside ``numerics``;
    without ``score`` the value is minus the loss, which costs nothing and is compared at every iterate), the
    gradient of ``objective`` (or of the loss summed over items, so each item's gradient is its own), one step of
    the optimiser that ``make_optimizer(points)`` built, ``project`` onto the budget. With ``keep_best`` the best
    candidate wins, starting from ``best`` (values (B,) float64, candidate; -inf: nothing judged yet);
    ``judge_start=False`` says that the start point is that candidate, judged already, so iterate 0 is not judged
    again. Without ``keep_best``, ``chosen`` is None: the last point is the result. The last point is judged too
    (``candidate(points)`` gives its candidate without a loss's forward pass). An item whose judge has not improved
    for ``patience`` judged iterates stops moving; the loop ends when every item has stopped.
    """
    points = [p.detach().clone().requires_grad_(True) for p in project([p.detach() for p in start])]
    b = points[0].shape[0]
    opt = make_optimizer(points)
    keep = _Best(*best)
    active = torch.ones(b, dtype=torch.bool)
    step_losses: list[tuple[torch.Tensor, torch.Tensor]] = []  # (loss, active) per step; read back once at the end
    judged = 0

    def value_of(ev: Evaluation) -> torch.Tensor:
        return scores(score(_detached(ev.candidate, copy=False)), b) if score is not None else -ev.loss.detach().double().cpu()

    for i in range(steps):
        with numerics():
            ev = loss_fn(points)
        loss = ev.loss.float()
        step_losses.append((loss.detach(), active.clone()))
        fresh = i > 0 or judge_start
        if keep_best and fresh and (score is None or i % judge_every == judge_every - 1):
            keep.consider(value_of(ev), ev.candidate, active)
            judged += score is not None
            if score is not None and patience:
                active &= keep.stale < patience
                if not bool(active.any()):
                    break  # every item's judge has stopped improving: the rest of the steps are saved
        with numerics():  # a memory-light backward recomputes forward passes: in the same numerics
            grads = torch.autograd.grad(ev.objective if ev.objective is not None else loss.sum(), points)
        with torch.no_grad():
            before = [p.detach().clone() for p in points]
            for p, g in zip(points, grads, strict=True):
                p.grad = g
            opt.step()
            for p, q in zip(points, project([p.detach() for p in points]), strict=True):
                if q is not p:
                    p.copy_(q)
            if not bool(active.all()):
                for p, q in zip(points, before, strict=True):
                    p.copy_(torch.where(per_item(active, p).to(p.device), p, q))
        if tick is not None:
            tick()
    for loss, was_active in step_losses:
        for j, (v, a) in enumerate(zip(loss.cpu().tolist(), was_active.tolist(), strict=True)):
            if a:
                losses[j].append(v)
    final = [p.detach() for p in points]
    if not keep_best:
        return Descent(None, None, final, judged)
    if score is not None and candidate is not None:
        cand = candidate(final)  # the judge decides: the loss's forward pass would be wasted
        keep.consider(scores(score(cand), b), cand, active)
    else:
        with torch.no_grad():
            ev = loss_fn(final)
        keep.consider(value_of(ev), ev.candidate, active)
    return Descent(keep.cand, keep.value, final, judged + (score is not None))


def _params(opt: torch.optim.Optimizer) -> Iterable[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


class BarzilaiBorwein(torch.optim.Optimizer):
    """Gradient steps with Barzilai-Borwein lengths, per item (dim 0 of every parameter; items never mix).

    The first step moves each item's largest value by ``first_step``; later ones use alpha = s.s / s.y of the item's
    last move s and gradient change y (summed over the parameters in float64), kept when s.y <= 0."""

    def __init__(self, params: Iterable[torch.Tensor], first_step: float) -> None:
        super().__init__(params, {"first_step": first_step})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        params = list(_params(self))
        grads = [p.grad for p in params]
        state = self.state[params[0]]
        if "prev" not in state:
            amax = torch.stack([g.flatten(1).abs().amax(1) for g in grads]).amax(0)  # type: ignore[union-attr]
            alpha = self.defaults["first_step"] / amax.clamp_min(1e-30)
        else:
            prev_p, prev_g = state["prev"]
            sy = ss = torch.zeros(params[0].shape[0], dtype=torch.float64, device=params[0].device)
            for p, g, q, h in zip(params, grads, prev_p, prev_g, strict=True):
                s, y = p - q, g - h  # type: ignore[operator]
                sy = sy + (s * y).flatten(1).sum(1).double()
                ss = ss + (s * s).flatten(1).sum(1).double()
            alpha = torch.where(sy > 0, (ss / sy.clamp_min(1e-30)).float(), state["alpha"])
        state["prev"], state["alpha"] = ([p.clone() for p in params], grads), alpha
        for p, g in zip(params, grads, strict=True):
            p -= per_item(alpha, p) * g


class NormalisedGradient(torch.optim.Optimizer):
    """Steps of length ``step`` along each item's gradient direction (L2 over the item's values): the original
    code's projected gradient descent."""

    def __init__(self, params: Iterable[torch.Tensor], step: float) -> None:
        super().__init__(params, {"step": step})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        params = list(_params(self))
        norms = [p.grad.flatten(1).norm(dim=1) for p in params]  # type: ignore[union-attr]
        norm = norms[0] if len(norms) == 1 else torch.stack(norms).square().sum(0).sqrt()
        for p in params:
            p -= self.defaults["step"] * p.grad / (per_item(norm, p) + 1e-10)


class TextbookAdam(torch.optim.Optimizer):
    """Adam as Kingma & Ba's algorithm 1 writes it (default betas): ``lr * m_hat / (sqrt(v_hat) + 1e-8)``.

    ``torch.optim.Adam`` computes the same quantity in another order, which rounds differently; HCD in the JPEG file
    uses this one, whose rounding the stored files of that mode were made with."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float) -> None:
        super().__init__(params, {"lr": lr})
        self.t = 0

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        self.t += 1
        c1, c2 = 1 - 0.9**self.t, 1 - 0.999**self.t
        for p in _params(self):
            st = self.state[p]
            if not st:
                st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p)
            m, v, g = st["m"], st["v"], p.grad
            m.mul_(0.9).add_(g, alpha=0.1)
            v.mul_(0.999).addcmul_(g, g, value=0.001)
            p -= self.defaults["lr"] * (m / c1) / ((v / c2).sqrt() + 1e-8)
