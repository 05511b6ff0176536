"""One training step per method: the loop shape each algorithm needs, nothing more.

* SGD: one minibatch, one gradient.
* Entropy-SGD: a closure that draws a *fresh* minibatch on each of its L calls.
* Replicated-SGD: y replicas, each drawing from its own minibatch stream.
* SAM: one minibatch, two gradients (at w and at w + ε).

:func:`method_grad_evals` is the one table of what a step costs in minibatch gradients (1, L,
y or 2), which is how budgets are made equal across methods;
:attr:`TrainConfig.grad_evals_per_step <wideflat.experiments.config.TrainConfig>` and
:func:`grad_evals_per_step` (for a built optimizer) both read it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from ..optim import SAM, EntropySGD, ReplicatedSGD

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


def method_grad_evals(method: str, *, inner_steps: int, y: int) -> int:
    """Minibatch gradients one optimizer step of ``method`` costs.

    SGD 1; eSGD L = ``inner_steps`` (one per SGLD step); rSGD ``y`` (one per replica); SAM 2
    (the ascent gradient at w, the descent gradient at w + ε).

    Example:
        >>> [method_grad_evals(m, inner_steps=5, y=3) for m in ("sgd", "esgd", "rsgd", "sam")]
        [1, 5, 3, 2]
    """
    table = {"sgd": 1, "esgd": inner_steps, "rsgd": y, "sam": 2}
    if method not in table:
        raise ValueError(f"Invalid method: {method!r} (expected one of {', '.join(table)})")
    return table[method]


def grad_evals_per_step(opt: torch.optim.Optimizer) -> int:
    """Minibatch gradients one step of ``opt`` computes (:func:`method_grad_evals`); any
    other torch optimizer counts as SGD."""
    if isinstance(opt, EntropySGD):
        return method_grad_evals("esgd", inner_steps=opt.param_groups[0]["inner_steps"], y=1)
    if isinstance(opt, ReplicatedSGD):
        return method_grad_evals("rsgd", inner_steps=1, y=opt.y)
    method = "sam" if isinstance(opt, SAM) else "sgd"
    return method_grad_evals(method, inner_steps=1, y=1)
