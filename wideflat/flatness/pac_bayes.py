"""PAC-Bayes flatness: the largest noise scale σ the training error tolerates.

σ* = max{σ : E_z[E(w + σ z ⊙ |w|)] − E(w) ≤ target},  z ~ N(0, I),

the "PAC-Bayesian flatness" of Jiang et al. (2020), magnitude-aware by default, found by
bisection in log σ over Monte Carlo estimates of :func:`~wideflat.flatness.local_energy`. The
result type is :class:`PacBayesSigma`; the derived measure is 1/σ*².

References:
    Jiang et al., "Fantastic generalization measures and where to find them", ICLR 2020
    (§C "PAC-Bayesian flatness", Algorithm 1; measures pacbayes.flatness 1/σ'² and
    pacbayes.mag.flatness 1/α'²). Dziugaite & Roy, "Computing nonvacuous generalization
    bounds for deep (stochastic) neural networks", UAI 2017.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from wideflat import _validate as check
from wideflat.flatness._model import (
    PARAM_SETS,
    on_device,
)
from wideflat.flatness._profile import BN_POLICIES, PERTURBATIONS
from wideflat.flatness._record import JsonRecord, versions_and_time
from wideflat.flatness.energy import classification_error, local_energy
from wideflat.flatness.worst_case import _positive

__all__ = ["PacBayesSigma", "pac_bayes_sigma"]

STATUSES = ("converged", "below_range", "above_range")


@dataclass(frozen=True)
class PacBayesSigma(JsonRecord):
    """The largest tolerated noise scale σ, its bracket, the estimates behind it, provenance.

    Attributes:
        sigma: the largest evaluated σ whose estimated error increase is ≤ ``target`` (the
            bracket's lower end); NaN when even ``sigma_min`` exceeds it (``"below_range"``).
        measure: 1/σ², Jiang et al.'s PAC-Bayes flatness measure (larger = sharper).
        sigma_low: lower end of the final bracket (increase ≤ target; 0 when below range).
        sigma_high: upper end (increase > target); NaN when ``sigma_max`` stays below target.
        delta_error: estimated E_z[E(w + σ z ⊙ |w|)] − E(w) at ``sigma`` (NaN below range).
        delta_error_se: its Monte Carlo standard error.
        base_error: E(w), the error of the unperturbed model.
        target: the tolerated increase of the error.
        status: ``"converged"`` (bracket narrower than ``tol`` in log σ), ``"below_range"``
            or ``"above_range"`` (the crossing lies outside [sigma_min, sigma_max]).
        evaluated_sigmas: every σ evaluated, in order (sigma_min, sigma_max, then bisection).
        evaluated_delta_error: the estimated increase at each of them.
        evaluated_delta_error_se: its standard error at each of them.
        samples: draws of z per σ (the same draws at every σ: common random numbers).
        perturbation: ``"multiplicative"`` (σ z ⊙ |w|) or ``"additive"`` (σ z).
        sigma_min, sigma_max: the search range. tol: bracket width at which bisection stops,
            in natural-log σ (log(sigma_high / sigma_low) ≤ tol).
        bn: BatchNorm policy. seed: seed of the noise (and of a random ``subset``).
        params: which parameters were perturbed. n_parameters: number of perturbed weights.
        n_examples: examples each evaluation averages over. model: class name of the model.
        device: where it ran. torch_version, wideflat_version: versions used.
        wall_time_s: wall-clock time of the search, seconds.

    Example:
        >>> r = PacBayesSigma(sigma=0.5, measure=4.0, sigma_low=0.5, sigma_high=0.51,
        ...     delta_error=0.09, delta_error_se=0.01, base_error=0.0, target=0.1,
        ...     status="converged", evaluated_sigmas=(0.5,), evaluated_delta_error=(0.09,),
        ...     evaluated_delta_error_se=(0.01,))
        >>> r.n_evaluations, PacBayesSigma.from_dict(r.to_dict()) == r
        (1, True)
    """

    sigma: float
    measure: float
    sigma_low: float
    sigma_high: float
    delta_error: float
    delta_error_se: float
    base_error: float
    target: float
    status: str
    evaluated_sigmas: tuple[float, ...]
    evaluated_delta_error: tuple[float, ...]
    evaluated_delta_error_se: tuple[float, ...]
    samples: int = 64
    perturbation: str = "multiplicative"
    sigma_min: float = 1e-4
    sigma_max: float = 10.0
    tol: float = 0.01
    bn: str = "eval"
    seed: int = 0
    params: str = "trainable"
    n_parameters: int = 0
    n_examples: int = 0
    model: str = ""
    device: str = "cpu"
    torch_version: str = ""
    wideflat_version: str = ""
    wall_time_s: float = 0.0

    FORMAT = "wideflat.pac_bayes_sigma"

    def __post_init__(self) -> None:
        k = len(self.evaluated_sigmas)
        for name in ("evaluated_delta_error", "evaluated_delta_error_se"):
            if len(getattr(self, name)) != k:
                raise ValueError(f"Invalid {name}: length {len(getattr(self, name))} != {k}")
        if self.status not in STATUSES:
            raise ValueError(f"Invalid status: {self.status!r}")
        if self.perturbation not in PERTURBATIONS:
            raise ValueError(f"Invalid perturbation: {self.perturbation!r}")
        if self.bn not in BN_POLICIES:
            raise ValueError(f"Invalid bn policy: {self.bn!r}")

    @property
    def n_evaluations(self) -> int:
        """Number of σ values evaluated (each a :func:`local_energy` call of ``samples``)."""
        return len(self.evaluated_sigmas)


def pac_bayes_sigma(
    model: nn.Module,
    data: DataLoader | tuple[Tensor, Tensor],
    *,
    target: float = 0.1,
    perturbation: str = "multiplicative",
    samples: int = 64,
    sigma_min: float = 1e-4,
    sigma_max: float = 10.0,
    tol: float = 0.01,
    error_fn: Callable[[Tensor, Tensor], Tensor] = classification_error,
    bn: str = "eval",
    subset: int | Sequence[int] | None = None,
    batch_size: int = 1024,
    seed: int = 0,
    params: str = "trainable",
    device: str | torch.device | None = None,
    progress: bool = True,
) -> PacBayesSigma:
    r"""Find the largest σ whose Gaussian weight noise raises the training error by ≤ target.

    With E the training error (mean of ``error_fn`` over ``data``) and z ~ N(0, I) over the
    perturbed weights,

        D(σ) = E_z[E(w + σ z ⊙ |w|)] − E(w)      (``perturbation="multiplicative"``), or
        D(σ) = E_z[E(w + σ z)]       − E(w)      (``perturbation="additive"``),

    the result is σ* = max{σ : D(σ) ≤ target} and the measure 1/σ*² (Jiang et al. 2020 use
    target = 0.1). D(σ) is :func:`~wideflat.flatness.local_energy`'s ``delta_error`` at
    ``[σ]`` with ``samples`` draws. Its multiplicative mode perturbs by σ z ⊙ w; since each
    z_i is symmetric and independent, z_i w_i and z_i |w_i| have the same distribution (a
    sign flip per coordinate), so D is the same function of σ.

    Search: D is evaluated at ``sigma_min`` and ``sigma_max`` and then by bisection in log σ
    (the geometric midpoint of the bracket) until log(σ_high / σ_low) ≤ ``tol``, keeping
    D(σ_low) ≤ target < D(σ_high). Every σ uses the same ``seed``, hence the same draws of z
    (common random numbers): the estimated curve then varies smoothly with σ rather than by
    independent noise at each point, which keeps the bisection from being misled by Monte
    Carlo noise (D itself is assumed increasing). The reported σ is σ_low, the largest σ
    evaluated within the target, with its estimate and standard error. If D(sigma_min) >
    target the crossing lies below the range (σ = NaN); if D(sigma_max) ≤ target, above it
    (σ = sigma_max); both warn (``RuntimeWarning``) and are flagged in ``status``.

    Policies (evaluation mode, BatchNorm ``bn``, no side effects on the model or the global
    RNG, a dedicated noise generator, ``subset``, the ``vmap="auto"`` engine) are those of
    :func:`~wideflat.flatness.local_energy`, which does the evaluation.

    Deviation from Jiang et al.: their magnitude-aware noise has variance σ² w_i² + ε² with
    ε = 1e-3, so zero weights move too; here the variance is σ² w_i² (local_energy's
    multiplicative convention). Their search stops when D is within a tolerance of target or
    the σ bracket is small; here the bracket alone decides (``tol``).

    Args:
        model: any ``nn.Module``.
        data: a ``DataLoader`` yielding ``(x, y, ...)`` batches or a tuple ``(X, y)``.
        target: tolerated increase of the error, in (0, 1]; default 0.1.
        perturbation: ``"multiplicative"`` (default) or ``"additive"``.
        samples: draws of z per σ, ≥ 1.
        sigma_min, sigma_max: search range, 0 < sigma_min < sigma_max, finite.
        tol: stop when the bracket is at most ``tol`` wide in natural-log σ (> 0; 0.01 ≈ 1%).
        error_fn: ``error_fn(output, target)`` returning per-example errors ``(B,)`` (or their
            mean); default :func:`~wideflat.flatness.classification_error`. For ±1 outputs use
            e.g. ``lambda out, y: (torch.sign(out.squeeze(-1)) != y).float()``.
        bn: BatchNorm policy, ``"eval"`` (default) or ``"recompute"``.
        subset: ``None``, an int n (n examples drawn from ``seed``) or example indices; the
            same examples at every σ.
        batch_size: examples per forward pass for tensor data and loader subsets.
        seed: seed (int ≥ 0) of the noise (the same at every σ).
        params: ``"trainable"`` (default) or ``"all"``.
        device: where to evaluate; default the model's device (a different one gets a deep
            copy of the model, made once).
        progress: show a tqdm progress bar over the σ evaluations.

    Returns:
        A :class:`PacBayesSigma`.

    Raises:
        ValueError: for a bad ``target``/``samples``/``sigma_min``/``sigma_max``/``tol``/
            ``perturbation``/``bn``/``params``/``seed``/``batch_size``, a non-callable
            ``error_fn``, and whatever :func:`local_energy` refuses (empty or malformed data,
            a bad ``subset``, a model without parameters to perturb).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
        >>> X = torch.randn(64, 4)
        >>> y = model(X).argmax(1)  # a model with zero training error
        >>> r = pac_bayes_sigma(model, (X, y), samples=8, tol=0.1, progress=False)
        >>> r.status, r.sigma_low < r.sigma_high, r.delta_error <= 0.1, r.measure == r.sigma**-2
        ('converged', True, True, True)
    """
    t_start = time.perf_counter()
    target, sigma_min, sigma_max, tol = _check_arguments(
        model, target, perturbation, samples, sigma_min, sigma_max, tol, error_fn, bn,
        batch_size, seed, params,
    )  # fmt: skip
    work, device = on_device(model, device)
    n_bisect = max(0, math.ceil(math.log2(math.log(sigma_max / sigma_min) / tol)))
    bar = tqdm(total=2 + n_bisect, desc="pac-bayes sigma", disable=not progress, leave=False)
    evaluated: list[tuple[float, float, float]] = []
    profiles = []

    def estimate(sigma: float) -> float:
        # The loss is not used: error_fn stands in for loss_fn so that any output shape works.
        prof = local_energy(
            work, data, [sigma], samples, perturbation=perturbation, loss_fn=error_fn,
            error_fn=error_fn, bn=bn, subset=subset, batch_size=batch_size, seed=seed,
            params=params, device=device, progress=False,
        )  # fmt: skip
        profiles.append(prof)
        evaluated.append((sigma, prof.delta_error[0], prof.delta_error_se[0]))
        bar.update(1)
        return prof.delta_error[0]

    try:
        if estimate(sigma_min) > target:
            status, low, high = "below_range", 0.0, sigma_min
        elif estimate(sigma_max) <= target:
            status, low, high = "above_range", sigma_max, math.nan
        else:
            status, low, high = "converged", sigma_min, sigma_max
            # Invariant D(low) ≤ target < D(high); halve the bracket in log σ.
            while math.log(high / low) > tol:
                mid = math.sqrt(low * high)
                if estimate(mid) <= target:
                    low = mid
                else:
                    high = mid
    finally:
        bar.close()
    if status != "converged":
        where = "below sigma_min" if status == "below_range" else "above sigma_max"
        warnings.warn(
            f"pac_bayes_sigma: the error increase crosses target={target:g} {where} "
            f"(range [{sigma_min:g}, {sigma_max:g}]); widen the range",
            RuntimeWarning,
            stacklevel=2,
        )
    return _result(
        model, profiles[0], evaluated, status, low, high, target, samples, perturbation,
        sigma_min, sigma_max, tol, bn, seed, params, device, t_start,
    )  # fmt: skip


def _check_arguments(
    model, target, perturbation, samples, sigma_min, sigma_max, tol, error_fn, bn, batch_size,
    seed, params,
) -> tuple[float, float, float, float]:  # fmt: skip
    """Refuse a bad argument of :func:`pac_bayes_sigma`; return target, σ range and tol."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"Invalid model: expected an nn.Module, got {type(model).__name__}")
    target = _positive("target", target)
    if target > 1:
        raise ValueError(f"Invalid target: {target!r} (expected a number in (0, 1])")
    check.choice("perturbation", perturbation, PERTURBATIONS)
    check.integer("samples", samples, minimum=1)
    sigma_min = _positive("sigma_min", sigma_min)
    sigma_max = _positive("sigma_max", sigma_max)
    if sigma_max <= sigma_min:
        raise ValueError(
            f"Invalid sigma_max: {sigma_max!r} (expected a number > sigma_min = {sigma_min!r})"
        )
    tol = _positive("tol", tol)
    if not callable(error_fn):
        raise ValueError(f"Invalid error_fn: {error_fn!r} is not callable")
    check.choice("bn policy", bn, BN_POLICIES)
    check.integer("batch_size", batch_size, minimum=1)
    check.integer("seed", seed, minimum=0)
    check.choice("params", params, PARAM_SETS)
    return target, sigma_min, sigma_max, tol


