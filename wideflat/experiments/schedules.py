"""The schedule strings of a run, parsed once into frozen specs.

* learning rate (``lr_schedule``, a factor on ``lr`` as a function of the data epoch):
  ``constant``; ``multistep:150,225[:0.1]`` (× factor at each milestone epoch);
  ``cosine`` (one cosine cycle to 0 over the run); ``exponential:2:0.97`` (× 0.97 every
  2 epochs, stepwise). ``warmup_epochs`` > 0 ramps linearly from ``warmup_lr`` to the
  schedule's value first (:func:`~wideflat.experiments.config.lr_at`).
* coupling γ (``gamma``, stepped once per optimizer step): ``exp:G0:G1`` (γ_t = γ0 (1 + γ1)^t,
  the paper's γ0, γ1), ``exp:G0:xF`` (γ grows by the factor F over the run), ``cosine:GMAX``
  (0 → GMAX over the run), ``const:G0``. ``G0`` may be ``auto``: the paper's automatic γ0
  (rSGD: Σ L / Σ d before training; eSGD: L(w)/d(w', w) after one inner loop).
  The time unit t of γ1 is part of the spec: ``exp:G0:G1@step`` (the default, one optimizer
  step), ``@epoch`` (one data epoch, as the paper counts) or ``@sgld`` (one SGLD inner step of
  eSGD: L per optimizer step). γ still moves every optimizer step: with ``@epoch`` the
  per-step rate is (1 + γ1)^(1/S) − 1 for S optimizer steps per epoch, so γ equals
  γ0 (1 + γ1)^e after e epochs; with ``@sgld`` it is (1 + γ1)^L − 1. Schedules defined over the
  whole run (``xF``, ``cosine``) and ``const`` take no unit.

:class:`~wideflat.experiments.config.TrainConfig` parses its two strings when it is built and
keeps the specs (``cfg.lr_spec``, ``cfg.gamma_spec``); :mod:`~wideflat.experiments.build`
turns them into scheduler objects.

Example:
    >>> parse_gamma("exp:auto:x1e4")
    GammaSpec(kind='exp', gamma0=None, rate=None, factor=10000.0, unit='step')
    >>> r = parse_gamma("exp:0.03:0.001@epoch").rate_per_step(steps_per_epoch=100, inner_steps=5)
    >>> round((1 + r) ** 100, 12)  # one epoch of steps multiplies γ by 1 + γ1
    1.001
    >>> parse_lr_schedule("multistep:150,225")
    LRSpec(kind='multistep', milestones=(150.0, 225.0), factor=0.1, every=0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "FLOAT32_MAX",
    "GAMMA_UNITS",
    "GammaSpec",
    "LRSpec",
    "parse_gamma",
    "parse_lr_schedule",
]

# torch.finfo(torch.float32).max: real-valued settings end up in float32 tensors, where a
# larger finite value overflows to inf at the first step.
FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class LRSpec:
    """A parsed learning-rate schedule (see the module docstring)."""

    kind: str  # constant | multistep | cosine | exponential
    milestones: tuple[float, ...] = ()  # epochs
    factor: float = 0.1  # multiplier at each milestone / each decay period
    every: float = 0.0  # epochs between exponential decays

    def factor_at(self, epoch: float, epochs: int) -> float:
        """The multiplier on the base lr at (fractional) data ``epoch`` of an ``epochs`` run.

        Example:
            >>> LRSpec("multistep", (10.0, 20.0)).factor_at(25, 30)
            0.010000000000000002
        """
        if self.kind == "multistep":
            return self.factor ** sum(epoch >= m for m in self.milestones)
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(epoch / epochs, 1.0)))
        if self.kind == "exponential":
            return self.factor ** math.floor(epoch / self.every)
        return 1.0


@dataclass(frozen=True)
class GammaSpec:
    """A parsed coupling (γ) schedule; ``gamma0=None`` means automatic."""

    kind: str  # exp | cosine | const
    gamma0: float | None = None  # γ0 (exp, const) or γ_max (cosine)
    rate: float | None = None  # γ1, growth per time unit (exp)
    factor: float | None = None  # total growth over the run (exp, instead of rate)
    unit: str = "step"  # what t counts in γ0 (1 + γ1)^t: step | epoch | sgld

    def rate_per_step(self, *, steps_per_epoch: int, inner_steps: int) -> float | None:
        """γ1 converted to one optimizer step (None without a rate).

        Example:
            >>> GammaSpec("exp", 1.0, rate=0.1, unit="sgld").rate_per_step(
            ...     steps_per_epoch=10, inner_steps=2)
            0.2100000000000002
        """
        if self.rate is None:
            return None
        if self.unit == "epoch":
            return (1.0 + self.rate) ** (1.0 / steps_per_epoch) - 1.0
        if self.unit == "sgld":
            return (1.0 + self.rate) ** inner_steps - 1.0
        return self.rate


GAMMA_UNITS = ("step", "epoch", "sgld")


def _number(text: str, what: str, whole: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"Invalid {what}: {whole!r} ({text!r} is not a number)") from None
    if not math.isfinite(value):
        raise ValueError(f"Invalid {what}: {whole!r} ({text!r} is not finite)")
    if abs(value) > FLOAT32_MAX:
        raise ValueError(
            f"Invalid {what}: {whole!r} ({text!r} exceeds the float32 maximum {FLOAT32_MAX:.4g})"
        )
    return value


def parse_lr_schedule(text: str) -> LRSpec:
    """Parse an LR schedule string; raises ``ValueError`` naming the string."""
    what = "lr schedule"
    parts = str(text).strip().split(":")
    kind = parts[0]
    if kind in ("constant", "cosine") and len(parts) == 1:
        return LRSpec(kind)
    if kind == "multistep" and len(parts) in (2, 3):
        milestones = tuple(_number(m, what, text) for m in parts[1].split(",") if m)
        if (
            not milestones
            or any(m <= 0 for m in milestones)
            or list(milestones) != sorted(milestones)
        ):
            raise ValueError(f"Invalid {what}: {text!r} (milestones must be increasing, > 0)")
        factor = _number(parts[2], what, text) if len(parts) == 3 else 0.1
        if factor <= 0:
            raise ValueError(f"Invalid {what}: {text!r} (factor must be > 0)")
        return LRSpec(kind, milestones, factor)
    if kind == "exponential" and len(parts) == 3:
        every, factor = _number(parts[1], what, text), _number(parts[2], what, text)
        if every <= 0 or factor <= 0:
            raise ValueError(f"Invalid {what}: {text!r} (period and factor must be > 0)")
        return LRSpec(kind, (), factor, every)
    raise ValueError(
        f"Invalid {what}: {text!r} (expected constant, cosine, multistep:E1,E2[:F] "
        "or exponential:EVERY:F)"
    )


def parse_gamma(text: str) -> GammaSpec:
    """Parse a γ schedule string; raises ``ValueError`` naming the string."""
    what = "gamma schedule"
    body, at, unit = str(text).strip().partition("@")
    if at and unit not in GAMMA_UNITS:
        raise ValueError(
            f"Invalid {what}: {text!r} (unknown time unit @{unit}; use @step, @epoch or @sgld)"
        )
    parts = body.split(":")
    kind = parts[0]
    if at and not (kind == "exp" and len(parts) == 3 and not parts[2].startswith("x")):
        raise ValueError(
            f"Invalid {what}: {text!r} (a time unit applies to a rate, exp:G0:G1@UNIT only)"
        )

    def g0(token: str) -> float | None:
        if token == "auto" and kind != "cosine":
            return None
        value = _number(token, what, text)
        if value < 0:
            raise ValueError(f"Invalid {what}: {text!r} (gamma must be >= 0)")
        return value

    if kind in ("const", "cosine") and len(parts) == 2:
        return GammaSpec(kind, g0(parts[1]))
    if kind == "exp" and len(parts) == 3:
        if parts[2].startswith("x"):
            factor = _number(parts[2][1:], what, text)
            if factor <= 0:
                raise ValueError(f"Invalid {what}: {text!r} (growth factor must be > 0)")
            return GammaSpec(kind, g0(parts[1]), factor=factor)
        rate = _number(parts[2], what, text)
        if rate <= -1:
            raise ValueError(f"Invalid {what}: {text!r} (gamma1 must be > -1)")
        return GammaSpec(kind, g0(parts[1]), rate=rate, unit=unit or "step")
    raise ValueError(
        f"Invalid {what}: {text!r} (expected exp:G0:G1[@step|@epoch|@sgld], exp:G0:xFACTOR, "
        "cosine:GMAX or const:G0, with G0 a number or auto)"
    )
