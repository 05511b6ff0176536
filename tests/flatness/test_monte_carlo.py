"""Tests of the Monte Carlo local-entropy estimators against closed forms, and of their hygiene.

Closed forms used: one linear constraint through the origin (a half-space) cuts a ball or a
Gaussian in a way computable exactly (3-ball cap volume, normal CDF, truncated-normal moment).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from wideflat.flatness.committee_bp import committee_local_entropy
from wideflat.flatness.monte_carlo import (
    committee_gaussian_mc,
    default_errors,
    local_entropy_mc,
)


def Phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def npdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def half_space_model(n: int = 3, margin: float = 0.3):
    """Linear model, one example x = e_1 with label +1: correct iff w'_1 > 0. w_1 = margin."""
    model = nn.Linear(n, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[margin] + [0.7] * (n - 1)], dtype=torch.float64))
    X = torch.zeros(1, n, dtype=torch.float64)
    X[0, 0] = 1.0
    y = torch.ones(1, dtype=torch.float64)
    return model, X, y


def test_ball_sampling_matches_exact_cap_volume():
    """3-ball of radius R centred at distance t from the plane: accepted fraction
    = 1 - h^2 (3R - h) / (4 R^3), h = R - t (volume of the cap beyond the plane)."""
    model, X, y = half_space_model(3, margin=0.3)
    deltas = [0.01, 0.05, 0.2]  # R = sqrt(2 n delta) = 0.245, 0.548, 1.095
    S = 20_000
    res = local_entropy_mc(model, (X, y), deltas, samples=S, seed=0)
    assert res.reference_errors == 0 and res.n_params == 3 and res.sampling == "ball"
    for delta, acc in zip(deltas, res.accepted, strict=True):
        R, t = math.sqrt(6 * delta), 0.3
        h = max(R - t, 0.0)
        p = 1 - h * h * (3 * R - h) / (4 * R**3)
        assert abs(acc / S - p) <= 3 * math.sqrt(p * (1 - p) / S) + 1e-12, (delta, acc / S, p)
    assert res.local_entropy[0] == 0.0  # R < t: the whole ball is on the correct side
    p = res.accepted[2] / S
    assert res.local_entropy[2] == pytest.approx(math.log(p) / 3)
    assert res.local_entropy_se[2] == pytest.approx(math.sqrt((1 - p) / (p * S)) / 3)


def test_gaussian_sampling_matches_normal_cdf_and_truncated_moment():
    """w' ~ N(w, 2 delta I): P(w'_1 > 0) = Phi(c), c = margin / sigma; the accepted mean
    squared step is ((n - 1) + 1 - c pdf(c) / Phi(c)) sigma^2, i.e. delta_acc = that / (2n)."""
    n, margin = 4, 0.3
    model, X, y = half_space_model(n, margin)
    deltas = [0.02, 0.2]
    S = 20_000
    res = local_entropy_mc(model, (X, y), deltas, samples=S, sampling="gaussian", seed=1)
    for i, delta in enumerate(deltas):
        sigma = math.sqrt(2 * delta)
        c = margin / sigma
        p = Phi(c)
        assert abs(res.accepted[i] / S - p) <= 3 * math.sqrt(p * (1 - p) / S)
        assert res.phi[i] == pytest.approx(math.log(res.accepted[i] / S) / n)
        exact_delta = ((n - 1) + 1 - c * npdf(c) / p) * sigma**2 / (2 * n)
        assert abs(res.distance[i] / exact_delta - 1) < 0.02
        assert res.gamma[i] == pytest.approx(1 / (2 * delta))
        u = 2 * res.gamma[i] * res.distance[i]
        assert res.local_entropy[i] == pytest.approx(res.phi[i] + 0.5 * (u - 1 - math.log(u)))


def test_committee_gaussian_mc_single_pattern_closed_form():
    """K = 1, one pattern: P = Phi(c), c = y w.x sqrt(gamma) / |x| (w normalised to |w|^2 = N)."""
    N, gamma = 30, 4.0
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, N, generator=g, dtype=torch.float64)
    x = torch.randint(0, 2, (1, N), generator=g).double() * 2 - 1
    y = torch.sign(x @ w.T).reshape(1)
    wn = w * math.sqrt(N) / w.norm()
    c = float(y * (x @ wn.T)) * math.sqrt(gamma) / x.norm().item()
    S = 20_000
    mc = committee_gaussian_mc(w, x, y, [gamma], samples=S, seed=3)
    p = Phi(c)
    assert abs(mc.accepted[0] / S - p) <= 3 * math.sqrt(p * (1 - p) / S)
    exact_delta = ((N - 1) + 1 - c * npdf(c) / p) / gamma / (2 * N)
    assert abs(mc.delta[0] - exact_delta) < 3 * mc.delta_se[0]
    assert mc.phi_se[0] == pytest.approx(math.sqrt((1 - mc.accepted[0] / S) / mc.accepted[0]) / N)


