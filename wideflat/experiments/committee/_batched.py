"""The batched tensor program of the committee trainer: one epoch (SGD, rSGD) or one outer
iteration (eSGD) for every active restart at once, on weights ``(restart, replica, K, N)``.

The algorithm-specific maths (the eSGD coupling, Langevin noise, running mean and outer
gradient; the rSGD coupling) is :mod:`wideflat._kernels`, the code
:class:`~wideflat.optim.EntropySGD` and :class:`~wideflat.optim.ReplicatedSGD` run. What is
the committee's own: the closed-form minibatch gradient, the per-unit renormalization after
every step (``normalize_units``), the plain-SGD base step and the center ``w.mean`` over
replicas (see :mod:`wideflat.experiments.committee.train` for the rules).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from wideflat._kernels import (
    esgd_coupling_,
    langevin_,
    local_entropy_grad_,
    replica_coupling_,
    running_mean_,
)
from wideflat.models.committee import (
    _loss_and_grad_unchecked,
    hidden_signs,
    normalize_units,
    omega_loss,
)

from .presets import CommitteeHyperParams

__all__ = [
    "CPU_BLOCK_BYTES",
    "Population",
    "block_restarts",
    "distance",
    "errors_and_loss",
    "esgd_outer",
    "minibatch_grad",
    "sgd_epoch",
    "sgd_update",
]

# On CPU the gathered minibatches of all networks ((R, y, B, N): 31 MB in float32 for
# 10 restarts × 10 replicas at the paper's sizes) do not fit in cache, and gathering then
# multiplying them is memory-bound. The gradient is therefore computed over blocks of
# restarts whose gathered patterns take at most this many bytes (measured in
# benchmarks/committee_batching.py). On GPUs there is a single block.
CPU_BLOCK_BYTES = 4 << 20


def block_restarts(w: Tensor, batch_size: int) -> int:
    """Restarts per block for :func:`minibatch_grad`."""
    if w.device.type != "cpu":
        return max(w.shape[0], 1)
    per_restart = w.shape[1] * batch_size * w.shape[-1] * w.element_size()
    return max(1, CPU_BLOCK_BYTES // per_restart)


def minibatch_grad(
    w: Tensor,
    X: Tensor,
    y: Tensor,
    idx: Tensor,
    beta: float,
    omega: float,
    mask: Tensor | None = None,
) -> Tensor:
    """Gradient of each network's minibatch loss: ``w`` ``(R, y, K, N)``, ``idx`` ``(R, y, B)``.

    The networks are independent; the restarts are processed in cache-sized blocks (one
    block on GPUs), each block as one batched tensor program. ``mask`` ``(R, y, B, K)``:
    hidden-unit dropout (see :meth:`Population.dropout_mask`).
    """
    block = block_restarts(w, idx.shape[-1])
    grad = torch.empty_like(w) if block < w.shape[0] else None
    for start in range(0, w.shape[0], block):
        rows = slice(start, start + block)
        flat = idx[rows].reshape(-1)  # index_select is ~5x faster than X[idx] (CPU)
        Xb = X.index_select(0, flat).view(*idx[rows].shape, -1)  # (r, y, B, N)
        yb = y.index_select(0, flat).view(idx[rows].shape)  # (r, y, B)
        m = None if mask is None else mask[rows]
        _, g = _loss_and_grad_unchecked(w[rows], Xb, yb, beta, omega, m)
        if grad is None:
            return g
        grad[rows] = g
    return grad


def sgd_update(w: Tensor, grad: Tensor, lr: float) -> Tensor:
    """``w − η g``: the base step, ``torch.optim.SGD``'s without momentum or weight decay
    (which computes it as ``w.add_(g, alpha=−η)``; without FMA kernels the bits agree)."""
    return w - lr * grad


class Population:
    """Working state of the active restarts (the batched tensor program).

    ``ids[i]`` is the restart index of row ``i`` of ``w`` (``(R_active, y, K, N)``);
    ``gens[i]`` its generator. Rows of restarts that stop are removed with :meth:`keep`.
    """

    def __init__(self, w: Tensor, gens: list[torch.Generator], ids: Tensor) -> None:
        self.w = w
        self.gens = gens
        self.ids = ids
        self.perms: Tensor | None = None  # eSGD minibatch stream, (R_active, M)

    def keep(self, mask: Tensor) -> None:
        rows = mask.nonzero().flatten()
        self.w = self.w[rows]
        self.ids = self.ids[rows]
        self.gens = [self.gens[i] for i in rows.tolist()]
        if self.perms is not None:
            self.perms = self.perms[rows]

    def randperms(self, m: int, replicas: int) -> Tensor:
        """One permutation of ``range(m)`` per (restart, replica): ``(R_active, y, m)``."""
        dev = self.w.device
        rows = [
            torch.stack([torch.randperm(m, generator=g, device=dev) for _ in range(replicas)])
            for g in self.gens
        ]
        return torch.stack(rows)

    def dropout_mask(self, shape: tuple[int, ...], p: float) -> Tensor:
        """Per restart, ``torch.rand(shape) >= p`` scaled by ``1/(1−p)``: ``(R_active, *shape)``."""
        w = self.w
        keep = [torch.rand(shape, generator=g, dtype=w.dtype, device=w.device) >= p
                for g in self.gens]  # fmt: skip
        return torch.stack(keep).to(w.dtype) / (1.0 - p)

    def randn(self, shape: tuple[int, ...]) -> Tensor:
        w = self.w
        return torch.stack(
            [torch.randn(shape, generator=g, dtype=w.dtype, device=w.device) for g in self.gens]
        )


def sgd_epoch(
    pop: Population, X: Tensor, y: Tensor, hp: CommitteeHyperParams, epoch: int, step0: int
) -> None:
    """One epoch of SGD (``y = 1``) or rSGD for every active restart, in place.

    ``epoch`` is the epoch's index and ``step0`` the steps done before it (the schedules'
    ``t`` is ``hp.clock(step0 + s, M // B)`` at step ``s``)."""
    b, steps = hp.batch_size, X.shape[0] // hp.batch_size
    # unit_norm: ∇_u L = √c ∇_w L with w = √c u, so the w-step is c ∇_w L (c = 1 default);
    # loss_reduction "sum" multiplies the minibatch-mean gradient by B.
    scale = hp.coordinate_scale(X.shape[1]) * hp.loss_scale
    perms = pop.randperms(X.shape[0], pop.w.shape[1])  # (R, y, M)
    w = pop.w
    for s in range(steps):
        t = hp.clock(step0 + s, steps)
        beta, omega, gamma = hp.beta(t), hp.omega(t), hp.gamma(t)
        mask = None
        if hp.dropout > 0:  # hidden-unit dropout, drawn after the epoch's permutations
            mask = pop.dropout_mask((w.shape[1], b, w.shape[2]), hp.dropout)
        idx = perms[..., s * b : (s + 1) * b]
        grad = scale * minibatch_grad(w, X, y, idx, beta, omega, mask)
        if hp.kind == "rsgd" and (step0 + s + 1) % hp.coupling_every == 0:
            # Algorithm 2: w̄ from the weights before this step; K γ (w_a − w̄) is the
            # gradient of γ Σ_a d(w_a, w̄) scaled by the coupling period.
            center = w.mean(dim=1, keepdim=True)
            replica_coupling_(grad, w, center, hp.coupling_every * gamma)
        w = normalize_units(sgd_update(w, grad, hp.lr))
    pop.w = w


def esgd_outer(
    pop: Population, X: Tensor, y: Tensor, hp: CommitteeHyperParams, inner_done: int
) -> Tensor:
    """One outer iteration of Entropy-SGD for every active restart; returns ``μ``."""
    b, steps_per_epoch = hp.batch_size, X.shape[0] // hp.batch_size
    w = pop.w  # (R, 1, K, N)
    wp, mu = w, w.clone()
    c = hp.coordinate_scale(X.shape[1])
    scale = c * hp.loss_scale
    noise_scale = math.sqrt(hp.inner_lr * c) * hp.noise
    for l in range(hp.inner_steps):
        step = inner_done + l
        pos = step % steps_per_epoch
        if pos == 0:  # a new pass over the data: one permutation per restart
            pop.perms = pop.randperms(X.shape[0], 1)
        t = hp.clock(step, steps_per_epoch)
        beta, omega, gamma = hp.beta(t), hp.omega(t), hp.gamma(t)
        idx = pop.perms[..., pos * b : (pos + 1) * b]
        grad = scale * minibatch_grad(wp, X, y, idx, beta, omega)
        esgd_coupling_(grad, wp, w, gamma)
        noise = pop.randn(tuple(w.shape[1:]))
        # Algorithm 1, line 6: the Langevin noise is added after the inner step.
        wp = sgd_update(wp, grad, hp.inner_lr)
        langevin_(wp, noise, noise_scale)
        wp = normalize_units(wp)
        running_mean_(mu, wp, hp.alpha)
    grad = w.clone()
    local_entropy_grad_(grad, mu)
    pop.w = normalize_units(sgd_update(w, grad, hp.lr))
    return mu


def errors_and_loss(
    w: Tensor, X: Tensor, y: Tensor, beta: float, omega: float
) -> tuple[Tensor, Tensor]:
    """Training error of the sign network and ω-loss of the surrogate, sharing ``X wᵀ``.

    Same values as ``committee_errors`` and ``committee_loss`` (``w``: ``(R, K, N)``).
    """
    k, n = w.shape[-2], w.shape[-1]
    h = torch.matmul(X, w.transpose(-1, -2)) / math.sqrt(n)  # (R, M, K)
    votes = hidden_signs(h).sum(dim=-1)
    err = ((votes > 0) != (y > 0)).to(w.dtype).mean(dim=-1)
    margin = y * torch.tanh(beta * h).sum(dim=-1) / math.sqrt(k)
    return err, omega_loss(margin, omega).mean(dim=-1)


def distance(a: Tensor, b: Tensor) -> Tensor:
    """``d(a, b) = ½ Σ (a − b)²`` over the last two dimensions."""
    return 0.5 * (a - b).pow(2).sum(dim=(-2, -1))
