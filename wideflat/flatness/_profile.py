"""The result of :func:`~wideflat.flatness.local_energy`: :class:`LocalEnergyProfile`.

A frozen record of a δE_train(w, σ) profile, its Monte Carlo standard errors, every draw and the
measurement's provenance, with a strict-JSON round trip (``to_json`` / ``from_json``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wideflat.flatness._record import JsonRecord

__all__ = ["LocalEnergyProfile", "mean_se"]

PERTURBATIONS = ("multiplicative", "additive")
BN_POLICIES = ("eval", "recompute")


@dataclass(frozen=True)
class LocalEnergyProfile(JsonRecord):
    """A local-energy profile with its Monte Carlo uncertainty and provenance.

    All ``delta_*`` values are differences to the unperturbed model: for each σ,
    ``delta_error[i]`` = mean over draws of E(w_σ,s) − E(w) and ``delta_error_se[i]`` its
    standard error (sample std with ddof=1 over √samples; NaN when samples = 1; 0 at σ = 0,
    where every draw is w itself). Errors are fractions of misclassified examples (or the mean
    of ``error_fn``), losses are means of ``loss_fn`` over the evaluated examples.

    Attributes:
        sigmas: perturbation intensities σ, in the order given.
        delta_error: mean error difference per σ.
        delta_error_se: standard error of ``delta_error``.
        delta_loss: mean loss difference per σ.
        delta_loss_se: standard error of ``delta_loss``.
        error_draws: per σ, the per-draw error differences (``samples`` values each).
        loss_draws: per σ, the per-draw loss differences.
        base_error: E_train(w) of the unperturbed model under the same BN policy.
        base_loss: L_train(w) of the unperturbed model under the same BN policy.
        samples: number of draws of z per σ.
        n_examples: number of training examples each evaluation averages over.
        perturbation: ``"multiplicative"`` (w + σ z ⊙ w) or ``"additive"`` (w + σ z).
        bn: BatchNorm policy, ``"eval"`` or ``"recompute"``.
        seed: seed of the measurement generator.
        params: which parameters were perturbed, ``"trainable"`` or ``"all"``.
        n_parameters: number of perturbed scalar weights.
        engine: ``"vmap"``, ``"loop"`` or ``"vmap+loop"`` (vmap fell back part-way).
        chunk_size: perturbations per batched forward pass (vmap engine).
        model: class name of the measured model.
        device: device the evaluation ran on.
        torch_version: ``torch.__version__`` used.
        wideflat_version: ``wideflat.__version__`` used.
        wall_time_s: wall-clock time of the measurement, seconds.

    Example:
        >>> p = LocalEnergyProfile(sigmas=(0.0,), delta_error=(0.0,), delta_error_se=(0.0,),
        ...     delta_loss=(0.0,), delta_loss_se=(0.0,), error_draws=((0.0,),),
        ...     loss_draws=((0.0,),), base_error=0.1, base_loss=0.3, samples=1, n_examples=10)
        >>> LocalEnergyProfile.from_dict(p.to_dict()) == p
        True
    """

    sigmas: tuple[float, ...]
    delta_error: tuple[float, ...]
    delta_error_se: tuple[float, ...]
    delta_loss: tuple[float, ...]
    delta_loss_se: tuple[float, ...]
    error_draws: tuple[tuple[float, ...], ...]
    loss_draws: tuple[tuple[float, ...], ...]
    base_error: float
    base_loss: float
    samples: int
    n_examples: int
    perturbation: str = "multiplicative"
    bn: str = "eval"
    seed: int = 0
    params: str = "trainable"
    n_parameters: int = 0
    engine: str = "loop"
    chunk_size: int = 1
    model: str = ""
    device: str = "cpu"
    torch_version: str = ""
    wideflat_version: str = ""
    wall_time_s: float = 0.0

    FORMAT = "wideflat.local_energy_profile"
    KIND = "profile"

    def __post_init__(self) -> None:
        n = len(self.sigmas)
        for name in ("delta_error", "delta_error_se", "delta_loss", "delta_loss_se"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"Invalid {name}: length {len(getattr(self, name))} != len(sigmas) = {n}"
                )
        for name in ("error_draws", "loss_draws"):
            draws = getattr(self, name)
            if len(draws) != n or any(len(d) != self.samples for d in draws):
                raise ValueError(
                    f"Invalid {name}: expected {n} rows of samples={self.samples} draws"
                )
        if self.perturbation not in PERTURBATIONS:
            raise ValueError(f"Invalid perturbation: {self.perturbation!r}")
        if self.bn not in BN_POLICIES:
            raise ValueError(f"Invalid bn policy: {self.bn!r}")


def mean_se(rows: list[list[float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per row: the mean and its standard error std(ddof=1)/√n (NaN for one value)."""
    means, ses = [], []
    for row in rows:
        arr = np.asarray(row, dtype=np.float64)
        means.append(float(arr.mean()))
        ses.append(float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else math.nan)
    return tuple(means), tuple(ses)
