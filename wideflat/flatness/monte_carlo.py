"""Monte Carlo estimators of the local entropy (paper Eq. 3).

Two estimators, both reproducible from a seed with their own ``torch.Generator``:

* :func:`committee_gaussian_mc`: for the committee machine, draw ``w' ~ N(w, I/gamma)`` and
  count the fraction that keeps every training pattern correct. It estimates BP's
  ``phi(gamma)`` and ``delta(gamma)`` directly, with no Legendre step, so it is the independent
  check of :func:`wideflat.flatness.committee_bp.committee_local_entropy`.
* :func:`local_entropy_mc`: for any ``nn.Module`` and data, the fraction of points ``w'``
  uniform in the ball ``d(w', w) <= n delta`` (or Gaussian around ``w``) whose training error is
  at most that of ``w``: an estimate of ``Phi_LE(w, delta)`` for models where BP is unavailable.

Units match the BP module: per weight (``n`` = number of perturbed weights), natural log,
``delta = d(w', w) / n = |w' - w|^2 / (2 n)``. Standard errors use the delta method,
``se(log p) = sqrt((1 - p) / (p S))`` for ``S`` samples. The estimate is informative while
``n |Phi| <~ log S``; when no sample is accepted the value is NaN and a 95% upper bound
``(1/n) log(1 - 0.05^(1/S))`` (about ``log(3/S) / n``) is reported instead.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from wideflat import _validate as check
from wideflat._io import json_ready
from wideflat.flatness._bp_inputs import (
    check_positive,
    committee_correct,
    normalize_rows,
    validate_committee,
)
from wideflat.flatness._legendre import legendre_to_ball

__all__ = [
    "CommitteeGaussianMC",
    "LocalEntropyMC",
    "committee_gaussian_mc",
    "local_entropy_mc",
]


def _log_frac_stats(count: int, samples: int, n: int) -> tuple[float, float, float]:
    """(phi, se, 95% upper bound when count == 0) of ``(1/n) log(count / samples)``."""
    if count == 0:
        return math.nan, math.nan, math.log1p(-(0.05 ** (1.0 / samples))) / n
    p = count / samples
    return math.log(p) / n, math.sqrt((1.0 - p) / (p * samples)) / n, math.nan


def _legendre(phi: float, gamma: float, delta: float) -> float:
    """:func:`legendre_to_ball`, NaN for a non-finite ``phi`` (no sample kept the property)."""
    return legendre_to_ball(phi, gamma, delta) if math.isfinite(phi) else math.nan


@dataclass(frozen=True)
class CommitteeGaussianMC:
    """Monte Carlo ``phi(gamma)``, ``delta(gamma)`` of a committee machine (one entry per gamma).

    Attributes:
        gamma: Precision of the Gaussian cloud ``w' ~ N(w, I/gamma)``, in the order given.
        phi: ``(1/n) log(fraction of samples with every pattern correct)``; NaN if none.
        phi_se: Its standard error (delta method).
        phi_upper_95: 95% upper bound on ``phi`` when no sample was accepted, else NaN.
        delta: Mean of ``|w' - w|^2 / (2n)`` over the accepted samples; NaN if none.
        delta_se: Its standard error (NaN with fewer than two accepted samples).
        local_entropy: ``phi + (u - 1 - log u) / 2`` with ``u = 2 gamma delta`` (the same
            large-n Legendre step as BP; its error bar is dominated by ``phi_se``).
        accepted: Number of accepted samples. samples: Samples drawn per gamma.
        n_inputs, n_hidden, n_patterns: ``N``, ``K``, ``M``. normalized: rows rescaled to
            ``|w_k|^2 = N``. seed: Generator seed. notes: One line per gamma with no acceptance.
    """

    gamma: tuple[float, ...]
    phi: tuple[float, ...]
    phi_se: tuple[float, ...]
    phi_upper_95: tuple[float, ...]
    delta: tuple[float, ...]
    delta_se: tuple[float, ...]
    local_entropy: tuple[float, ...]
    accepted: tuple[int, ...]
    samples: int
    n_inputs: int
    n_hidden: int
    n_patterns: int
    normalized: bool
    seed: int
    notes: tuple[str, ...]

    def to_dict(self) -> dict:
        """JSON-serialisable dict (NaN and Inf become ``None``)."""
        return {k: json_ready(v) for k, v in asdict(self).items()}


def committee_gaussian_mc(
    w: torch.Tensor | np.ndarray,
    X: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    gammas: Sequence[float] | np.ndarray,
    *,
    samples: int = 10_000,
    seed: int = 0,
    normalize: bool = True,
    batch_size: int | None = None,
) -> CommitteeGaussianMC:
    """Direct sampling of the Gaussian-prior measure that BP approximates.

    For each ``gamma``, draws ``S = samples`` points ``w' = w + z / sqrt(gamma)``,
    ``z ~ N(0, I_{K x N})``, and estimates

    ``phi(gamma) = (1/n) log P[y_mu sum_k sign(w'_k . x_mu) > 0 for all mu]`` and
    ``delta(gamma) = E[|w' - w|^2 / (2n) | all correct]``,   ``n = N K``,

    with standard errors ``sqrt((1 - p) / (p S)) / n`` and ``std / sqrt(accepted)``. Unbiased
    for ``delta``; ``phi`` has the usual ``O(1 / (p S))`` bias of a log.

    Args:
        w: Reference weights ``(K, N)``, K odd; must classify every pattern correctly.
        X: Inputs ``(M, N)``. y: Labels in ``{-1, +1}``, shape ``(M,)``.
        gammas: Precisions ``gamma > 0``.
        samples: Samples per gamma (>= 1).
        seed: Seed of the private ``torch.Generator`` (the global RNG is not touched).
        normalize: Rescale each row of ``w`` to ``|w_k|^2 = N`` first, as the BP code does.
        batch_size: Samples per vectorized batch (default: about 2e6 weights per batch).

    Returns:
        A frozen :class:`CommitteeGaussianMC`.

    Raises:
        ValueError: invalid shapes, values, labels, even K, gammas <= 0, samples < 1, or a
            reference that misclassifies a pattern.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> w = torch.randn(3, 41, generator=g, dtype=torch.float64)
        >>> X = torch.randint(0, 2, (20, 41), generator=g).double() * 2 - 1
        >>> y = torch.sign(torch.sign(X @ w.T).sum(1))
        >>> mc = committee_gaussian_mc(w, X, y, [30.0], samples=2000, seed=1)
        >>> mc.accepted[0] > 0 and mc.phi[0] < 0
        True
    """
    w, X, y = validate_committee(w, X, y)
    grid = check_positive("gammas", gammas)
    samples = check.integer("samples", samples, minimum=1)
    seed = check.integer("seed", seed, minimum=0)
    K, N = w.shape
    n = K * N
    if batch_size is None:
        batch_size = max(1, 2_000_000 // n)
    batch_size = check.integer("batch_size", batch_size, minimum=1)
    if normalize:
        w = normalize_rows(w)
    n_bad = int((~committee_correct(w, X, y)).sum())
    if n_bad:
        raise ValueError(
            f"Invalid w: the reference misclassifies {n_bad} of {len(y)} patterns; the Gaussian "
            "estimator counts samples that keep every pattern correct"
        )
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list] = {k: [] for k in ("phi", "se", "ub", "delta", "dse", "le", "acc")}
    notes = []
    for gamma in grid:
        count, s1, s2 = 0, 0.0, 0.0
        done = 0
        while done < samples:
            b = min(batch_size, samples - done)
            z = torch.randn(b, K, N, generator=gen, dtype=torch.float64) / math.sqrt(gamma)
            fields = torch.einsum("mn,skn->smk", X, w + z)
            ok = (y * torch.sign(fields).sum(dim=2) > 0).all(dim=1)
            dist = (z * z).sum(dim=(1, 2)) / (2.0 * n)
            count += int(ok.sum())
            s1 += float(dist[ok].sum())
            s2 += float((dist[ok] ** 2).sum())
            done += b
        phi, se, ub = _log_frac_stats(count, samples, n)
        delta = s1 / count if count else math.nan
        dse = math.sqrt(max(s2 / count - delta**2, 0.0) / (count - 1)) if count > 1 else math.nan
        if count == 0:
            notes.append(
                f"gamma={gamma:.6g}: 0 of {samples} samples kept every pattern correct; "
                f"phi < {ub:.4g} (95%)"
            )
        for key, val in zip(
            ("phi", "se", "ub", "delta", "dse", "le", "acc"),
            (phi, se, ub, delta, dse, _legendre(phi, gamma, delta), count),
            strict=True,
        ):
            out[key].append(val)
    return CommitteeGaussianMC(
        gamma=tuple(float(g) for g in grid),
        phi=tuple(out["phi"]),
        phi_se=tuple(out["se"]),
        phi_upper_95=tuple(out["ub"]),
        delta=tuple(out["delta"]),
        delta_se=tuple(out["dse"]),
        local_entropy=tuple(out["le"]),
        accepted=tuple(out["acc"]),
        samples=samples,
        n_inputs=N,
        n_hidden=K,
        n_patterns=int(X.shape[0]),
        normalized=bool(normalize),
        seed=seed,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class LocalEntropyMC:
    """Monte Carlo local entropy of a model (one entry per requested distance).

    Attributes:
        requested_distance: The per-weight distances ``delta`` asked for.
        distance: ``"ball"``: equal to the request; ``"gaussian"``: the mean
            ``|w' - w|^2 / (2n)`` of the accepted samples (NaN if none).
        local_entropy: ``"ball"``: ``(1/n) log(accepted / samples)``; ``"gaussian"``:
            ``phi + (u - 1 - log u) / 2`` at ``distance`` (large-n Legendre step). NaN if none.
        local_entropy_se: Standard error of the ``(1/n) log(fraction)`` part.
        upper_bound_95: When nothing was accepted, a 95% upper bound on the log fraction / n.
        phi: ``(1/n) log(fraction accepted)`` (equal to ``local_entropy`` for the ball).
        gamma: ``"gaussian"``: ``1 / (2 delta)``, the precision of the cloud; NaN for the ball.
        accepted, samples: Accepted samples per distance, samples per distance.
        n_params: ``n``, the number of perturbed weights. reference_errors / n_examples:
            ``E_train(w)`` as a count and the number of examples it is counted over.
        sampling: ``"ball"`` or ``"gaussian"``. seed: Generator seed.
        notes: One line per distance where no sample was accepted.
    """

    requested_distance: tuple[float, ...]
    distance: tuple[float, ...]
    local_entropy: tuple[float, ...]
    local_entropy_se: tuple[float, ...]
    upper_bound_95: tuple[float, ...]
    phi: tuple[float, ...]
    gamma: tuple[float, ...]
    accepted: tuple[int, ...]
    samples: int
    n_params: int
    reference_errors: int
    n_examples: int
    sampling: str
    seed: int
    notes: tuple[str, ...]

    def to_dict(self) -> dict:
        """JSON-serialisable dict (NaN and Inf become ``None``)."""
        return {k: json_ready(v) for k, v in asdict(self).items()}


def default_errors(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example misclassification for :func:`local_entropy_mc`.

    Multi-class outputs ``(B, C)`` with ``C > 1``: ``argmax != target``. Otherwise (one score per
    example) targets are ``±1`` and an example is wrong when ``output * target <= 0``.
    """
    if output.dim() >= 2 and output.shape[-1] > 1:
        return output.argmax(dim=-1) != target
    return output.reshape(-1) * target.reshape(-1).to(output.dtype) <= 0


def _count_errors(model: nn.Module, data, error_fn) -> tuple[int, int]:
    batches = [data] if isinstance(data, tuple) else data
    errors, total = 0, 0
    for batch in batches:
        inputs, targets = batch[0], batch[1]
        wrong = error_fn(model(inputs), targets)
        errors += int(wrong.sum())
        total += int(wrong.numel())
    return errors, total


def local_entropy_mc(
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor] | Iterable,
    distances: Sequence[float] | np.ndarray,
    *,
    samples: int = 1000,
    sampling: Literal["ball", "gaussian"] = "ball",
    seed: int = 0,
    params: Iterable[torch.Tensor] | None = None,
    error_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
) -> LocalEntropyMC:
    """Monte Carlo estimate of the normalized local entropy ``Phi_LE(w, delta)`` of any model.

    With ``n`` perturbed weights, ``E`` the number of training errors and ``delta`` a per-weight
    distance (``d(w', w) = n delta``, i.e. ``|w' - w|^2 <= 2 n delta``):

    ``Phi_LE(w, delta) = (1/n) log P_{w' ~ U(ball)}[E(w') <= E(w)]``            (paper Eq. 3)

    ``sampling="ball"`` draws ``w' = w + R U^(1/n) xi / |xi|`` with ``R = sqrt(2 n delta)``,
    ``U ~ U(0, 1)``, ``xi ~ N(0, I)``: exactly uniform in the ball. ``sampling="gaussian"``
    draws ``w' ~ N(w, 2 delta I)`` (``gamma = 1 / (2 delta)``), estimates
    ``phi = (1/n) log P[E(w') <= E(w)]`` and the mean distance of the accepted samples, and
    returns the Legendre form ``phi + (u - 1 - log u) / 2`` (``u = 2 gamma delta_acc``), valid
    for large ``n`` as in the BP code.

    The model is left untouched: evaluation runs under ``no_grad`` in ``eval()`` mode, the
    weights are restored by copying the saved values back (bit-identical), every module's
    train/eval flag is restored, and the global RNG state is restored (a shuffling DataLoader
    draws from it); the noise comes from a private ``torch.Generator`` seeded with ``seed``.

    Args:
        model: Any ``nn.Module``.
        data: ``(inputs, targets)`` tensors (one forward pass per sample) or an iterable of
            ``(inputs, targets)`` batches such as a DataLoader (iterated once per sample).
        distances: Per-weight distances ``delta > 0``.
        samples: Samples per distance (>= 1).
        sampling: ``"ball"`` (uniform in the ball) or ``"gaussian"``.
        seed: Seed of the private generator.
        params: The parameters to perturb (default: all of ``model.parameters()``).
        error_fn: ``error_fn(output, target)`` -> per-example boolean/0-1 errors; default
            :func:`default_errors`.
        progress: Show a tqdm progress bar.

    Returns:
        A frozen :class:`LocalEntropyMC`.

    Raises:
        ValueError: non-module model, bad data, non-positive or non-finite distances,
            samples < 1, unknown sampling, no parameters, non-finite weights.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[1.0, 0.5, -0.5, 0.2]]))
        >>> X = torch.eye(4)
        >>> y = torch.sign(model(X)).squeeze(1)
        >>> res = local_entropy_mc(model, (X, y), [0.01, 0.1], samples=500, seed=0)
        >>> res.reference_errors, all(le <= 0 for le in res.local_entropy)
        (0, True)
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"Invalid model: expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(data, list) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        data = tuple(data)
    if isinstance(data, tuple):
        if len(data) != 2 or not all(isinstance(t, torch.Tensor) for t in data):
            raise ValueError("Invalid data: expected (inputs, targets) tensors or an iterable")
        if data[0].shape[0] != data[1].shape[0] or data[0].shape[0] == 0:
            raise ValueError(
                f"Invalid data: inputs have {data[0].shape[0]} rows, targets {data[1].shape[0]}"
            )
    elif not isinstance(data, Iterable):
        raise ValueError(f"Invalid data: {type(data).__name__} is neither a tuple nor iterable")
    grid = check_positive("distances", distances)
    samples = check.integer("samples", samples, minimum=1)
    seed = check.integer("seed", seed, minimum=0)
    check.choice("sampling", sampling, ("ball", "gaussian"))
    plist, n = _perturbed_tensors(model, params)
    error_fn = default_errors if error_fn is None else error_fn
    devices = sorted({p.device.index for p in plist if p.device.type == "cuda"})
    gen = torch.Generator().manual_seed(seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(grid) * samples, desc=f"local entropy MC ({sampling})", unit="sample")
    try:
        with (
            _restored(model, plist) as saved,
            torch.no_grad(),
            torch.random.fork_rng(devices=devices),
        ):
            model.eval()
            e_ref, total = _count_errors(model, data, error_fn)
            rows = []
            for delta in grid:
                accepted, dist_sum = 0, 0.0
                for _ in range(samples):
                    step = _draw_step(n, float(delta), sampling, gen)
                    _set_offset(plist, saved, step)
                    errors, _ = _count_errors(model, data, error_fn)
                    if errors <= e_ref:
                        accepted += 1
                        dist_sum += float((step * step).sum()) / (2.0 * n)
                    if bar is not None:
                        bar.update(1)
                rows.append((float(delta), accepted, dist_sum))
    finally:
        if bar is not None:
            bar.close()
    return _mc_result(grid, rows, samples, n, e_ref, total, sampling, seed)


def _perturbed_tensors(model: nn.Module, params) -> tuple[list[torch.Tensor], int]:
    """The tensors to perturb (default: the model's parameters), checked, and their size n."""
    plist = list(model.parameters() if params is None else params)
    if not plist or not all(isinstance(p, torch.Tensor) for p in plist):
        raise ValueError("Invalid params: expected a non-empty iterable of tensors")
    n = sum(p.numel() for p in plist)
    if n == 0:
        raise ValueError("Invalid params: they hold 0 weights")
    for i, p in enumerate(plist):
        if not bool(torch.isfinite(p.detach()).all()):
            raise ValueError(f"Invalid params: parameter {i} contains non-finite values")
    return plist, n


@contextlib.contextmanager
def _restored(model: nn.Module, plist: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Yield copies of ``plist``; on exit copy them back and restore every train/eval flag."""
    saved = [p.detach().clone() for p in plist]
    modes = [m.training for m in model.modules()]
    try:
        yield saved
    finally:
        with torch.no_grad():
            for p, p0 in zip(plist, saved, strict=True):
                p.copy_(p0)
        for m, mode in zip(model.modules(), modes, strict=True):
            m.training = mode


def _draw_step(n: int, delta: float, sampling: str, gen: torch.Generator) -> torch.Tensor:
    """w' − w (float64, flat): uniform in the ball of radius √(2 n δ), or N(0, 2δ I)."""
    xi = torch.randn(n, generator=gen, dtype=torch.float64)
    if sampling == "ball":
        u = torch.rand((), generator=gen, dtype=torch.float64)
        radius = math.sqrt(2.0 * n * delta) * float(u) ** (1.0 / n)
        return xi * (radius / float(xi.norm()))
    return xi * math.sqrt(2.0 * delta)


def _set_offset(plist: list[torch.Tensor], saved: list[torch.Tensor], step: torch.Tensor) -> None:
    """p ← p0 + its slice of the flat ``step``, for each tensor."""
    offset = 0
    for p, p0 in zip(plist, saved, strict=True):
        k = p.numel()
        chunk = step[offset : offset + k].view_as(p).to(p.dtype)
        p.copy_(p0 + chunk.to(p.device))
        offset += k


def _mc_result(grid, rows, samples, n, e_ref, total, sampling, seed) -> LocalEntropyMC:
    """The :class:`LocalEntropyMC` of the accepted counts (``rows``), per requested distance."""
    cols: dict[str, list] = {k: [] for k in ("dist", "le", "se", "ub", "phi", "gamma")}
    notes = []
    for delta, accepted, dist_sum in rows:
        phi, se, ub = _log_frac_stats(accepted, samples, n)
        if sampling == "ball":
            dist, le, gamma = delta, phi, math.nan
        else:
            gamma = 1.0 / (2.0 * delta)
            dist = dist_sum / accepted if accepted else math.nan
            le = _legendre(phi, gamma, dist)
        if accepted == 0:
            notes.append(
                f"distance={delta:.6g}: 0 of {samples} samples had E_train <= {e_ref}; "
                f"log-fraction/n < {ub:.4g} (95%)"
            )
        for key, val in zip(
            ("dist", "le", "se", "ub", "phi", "gamma"), (dist, le, se, ub, phi, gamma), strict=True
        ):
            cols[key].append(val)
    return LocalEntropyMC(
        requested_distance=tuple(float(d) for d in grid),
        distance=tuple(cols["dist"]),
        local_entropy=tuple(cols["le"]),
        local_entropy_se=tuple(cols["se"]),
        upper_bound_95=tuple(cols["ub"]),
        phi=tuple(cols["phi"]),
        gamma=tuple(cols["gamma"]),
        accepted=tuple(r[1] for r in rows),
        samples=samples,
        n_params=n,
        reference_errors=e_ref,
        n_examples=total,
        sampling=sampling,
        seed=seed,
        notes=tuple(notes),
    )
