"""The one optimisation loop (hcd.descent): its step rules act per item, and it optimises lists of tensors of any
shape (pixels or JPEG coefficient planes) under a projection and a judge."""

from __future__ import annotations

import math

import pytest
import torch

from hcd_pipeline.hcd.descent import BarzilaiBorwein, Evaluation, NormalisedGradient, TextbookAdam, descend


def _quadratic(targets: list[torch.Tensor]):
    def evaluate(points: list[torch.Tensor]) -> Evaluation:
        loss = sum(((p - t) ** 2).flatten(1).sum(1) for p, t in zip(points, targets, strict=True))
        return Evaluation(loss, [p.detach() for p in points])  # type: ignore[arg-type]

    return evaluate


def _run(rule, targets, steps=6, **kw):
    start = [torch.zeros_like(t) for t in targets]
    losses = [[] for _ in range(targets[0].shape[0])]
    nothing_yet = torch.full((targets[0].shape[0],), -math.inf, dtype=torch.float64)
    box = lambda ps: [p.clamp(-2, 2) for p in ps]  # noqa: E731
    return descend(start, steps, rule, _quadratic(targets), box, best=(nothing_yet, start), losses=losses, **kw), losses


@pytest.mark.parametrize("rule", [lambda ps: BarzilaiBorwein(ps, 0.5), lambda ps: NormalisedGradient(ps, 0.3),
                                  lambda ps: TextbookAdam(ps, 0.2), lambda ps: torch.optim.Adam(ps, lr=0.2)])  # fmt: skip
def test_each_item_of_a_batch_moves_as_it_would_alone(rule):
    g = torch.Generator().manual_seed(0)
    targets = [torch.randn(3, 2, 5, 5, generator=g), torch.randn(3, 4, generator=g)]  # two planes of other shapes
    together, losses = _run(rule, targets)
    for i in range(3):
        alone, alone_losses = _run(rule, [t[i : i + 1] for t in targets])
        assert all(torch.equal(a[0], b[i]) for a, b in zip(alone.final, together.final, strict=True))
        assert alone_losses[0] == losses[i]
    assert all(ls[-1] < ls[0] for ls in losses)  # every item descends


def test_textbook_adam_is_adam():
    # The same update as torch's Adam up to rounding (it divides in another order).
    g = torch.Generator().manual_seed(1)
    targets = [torch.randn(2, 3, 4, 4, generator=g)]
    ours, _ = _run(lambda ps: TextbookAdam(ps, 0.1), targets, steps=10)
    torchs, _ = _run(lambda ps: torch.optim.Adam(ps, lr=0.1), targets, steps=10)
    assert torch.allclose(ours.final[0], torchs.final[0], atol=1e-5) and not torch.equal(ours.final[0], torch.zeros_like(targets[0]))


def test_keep_best_returns_the_best_judged_iterate_and_projection_holds():
    targets = [torch.full((2, 1, 3, 3), 5.0)]  # beyond the box: the projection stops every item at 2
    judged: list[torch.Tensor] = []

    def score(cand):  # a judge that prefers the third judged iterate of every item
        judged.append(cand[0].clone())
        return torch.tensor([1.0, 1.0], dtype=torch.float64) * (1 if len(judged) == 3 else 0)

    got, losses = _run(lambda ps: BarzilaiBorwein(ps, 0.5), targets, steps=6, score=score, judge_every=2,
                       candidate=lambda ps: [p.clone() for p in ps])  # fmt: skip
    assert got.judged == 4 and len(judged) == 4  # iterates 1, 3, 5 and the last
    assert torch.equal(got.chosen[0], judged[2]) and got.value.tolist() == [1.0, 1.0]
    assert float(got.final[0].max()) <= 2.0 and len(losses[0]) == 6


def test_a_start_judged_already_is_not_judged_again():
    targets = [torch.ones(1, 4)]
    calls = []
    _run(lambda ps: BarzilaiBorwein(ps, 0.5), targets, steps=3, score=lambda c: calls.append(1) or torch.zeros(1, dtype=torch.float64),
         judge_start=False, candidate=lambda ps: ps)  # fmt: skip
    assert len(calls) == 3  # iterates 1, 2 and the last; not 0
