"""The Legendre step from a Gaussian coupling γ to a ball of distance δ (per weight)."""

from __future__ import annotations

import math

__all__ = ["legendre_to_ball"]


def legendre_to_ball(phi: float, gamma: float, delta: float) -> float:
    """``Phi_LE = phi + (u - 1 - log u) / 2`` with ``u = 2 gamma delta``; NaN unless u is a
    finite value > 0.

    ``phi(γ)`` is the log-probability (per weight) that w' ~ N(w, I/γ) keeps the property;
    since ``d phi / d gamma = 1/(2 gamma) - delta``, the transform to the ball of radius
    ``sqrt(2 n delta)``, relative to the empty problem ``log(4 pi e delta) / 2``, adds
    ``(u - 1 - log u) / 2`` (``bp-local-entropy.md`` §5).

    Example:
        >>> legendre_to_ball(-0.1, 10.0, 0.05)   # u = 1: no correction
        -0.1
    """
    u = 2.0 * gamma * delta
    if not (math.isfinite(u) and u > 0):
        return math.nan
    return phi + 0.5 * (u - 1.0 - math.log(u))
