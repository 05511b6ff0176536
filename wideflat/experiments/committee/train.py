"""Batched training of committee machines: the five algorithms of appendix B.1.

A specialised batched re-implementation of :class:`~wideflat.optim.EntropySGD` and
:class:`~wideflat.optim.ReplicatedSGD` for the committee machine, sharing their per-step
kernels (:mod:`wideflat._kernels`; ``tests/experiments/committee/test_committee_vs_optim.py``
checks the steps against the optimizers). ``train_committee("rsgd-fast", X, y, restarts=50,
seed=0, max_epochs=...)`` trains all restarts of one algorithm (and, for rSGD, all their
replicas) as **one** tensor program: the weights are a single tensor of shape
``(restart, replica, K, N)`` (``replica = 1`` for SGD and eSGD) and every update is computed
for all networks at once with the closed-form gradient of
:func:`wideflat.models.committee.committee_loss_and_grad` (without re-validating its inputs
at every step). On CPU that gradient is evaluated over cache-sized blocks of restarts
(``_batched.CPU_BLOCK_BYTES``; one block on GPUs), which is faster because gathering every
network's minibatch is memory-bound (``benchmarks/committee_batching.py``). A restart that
meets its stopping rule is taken out of the working tensors and frozen, while the others
continue. rSGD replicas start from independent uniform draws; ``γ0`` is the preset's
(appendix B.1 lists it for the committee machine), not the automatic balance used for deep
networks.

Algorithms (``η`` = ``lr``; ``t`` = epoch index from 0; ``β(t) = β0 (1+β1)^t``,
``ω(t) = ω0 (1+ω1)^t``, ``γ(t) = γ0 (1+γ1)^t`` hold for a whole epoch):

* ``sgd-fast`` / ``sgd-slow``: ``w ← normalize(w − η ∇L(w; Ξ))``.
* ``rsgd-fast`` / ``rsgd-slow`` (Algorithm 2, coupling period ``K = coupling_every``): at
  step ``s = 1, 2, ...`` each of the ``y`` replicas draws its own minibatch ``Ξ_a`` and
  ``w_a ← normalize(w_a − η [∇L(w_a; Ξ_a) + K γ (w_a − w̄)·[s ≡ 0 mod K]])`` with
  ``w̄ = (1/y) Σ_a w_a`` computed before the step. The paper gives no ``K`` for the
  committee machine, so ``K = 1`` (coupling at every step).
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
* ``"unstable"``: the coupling step has reached ``η K γ ≥ 2`` (rSGD) or ``η' γ ≥ 2``
  (eSGD inner loop); beyond it the focusing term amplifies instead of contracting the
  distance, so the rule can no longer be met. Reported, never silent. (2 is the contraction
  bound ``|1 − ηγ| < 1`` of gradient descent on the coupling alone; the optimizers refuse
  ``ηγ ≥ 1`` up front, the bound past which a step overshoots the attracting point.)
* ``"non-finite"``: a weight became NaN or infinite.

Output network: for SGD and eSGD, ``w``; for rSGD, the **center** ``w̄`` (normalized per
unit, which does not change its sign-network function). Its training error, training loss
(at the last epoch's ``β, ω``) and test error are reported.

Randomness: restart ``r`` uses its own generator ``restart_generator(seed, r)``, so restart
``r`` is the same network whether it is trained alone or with any number of other
restarts. Draw order from that generator: the initial weights
``torch.rand((y, K, N)) * 2 − 1`` (one call, then per-unit normalization); then, for SGD and
rSGD, at the start of every epoch one ``torch.randperm(M)`` per replica ``a = 0..y−1`` and,
with ``dropout > 0``, at every step one ``torch.rand((y, B, K))`` (the dropout mask); for
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
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from wideflat import _rng
from wideflat.models.committee import committee_errors, normalize_units

from . import _batched
from .presets import ALGORITHMS, CommitteeHyperParams, committee_preset

__all__ = [
    "STOP_REASONS",
    "CommitteeTrainResult",
    "restart_generator",
    "train_committee",
]

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


def restart_generator(
    seed: int, restart: int, device: torch.device | str | None = None
) -> torch.Generator:
    """The generator of restart ``restart`` for base seed ``seed``.

    Seeded with ``wideflat._rng.derive_seed(seed, restart, bits=63)`` (NumPy's
    ``SeedSequence``), so different ``(seed, restart)`` pairs give independent streams.

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
    return _rng.generator(seed, restart, bits=63, device="cpu" if device is None else device)


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
    first_restart: int = 0,
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
        first_restart: Index of the first restart: the networks trained are restarts
            ``first_restart, ..., first_restart + restarts − 1``, each the same network as in
            a run of all restarts at once (a study trains its restarts in resumable chunks).

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
    _check_arguments(hp, X, y, X_test, y_test, restarts, seed, max_epochs, num_hidden)
    if isinstance(first_restart, bool) or not isinstance(first_restart, int) or first_restart < 0:
        raise ValueError(f"Invalid first_restart: {first_restart!r} (must be an int >= 0)")
    X, y, X_test, y_test = _as_training_tensors(X, y, X_test, y_test)
    steps_per_epoch = X.shape[0] // hp.batch_size
    pop = _initial_population(
        hp, seed, range(first_restart, first_restart + restarts), num_hidden, X
    )
    out = _Outcome(restarts, num_hidden, X)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_epochs, desc=algorithm, unit="epoch", leave=True)
    start = time.perf_counter()
    steps_done = 0  # per network (common to all active restarts)
    while pop.ids.numel() > 0:
        steps_done, unstable, mu = _train_round(pop, X, y, hp, steps_done, steps_per_epoch)
        epochs_done = steps_done / steps_per_epoch
        t_last = hp.clock(max(steps_done - 1, 0), steps_per_epoch)
        verdict = _evaluate(pop, X, y, hp, mu, t_last)
        capped = epochs_done >= max_epochs
        out.stop(pop, verdict, _RULE_REASON[algorithm], epochs_done, steps_done, capped, unstable)
        if bar is not None:
            bar.update(min(int(epochs_done), max_epochs) - bar.n)
            bar.set_postfix(
                active=pop.ids.numel(), train_err=f"{float(out.last_err.mean()):.4f}", refresh=False
            )
    wall = time.perf_counter() - start
    if bar is not None:
        bar.close()

    test_err = None
    if X_test is not None:
        test_err = committee_errors(out.w, X_test, y_test).double().cpu()
    return CommitteeTrainResult(
        algorithm=algorithm,
        hparams=hp,
        seed=seed,
        max_epochs=max_epochs,
        weights=out.w,
        train_error=out.err,
        train_loss=out.loss,
        test_error=test_err,
        epochs=out.epochs,
        steps=out.steps,
        stop_reason=tuple(out.reasons),
        wall_time=wall,
    )


