"""One training step per method: the loop shape each algorithm needs, nothing more.

* SGD: one minibatch, one gradient.
* Entropy-SGD: a closure that draws a *fresh* minibatch on each of its L calls.
* Replicated-SGD: y replicas, each drawing from its own minibatch stream.

:func:`grad_evals_per_step` gives the gradient evaluations one step costs (1, L or y), which
is how budgets are made equal across methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from ..optim import EntropySGD, ReplicatedSGD

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def forever(batches: Iterable) -> Iterator:
    """Cycle through a re-iterable loader epoch after epoch."""
    while True:
        yield from batches


def sgd_step(opt: torch.optim.Optimizer, model: nn.Module, loss_fn: LossFn, batches: Iterator):
    """One step of any plain torch optimizer on the next minibatch."""
    x, t = next(batches)
    opt.zero_grad()
    loss = loss_fn(model(x), t)
    loss.backward()
    opt.step()
    return loss.detach()


def esgd_step(opt: EntropySGD, model: nn.Module, loss_fn: LossFn, batches: Iterator):
    """One outer Entropy-SGD step: the closure draws a fresh minibatch on each of L calls."""

    def closure():
        x, t = next(batches)
        loss = loss_fn(model(x), t)
        loss.backward()
        return loss

    return opt.step(closure).detach()


def rsgd_step(opt: ReplicatedSGD, loss_fn: LossFn, streams: list[Iterator]):
    """One Replicated-SGD step: replica a trains on the next minibatch of ``streams[a]``."""

    def closure(a):
        x, t = next(streams[a])
        loss = loss_fn(opt.replicas[a](x), t)
        loss.backward()
        return loss

    return opt.step(closure).detach()


def grad_evals_per_step(opt: torch.optim.Optimizer) -> int:
    """Minibatch gradients one step of ``opt`` computes: L for eSGD, y for rSGD, else 1."""
    if isinstance(opt, EntropySGD):
        return opt.param_groups[0]["inner_steps"]
    if isinstance(opt, ReplicatedSGD):
        return opt.y
    return 1
