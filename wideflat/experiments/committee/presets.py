"""The committee-machine algorithms of appendix B.1 and their hyper-parameters.

:class:`CommitteeHyperParams` names each paper symbol as :mod:`wideflat.optim` does: ``y``
(replicas), ``coupling_every`` (K, the coupling period), ``alpha`` (α, the running-mean
factor). The names used before (``replicas``, ``coupling_period``, ``mean_decay``) are still
accepted in ``overrides`` for one release,
with a ``DeprecationWarning``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = [
    "ALGORITHMS",
    "COMMITTEE_PRESETS",
    "RENAMED_FIELDS",
    "CommitteeHyperParams",
    "committee_preset",
    "list_committee_algorithms",
    "upgrade_overrides",
]

ALGORITHMS: tuple[str, ...] = ("sgd-fast", "sgd-slow", "rsgd-fast", "rsgd-slow", "esgd")

# Old field name -> new one (renamed to the wideflat.optim names; the old ones go in 0.3).
RENAMED_FIELDS: Mapping[str, str] = MappingProxyType(
    {"replicas": "y", "coupling_period": "coupling_every", "mean_decay": "alpha"}
)


@dataclass(frozen=True)
class CommitteeHyperParams:
    """Hyper-parameters of one committee-machine training algorithm (appendix B.1).

    Attributes:
        algorithm: One of :data:`ALGORITHMS`; its prefix selects the update rule.
        lr: ``η``, learning rate (per step, on the minibatch-mean loss); for eSGD the
            outer step size.
        beta0: ``β0``, initial inverse width of the hidden ``tanh``.
        beta1: ``β1``, growth per ``t``: ``β(t) = β0 (1+β1)^t`` (``t``: see
            ``schedule_clock``).
        omega0: ``ω0``, initial ω-loss scale.
        omega1: ``ω1``, growth per ``t``: ``ω(t) = ω0 (1+ω1)^t``.
        y: ``y``, number of rSGD replicas (1 otherwise); ``ReplicatedSGD``'s ``y``.
        gamma0: ``γ0``, initial coupling (rSGD, eSGD).
        gamma1: ``γ1``, growth per ``t``: ``γ(t) = γ0 (1+γ1)^t``.
        coupling_every: ``K`` of Algorithm 2: couple every ``K`` steps with strength
            ``K γ``; ``ReplicatedSGD``'s ``coupling_every``.
        inner_steps: ``L``, eSGD inner steps per outer iteration.
        inner_lr: ``η'``, eSGD inner learning rate.
        noise: ``ε``, eSGD Langevin noise scale (noise ``√η' ε N(0, I)`` per inner step).
        alpha: ``α``, eSGD running-mean factor ``μ ← α μ + (1−α) w'``.
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
        loss_reduction: How the minibatch loss is reduced over its ``B`` patterns:
            ``"mean"`` (default, ``torch``'s convention) or ``"sum"`` (the per-pattern step
            of the statistical-physics codes: the loss-gradient term is ``B`` times larger;
            the coupling and noise terms are unchanged).
        schedule_clock: What ``t`` counts in the ``β(t)``, ``ω(t)``, ``γ(t)`` schedules:
            ``"epoch"`` (default, as appendix B.1 says) or ``"step"`` (minibatch steps; eSGD:
            inner steps), which makes every schedule ``M / B`` times faster.
        dropout: ``p``, hidden-unit dropout during training (SGD and rSGD; 0: none, the
            paper's Fig. 1): at every step each hidden unit's output, for each pattern of the
            minibatch, is dropped with probability ``p`` and the kept ones are scaled by
            ``1/(1−p)``; errors, losses and stopping rules use the whole network. The paper's
            Fig. 6 trains SGD fast with dropout without saying where; on the committee
            machine's one hidden layer this is the usual place.
    """

    algorithm: str
    lr: float
    beta0: float
    beta1: float
    omega0: float
    omega1: float
    y: int = 1
    gamma0: float = 0.0
    gamma1: float = 0.0
    coupling_every: int = 1
    inner_steps: int = 1
    inner_lr: float = 0.0
    noise: float = 0.0
    alpha: float = 0.75
    batch_size: int = 100
    stop_loss: float = 1e-7
    stop_distance: float = 1e-8
    unit_norm: str = "sqrt-n"
    loss_reduction: str = "mean"
    schedule_clock: str = "epoch"
    dropout: float = 0.0

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
        for name in ("y", "coupling_every", "inner_steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid {name}: {value!r} (must be an int >= 1)")
        if self.unit_norm not in ("sqrt-n", "one"):
            raise ValueError(f"Invalid unit_norm: {self.unit_norm!r} (use 'sqrt-n' or 'one')")
        if self.loss_reduction not in ("mean", "sum"):
            raise ValueError(
                f"Invalid loss_reduction: {self.loss_reduction!r} (use 'mean' or 'sum')"
            )
        if self.schedule_clock not in ("epoch", "step"):
            raise ValueError(
                f"Invalid schedule_clock: {self.schedule_clock!r} (use 'epoch' or 'step')"
            )
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, int | float) or not 0.0 <= d < 1.0:
            raise ValueError(f"Invalid dropout: {d!r} (must be a number in [0, 1))")
        if d > 0 and self.kind == "esgd":
            raise ValueError("Invalid dropout: only SGD and rSGD train with dropout here")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"Invalid alpha: {self.alpha!r} (must be in [0, 1])")
        if self.kind != "rsgd" and self.y != 1:
            raise ValueError(
                f"Invalid y: {self.y} replicas for {self.algorithm!r} (only rSGD has replicas)"
            )

    def coordinate_scale(self, num_inputs: int) -> float:
        """``c`` with ``u = w / √c``: 1 for ``"sqrt-n"``, ``N`` for ``"one"``."""
        return float(num_inputs) if self.unit_norm == "one" else 1.0

    @property
    def loss_scale(self) -> float:
        """Factor on the minibatch-mean loss gradient: ``B`` for ``"sum"``, else 1."""
        return float(self.batch_size) if self.loss_reduction == "sum" else 1.0

    def clock(self, step: int, steps_per_epoch: int) -> int:
        """The schedules' ``t`` during minibatch step ``step`` (from 0) of one network.

        Example:
            >>> hp = committee_preset("sgd-fast")
            >>> hp.clock(7, 5), dataclasses.replace(hp, schedule_clock="step").clock(7, 5)
            (1, 7)
        """
        return step if self.schedule_clock == "step" else step // steps_per_epoch

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

    @property
    def replicas(self) -> int:
        """Deprecated alias of :attr:`y`."""
        _warn_renamed("replicas", stacklevel=3)
        return self.y

    @property
    def coupling_period(self) -> int:
        """Deprecated alias of :attr:`coupling_every`."""
        _warn_renamed("coupling_period", stacklevel=3)
        return self.coupling_every

    @property
    def mean_decay(self) -> float:
        """Deprecated alias of :attr:`alpha`."""
        _warn_renamed("mean_decay", stacklevel=3)
        return self.alpha


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
            y=10,
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
            y=10,
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
            alpha=0.75,
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


def _warn_renamed(old: str, stacklevel: int) -> None:
    warnings.warn(
        f"the committee hyper-parameter {old!r} is now called {RENAMED_FIELDS[old]!r} (the "
        f"wideflat.optim name); {old!r} will stop working in wideflat 0.3",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def upgrade_overrides(overrides: Mapping[str, Any], stacklevel: int = 2) -> dict[str, Any]:
    """``overrides`` with renamed fields under their new names (``DeprecationWarning`` each).

    A mapping that gives both a field's old and new name is refused (``ValueError``).

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     upgrade_overrides({"replicas": 3, "lr": 0.1})
        {'y': 3, 'lr': 0.1}
    """
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in RENAMED_FIELDS:
            new = RENAMED_FIELDS[key]
            if new in overrides:
                raise ValueError(f"Invalid overrides: both {key!r} and its new name {new!r} given")
            _warn_renamed(key, stacklevel=stacklevel + 1)
            key = new
        out[key] = value
    return out


def committee_preset(
    algorithm: str, overrides: Mapping[str, Any] | None = None
) -> CommitteeHyperParams:
    """The paper's hyper-parameters for ``algorithm``, optionally with fields replaced.

    Args:
        algorithm: One of :data:`ALGORITHMS`.
        overrides: Field name → value, applied with ``dataclasses.replace`` (validated).
            The old names of renamed fields (:data:`RENAMED_FIELDS`) are accepted with a
            ``DeprecationWarning``.

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
        overrides = upgrade_overrides(overrides, stacklevel=3)
        fields = {f.name for f in dataclasses.fields(CommitteeHyperParams)} - {"algorithm"}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(
                f"Unknown hyper-parameter(s) {unknown} for {algorithm!r}; "
                f"valid: {', '.join(sorted(fields))}"
            )
        hp = dataclasses.replace(hp, **overrides)
    return hp
