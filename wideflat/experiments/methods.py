"""One training step per method: the loop shape each algorithm needs, nothing more.

* SGD: one minibatch, one gradient (any plain torch optimizer).
* SAM: one minibatch, two gradients (at w and at w + ε; BatchNorm statistics frozen on the
  second pass).
* Entropy-SGD: a closure that draws a *fresh* minibatch on each of its L calls.
* Replicated-SGD: y replicas, each drawing from its own minibatch stream (loop engine: one
  closure call per replica; vmap engine: all replicas in one batched call).

Every step raises :class:`~wideflat.optim.NonFiniteLossError` on a NaN/inf loss without
applying the update. :func:`make_step` binds a method's step to its optimizer, model, loss
and streams once; :class:`LossProbe` is the harness's loss (it also notes which replica's
loss was non-finite first). :func:`grad_evals_per_step` reads the cost table of
:func:`~wideflat.experiments.config.method_grad_evals`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .._bn import frozen_bn
from ..optim import SAM, EntropySGD, NonFiniteLossError, ReplicatedSGD
from .config import method_grad_evals

__all__ = [
    "LossProbe",
    "autocast",
    "esgd_step",
    "evaluate",
    "forever",
    "grad_evals_per_step",
    "make_step",
    "method_grad_evals",
    "rsgd_step",
    "rsgd_vmap_step",
    "sam_step",
    "sgd_step",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def forever(batches: Iterable) -> Iterator:
    """Cycle through a re-iterable loader epoch after epoch."""
    while True:
        yield from batches


def sgd_step(opt: torch.optim.Optimizer, model: nn.Module, loss_fn: LossFn, batches: Iterator):
    """One step of any plain torch optimizer on the next minibatch; a non-finite loss raises
    before the update."""
    x, t = next(batches)
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), t)
    if not bool(torch.isfinite(loss.detach())):
        raise NonFiniteLossError(f"non-finite loss {float(loss.detach())}")
    loss.backward()
    opt.step()
    return loss.detach()


def sam_step(opt: SAM, model: nn.Module, loss_fn: LossFn, batches: Iterator):
    """One SAM step on the next minibatch (used for both passes); BatchNorm running
    statistics are updated by the first pass only (SAM's BN policy)."""
    x, t = next(batches)
    passes = [0]

    def closure():
        with frozen_bn(model) if passes[0] else contextlib.nullcontext():
            passes[0] += 1
            loss = loss_fn(model(x), t)
            loss.backward()
            return loss

    return opt.step(closure).detach()


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


def rsgd_vmap_step(opt: ReplicatedSGD, loss_fn: LossFn, streams: list[Iterator]):
    """One Replicated-SGD step with every replica's minibatch passed at once
    (:meth:`~wideflat.optim.ReplicatedSGD.step_batches`, the vmap engine's batched call)."""
    return opt.step_batches([next(s) for s in streams], loss_fn)


def grad_evals_per_step(opt: torch.optim.Optimizer) -> int:
    """Minibatch gradients one step of ``opt`` computes (:func:`method_grad_evals`); any
    other torch optimizer counts as SGD."""
    if isinstance(opt, EntropySGD):
        return method_grad_evals("esgd", inner_steps=opt.param_groups[0]["inner_steps"], y=1)
    if isinstance(opt, ReplicatedSGD):
        return method_grad_evals("rsgd", inner_steps=1, y=opt.y)
    method = "sam" if isinstance(opt, SAM) else "sgd"
    return method_grad_evals(method, inner_steps=1, y=1)


class LossProbe:
    """The harness's training loss (cross-entropy in float32) that also notes the first
    replica whose loss is non-finite in the current step (``bad``).

    ``per_replica``: the closure is called once per replica in order (rSGD loop engine), so
    the call count within a step is the replica index. ``check=False`` skips the test (it
    would synchronise inside the vmap engine's batched call).
    """

    def __init__(self, per_replica: bool, check: bool = True):
        self.per_replica = per_replica
        self.check = check
        self.step = 0
        self.calls = 0
        self.bad: int | None = None

    def begin(self, step: int) -> None:
        """Start optimizer step ``step`` (1-based)."""
        self.step, self.calls, self.bad = step, 0, None

    def loss(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.float(), t)

    def __call__(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        loss = self.loss(out, t)
        replica = self.calls if self.per_replica else 0
        self.calls += 1
        if self.check and self.bad is None and not bool(torch.isfinite(loss)):
            self.bad = replica
        return loss


def make_step(
    method: str, engine: str, opt, model: nn.Module, loss_fn: LossFn, streams: list[Iterator]
) -> Callable[[], torch.Tensor]:
    """``step()``: one optimizer step of ``method`` on the next minibatch(es) of ``streams``
    (one stream per replica for rSGD, else one), returning the detached loss."""
    if method == "rsgd":
        fn = rsgd_vmap_step if engine == "vmap" else rsgd_step
        return lambda: fn(opt, loss_fn, streams)
    fn = {"sgd": sgd_step, "sam": sam_step, "esgd": esgd_step}[method]
    return lambda: fn(opt, model, loss_fn, streams[0])


def autocast(device: torch.device, amp: bool):
    """bfloat16 autocast on CUDA when ``amp``; a no-op context elsewhere."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, t: torch.Tensor, batch: int, amp: bool):
    """(error, loss) over (x, t) in eval mode; the mode is restored."""
    was = model.training
    model.eval()
    wrong, total_loss = 0.0, 0.0
    for i in range(0, len(t), batch):
        with autocast(x.device, amp):
            out = model(x[i : i + batch]).float()
        wrong += float((out.argmax(1) != t[i : i + batch]).sum())
        total_loss += float(F.cross_entropy(out, t[i : i + batch], reduction="sum"))
    model.train(was)
    n = max(len(t), 1)
    return wrong / n, total_loss / n


@torch.no_grad()
def evaluate_replicas(
    models: list[nn.Module], x: torch.Tensor, t: torch.Tensor, batch: int, amp: bool
) -> tuple[list[float], float]:
    """Each replica's error over (x, t), and the error of their ensemble (the mean of the
    replicas' logits), in eval mode; the modes are restored."""
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    wrong = [0.0] * len(models)
    wrong_ensemble = 0.0
    for i in range(0, len(t), batch):
        target = t[i : i + batch]
        total = None
        for a, m in enumerate(models):
            with autocast(x.device, amp):
                out = m(x[i : i + batch]).float()
            wrong[a] += float((out.argmax(1) != target).sum())
            total = out if total is None else total + out
        wrong_ensemble += float((total.argmax(1) != target).sum())
    for m, was in zip(models, modes, strict=True):
        m.train(was)
    n = max(len(t), 1)
    return [w / n for w in wrong], wrong_ensemble / n
