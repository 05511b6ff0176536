"""wideflat._stats against closed forms and (where installed) SciPy."""

from __future__ import annotations

import math
import random

import pytest

from wideflat._stats import betainc, pearson, student_t_two_sided


def test_betainc_closed_forms():
    # I_x(1, b) = 1 − (1−x)^b, I_x(a, 1) = x^a, I_x(a, b) = 1 − I_{1−x}(b, a)
    for x in (0.01, 0.3, 0.5, 0.77, 0.999):
        assert betainc(1.0, 3.5, x) == pytest.approx(1 - (1 - x) ** 3.5, abs=1e-13)
        assert betainc(2.5, 1.0, x) == pytest.approx(x**2.5, abs=1e-13)
        assert betainc(4.0, 2.5, x) == pytest.approx(1 - betainc(2.5, 4.0, 1 - x), abs=1e-13)
    with pytest.raises(ValueError, match="betainc"):
        betainc(0.0, 1.0, 0.5)


def test_student_t_closed_forms():
    # df = 1 is Cauchy: P(|T| >= t) = 1 − 2 atan(t)/π; df = 2: 1 − t/√(2 + t²)
    for t in (0.1, 1.0, 3.0, 40.0):
        assert student_t_two_sided(t, 1) == pytest.approx(1 - 2 * math.atan(t) / math.pi, abs=1e-13)
        assert student_t_two_sided(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-13)
    assert student_t_two_sided(0.0, 5) == pytest.approx(1.0)


def test_pearson_against_a_permutation_test_and_edges():
    rng = random.Random(0)
    x = [rng.gauss(0, 1) for _ in range(12)]
    y = [0.4 * a + rng.gauss(0, 1) for a in x]
    r, p = pearson(x, y)
    # the p-value of the t test matches an exact-enough permutation estimate
    hits, draws = 0, 20_000
    for _ in range(draws):
        yy = y[:]
        rng.shuffle(yy)
        hits += abs(pearson(x, yy)[0]) >= abs(r)
    assert p == pytest.approx(hits / draws, abs=0.01)
    assert pearson([1, 2, 3], [2, 4, 6]) == (1.0, 0.0)
    assert all(math.isnan(v) for v in pearson([1, 2], [3, 4]))
    assert all(math.isnan(v) for v in pearson([1, 1, 1], [3, 4, 5]))
    assert pearson([1, 2, float("nan"), 3, 4], [1, 2, 9, 3, 5])[0] == pytest.approx(
        pearson([1, 2, 3, 4], [1, 2, 3, 5])[0]
    )


def test_pearson_matches_scipy_where_installed():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(1)
    for n in (3, 5, 14, 100):
        x = [rng.random() for _ in range(n)]
        y = [a + rng.gauss(0, 0.5) for a in x]
        ref = stats.pearsonr(x, y)
        r, p = pearson(x, y)
        assert r == pytest.approx(ref[0], abs=1e-12) and p == pytest.approx(ref[1], rel=1e-9)


def _ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    ranks = [0.0] * len(v)
    i = 0
    while i < len(order):  # average ranks over ties
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _tau_b_brute(x, y):
    concordant = discordant = tx = ty = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif dx * dy > 0:
                concordant += 1
            else:
                discordant += 1
    return (concordant - discordant) / math.sqrt(
        (concordant + discordant + tx) * (concordant + discordant + ty)
    )


FIXED_X = [0.3, 1.2, -0.7, 2.5, 0.3, 1.9, -1.1, 0.8, 2.2, 0.0, 1.2, -0.4]
FIXED_Y = [1.0, 2.1, 0.2, 2.0, 0.9, 3.3, -0.5, 1.5, 2.9, 0.1, 1.7, 0.4]


def test_spearman_is_pearson_of_ranks_and_kendall_counts_pairs():
    from wideflat._stats import kendall, spearman

    rho, p_rho = spearman(FIXED_X, FIXED_Y)
    assert rho == pytest.approx(pearson(_ranks(FIXED_X), _ranks(FIXED_Y))[0], abs=1e-12)
    tau, p_tau = kendall(FIXED_X, FIXED_Y)
    assert tau == pytest.approx(_tau_b_brute(FIXED_X, FIXED_Y), abs=1e-12)
    assert 0 < p_rho < 0.01 and 0 < p_tau < 0.01
    assert math.isnan(kendall([1, 1, 1], [1, 2, 3])[0])
    assert math.isnan(spearman([1, 2], [1, 2])[0])
    assert spearman([1, 2, float("nan"), 3], [3, 2, 5, 1])[0] == pytest.approx(-1.0)


def test_granulated_kendall_counts_each_axis_within_its_groups():
    from wideflat._stats import granulated_kendall

    # Gap grows with a and with b; the measure follows a but runs against b: ψ_a = 1, ψ_b = -1.
    hp = [{"a": a, "b": b, "c": c} for a in (0, 1, 2) for b in (0, 1) for c in (0, 1)]
    gap = [h["a"] + 10 * h["b"] + 0.01 * h["c"] for h in hp]
    measure = [h["a"] - 10 * h["b"] for h in hp]  # constant along c: ψ_c undefined
    out = granulated_kendall(measure, gap, hp, ["a", "b", "c"])
    assert out["a"] == pytest.approx(1.0) and out["b"] == pytest.approx(-1.0)
    assert math.isnan(out["c"]) and out["mean"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="Invalid inputs"):
        granulated_kendall([1.0], [1.0, 2.0], hp[:2], ["a"])
