"""The local energy of a committee machine (paper Eq. 4), batched over the draws.

Its local entropy by Belief Propagation is :func:`~wideflat.flatness.committee_local_entropy`
(:mod:`wideflat.flatness.committee_bp`); the same measure for any model is
:func:`~wideflat.flatness.local_energy`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from wideflat.models.committee import committee_errors

__all__ = ["committee_local_energy"]


def committee_local_energy(
    w: Tensor,
    X: Tensor,
    y: Tensor,
    sigmas: Sequence[float],
    *,
    draws: int,
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Local-energy profile ``δE_train(w, σ)`` of one committee machine (paper Eq. 4).

    ``δE(σ) = (1/D) Σ_d E_train(w + σ z_d ⊙ w) − E_train(w)`` with ``z_d ~ N(0, I)``,
    ``d = 1..D`` (the same ``D`` draws, taken in one call ``torch.randn((D, K, N))``, serve
    every ``σ``: common random numbers make the profile smooth in ``σ``). The standard error
    is ``std_d / √D`` (``ddof = 1``; 0 when ``D = 1``). The perturbation is multiplicative, so
    the result does not depend on the scale of ``w``. All draws of one ``σ`` are evaluated as
    one batched tensor program.

    Args:
        w: Weights ``(K, N)``.
        X: Training patterns ``(M, N)``.
        y: Labels ``±1``, ``(M,)``.
        sigmas: Perturbation intensities ``σ >= 0``.
        draws: ``D >= 1``.
        generator: Source of ``z`` (default: torch's global generator).

    Returns:
        ``(mean, sem, base_error)``: arrays of shape ``(len(sigmas),)`` and ``E_train(w)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> w = torch.randn(3, 20, generator=g); X = torch.randn(30, 20, generator=g).sign()
        >>> y = torch.sign(torch.sign(X @ w.T).sum(1))
        >>> mean, sem, e0 = committee_local_energy(w, X, y, [0.0, 1.0], draws=10, generator=g)
        >>> float(mean[0]), e0, bool(mean[1] > 0)
        (0.0, 0.0, True)
    """
    if w.ndim != 2:
        raise ValueError(f"Invalid w: shape {tuple(w.shape)} (expected (K, N))")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"Invalid draws: {draws!r} (must be an int >= 1)")
    sig = [float(s) for s in sigmas]
    if any(not math.isfinite(s) or s < 0 for s in sig):
        raise ValueError(f"Invalid sigmas: {sig} (must be finite and >= 0)")
    base = float(committee_errors(w, X, y))
    z = torch.randn((draws, *w.shape), generator=generator, dtype=w.dtype, device=w.device)
    mean = np.empty(len(sig))
    sem = np.zeros(len(sig))
    for i, s in enumerate(sig):
        err = committee_errors(w + s * z * w, X, y).double() - base  # (D,)
        mean[i] = float(err.mean())
        if draws > 1:
            sem[i] = float(err.std(unbiased=True)) / math.sqrt(draws)
    return mean, sem, base
