"""Batched training of committee machines: the five algorithms of appendix B.1.

``train_committee("rsgd-fast", X, y, restarts=50, seed=0, max_epochs=...)`` trains all
restarts of one algorithm (and, for rSGD, all their replicas) as **one** tensor program: the
weights are a single tensor of shape ``(restart, replica, K, N)`` (``replica = 1`` for SGD and
eSGD) and every update is computed for all networks at once with the closed-form gradient of
:func:`wideflat.models.committee.committee_loss_and_grad` (without re-validating its inputs
at every step). On CPU that gradient is evaluated over cache-sized blocks of restarts
(``_CPU_BLOCK_BYTES``; one block on GPUs), which is faster because gathering every network's
minibatch is memory-bound (``benchmarks/committee_batching.py``). A restart that meets its
stopping rule is taken out of the working tensors and frozen, while the others continue.
rSGD replicas start from independent uniform draws; ``γ0`` is the preset's (appendix B.1
lists it for the committee machine), not the automatic balance used for deep networks.

Algorithms (``η`` = ``lr``; ``t`` = epoch index from 0; ``β(t) = β0 (1+β1)^t``,
``ω(t) = ω0 (1+ω1)^t``, ``γ(t) = γ0 (1+γ1)^t`` hold for a whole epoch):

* ``sgd-fast`` / ``sgd-slow``: ``w ← normalize(w − η ∇L(w; Ξ))``.
* ``rsgd-fast`` / ``rsgd-slow`` (Algorithm 2, coupling period ``K_c = coupling_period``): at
  step ``s = 1, 2, ...`` each replica ``a`` draws its own minibatch ``Ξ_a`` and
  ``w_a ← normalize(w_a − η [∇L(w_a; Ξ_a) + K_c γ (w_a − w̄)·[s ≡ 0 mod K_c]])`` with
  ``w̄ = (1/y) Σ_a w_a`` computed before the step. The paper gives no ``K_c`` for the
  committee machine, so ``K_c = 1`` (coupling at every step).
* ``esgd`` (Algorithm 1): ``w', μ ← w``; ``L`` times: ``w' ← normalize(w' − η' [∇L(w'; Ξ) +
  γ (w' − w)] + √η' ε n)`` with ``n ~ N(0, I)``, then ``μ ← α μ + (1−α) w'``; finally
  ``w ← normalize(w − η (w − μ))``. What is normalized: ``w'`` after each inner step (after
  the noise), and ``w`` after the outer step; ``μ`` is a plain running mean and is not.

The rules above are written in the coordinates of the default ``unit_norm="sqrt-n"``
(``‖w_k‖ = √N``); see :class:`CommitteeHyperParams` for ``unit_norm="one"``.

Epochs: every epoch a network (each rSGD replica separately) draws a fresh random
permutation of the ``M`` patterns and makes ``S = M // batch_size`` steps on consecutive
slices of it (the last ``M mod batch_size`` patterns of the permutation are not used that
epoch). For eSGD an epoch is ``S`` inner steps; the minibatch stream continues across outer
iterations (an outer iteration of ``L = 20`` steps spans several epochs when ``S < L``), and
the schedules use the epoch of each inner step.

Stopping rules (appendix B.1), per restart, checked at the end of every epoch (eSGD: after
every outer iteration); the first that holds is reported in ``stop_reason``:

* ``"zero-errors"`` (``sgd-fast``): the sign network has no training error.
* ``"loss"`` (``sgd-slow``): the training loss over the whole training set, at the ``β, ω``
  of the epoch just finished, is below ``stop_loss`` (``1e-7``).
* ``"distance"`` (rSGD): the mean over replicas of ``d(w_a, w̄) = ½ Σ_i (w_{a,i} − w̄_i)²``
  (summed over all ``K N`` weights) is below ``stop_distance`` (``1e-8``).
  (eSGD): ``d(w, μ) = ½ Σ_i (w_i − μ_i)²`` after the outer update is below ``1e-8``.
* ``"max-epochs"``: ``max_epochs`` epochs were done without meeting the rule (eSGD: the
  first outer iteration that reaches ``max_epochs`` epochs of minibatches).
* ``"unstable"``: the coupling step has reached ``η K_c γ ≥ 2`` (rSGD) or ``η' γ ≥ 2``
  (eSGD inner loop); beyond it the focusing term amplifies instead of contracting the
  distance, so the rule can no longer be met. Reported, never silent.
* ``"non-finite"``: a weight became NaN or infinite.

Output network: for SGD and eSGD, ``w``; for rSGD, the **center** ``w̄`` (normalized per
unit, which does not change its sign-network function). Its training error, training loss
(at the last epoch's ``β, ω``) and test error are reported.

Randomness: restart ``r`` uses its own generator ``restart_generator(seed, r)``, so restart
``r`` is the same network whether it is trained alone or with any number of other
restarts. Draw order from that generator: the initial weights
``torch.rand((y, K, N)) * 2 − 1`` (one call, then per-unit normalization); then, for SGD and
rSGD, at the start of every epoch one ``torch.randperm(M)`` per replica ``a = 0..y−1``; for
eSGD, a ``torch.randperm(M)`` whenever the minibatch stream starts a new pass, and one
``torch.randn((1, K, N))`` after the gradient of every inner step (drawn even when ε = 0).
A frozen restart draws nothing more.

Note:
    Step sizes. With the paper's ``η`` applied to the minibatch-mean loss and units of norm
    ``√N``, one step moves a unit by about ``1e-6`` of its norm: on a teacher–student set
    (N = 784, K = 9, M = 500) SGD fast was still at ~50 % training error after 200 epochs
    (measured). The paper does not say which normalization its ``η`` refers to;
    ``unit_norm="one"`` (units of norm 1) makes the loss step ``N`` times larger at equal
    coupling rates, and ``overrides={"lr": ...}`` rescales everything.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wideflat.models.committee import (
    _loss_and_grad_unchecked,
    committee_errors,
    hidden_signs,
    normalize_units,
    omega_loss,
)

__all__ = [
    "ALGORITHMS",
    "COMMITTEE_PRESETS",
    "STOP_REASONS",
    "CommitteeHyperParams",
    "CommitteeTrainResult",
    "committee_preset",
    "list_committee_algorithms",
    "restart_generator",
    "train_committee",
]

ALGORITHMS: tuple[str, ...] = ("sgd-fast", "sgd-slow", "rsgd-fast", "rsgd-slow", "esgd")
_RULE_REASON = {
    "sgd-fast": "zero-errors",
    "sgd-slow": "loss",
    "rsgd-fast": "distance",
    "rsgd-slow": "distance",
    "esgd": "distance",
}
STOP_REASONS: tuple[str, ...] = (
    "zero-errors",
    "loss",
    "distance",
    "max-epochs",
    "unstable",
    "non-finite",
)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class CommitteeHyperParams:
    """Hyper-parameters of one committee-machine training algorithm (appendix B.1).

    Attributes:
        algorithm: One of :data:`ALGORITHMS`; its prefix selects the update rule.
        lr: ``η``, learning rate (per step, on the minibatch-mean loss); for eSGD the
            outer step size.
        beta0: ``β0``, initial inverse width of the hidden ``tanh``.
        beta1: ``β1``, per-epoch growth: ``β(t) = β0 (1+β1)^t``.
        omega0: ``ω0``, initial ω-loss scale.
        omega1: ``ω1``, per-epoch growth: ``ω(t) = ω0 (1+ω1)^t``.
        replicas: ``y``, number of rSGD replicas (1 otherwise).
        gamma0: ``γ0``, initial coupling (rSGD, eSGD).
        gamma1: ``γ1``, per-epoch growth: ``γ(t) = γ0 (1+γ1)^t``.
        coupling_period: ``K_c`` of Algorithm 2: couple every ``K_c`` steps with strength
            ``K_c γ``.
        inner_steps: ``L``, eSGD inner steps per outer iteration.
        inner_lr: ``η'``, eSGD inner learning rate.
        noise: ``ε``, eSGD Langevin noise scale (noise ``√η' ε N(0, I)`` per inner step).
        mean_decay: ``α``, eSGD running-mean factor ``μ ← α μ + (1−α) w'``.
        batch_size: Patterns per minibatch.
        stop_loss: Threshold of the ``sgd-slow`` rule (training loss).
        stop_distance: Threshold of the rSGD / eSGD rules (distance ``d``).
        unit_norm: Coordinates in which the updates, distances and noise are taken, i.e.
            the norm each hidden unit is kept at during training. ``"sqrt-n"`` (default):
            ``‖w_k‖ = √N`` with ``h_k = w_k · x / √N``, the convention of
            :mod:`wideflat.models.committee`. ``"one"``: ``u_k = w_k / √N`` with
            ``‖u_k‖ = 1`` and ``h_k = u_k · x`` (the same network function). In ``w``
            coordinates, ``"one"`` multiplies the loss-gradient term by ``N``, the Langevin
            noise by ``√N`` and divides the distances by ``N``; the coupling rates ``ηγ``,
            ``η'γ`` and the outer eSGD step are the same in both. The paper does not state
            which it used; the returned weights are always in ``"sqrt-n"`` form.
    """

    algorithm: str
    lr: float
    beta0: float
    beta1: float
    omega0: float
    omega1: float
    replicas: int = 1
    gamma0: float = 0.0
    gamma1: float = 0.0
    coupling_period: int = 1
    inner_steps: int = 1
    inner_lr: float = 0.0
    noise: float = 0.0
    mean_decay: float = 0.75
    batch_size: int = 100
    stop_loss: float = 1e-7
    stop_distance: float = 1e-8
    unit_norm: str = "sqrt-n"

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(
                f"Unknown algorithm {self.algorithm!r}; known algorithms: {', '.join(ALGORITHMS)}"
            )
        positive = ["lr", "beta0", "omega0", "batch_size", "stop_loss", "stop_distance"]
        nonnegative = ["beta1", "omega1", "gamma0", "gamma1", "noise"]
        if self.kind == "esgd":
            positive += ["inner_lr"]
        for name in positive + nonnegative:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"Invalid {name}: {value!r} (must be a number)")
            if not math.isfinite(value) or value < 0 or (name in positive and value == 0):
                bound = "> 0" if name in positive else ">= 0"
                raise ValueError(f"Invalid {name}: {value!r} (must be finite and {bound})")
        for name in ("replicas", "coupling_period", "inner_steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid {name}: {value!r} (must be an int >= 1)")
        if self.unit_norm not in ("sqrt-n", "one"):
            raise ValueError(f"Invalid unit_norm: {self.unit_norm!r} (use 'sqrt-n' or 'one')")
        if not 0.0 <= self.mean_decay <= 1.0:
            raise ValueError(f"Invalid mean_decay: {self.mean_decay!r} (must be in [0, 1])")
        if self.kind != "rsgd" and self.replicas != 1:
            raise ValueError(
                f"Invalid replicas: {self.replicas} for {self.algorithm!r} (only rSGD has replicas)"
            )

    def coordinate_scale(self, num_inputs: int) -> float:
        """``c`` with ``u = w / √c``: 1 for ``"sqrt-n"``, ``N`` for ``"one"``."""
        return float(num_inputs) if self.unit_norm == "one" else 1.0

    @property
    def kind(self) -> str:
        """``"sgd"``, ``"rsgd"`` or ``"esgd"``."""
        return self.algorithm.split("-")[0]

    def beta(self, epoch: int) -> float:
        """``β(t) = β0 (1+β1)^t``."""
        return self.beta0 * (1.0 + self.beta1) ** epoch

    def omega(self, epoch: int) -> float:
        """``ω(t) = ω0 (1+ω1)^t``."""
        return self.omega0 * (1.0 + self.omega1) ** epoch

    def gamma(self, epoch: int) -> float:
        """``γ(t) = γ0 (1+γ1)^t``."""
        return self.gamma0 * (1.0 + self.gamma1) ** epoch


# Appendix B.1. α is not listed there; 0.75 is Algorithm 1's default (DESIGN.md §2).
COMMITTEE_PRESETS: Mapping[str, CommitteeHyperParams] = MappingProxyType(
    {
        "sgd-fast": CommitteeHyperParams(
            "sgd-fast", lr=2e-4, beta0=2.0, beta1=1e-4, omega0=5.0, omega1=0.0
        ),
        "sgd-slow": CommitteeHyperParams(
            "sgd-slow", lr=3e-5, beta0=0.5, beta1=1e-3, omega0=0.5, omega1=1e-3
        ),
        "rsgd-fast": CommitteeHyperParams(
            "rsgd-fast",
            lr=1e-4,
            replicas=10,
            gamma0=2e-3,
            gamma1=2e-3,
            beta0=1.0,
            beta1=2e-4,
            omega0=0.5,
            omega1=1e-3,
        ),  # fmt: skip
        "rsgd-slow": CommitteeHyperParams(
            "rsgd-slow",
            lr=1e-3,
            replicas=10,
            gamma0=1e-4,
            gamma1=1e-4,
            beta0=1.0,
            beta1=2e-4,
            omega0=0.5,
            omega1=1e-3,
        ),  # fmt: skip
        "esgd": CommitteeHyperParams(
            "esgd",
            lr=1e-3,
            inner_lr=5e-3,
            noise=1e-6,
            inner_steps=20,
            mean_decay=0.75,
            gamma0=10.0,
            gamma1=5e-5,
            beta0=1.0,
            beta1=1e-4,
            omega0=0.5,
            omega1=5e-4,
        ),  # fmt: skip
    }
)


def list_committee_algorithms() -> list[str]:
    """Names of the committee-machine algorithms, in the paper's order.

    Example:
        >>> list_committee_algorithms()[0]
        'sgd-fast'
    """
    return list(ALGORITHMS)


def committee_preset(
    algorithm: str, overrides: Mapping[str, Any] | None = None
) -> CommitteeHyperParams:
    """The paper's hyper-parameters for ``algorithm``, optionally with fields replaced.

    Args:
        algorithm: One of :data:`ALGORITHMS`.
        overrides: Field name → value, applied with ``dataclasses.replace`` (validated).

    Returns:
        A frozen :class:`CommitteeHyperParams`.

    Example:
        >>> committee_preset("esgd", {"inner_steps": 5}).inner_steps
        5
    """
    if algorithm not in COMMITTEE_PRESETS:
        raise ValueError(
            f"Unknown algorithm {algorithm!r}; known algorithms: {', '.join(ALGORITHMS)}"
        )
    hp = COMMITTEE_PRESETS[algorithm]
    if overrides:
        fields = {f.name for f in dataclasses.fields(CommitteeHyperParams)} - {"algorithm"}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(
                f"Unknown hyper-parameter(s) {unknown} for {algorithm!r}; "
                f"valid: {', '.join(sorted(fields))}"
            )
        hp = dataclasses.replace(hp, **dict(overrides))
    return hp


def restart_generator(
    seed: int, restart: int, device: torch.device | str | None = None
) -> torch.Generator:
    """The generator of restart ``restart`` for base seed ``seed``.

    Seeded with NumPy's ``SeedSequence([seed, restart])`` (first 63 bits of its state), so
    different ``(seed, restart)`` pairs give independent streams.

    Args:
        seed: Base seed, an int ``>= 0``.
        restart: Restart index, an int ``>= 0``.
        device: Device of the generator (that of the training tensors).

    Example:
        >>> a = torch.rand(2, generator=restart_generator(0, 1))
        >>> torch.equal(a, torch.rand(2, generator=restart_generator(0, 1)))
        True
    """
    for name, value in (("seed", seed), ("restart", restart)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"Invalid {name}: {value!r} (must be an int >= 0)")
    state = np.random.SeedSequence([seed, restart]).generate_state(1, np.uint64)[0]
    gen = torch.Generator(device="cpu" if device is None else device)
    return gen.manual_seed(int(state >> np.uint64(1)))


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class CommitteeTrainResult:
    """What :func:`train_committee` returns (one algorithm, all restarts).

    Attributes:
        algorithm: Algorithm name.
        hparams: The hyper-parameters used (preset plus overrides).
        seed: Base seed.
        max_epochs: The epoch cap.
        weights: ``(restarts, K, N)``: the output network of each restart (for rSGD the
            center), each hidden unit of norm ``√N``.
        train_error: ``(restarts,)`` training error fraction of the output network.
        train_loss: ``(restarts,)`` training loss of the output network at the ``β, ω`` of
            its last epoch.
        test_error: ``(restarts,)`` test error fraction, or ``None`` without test data.
        epochs: ``(restarts,)`` epochs done (float: eSGD can stop mid-epoch).
        steps: ``(restarts,)`` minibatch steps done by each network (eSGD: inner steps).
        stop_reason: One of :data:`STOP_REASONS` per restart.
        wall_time: Seconds spent in the training loop (all restarts together).
    """

    algorithm: str
    hparams: CommitteeHyperParams
    seed: int
    max_epochs: int
    weights: Tensor
    train_error: Tensor
    train_loss: Tensor
    test_error: Tensor | None
    epochs: Tensor
    steps: Tensor
    stop_reason: tuple[str, ...]
    wall_time: float

    @property
    def restarts(self) -> int:
        return len(self.stop_reason)

    def summary(self) -> dict[str, Any]:
        """JSON-ready per-restart numbers (no weights) and the resolved hyper-parameters.

        Example:
            >>> X = torch.randn(20, 9).sign(); y = torch.ones(20)
            >>> r = train_committee("sgd-fast", X, y, restarts=2, seed=0, max_epochs=1,
            ...                     progress=False, overrides={"batch_size": 10})
            >>> sorted(r.summary())[:3]
            ['algorithm', 'epochs', 'hparams']
        """
        test = None if self.test_error is None else self.test_error.tolist()
        return {
            "algorithm": self.algorithm,
            "hparams": dataclasses.asdict(self.hparams),
            "seed": self.seed,
            "max_epochs": self.max_epochs,
            "train_error": self.train_error.tolist(),
            "train_loss": self.train_loss.tolist(),
            "test_error": test,
            "epochs": self.epochs.tolist(),
            "steps": self.steps.tolist(),
            "stop_reason": list(self.stop_reason),
            "wall_time": self.wall_time,
        }


# --------------------------------------------------------------------------- internals


def _distance(a: Tensor, b: Tensor) -> Tensor:
    """``d(a, b) = ½ Σ (a − b)²`` over the last two dimensions."""
    return 0.5 * (a - b).pow(2).sum(dim=(-2, -1))


# On CPU the gathered minibatches of all networks ((R, y, B, N): 31 MB in float32 for
# 10 restarts × 10 replicas at the paper's sizes) do not fit in cache, and gathering then
# multiplying them is memory-bound. The gradient is therefore computed over blocks of
# restarts whose gathered patterns take at most this many bytes (measured in
# benchmarks/committee_batching.py). On GPUs there is a single block.
_CPU_BLOCK_BYTES = 4 << 20


def _block_restarts(w: Tensor, batch_size: int) -> int:
    """Restarts per block for :func:`_minibatch_grad`."""
    if w.device.type != "cpu":
        return max(w.shape[0], 1)
    per_restart = w.shape[1] * batch_size * w.shape[-1] * w.element_size()
    return max(1, _CPU_BLOCK_BYTES // per_restart)


def _minibatch_grad(
    w: Tensor, X: Tensor, y: Tensor, idx: Tensor, beta: float, omega: float
) -> Tensor:
    """Gradient of each network's minibatch loss: ``w`` ``(R, y, K, N)``, ``idx`` ``(R, y, B)``.

    The networks are independent; the restarts are processed in cache-sized blocks (one
    block on GPUs), each block as one batched tensor program.
    """
    block = _block_restarts(w, idx.shape[-1])
    grad = torch.empty_like(w) if block < w.shape[0] else None
    for start in range(0, w.shape[0], block):
        rows = slice(start, start + block)
        flat = idx[rows].reshape(-1)  # index_select is ~5x faster than X[idx] (CPU)
        Xb = X.index_select(0, flat).view(*idx[rows].shape, -1)  # (r, y, B, N)
        yb = y.index_select(0, flat).view(idx[rows].shape)  # (r, y, B)
        _, g = _loss_and_grad_unchecked(w[rows], Xb, yb, beta, omega)
        if grad is None:
            return g
        grad[rows] = g
    return grad


class _Population:
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

    def randn(self, shape: tuple[int, ...]) -> Tensor:
        w = self.w
        return torch.stack(
            [torch.randn(shape, generator=g, dtype=w.dtype, device=w.device) for g in self.gens]
        )


def _sgd_epoch(
    pop: _Population, X: Tensor, y: Tensor, hp: CommitteeHyperParams, epoch: int, step0: int
) -> None:
    """One epoch of SGD (``y = 1``) or rSGD for every active restart, in place."""
    beta, omega, gamma = hp.beta(epoch), hp.omega(epoch), hp.gamma(epoch)
    b, steps = hp.batch_size, X.shape[0] // hp.batch_size
    c = hp.coordinate_scale(X.shape[1])
    perms = pop.randperms(X.shape[0], pop.w.shape[1])  # (R, y, M)
    w = pop.w
    for s in range(steps):
        # unit_norm: ∇_u L = √c ∇_w L with w = √c u, so the w-step is c ∇_w L (c = 1 default).
        grad = c * _minibatch_grad(w, X, y, perms[..., s * b : (s + 1) * b], beta, omega)
        if hp.kind == "rsgd" and (step0 + s + 1) % hp.coupling_period == 0:
            # Algorithm 2: w̄ from the weights before this step; K_c γ (w_a − w̄) is the
            # gradient of γ Σ_a d(w_a, w̄) scaled by the coupling period.
            center = w.mean(dim=1, keepdim=True)
            grad = grad + (hp.coupling_period * gamma) * (w - center)
        w = normalize_units(w - hp.lr * grad)
    pop.w = w


def _esgd_outer(
    pop: _Population, X: Tensor, y: Tensor, hp: CommitteeHyperParams, inner_done: int
) -> Tensor:
    """One outer iteration of Entropy-SGD for every active restart; returns ``μ``."""
    b, steps_per_epoch = hp.batch_size, X.shape[0] // hp.batch_size
    w = pop.w  # (R, 1, K, N)
    wp, mu = w, w
    c = hp.coordinate_scale(X.shape[1])
    noise_scale = math.sqrt(hp.inner_lr * c) * hp.noise
    for l in range(hp.inner_steps):
        step = inner_done + l
        epoch, pos = divmod(step, steps_per_epoch)
        if pos == 0:  # a new pass over the data: one permutation per restart
            pop.perms = pop.randperms(X.shape[0], 1)
        beta, omega, gamma = hp.beta(epoch), hp.omega(epoch), hp.gamma(epoch)
        grad = _minibatch_grad(wp, X, y, pop.perms[..., pos * b : (pos + 1) * b], beta, omega)
        grad = c * grad + gamma * (wp - w)
        noise = pop.randn(tuple(w.shape[1:]))
        # Algorithm 1, line 6: the Langevin noise is added after the gradient step.
        wp = normalize_units(wp - hp.inner_lr * grad + noise_scale * noise)
        mu = hp.mean_decay * mu + (1.0 - hp.mean_decay) * wp
    pop.w = normalize_units(w - hp.lr * (w - mu))
    return mu


def _errors_and_loss(
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


def _validate_data(X: Tensor, y: Tensor, name: str = "") -> None:
    xs, ys = "X" + name, "y" + name
    if not isinstance(X, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"{xs} and {ys} must be torch.Tensors")
    if X.ndim != 2:
        raise ValueError(f"{xs} must have shape (M, N), got shape {tuple(X.shape)}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(
            f"Shape mismatch: {ys} has shape {tuple(y.shape)} but {xs} has {X.shape[0]} "
            f"patterns (shape {tuple(X.shape)})"
        )
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{xs} must be non-empty, got shape {tuple(X.shape)}")
    if X.is_floating_point() and not bool(torch.isfinite(X).all()):
        raise ValueError(f"{xs} contains NaN or infinite values")
    bad = (y != 1) & (y != -1)
    if bool(bad.any()):
        raise ValueError(f"Labels {ys} must be +1 or -1, found {y[bad][0].item()!r}")


# --------------------------------------------------------------------------- trainer


def train_committee(
    algorithm: str,
    X: Tensor,
    y: Tensor,
    *,
    restarts: int,
    seed: int,
    max_epochs: int,
    X_test: Tensor | None = None,
    y_test: Tensor | None = None,
    progress: bool = True,
    overrides: Mapping[str, Any] | None = None,
    num_hidden: int = 9,
) -> CommitteeTrainResult:
    """Train ``restarts`` committee machines with one algorithm of appendix B.1, batched.

    All restarts (and all rSGD replicas) form one weight tensor ``(restart, replica, K, N)``
    and are updated together; see the module docstring for the update rules, epochs,
    stopping rules, output network and the order of random draws.

    Args:
        algorithm: ``"sgd-fast"``, ``"sgd-slow"``, ``"rsgd-fast"``, ``"rsgd-slow"`` or
            ``"esgd"``.
        X: Training patterns ``(M, N)`` (floating; the paper's are ``±1``). Training runs in
            ``X``'s dtype and on its device.
        y: Training labels ``±1``, shape ``(M,)``.
        restarts: Number of independent networks (the paper: 50).
        seed: Base seed (restart ``r`` uses ``restart_generator(seed, r)``).
        max_epochs: Epoch cap; restarts that reach it stop with ``"max-epochs"``.
        X_test: Optional test patterns ``(M_test, N)``.
        y_test: Optional test labels ``±1`` (required with ``X_test``).
        progress: Show a tqdm bar (epochs; postfix: active restarts, mean train error).
        overrides: Hyper-parameters replacing the preset's (see :func:`committee_preset`).
        num_hidden: ``K``, odd (the paper: 9).

    Returns:
        A frozen :class:`CommitteeTrainResult`.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randint(0, 2, (40, 25), generator=g).double() * 2 - 1
        >>> y = X[:, :3].sum(1).sign()
        >>> res = train_committee("sgd-fast", X, y, restarts=4, seed=0, max_epochs=300,
        ...                       num_hidden=3, progress=False,
        ...                       overrides={"lr": 0.5, "batch_size": 10})
        >>> res.weights.shape, set(res.stop_reason) <= {"zero-errors", "max-epochs"}
        (torch.Size([4, 3, 25]), True)
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"Unknown algorithm {algorithm!r}; known algorithms: {', '.join(ALGORITHMS)}"
        )
    hp = committee_preset(algorithm, overrides)
    for name, value in (("restarts", restarts), ("max_epochs", max_epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Invalid {name}: {value!r} (must be an int >= 1)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"Invalid seed: {seed!r} (must be an int >= 0)")
    if isinstance(num_hidden, bool) or not isinstance(num_hidden, int) or num_hidden < 1:
        raise ValueError(f"Invalid num_hidden: {num_hidden!r} (must be an odd int >= 1)")
    if num_hidden % 2 == 0:
        raise ValueError(f"Invalid num_hidden K={num_hidden}: K must be odd")
    _validate_data(X, y)
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test must be given together")
    if X_test is not None:
        _validate_data(X_test, y_test, "_test")
        if X_test.shape[1] != X.shape[1]:
            raise ValueError(
                f"Shape mismatch: X_test has {X_test.shape[1]} inputs, X has {X.shape[1]}"
            )
    m, n = X.shape
    if hp.batch_size > m:
        raise ValueError(f"Invalid batch_size: {hp.batch_size} exceeds the M={m} patterns")

    dtype = X.dtype if X.is_floating_point() else torch.get_default_dtype()
    device = X.device
    X = X.to(dtype)
    y = y.to(dtype=dtype, device=device)
    if X_test is not None:
        X_test = X_test.to(dtype=dtype, device=device)
        y_test = y_test.to(dtype=dtype, device=device)
    steps_per_epoch = m // hp.batch_size
    ny, k = hp.replicas, num_hidden

    gens = [restart_generator(seed, r, device) for r in range(restarts)]
    w0 = torch.stack(
        [torch.rand((ny, k, n), generator=g, dtype=dtype, device=device) * 2 - 1 for g in gens]
    )
    pop = _Population(normalize_units(w0), gens, torch.arange(restarts, device=device))

    out_w = torch.zeros(restarts, k, n, dtype=dtype, device=device)
    out_err = torch.zeros(restarts, dtype=torch.float64)
    out_loss = torch.zeros(restarts, dtype=torch.float64)
    out_epochs = torch.zeros(restarts, dtype=torch.float64)
    out_steps = torch.zeros(restarts, dtype=torch.int64)
    reasons: list[str] = [""] * restarts

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_epochs, desc=algorithm, unit="epoch", leave=True)
    start = time.perf_counter()
    steps_done = 0  # per network (common to all active restarts)
    last_err = torch.zeros(restarts, dtype=torch.float64)

    while pop.ids.numel() > 0:
        # ---- train: one epoch (SGD, rSGD) or one outer iteration (eSGD)
        if hp.kind == "esgd":
            t_last = (steps_done + hp.inner_steps - 1) // steps_per_epoch
            unstable = hp.inner_lr * hp.gamma(t_last) >= 2.0
            if not unstable:
                mu = _esgd_outer(pop, X, y, hp, steps_done)
                steps_done += hp.inner_steps
            sched_epoch = max(steps_done - 1, 0) // steps_per_epoch
        else:
            epoch = steps_done // steps_per_epoch
            unstable = hp.kind == "rsgd" and hp.lr * hp.coupling_period * hp.gamma(epoch) >= 2.0
            if not unstable:
                _sgd_epoch(pop, X, y, hp, epoch, steps_done)
                steps_done += steps_per_epoch
            sched_epoch = max(steps_done - 1, 0) // steps_per_epoch
        epochs_done = steps_done / steps_per_epoch

        # ---- evaluate the output network of every active restart
        w = pop.w
        if hp.kind == "rsgd":
            center = w.mean(dim=1, keepdim=True)
            dist = _distance(w, center).mean(dim=1) / hp.coordinate_scale(n)
            out = normalize_units(center[:, 0])
        else:
            out = w[:, 0]
            dist = None
            if hp.kind == "esgd" and not unstable:
                dist = _distance(w, mu)[:, 0] / hp.coordinate_scale(n)
        err, loss = _errors_and_loss(out, X, y, hp.beta(sched_epoch), hp.omega(sched_epoch))
        finite = torch.isfinite(w).flatten(1).all(dim=1)

        if hp.algorithm == "sgd-fast":
            rule = err == 0
        elif hp.algorithm == "sgd-slow":
            rule = loss < hp.stop_loss
        elif dist is not None:
            rule = dist < hp.stop_distance
        else:
            rule = torch.zeros_like(finite)
        capped = torch.full_like(finite, epochs_done >= max_epochs)
        stop = ~finite | rule | capped | bool(unstable)
        for i in stop.nonzero().flatten().tolist():
            r = int(pop.ids[i])
            if not bool(finite[i]):
                reasons[r] = "non-finite"
            elif unstable:
                reasons[r] = "unstable"
            elif bool(rule[i]):
                reasons[r] = _RULE_REASON[hp.algorithm]
            else:
                reasons[r] = "max-epochs"
            out_w[r] = out[i]
            out_err[r] = float(err[i])
            out_loss[r] = float(loss[i])
            out_epochs[r] = epochs_done
            out_steps[r] = steps_done
        last_err[pop.ids.cpu()] = err.double().cpu()
        if bool(stop.any()):
            pop.keep(~stop)
        if bar is not None:
            bar.update(min(int(epochs_done), max_epochs) - bar.n)
            bar.set_postfix(
                active=pop.ids.numel(), train_err=f"{float(last_err.mean()):.4f}", refresh=False
            )
    wall = time.perf_counter() - start
    if bar is not None:
        bar.close()

    test_err = None
    if X_test is not None:
        test_err = committee_errors(out_w, X_test, y_test).double().cpu()
    return CommitteeTrainResult(
        algorithm=algorithm,
        hparams=hp,
        seed=seed,
        max_epochs=max_epochs,
        weights=out_w,
        train_error=out_err,
        train_loss=out_loss,
        test_error=test_err,
        epochs=out_epochs,
        steps=out_steps,
        stop_reason=tuple(reasons),
        wall_time=wall,
    )
