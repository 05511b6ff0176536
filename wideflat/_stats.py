"""Correlation statistics with p-values.

:func:`spearman` and :func:`kendall` wrap ``scipy.stats`` (Kendall's τ-b, exact p-value for
small samples without ties); :func:`granulated_kendall` is Jiang et al.'s (2020) coefficient
over hyper-parameter axes. :func:`pearson` (written before SciPy was a dependency, checked
against it) gives Pearson's ``r`` with the two-sided p-value of the t test
``t = r √(n−2) / √(1−r²)`` on ``n − 2`` degrees of freedom; the Student-t tail is the
regularized incomplete beta function ``I_x(a, b)``, computed here by its continued fraction
(modified Lentz), accurate to ~1e-12.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "betainc",
    "granulated_kendall",
    "kendall",
    "pearson",
    "spearman",
    "student_t_two_sided",
]


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function ``I_x(a, b)`` for ``a, b > 0``, ``0 <= x <= 1``.

    Example:
        >>> round(betainc(2.0, 3.0, 0.4), 10)  # 1 - (1-x)^4 - 4x(1-x)^3 ... = 0.5248
        0.5248
    """
    if not (a > 0 and b > 0) or not 0.0 <= x <= 1.0:
        raise ValueError(f"Invalid betainc arguments: a={a!r}, b={b!r}, x={x!r}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side only
        return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b
    return math.exp(log_front) * _beta_fraction(a, b, x) / a


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                    -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):  # fmt: skip
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise RuntimeError(f"betainc: continued fraction did not converge (a={a}, b={b}, x={x})")


def student_t_two_sided(t: float, df: float) -> float:
    """``P(|T| >= |t|)`` for Student's t with ``df`` degrees of freedom.

    Example:
        >>> round(student_t_two_sided(2.0, 10), 6)
        0.073388
    """
    if not df > 0:
        raise ValueError(f"Invalid df: {df!r} (must be > 0)")
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def pearson(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Pearson's ``r`` and its two-sided p-value (t test, ``n − 2`` degrees of freedom).

    Pairs with a non-finite member are dropped; fewer than 3 pairs, or a constant sample,
    give ``(nan, nan)``.

    Example:
        >>> r, p = pearson([1, 2, 3, 4, 5], [2.0, 2.9, 4.2, 4.8, 6.1])
        >>> round(r, 4), p < 1e-3
        (0.9952, True)
    """
    pairs = list(zip(*_finite_pairs(x, y), strict=True))
    n = len(pairs)
    if n < 3:
        return math.nan, math.nan
    mx = math.fsum(a for a, _ in pairs) / n
    my = math.fsum(b for _, b in pairs) / n
    sxy = math.fsum((a - mx) * (b - my) for a, b in pairs)
    sxx = math.fsum((a - mx) ** 2 for a, _ in pairs)
    syy = math.fsum((b - my) ** 2 for _, b in pairs)
    if sxx == 0 or syy == 0:
        return math.nan, math.nan
    r = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
    if abs(r) == 1.0:
        return r, 0.0
    t = r * math.sqrt((n - 2) / (1.0 - r * r))
    return r, student_t_two_sided(t, n - 2)


def _finite_pairs(x: Sequence[float], y: Sequence[float]) -> tuple[list[float], list[float]]:
    pairs = [(float(a), float(b)) for a, b in zip(x, y, strict=True)
             if math.isfinite(float(a)) and math.isfinite(float(b))]  # fmt: skip
    return [a for a, _ in pairs], [b for _, b in pairs]


def _rank_statistic(name: str, x, y, minimum: int) -> tuple[float, float]:
    """``scipy.stats.<name>`` on the finite pairs; (nan, nan) below ``minimum`` pairs or for a
    constant sample."""
    from scipy import stats

    a, b = _finite_pairs(x, y)
    if len(a) < minimum or len(set(a)) < 2 or len(set(b)) < 2:
        return math.nan, math.nan
    res = getattr(stats, name)(a, b)
    return float(res.statistic), float(res.pvalue)


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman's rank correlation ρ and its two-sided p-value (``scipy.stats.spearmanr``).

    Non-finite pairs are dropped; fewer than 3 pairs or a constant sample give ``(nan, nan)``.

    Example:
        >>> round(spearman([1, 2, 3, 4], [10, 20, 30, 25])[0], 4)
        0.8
    """
    return _rank_statistic("spearmanr", x, y, 3)


def kendall(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Kendall's τ-b and its two-sided p-value (``scipy.stats.kendalltau``).

    Non-finite pairs are dropped; fewer than 2 pairs or a constant sample give ``(nan, nan)``.

    Example:
        >>> round(kendall([1, 2, 3, 4], [10, 20, 30, 25])[0], 4)
        0.6667
    """
    return _rank_statistic("kendalltau", x, y, 2)


def granulated_kendall(
    measure: Sequence[float],
    gap: Sequence[float],
    hparams: Sequence[Mapping[str, Any]],
    axes: Sequence[str],
) -> dict[str, float]:
    r"""Jiang et al.'s (2020) granulated Kendall coefficient of a measure against the gap.

    For each axis i, the models are grouped by their values on every *other* axis; within a
    group only axis i varies, and τ_i(group) is Kendall's τ between measure and gap there.
    ψ_i is the mean of τ_i over the groups where it is defined (≥ 2 models, neither sample
    constant), and Ψ = (1/n) Σ_i ψ_i is the mean over the axes. A measure that ranks the
    gap correctly whatever single hyper-parameter changes has ψ_i near 1 for every axis.

    Args:
        measure, gap: one value per model.
        hparams: one mapping axis → value per model.
        axes: the hyper-parameter axes of the family.

    Returns:
        ``{axis: ψ_axis, ..., "mean": Ψ}`` (NaN where no group defines τ).

    Example:
        >>> hp = [{"a": a, "b": b} for a in (0, 1) for b in (0, 1)]
        >>> granulated_kendall([1, 2, 3, 4], [1, 2, 3, 4], hp, ["a", "b"])
        {'a': 1.0, 'b': 1.0, 'mean': 1.0}
    """
    n = len(measure)
    if not (len(gap) == n == len(hparams)):
        raise ValueError(
            f"Invalid inputs: {n} measures, {len(gap)} gaps, {len(hparams)} hyper-parameter rows"
        )
    out: dict[str, float] = {}
    for axis in axes:
        groups: dict[tuple, list[int]] = {}
        for i, hp in enumerate(hparams):
            key = tuple((a, hp[a]) for a in axes if a != axis)
            groups.setdefault(key, []).append(i)
        taus = []
        for idx in groups.values():
            tau, _ = kendall([measure[i] for i in idx], [gap[i] for i in idx])
            if math.isfinite(tau):
                taus.append(tau)
        out[axis] = math.fsum(taus) / len(taus) if taus else math.nan
    finite = [v for v in out.values() if math.isfinite(v)]
    out["mean"] = math.fsum(finite) / len(finite) if finite else math.nan
    return out