def test_committee_gaussian_mc_is_reproducible_and_batch_independent():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 20, generator=g, dtype=torch.float64)
    X = torch.randint(0, 2, (10, 20), generator=g).double() * 2 - 1
    y = torch.sign(torch.sign(X @ w.T).sum(1))
    before = torch.get_rng_state()
    a = committee_gaussian_mc(w, X, y, [5.0, 1.0], samples=3000, seed=4, batch_size=100)
    b = committee_gaussian_mc(w, X, y, [5.0, 1.0], samples=3000, seed=4, batch_size=3000)
    c = committee_gaussian_mc(w, X, y, [5.0, 1.0], samples=3000, seed=5)
    assert torch.equal(before, torch.get_rng_state())
    assert a.accepted == b.accepted and a.phi == b.phi
    assert a.accepted != c.accepted
    json.dumps(a.to_dict(), allow_nan=False)


def test_zero_acceptance_is_reported_with_an_upper_bound():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(1, 20, generator=g, dtype=torch.float64)
    X = torch.randint(0, 2, (60, 20), generator=g).double() * 2 - 1
    y = torch.sign(X @ w.T).reshape(-1)
    mc = committee_gaussian_mc(w, X, y, [0.01], samples=200, seed=0)
    assert mc.accepted == (0,) and math.isnan(mc.phi[0]) and math.isnan(mc.delta[0])
    assert mc.phi_upper_95[0] == pytest.approx(math.log1p(-(0.05 ** (1 / 200))) / 20)
    assert len(mc.notes) == 1 and "0 of 200" in mc.notes[0]
    d = json.loads(json.dumps(mc.to_dict(), allow_nan=False))
    assert d["phi"] == [None]
    # same for the generic estimator: a linear model with many random constraints, huge ball
    model = nn.Linear(20, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w)
    res = local_entropy_mc(model, (X, y), [5.0], samples=100, seed=0)
    assert res.accepted == (0,) and math.isnan(res.local_entropy[0]) and res.notes
    assert res.upper_bound_95[0] < 0
    json.dumps(res.to_dict(), allow_nan=False)


def test_all_accepted_when_reference_is_maximally_wrong():
    # Every example already misclassified: any w' has E <= E(w), so the fraction is 1.
    model, X, y = half_space_model(3)
    res = local_entropy_mc(model, (X, -y), [1.0], samples=50, seed=0)
    assert res.reference_errors == 1 and res.accepted == (50,)
    assert res.local_entropy == (0.0,) and res.local_entropy_se == (0.0,)