def _train_round(
    pop: _batched.Population,
    X: Tensor,
    y: Tensor,
    hp: CommitteeHyperParams,
    steps_done: int,
    steps_per_epoch: int,
) -> tuple[int, bool, Tensor | None]:
    """One epoch (SGD, rSGD) or one outer iteration (eSGD) of every active restart, unless
    the coupling step has become unstable; returns ``(steps_done, unstable, μ or None)``."""
    if hp.kind == "esgd":
        t_last = hp.clock(steps_done + hp.inner_steps - 1, steps_per_epoch)
        if hp.inner_lr * hp.gamma(t_last) >= 2.0:
            return steps_done, True, None
        mu = _batched.esgd_outer(pop, X, y, hp, steps_done)
        return steps_done + hp.inner_steps, False, mu
    epoch = steps_done // steps_per_epoch
    t_last = hp.clock(steps_done + steps_per_epoch - 1, steps_per_epoch)
    if hp.kind == "rsgd" and hp.lr * hp.coupling_every * hp.gamma(t_last) >= 2.0:
        return steps_done, True, None
    _batched.sgd_epoch(pop, X, y, hp, epoch, steps_done)
    return steps_done + steps_per_epoch, False, None


class _Verdict(NamedTuple):
    """The output network of each active restart after a round, and what it achieved."""

    net: Tensor  # (R_active, K, N)
    err: Tensor  # training error
    loss: Tensor  # training loss at the β, ω of the last epoch
    finite: Tensor  # whether all the restart's weights are finite
    rule: Tensor  # whether the algorithm's stopping rule holds


def _evaluate(
    pop: _batched.Population,
    X: Tensor,
    y: Tensor,
    hp: CommitteeHyperParams,
    mu: Tensor | None,
    t_last: int,
) -> _Verdict:
    """Evaluate the output network of every active restart and its stopping rule."""
    w = pop.w
    scale = hp.coordinate_scale(X.shape[1])
    dist = None
    if hp.kind == "rsgd":
        center = w.mean(dim=1, keepdim=True)
        dist = _batched.distance(w, center).mean(dim=1) / scale
        net = normalize_units(center[:, 0])
    else:
        net = w[:, 0]
        if mu is not None:  # eSGD after an outer iteration
            dist = _batched.distance(w, mu)[:, 0] / scale
    err, loss = _batched.errors_and_loss(net, X, y, hp.beta(t_last), hp.omega(t_last))
    finite = torch.isfinite(w).flatten(1).all(dim=1)
    if hp.algorithm == "sgd-fast":
        rule = err == 0
    elif hp.algorithm == "sgd-slow":
        rule = loss < hp.stop_loss
    elif dist is not None:
        rule = dist < hp.stop_distance
    else:
        rule = torch.zeros_like(finite)
    return _Verdict(net, err, loss, finite, rule)


