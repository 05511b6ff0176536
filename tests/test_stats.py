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