def _result(
    model, first, evaluated, status, low, high, target, samples, perturbation, sigma_min,
    sigma_max, tol, bn, seed, params, device, t_start,
) -> PacBayesSigma:  # fmt: skip
    """The :class:`PacBayesSigma` of the search, with the provenance."""
    at_low = {s: (d, se) for s, d, se in evaluated}
    if status == "below_range":
        sigma, d, se = math.nan, math.nan, math.nan
    else:
        sigma = low
        d, se = at_low[low]
    return PacBayesSigma(
        sigma=sigma,
        measure=1.0 / (sigma * sigma) if sigma > 0 else math.nan,
        sigma_low=low,
        sigma_high=high,
        delta_error=d,
        delta_error_se=se,
        base_error=first.base_error,
        target=target,
        status=status,
        evaluated_sigmas=tuple(e[0] for e in evaluated),
        evaluated_delta_error=tuple(e[1] for e in evaluated),
        evaluated_delta_error_se=tuple(e[2] for e in evaluated),
        samples=int(samples),
        perturbation=perturbation,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        tol=tol,
        bn=bn,
        seed=int(seed),
        params=params,
        n_parameters=first.n_parameters,
        n_examples=first.n_examples,
        model=type(model).__name__,
        device=str(device),
        **versions_and_time(t_start),
    )