class _Outcome:
    """The per-restart results, filled in as restarts stop."""

    def __init__(self, restarts: int, num_hidden: int, X: Tensor) -> None:
        self.w = torch.zeros(restarts, num_hidden, X.shape[1], dtype=X.dtype, device=X.device)
        self.err = torch.zeros(restarts, dtype=torch.float64)
        self.loss = torch.zeros(restarts, dtype=torch.float64)
        self.epochs = torch.zeros(restarts, dtype=torch.float64)
        self.steps = torch.zeros(restarts, dtype=torch.int64)
        self.reasons: list[str] = [""] * restarts
        self.last_err = torch.zeros(restarts, dtype=torch.float64)

    def stop(
        self,
        pop: _batched.Population,
        v: _Verdict,
        rule_reason: str,
        epochs: float,
        steps: int,
        capped: bool,
        unstable: bool,
    ) -> None:
        """Record, then remove from ``pop``, the restarts that stop after this round."""
        stop = ~v.finite | v.rule | torch.full_like(v.finite, capped) | unstable
        for i in stop.nonzero().flatten().tolist():
            r = int(pop.ids[i])
            if not bool(v.finite[i]):
                self.reasons[r] = "non-finite"
            elif unstable:
                self.reasons[r] = "unstable"
            elif bool(v.rule[i]):
                self.reasons[r] = rule_reason
            else:
                self.reasons[r] = "max-epochs"
            self.w[r] = v.net[i]
            self.err[r] = float(v.err[i])
            self.loss[r] = float(v.loss[i])
            self.epochs[r] = epochs
            self.steps[r] = steps
        self.last_err[pop.ids.cpu()] = v.err.double().cpu()
        if bool(stop.any()):
            pop.keep(~stop)


def _initial_population(
    hp: CommitteeHyperParams, seed: int, restarts: range, num_hidden: int, X: Tensor
) -> _batched.Population:
    """Restart ``r``'s ``y`` replicas drawn uniformly from its own generator, normalized
    (rows of the population: ``0 .. len(restarts) − 1``)."""
    gens = [restart_generator(seed, r, X.device) for r in restarts]
    shape = (hp.y, num_hidden, X.shape[1])
    w0 = torch.stack(
        [torch.rand(shape, generator=g, dtype=X.dtype, device=X.device) * 2 - 1 for g in gens]
    )
    ids = torch.arange(len(restarts), device=X.device)
    return _batched.Population(normalize_units(w0), gens, ids)


def _as_training_tensors(X: Tensor, y: Tensor, X_test: Tensor | None, y_test: Tensor | None):
    """Everything in ``X``'s floating dtype (the default one for integer ``X``), on its device."""
    dtype = X.dtype if X.is_floating_point() else torch.get_default_dtype()
    X = X.to(dtype)
    y = y.to(dtype=dtype, device=X.device)
    if X_test is not None:
        X_test = X_test.to(dtype=dtype, device=X.device)
        y_test = y_test.to(dtype=dtype, device=X.device)
    return X, y, X_test, y_test


def _check_arguments(hp, X, y, X_test, y_test, restarts, seed, max_epochs, num_hidden) -> None:
    for name, value in (("restarts", restarts), ("max_epochs", max_epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Invalid {name}: {value!r} (must be an int >= 1)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"Invalid seed: {seed!r} (must be an int >= 0)")
    if isinstance(num_hidden, bool) or not isinstance(num_hidden, int) or num_hidden < 1:
        raise ValueError(f"Invalid num_hidden: {num_hidden!r} (must be an odd int >= 1)")
    if num_hidden % 2 == 0:
        raise ValueError(f"Invalid num_hidden K={num_hidden}: K must be odd")
    _check_data(X, y)
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test must be given together")
    if X_test is not None:
        _check_data(X_test, y_test, "_test")
        if X_test.shape[1] != X.shape[1]:
            raise ValueError(
                f"Shape mismatch: X_test has {X_test.shape[1]} inputs, X has {X.shape[1]}"
            )
    if hp.batch_size > X.shape[0]:
        raise ValueError(f"Invalid batch_size: {hp.batch_size} exceeds the M={X.shape[0]} patterns")


def _check_data(X: Tensor, y: Tensor, name: str = "") -> None:
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
