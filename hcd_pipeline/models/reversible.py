"""Memory-light backward through a chain of invertible operations.

Plain autograd keeps every intermediate activation of every layer until the backward pass: for IRN on a
DIV2K-sized image that is tens of GiB. Because each operation is invertible, its input can be rebuilt from
its output instead (RevNet, Gomez et al. 2017; i-RevNet): the forward pass runs without autograd and keeps
only the chain's output, and the backward pass walks the chain from the end, rebuilding each operation's
input from its output and back-propagating through that one operation. Peak memory is then that of one
operation's backward (for IRN's coupling blocks, one dense subnetwork at a time: see
``CouplingBlock.vjp``), independent of depth.

The rebuilt inputs differ from the true ones by float rounding, which the backward pass carries into the
gradient: on the shipped irn-x2 in float32 the largest gradient error is about 1e-2 of the largest gradient
value (``benchmarks/hcd_step_speed.py``). ``keep_inputs=True`` keeps the small tensors between operations
instead of rebuilding them: exact gradients, still one subnetwork's activations at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import nn

__all__ = ["InvertibleOp", "reversible_chain", "vjp"]


class InvertibleOp(Protocol):
    """An ``nn.Module`` with ``forward(x) -> y`` and ``inverse(y) -> x``.

    It may also define ``vjp(x, y, grad_out, reverse) -> (grad_in, {param: grad})``, with ``y = forward(x)``,
    to back-propagate with less memory than :func:`vjp` on the whole operation (``reverse``: the op was
    applied as ``inverse``, so ``grad_out`` is the gradient of ``x`` and the result that of ``y``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...

    def inverse(self, y: torch.Tensor) -> torch.Tensor: ...


ParamGrads = dict[nn.Parameter, torch.Tensor]


def vjp(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, grad_out: torch.Tensor, params: Sequence[nn.Parameter]
) -> tuple[torch.Tensor, ParamGrads]:
    """Vector-Jacobian product of ``fn`` at ``x``: (d<fn(x), grad_out>/dx, {p: d/dp for p in params}).

    Runs ``fn`` once with autograd; its activations are freed on return.
    """
    x_ = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = fn(x_)
    grads = torch.autograd.grad(out, [x_, *params], grad_out, allow_unused=True)
    return grads[0], {p: g for p, g in zip(params, grads[1:], strict=True) if g is not None}


def trainable(module: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``module`` that require a gradient."""
    return [p for p in module.parameters() if p.requires_grad]


def _generic_vjp(op: nn.Module, x: torch.Tensor, grad_out: torch.Tensor, reverse: bool) -> tuple[torch.Tensor, ParamGrads]:
    return vjp(op.inverse if reverse else op.forward, x, grad_out, trainable(op))  # type: ignore[operator]


class _ReversibleChain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, ops: tuple[nn.Module, ...], reverse: bool, keep_inputs: bool, *params: nn.Parameter) -> torch.Tensor:  # type: ignore[override]  # noqa: ANN001
        inputs = []
        with torch.no_grad():
            y = x
            for op in ops:
                if keep_inputs:
                    inputs.append(y)
                y = op.inverse(y) if reverse else op(y)  # type: ignore[operator]
        ctx.ops, ctx.reverse, ctx.params = ops, reverse, params
        ctx.save_for_backward(*inputs, y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]  # noqa: ANN001
        *inputs, y = ctx.saved_tensors
        acc: ParamGrads = {}
        for i in reversed(range(len(ctx.ops))):
            op = ctx.ops[i]
            if inputs:
                x = inputs[i]
            else:
                with torch.no_grad():
                    x = op(y) if ctx.reverse else op.inverse(y)  # rebuild this op's input from its output
            own = getattr(op, "vjp", None)
            if own is None:
                grad, pgrads = _generic_vjp(op, x, grad, ctx.reverse)
            else:  # an op's own vjp takes its forward input and output, whichever way it was applied
                grad, pgrads = own(y, x, grad, True) if ctx.reverse else own(x, y, grad, False)
            for p, g in pgrads.items():
                acc[p] = acc[p] + g if p in acc else g
            y = x
        return (grad, None, None, None, *(acc.get(p) for p in ctx.params))


def reversible_chain(x: torch.Tensor, ops: Sequence[nn.Module], *, reverse: bool = False, keep_inputs: bool = False) -> torch.Tensor:
    """Apply ``ops`` in order (``reverse=False``: ``op(x)``; ``reverse=True``: ``op.inverse(x)``) with a memory-light backward.

    ``ops`` are applied in the order given (pass them already reversed for an inverse chain). Gradients flow
    to ``x`` and to every parameter of ``ops`` that requires one.

    ``keep_inputs=False`` rebuilds every op's input from its output in the backward pass (memory independent of
    the chain's length; one more pass of compute; float rounding of the rebuilt inputs perturbs the gradient).
    ``keep_inputs=True`` keeps the tensors between ops (for IRN each is the size of the image, against hundreds
    of channels inside an op) and recomputes only inside ops: the exact gradient, and faster.
    """
    ops_t = tuple(ops)
    params = tuple(p for op in ops_t for p in trainable(op))
    return _ReversibleChain.apply(x, ops_t, reverse, keep_inputs, *params)  # type: ignore[no-any-return]
