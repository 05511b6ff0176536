"""Tests of the committee machine's local energy (wideflat.flatness.committee): the batched
estimator against an independent NumPy loop over draws, and its input checks."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from wideflat.flatness.committee import committee_local_energy


def _reference_local_energy(w, X, y, sigmas, draws, seed):
    """Independent loop: one draw at a time, NumPy sign network, statistics module."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((draws, *w.shape), generator=g, dtype=w.dtype).numpy()
    W, Xn, yn = w.numpy(), X.numpy(), y.numpy()

    def error(weights):
        wrong = 0
        for x, label in zip(Xn, yn, strict=True):
            votes = sum(1 if float(unit @ x) >= 0 else -1 for unit in weights)
            wrong += (1 if votes > 0 else -1) != label
        return wrong / len(yn)

    base = error(W)
    means, sems = [], []
    for s in sigmas:
        diffs = [error(W + s * z[d] * W) - base for d in range(draws)]
        means.append(statistics.fmean(diffs))
        sems.append(statistics.stdev(diffs) / math.sqrt(draws) if draws > 1 else 0.0)
    return np.array(means), np.array(sems), base


@pytest.mark.parametrize("draws", [1, 7])
def test_local_energy_matches_independent_loop(draws):
    g = torch.Generator().manual_seed(5)
    w = torch.randn(3, 15, generator=g, dtype=torch.float64)
    X = torch.randint(0, 2, (40, 15), generator=g).double() * 2 - 1
    y = torch.where(torch.rand(40, generator=g) < 0.8, 1.0, -1.0).double()  # base error > 0
    sigmas = [0.0, 0.3, 0.8, 1.5]
    mean, sem, base = committee_local_energy(
        w, X, y, sigmas, draws=draws, generator=torch.Generator().manual_seed(11)
    )
    ref_mean, ref_sem, ref_base = _reference_local_energy(w, X, y, sigmas, draws, 11)
    assert base == ref_base and base > 0
    np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sem, ref_sem, rtol=0, atol=1e-12)
    assert mean[0] == 0.0 and np.any(mean[1:] != 0.0)
    # the perturbation is multiplicative: rescaling w changes nothing
    again = committee_local_energy(
        3.7 * w, X, y, sigmas, draws=draws, generator=torch.Generator().manual_seed(11)
    )
    np.testing.assert_allclose(again[0], mean, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"draws": 0}, "draws: 0"), ({"sigmas": [0.1, -1.0]}, "-1.0")],
)
def test_local_energy_rejects_bad_input(kwargs, needle):
    w, X, y = torch.ones(3, 4), torch.ones(5, 4), torch.ones(5)
    args = {"sigmas": [0.5], "draws": 2, **kwargs}
    with pytest.raises(ValueError) as info:
        committee_local_energy(w, X, y, args.pop("sigmas"), **args)
    assert needle in str(info.value)
