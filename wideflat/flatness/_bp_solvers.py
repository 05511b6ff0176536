"""Relaxed BP for the committee machine with a Gaussian prior centred on a reference.

Private helper of :mod:`wideflat.flatness.committee_bp`; equations from ``bp-local-entropy.md``
§3-§5. Two interchangeable solvers share one interface:

* :class:`EdgeBP`, the reference: one Gaussian message ``exp(B w - A w^2 / 2)`` per edge
  (pattern mu, weight ki), arrays of shape ``(M, K, N)``, EP-style moment matching and the full
  Bethe free entropy with its edge terms.
* :class:`Gamp`, the same fixed point at leading order in ``1/N`` without per-edge storage: two
  matrix products per iteration (four for non-binary inputs) and the variational Bethe free
  entropy of generalized AMP.

Both evaluate, at every iteration, the free entropy of the current messages, so convergence of
``phi`` can be checked alongside the message residual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from wideflat.flatness._bp_factor import committee_factor

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Problem:
    """A normalised instance: reference ``w`` (K, N), scaled inputs and labels, float64."""

    w: torch.Tensor  # (K, N) reference weights
    xs: torch.Tensor  # (M, N) inputs / sqrt(N)
    x2: torch.Tensor  # (M, N) inputs^2 / N
    y: torch.Tensor  # (M,) labels in {-1, +1}

    @property
    def n(self) -> int:
        return self.w.numel()

    @classmethod
    def build(cls, w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> Problem:
        N = w.shape[1]
        return cls(w=w, xs=X / math.sqrt(N), x2=X * X / N, y=y)


@dataclass
class StepResult:
    """Outcome of one iteration: new state, residual, and phi / delta of the *current* state."""

    state: tuple[torch.Tensor, ...]
    err: float  # dimensionless residual max(|dg| sqrt(V), |dg'| V)
    phi: float  # (F - log Z0) / n for the current messages
    delta: float  # <|w' - w|^2> / (2 n) from the current marginals
    valid: bool  # False on NaN or a violated positivity guard


def _variable_terms(
    gamma: float, w: torch.Tensor, a_tot: torch.Tensor, b_tot: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Marginals and variable free entropy from the summed messages ``A``, ``B`` (shape (K, N)).

    ``F_ki = log int dw exp(-gamma (w - w_ki)^2 / 2 + B w - A w^2 / 2)
           = 0.5 log(2 pi / Lam) + Gam^2 / (2 Lam) - gamma w_ki^2 / 2``
    with ``Lam = gamma + A`` and ``Gam = gamma w + B``.
    """
    lam = gamma + a_tot
    gam = gamma * w + b_tot
    mean = gam / lam
    var = 1.0 / lam
    f_var = 0.5 * (_LOG_2PI - lam.log()) + gam * gam / (2.0 * lam) - 0.5 * gamma * w * w
    return mean, var, f_var, lam


def _phi_delta(
    prob: Problem, gamma: float, f_total: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
) -> tuple[float, float]:
    n = prob.n
    log_z0 = 0.5 * n * (_LOG_2PI - math.log(gamma))
    phi = (float(f_total) - log_z0) / n
    delta = float(((mean - prob.w) ** 2 + var).sum()) / (2.0 * n)
    return phi, delta


class EdgeBP:
    """Per-edge relaxed BP (the reference implementation, spec §3 and §4.1).

    State: messages ``(A, B)``, each of shape ``(M, K, N)``.
    """

    name = "edge"

    def __init__(self, prob: Problem):
        self.prob = prob

    def init_state(self, gamma: float) -> tuple[torch.Tensor, ...]:
        M, N = self.prob.xs.shape
        K = self.prob.w.shape[0]
        zeros = torch.zeros(M, K, N, dtype=torch.float64)
        return (zeros, zeros.clone())

    def step(self, state: tuple[torch.Tensor, ...], gamma: float, damping: float) -> StepResult:
        p = self.prob
        A, B = state
        a_tot, b_tot = A.sum(0), B.sum(0)
        mean, var, f_var, lam = _variable_terms(gamma, p.w, a_tot, b_tot)
        gam = gamma * p.w + b_tot
        prec_c = lam - A  # cavity precision 1 / v_{ki->mu}
        if not bool((prec_c > 0).all()) or not bool((lam > 0).all()):
            return StepResult(state, math.inf, math.nan, math.nan, False)
        v_c = 1.0 / prec_c
        a_c = (gam - B) * v_c
        omega = torch.einsum("mkn,mn->mk", a_c, p.xs)
        V = torch.einsum("mkn,mn->mk", v_c, p.x2)
        log_z, g, dg = committee_factor(omega, V, p.y)

        # Edge terms F_{mu,ki} = log int N(w; a_c, v_c) exp(B w - A w^2 / 2) dw.
        one_av = 1.0 + A * v_c  # = Lam / (Lam - A) > 0
        f_edge = -0.5 * one_av.log() + (B * B * v_c + 2.0 * B * a_c - A * a_c * a_c) / (
            2.0 * one_av
        )
        f_total = log_z.sum() + f_var.sum() - f_edge.sum()
        phi, delta = _phi_delta(p, gamma, f_total, mean, var)

        # Tilted moments (exact under the CLT), then the new Gaussian messages.
        xs = p.xs[:, None, :]
        x2 = p.x2[:, None, :]
        a_t = a_c + v_c * xs * g[:, :, None]
        v_t = v_c + v_c * v_c * x2 * dg[:, :, None]
        v_t = torch.maximum(v_t, 1e-12 * v_c)
        A_new = 1.0 / v_t - prec_c
        B_new = a_t / v_t - a_c * prec_c
        N = p.w.shape[1]
        err_a = ((A_new - A).abs() * N * V[:, :, None]).amax() if A.numel() else 0.0
        err_b = (
            ((B_new - B).abs() * math.sqrt(N) * V.sqrt()[:, :, None]).amax() if A.numel() else 0.0
        )
        err = float(max(err_a, err_b))
        A_d = damping * A + (1.0 - damping) * A_new
        B_d = damping * B + (1.0 - damping) * B_new
        valid = math.isfinite(err) and math.isfinite(phi) and bool(torch.isfinite(B_d).all())
        return StepResult((A_d, B_d), err, phi, delta, valid)


