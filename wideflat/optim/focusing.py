r"""Focusing: schedules for the coupling γ, shaped like ``torch.optim.lr_scheduler``.

γ starts small (wide exploration) and grows, trading width for depth (Baldassi et al.,
2016). A scheduler writes ``group["gamma"]`` of an :class:`~wideflat.optim.EntropySGD` or
:class:`~wideflat.optim.ReplicatedSGD` (or any optimizer whose groups have ``"gamma"``).
Step it after ``optimizer.step()``, per epoch (as in the paper) or per step; its position
is ``last_epoch``, saved by ``state_dict()``, so a resumed run continues the schedule.
As with LR schedulers, construct it *before* ``load_state_dict`` of the scheduler, since
construction writes γ_0 into the groups.

Schedules (τ = number of scheduler steps taken):

* :class:`ExponentialGamma`: γ_τ = γ0 (1 + γ1)^τ, with γ1 given or derived from a total
  growth factor G over T steps: γ1 = G^{1/T} − 1 (the paper: G = 10^4 for rSGD, 10 for eSGD).
* :class:`CosineGamma`: γ_τ = ½ γ_max (1 − cos(π min(τ, T)/T)), from 0 to γ_max.
* :class:`ConstantGamma`: γ_τ = γ0.

The paper's automatic γ0: :func:`auto_gamma0_rsgd` (balance of the data and distance terms,
γ0 = Σ_a L(w_a) / Σ_a d(w_a, w̄)) and :func:`~wideflat.optim.entropy_sgd.auto_gamma0_esgd`
(γ0 = L(w)/d(w', w) after one inner loop with γ = 0, beside the optimizer it probes).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from .. import _validate as check
from .._deprecated import moved
from ..replicas import ReplicaEngine
from .replicated_sgd import ReplicatedSGD

__all__ = [
    "ConstantGamma",
    "CosineGamma",
    "ExponentialGamma",
    "GammaScheduler",
    "auto_gamma0_rsgd",
]

# auto_gamma0_esgd moved next to EntropySGD (it drives its inner loop); the old path still works.
__getattr__ = moved(__name__, {"auto_gamma0_esgd": "wideflat.optim.entropy_sgd"})


class GammaScheduler:
    """Base class: subclasses implement :meth:`get_gamma` from ``last_epoch``.

    Args:
        optimizer: an optimizer whose param groups have a ``"gamma"`` entry.
        last_epoch: the index of the last step taken, -1 to start fresh (which records
            each group's ``initial_gamma`` and writes γ_0).
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise ValueError(f"Invalid optimizer: {type(optimizer).__name__} is not an Optimizer")
        for i, group in enumerate(optimizer.param_groups):
            if "gamma" not in group:
                raise ValueError(f"Invalid optimizer: param group {i} has no 'gamma'")
            if last_epoch == -1:
                group.setdefault("initial_gamma", group["gamma"])
            elif "initial_gamma" not in group:
                raise ValueError(
                    f"Invalid last_epoch: {last_epoch} but group {i} has no initial_gamma"
                )
        self.optimizer = optimizer
        self.base_gammas = [g["initial_gamma"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._warned = False
        self.step()

    def get_gamma(self) -> list[float]:
        """γ of each param group at step ``last_epoch`` (implemented by subclasses)."""
        raise NotImplementedError

    def get_last_gamma(self) -> list[float]:
        """γ of each group as last written (for logging)."""
        return list(self._last_gamma)

    def step(self) -> None:
        """Advance one step and write the new γ into every group."""
        self.last_epoch += 1
        values = self.get_gamma()
        for group, value in zip(self.optimizer.param_groups, values, strict=True):
            group["gamma"] = value
        self._last_gamma = values
        self._check_overshoot()

    def _check_overshoot(self) -> None:
        if self._warned:
            return
        for i, group in enumerate(self.optimizer.param_groups):
            step_size = coupling_step_size(group)
            if step_size >= 1:
                warnings.warn(
                    f"focusing: group {i} coupling step {step_size:.4g} >= 1 at schedule step "
                    f"{self.last_epoch} (gamma={group['gamma']:.4g}); the elastic term now "
                    "overshoots and training may diverge",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._warned = True
                return

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state (position, base and last γ), without the optimizer."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` and write its last γ back into the param groups."""
        self.__dict__.update(state_dict)
        for group, value in zip(self.optimizer.param_groups, self._last_gamma, strict=True):
            group["gamma"] = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, gamma={self._last_gamma})"


def coupling_step_size(group: dict[str, Any]) -> float:
    """The elastic step size of a group: lr·K·γ for rSGD, η'·γ for eSGD (else lr·γ)."""
    if "inner_lr" in group:
        return group["inner_lr"] * group["gamma"]
    return group["lr"] * group.get("coupling_every", 1) * group["gamma"]


class ExponentialGamma(GammaScheduler):
    r"""γ_τ = γ0 (1 + γ1)^τ.

    Args:
        optimizer: the optimizer.
        gamma0: γ0 for every group (default: each group's initial γ).
        gamma1: the growth rate per step; or give ``growth`` and ``steps`` instead.
        growth: total factor G by which γ grows over ``steps`` steps: γ1 = G^{1/steps} − 1.
        steps: the number of scheduler steps over which γ grows by ``growth``.

    Example:
        >>> import torch
        >>> from wideflat.optim import ReplicatedSGD
        >>> opt = ReplicatedSGD(torch.nn.Linear(2, 1), lr=0.01, y=3, gamma=1e-3, seed=0)
        >>> sched = ExponentialGamma(opt, growth=1e4, steps=100)   # ×10⁴ over 100 epochs
        >>> for epoch in range(100):
        ...     sched.step()                                       # after each epoch
        >>> round(opt.param_groups[0]["gamma"], 6)
        10.0
    """

    def __init__(
        self,
        optimizer: Optimizer,
        gamma0: float | None = None,
        gamma1: float | None = None,
        *,
        growth: float | None = None,
        steps: int | None = None,
        last_epoch: int = -1,
    ):
        if gamma0 is not None:
            check.non_negative("gamma0", gamma0)
            if last_epoch == -1:
                for group in optimizer.param_groups:
                    group["initial_gamma"] = gamma0
        if gamma1 is None:
            if growth is None or steps is None:
                raise ValueError("Invalid gamma1: None (give gamma1, or growth and steps)")
            if not (isinstance(growth, (int, float)) and math.isfinite(growth) and growth > 0):
                raise ValueError(f"Invalid growth: {growth} (expected a finite factor > 0)")
            check.positive_int("steps", steps)
            gamma1 = growth ** (1.0 / steps) - 1.0
        elif growth is not None or steps is not None:
            raise ValueError("Invalid gamma1: give either gamma1 or growth and steps, not both")
        if not (isinstance(gamma1, (int, float)) and math.isfinite(gamma1) and gamma1 > -1):
            raise ValueError(f"Invalid gamma1: {gamma1} (expected a finite rate > -1)")
        self.gamma1 = float(gamma1)
        super().__init__(optimizer, last_epoch)

    def get_gamma(self) -> list[float]:
        return [g0 * (1.0 + self.gamma1) ** self.last_epoch for g0 in self.base_gammas]


class CosineGamma(GammaScheduler):
    r"""γ_τ = ½ γ_max (1 − cos(π min(τ, T)/T)): from 0 at τ = 0 to γ_max at τ = T.

    Deviation from the paper, on purpose: appendix C writes the PyramidNet schedule as
    γ_τ = 0.5 γ_max cos(π τ / τ_tot), which *decreases* from ½γ_max and turns negative after
    τ_tot / 2, contradicting the focusing idea (γ grows) and the name γ_max. This class
    implements the increasing schedule the text intends, reaching γ_max at the end.

    Args:
        optimizer: the optimizer.
        gamma_max: the final γ.
        steps: T, the number of scheduler steps to reach γ_max.
    """

    def __init__(self, optimizer: Optimizer, gamma_max: float, steps: int, *, last_epoch: int = -1):
        check.non_negative("gamma_max", gamma_max)
        check.positive_int("steps", steps)
        self.gamma_max = float(gamma_max)
        self.total = steps
        super().__init__(optimizer, last_epoch)

    def get_gamma(self) -> list[float]:
        tau = min(self.last_epoch, self.total)
        value = 0.5 * self.gamma_max * (1.0 - math.cos(math.pi * tau / self.total))
        return [value for _ in self.base_gammas]


class ConstantGamma(GammaScheduler):
    """γ_τ = γ0 for all τ (default: each group's initial γ)."""

    def __init__(self, optimizer: Optimizer, gamma0: float | None = None, *, last_epoch: int = -1):
        if gamma0 is not None:
            check.non_negative("gamma0", gamma0)
        self.gamma0 = gamma0
        super().__init__(optimizer, last_epoch)

    def get_gamma(self) -> list[float]:
        return [g if self.gamma0 is None else self.gamma0 for g in self.base_gammas]


@torch.no_grad()
def auto_gamma0_rsgd(
    replicas: ReplicaEngine | ReplicatedSGD, loss_fn: Callable[[nn.Module], Any]
) -> float:
    r"""The paper's automatic γ0 for rSGD: γ0 = Σ_a L(w_a) / Σ_a d(w_a, w̄).

    It balances the data term and the distance term of the replicated loss before
    training, so γ0·Σ_a d(w_a, w̄) = Σ_a L(w_a).

    Args:
        replicas: a replica engine (:class:`~wideflat.replicas.base.ReplicaEngine`: loop,
            vmap or distributed) or a :class:`~wideflat.optim.ReplicatedSGD` (its engine is
            used). With the distributed engine every rank must call it (the sums are
            all-reduced) and all get the same γ0.
        loss_fn: ``loss_fn(module)`` → the loss of one replica (e.g. on a fixed batch); it
            receives the live module ``engine[a]`` of each local replica, under
            ``torch.no_grad``, in the mode it is in; its buffers (e.g. BatchNorm's running
            statistics, which a forward in train mode moves) are put back afterwards, so
            the replicas are left exactly as they were.

    Returns:
        γ0 as a float. Raises ``ValueError`` if the replicas coincide (Σ d = 0).
    """
    engine = replicas.replicas if isinstance(replicas, ReplicatedSGD) else replicas
    if not isinstance(engine, ReplicaEngine):
        raise ValueError(
            f"Invalid replicas: {type(replicas).__name__} (expected a ReplicatedSGD or a replica "
            "engine)"
        )
    total_loss = sum(_loss_keeping_buffers(loss_fn, engine[a]) for a in engine.local_indices)
    total_loss = engine.sum_over_ranks(total_loss)
    total_distance = float(engine.distances().sum())
    if not math.isfinite(total_loss):
        raise ValueError(f"Invalid loss_fn: the replicas' total loss is {total_loss}")
    if total_distance == 0:
        raise ValueError(
            "Invalid replicas: all replicas coincide (sum of distances to the center is 0); "
            "build them with init='independent'"
        )
    return total_loss / total_distance


def _loss_keeping_buffers(loss_fn: Callable[[nn.Module], Any], module: nn.Module) -> float:
    """``float(loss_fn(module))``, with the module's buffers restored (in place) after."""
    buffers = list(module.buffers())
    saved = [b.clone() for b in buffers]
    try:
        return float(loss_fn(module))
    finally:
        with torch.no_grad():
            for b, s in zip(buffers, saved, strict=True):
                b.copy_(s)