class _Committee(nn.Module):
    """sign(sum_k sign(w_k . x)) as a module, for the generic estimator."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        return torch.sign(x @ self.w.T).sum(1)


def test_uniform_ball_estimate_matches_bp_local_entropy_of_a_committee():
    """Eq. 3 sampled literally (uniform in the ball, error <= E(w)) against BP + Legendre step.

    Independent of each other: the ball estimator knows nothing about Gaussians or BP. Measured
    at n = 303: agreement within 2 MC standard errors at the three distances.
    """
    g = torch.Generator().manual_seed(3)
    K, N, M = 3, 101, 40
    w = torch.randn(K, N, generator=g, dtype=torch.float64)
    X = torch.randint(0, 2, (M, N), generator=g).double() * 2 - 1
    y = torch.sign(torch.sign(X @ w.T).sum(1))
    w = w * (math.sqrt(N) / w.norm(dim=1, keepdim=True))
    distances = [0.003, 0.01, 0.03]
    bp = committee_local_entropy(w, X, y, distances=distances)
    mc = local_entropy_mc(_Committee(w), (X, y), distances, samples=20_000, seed=0)
    assert bp.all_converged and mc.reference_errors == 0 and min(mc.accepted) > 300
    for a, b, se in zip(bp.local_entropy, mc.local_entropy, mc.local_entropy_se, strict=True):
        assert abs(a - b) < 3 * se + 5e-5, (a, b, se)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(x))


@pytest.mark.parametrize("train_mode", [True, False])
def test_generic_estimator_leaves_model_and_global_rng_untouched(train_mode):
    torch.manual_seed(0)
    model = _Net().double()
    X = torch.randn(64, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (64,))
    model.train()
    model(X)  # non-trivial BN running statistics
    model.train(train_mode)
    model.body[1].eval()  # a mixed-mode submodule must be restored too
    modes = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y), batch_size=16, shuffle=True
    )
    rng = torch.get_rng_state()
    res = local_entropy_mc(model, loader, [1e-3, 1e-2], samples=20, seed=0)
    assert torch.equal(rng, torch.get_rng_state())
    assert [m.training for m in model.modules()] == modes
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert all(p.grad is None for p in model.parameters())
    assert res.n_examples == 64 and res.n_params == sum(p.numel() for p in model.parameters())
    # eval mode during measurement: the loader and the tuple path count the same errors
    res_tuple = local_entropy_mc(model, (X, y), [1e-3, 1e-2], samples=20, seed=0)
    assert res_tuple.accepted == res.accepted and res_tuple.reference_errors == res.reference_errors


def test_generic_estimator_params_subset_and_seed():
    model = _Net().double()
    X = torch.randn(32, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (32,))
    head = list(model.head.parameters())
    a = local_entropy_mc(model, (X, y), [0.05], samples=40, seed=3, params=head)
    b = local_entropy_mc(model, (X, y), [0.05], samples=40, seed=3, params=head)
    assert a == b and a.n_params == 8 * 3 + 3


def test_default_errors_binary_and_multiclass():
    assert default_errors(
        torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0])
    ).tolist() == [
        False,
        True,
    ]
    assert default_errors(torch.tensor([0.5, -0.2, 0.0]), torch.tensor([1, 1, -1])).tolist() == [
        False,
        True,
        True,
    ]


_MODEL, _X, _Y = half_space_model(3)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(distances=[-0.1]), "Invalid distances: .* -0.1"),
        (dict(distances=[math.inf]), "Invalid distances"),
        (dict(distances=[]), "Invalid distances"),
        (dict(samples=0), "Invalid samples: 0"),
        (dict(samples=2.5), "Invalid samples: 2.5"),
        (dict(sampling="sphere"), "Invalid sampling: 'sphere'"),
        (dict(seed=-1), "Invalid seed: -1"),
        (dict(model="net"), "Invalid model: expected a torch.nn.Module, got str"),
        (dict(data=(_X, _Y[:0])), "Invalid data: inputs have 1 rows, targets 0"),
        (dict(data=(_X,)), "Invalid data"),
        (dict(data=3), "Invalid data: int"),
        (dict(params=[]), "Invalid params"),
    ],
)
def test_generic_bad_input(kwargs, message):
    args = dict(model=_MODEL, data=(_X, _Y), distances=[0.1], samples=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        local_entropy_mc(args.pop("model"), args.pop("data"), args.pop("distances"), **args)


def test_generic_rejects_non_finite_weights():
    model, X, y = half_space_model(3)
    with torch.no_grad():
        model.weight[0, 1] = math.nan
    with pytest.raises(ValueError, match="parameter 0 contains non-finite"):
        local_entropy_mc(model, (X, y), [0.1], samples=5)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(gammas=[0.0]), "Invalid gammas"),
        (dict(samples=0), "Invalid samples: 0"),
        (dict(batch_size=0), "Invalid batch_size: 0"),
        (dict(y=torch.tensor([1.0, -1.0, 3.0])), "Invalid y: labels must be -1 or \\+1, got 3"),
        (dict(w=torch.ones(2, 4)), "K = 2 hidden units is even"),
        (dict(X=torch.ones(3, 5)), "Invalid X"),
        (dict(y=torch.tensor([-1.0, -1.0, -1.0])), "misclassifies"),
    ],
)
def test_committee_mc_bad_input(kwargs, message):
    args = dict(
        w=torch.ones(1, 4),
        X=torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, -1], [1, -1, 1, 1]]),
        y=torch.ones(3),
        gammas=[1.0],
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        committee_gaussian_mc(
            args.pop("w"), args.pop("X"), args.pop("y"), args.pop("gammas"), **args
        )