class Gamp:
    """Generalized AMP form of the same relaxed BP (spec §3, last paragraph).

    State: ``(a, v, g, dg)``: marginal means and variances ``(K, N)``, and the output-factor
    derivatives ``(M, K)`` used in the Onsager term. One iteration::

        V     = (x^2 / N) v^T                    omega = (x / sqrt N) a^T - V * g
        g, g' = committee_factor(omega, V, y)    (damped)
        A     = (-g')^T (x^2 / N)                B     = A * a + g^T (x / sqrt N)
        a     = (gamma w + B) / (gamma + A)      v     = 1 / (gamma + A)      (damped)

    Free entropy (Krzakala et al. variational form, equal at the fixed point to the large-N
    expansion of the edge Bethe free entropy)::

        F = sum_mu log Z_mu + sum_ki [F_ki - a B + A (a^2 + v) / 2] + sum_{mu,k} V g^2 / 2
    """

    name = "gamp"

    def __init__(self, prob: Problem):
        self.prob = prob
        self.binary = bool((prob.x2 == prob.x2[:1, :1]).all()) if prob.x2.numel() else True

    def init_state(self, gamma: float) -> tuple[torch.Tensor, ...]:
        p = self.prob
        M = p.xs.shape[0]
        K = p.w.shape[0]
        a = p.w.clone()
        v = torch.full_like(p.w, 1.0 / gamma)
        g = torch.zeros(M, K, dtype=torch.float64)
        return (a, v, g, g.clone())

    def _x2_times(self, v: torch.Tensor) -> torch.Tensor:
        """``(x^2 / N) v^T``, a plain row sum when all inputs have the same magnitude."""
        p = self.prob
        if self.binary and p.x2.numel():
            return (p.x2[0, 0] * v.sum(1))[None, :].expand(p.x2.shape[0], -1)
        return p.x2 @ v.T

    def _x2t_times(self, dg: torch.Tensor) -> torch.Tensor:
        p = self.prob
        if self.binary and p.x2.numel():
            return (p.x2[0, 0] * dg.sum(0))[:, None].expand(-1, p.x2.shape[1])
        return dg.T @ p.x2

    def step(self, state: tuple[torch.Tensor, ...], gamma: float, damping: float) -> StepResult:
        p = self.prob
        a, v, g_old, dg_old = state
        V = self._x2_times(v)
        omega = p.xs @ a.T - V * g_old
        log_z, g_new, dg_new = committee_factor(omega, V, p.y)
        err = 0.0
        if g_new.numel():
            err = float(
                torch.maximum((g_new - g_old).abs() * V.sqrt(), (dg_new - dg_old).abs() * V).amax()
            )
        g = damping * g_old + (1.0 - damping) * g_new
        dg = damping * dg_old + (1.0 - damping) * dg_new

        a_tot = self._x2t_times(-dg)
        b_tot = a_tot * a + g.T @ p.xs
        if not bool((gamma + a_tot > 0).all()):
            return StepResult(state, math.inf, math.nan, math.nan, False)
        mean, var, f_var, _ = _variable_terms(gamma, p.w, a_tot, b_tot)
        s2 = (V * g * g).sum()  # sum_mu,k V g^2 = sum_ki v_ki sum_mu x^2 g^2 / N
        f_total = (
            log_z.sum()
            + (f_var - mean * b_tot + 0.5 * a_tot * (mean * mean + var)).sum()
            + 0.5 * s2
        )
        phi, delta = _phi_delta(p, gamma, f_total, mean, var)
        # Variable-side residual too: right after a change of gamma, g has not moved yet.
        err_var = float(torch.maximum((mean - a).abs() / var.sqrt(), (var - v).abs() / var).amax())
        err = max(err, err_var)
        valid = math.isfinite(err) and math.isfinite(phi) and bool(torch.isfinite(mean).all())
        # Damping on both sides (factor: g, g'; variable: a, v). On correlated, image-like
        # inputs this converges with far less damping than the factor side alone.
        a_d = damping * a + (1.0 - damping) * mean
        v_d = damping * v + (1.0 - damping) * var
        return StepResult((a_d, v_d, g, dg), err, phi, delta, valid)
