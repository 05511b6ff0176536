"""Output factor of the committee machine: exact majority over K independent Gaussian signs.

Private helper of :mod:`wideflat.flatness.committee_bp` (spec ``bp-local-entropy.md`` §2).

For one pattern with label ``y`` and hidden pre-activations ``h_k ~ N(omega_k, V_k)``, independent
across ``k``, unit ``k`` agrees with the label with probability ``p_k = H(-y z_k)``, where
``z_k = omega_k / sqrt(V_k)`` and ``H(x) = P(N(0, 1) > x)``. The factor's partition function is the
upper tail of the Poisson-binomial count of agreeing units::

    Z = P(#agreeing >= (K + 1) / 2).

With ``P0_k`` the probability that exactly ``(K - 1) / 2`` of the *other* units agree (unit ``k`` is
pivotal) and ``C_k`` the probability that at least ``(K + 1) / 2`` of them agree,
``Z = C_k + P0_k * p_k`` for every ``k``. Since ``C_k`` and ``P0_k`` do not depend on ``omega_k``::

    g_k  = d log Z / d omega_k = y * P0_k * G(z_k) / (sqrt(V_k) * Z)
    g'_k = d g_k / d omega_k   = -g_k * (omega_k / V_k + g_k)      (>= -1 / V_k)

Everything is computed in log space (``log_ndtr`` and ``logaddexp``), so neither tiny tails nor
the ``G / H`` ratio at large ``|z|`` underflow.
"""

from __future__ import annotations

import math

import torch

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _count_step(dist: torch.Tensor, log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Add one Bernoulli unit to a log count distribution.

    ``dist[:, j] = log P(count = j)``; the new unit is +1 with probability ``p`` (log ``log_p``,
    shape ``(M, 1)``) and 0 with probability ``q = 1 - p`` (log ``log_q``).
    """
    shifted = torch.full_like(dist, -math.inf)
    shifted[:, 1:] = dist[:, :-1]
    return torch.logaddexp(dist + log_q, shifted + log_p)


def committee_factor(
    omega: torch.Tensor, V: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log partition function and its first two derivatives for M majority factors.

    Args:
        omega: Means of the hidden pre-activations, shape ``(M, K)``, float64.
        V: Their variances, shape ``(M, K)``, positive.
        y: Labels in ``{-1, +1}``, shape ``(M,)``.

    Returns:
        ``(log_z, g, dg)`` with shapes ``(M,)``, ``(M, K)``, ``(M, K)``: ``log Z``,
        ``d log Z / d omega_k`` and ``d^2 log Z / d omega_k^2`` (clamped to ``>= -1 / V_k``).
    """
    M, K = omega.shape
    half = (K - 1) // 2
    sqrt_v = V.sqrt()
    z = omega / sqrt_v
    yz = y[:, None] * z
    log_p = torch.special.log_ndtr(yz)  # log P(unit k agrees with y)
    log_q = torch.special.log_ndtr(-yz)  # log P(unit k disagrees)

    empty = torch.full((M, K + 1), -math.inf, dtype=omega.dtype, device=omega.device)
    empty[:, 0] = 0.0
    # prefix[k]: count distribution of units 0..k-1; suffix[k]: of units k..K-1.
    prefix = [empty]
    for k in range(K):
        prefix.append(_count_step(prefix[-1], log_p[:, k : k + 1], log_q[:, k : k + 1]))
    suffix = [empty]
    for k in range(K - 1, -1, -1):
        suffix.append(_count_step(suffix[-1], log_p[:, k : k + 1], log_q[:, k : k + 1]))
    suffix.reverse()  # suffix[k] now covers units k..K-1, suffix[K] is empty

    log_z = torch.logsumexp(prefix[K][:, half + 1 :], dim=1)

    # Leave-one-out pivotal probability: P0_k = sum_i P(prefix_k = i) P(suffix_{k+1} = half - i).
    pre = torch.stack(prefix[:K], dim=1)[:, :, : half + 1]  # (M, K, half + 1)
    suf = torch.stack(suffix[1:], dim=1)[:, :, : half + 1].flip(-1)
    log_p0 = torch.logsumexp(pre + suf, dim=-1)  # (M, K)

    log_gauss = -0.5 * z * z - _LOG_SQRT_2PI
    g = y[:, None] * torch.exp(log_p0 + log_gauss - sqrt_v.log() - log_z[:, None])
    dg = -g * (omega / V + g)
    dg = torch.maximum(dg, -1.0 / V)
    return log_z, g, dg
