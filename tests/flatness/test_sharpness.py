"""Tests for wideflat.flatness.worst_case (worst-case sharpness, adaptive and m-sharpness).

References used: on a float64 least-squares model the loss is exactly quadratic,
L(w + ε) − L(w) = gᵀε + ½ εᵀAε with A = XᵀX/n and g = Xᵀ(Xw − y)/n, so the sharpness is
½ ρ² λ_max(A) at the least-squares solution and, elsewhere, the maximum of a quadratic over a
ball, solved here independently by the trust-region secular equation (numpy eigh + scipy
brentq); the adaptive ball is the same problem in rescaled coordinates (A → TAT, g → Tg).
Also: the exact invariance of a ReLU network's function under layer rescaling, the model's
own loss over all data, and torch.optim.swa_utils.update_bn for the BN-recompute policy.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import brentq
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from wideflat.flatness.worst_case import Sharpness, sharpness

N, D = 40, 5


def _half_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((out.squeeze(-1) - y) ** 2).mean()


def _least_squares(seed: int = 0):
    """X with a prescribed spectrum of A = XᵀX/n (eigen-gap 2), noisy y, w* by lstsq."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    u, _ = np.linalg.qr(rng.standard_normal((N, D)))
    lam = np.array([4.0, 2.0, 1.0, 0.5, 0.25])
    X = math.sqrt(N) * u @ np.diag(np.sqrt(lam)) @ q.T
    y = X @ rng.standard_normal(D) + 0.3 * rng.standard_normal(N)
    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    return X, y, w_star


def _linear(w: np.ndarray) -> nn.Module:
    model = nn.Linear(w.size, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(w)[None])
    return model


def _ball_max(A: np.ndarray, g: np.ndarray, rho: float) -> float:
    """max_{‖e‖ ≤ ρ} gᵀe + ½ eᵀAe (A ⪰ 0, g with a component on the top eigenvector).

    The maximizer lies on the sphere with (μI − A) e = g, μ > λ_max: solve the secular
    equation ‖(μI − A)⁻¹ g‖ = ρ for μ in the eigenbasis.
    """
    lam, V = np.linalg.eigh(A)
    gam = V.T @ g
    if np.linalg.norm(g) == 0:
        return 0.5 * rho**2 * lam[-1]

    def excess(mu: float) -> float:
        return math.sqrt(float(np.sum((gam / (mu - lam)) ** 2))) - rho

    low = lam[-1] + 0.5 * abs(gam[-1]) / rho  # ‖e‖ ≥ 2ρ there
    high = lam[-1] + np.linalg.norm(g) / rho  # ‖e‖ ≤ ρ there
    mu = brentq(excess, low, high, xtol=1e-15, rtol=1e-15, maxiter=500)
    e = V @ (gam / (mu - lam))
    return float(g @ e + 0.5 * e @ A @ e)


def _quadratic_terms(X: np.ndarray, y: np.ndarray, w: np.ndarray):
    n = X.shape[0]
    return X.T @ X / n, X.T @ (X @ w - y) / n


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a
    )


def _relu_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).double()


def _class_data(n: int = 64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def _comparable(res: Sharpness) -> dict:
    out = res.to_dict()
    out.pop("wall_time_s")
    return out


# ---------------------------------------------------------------------------------------------
# Closed forms on an exact quadratic
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.05, 0.5])
def test_at_minimum_equals_half_rho_squared_lambda_max(rho):
    X, y, w_star = _least_squares()
    A, g = _quadratic_terms(X, y, w_star)
    assert np.linalg.norm(g) < 1e-12  # w* is the minimum
    res = sharpness(
        _linear(w_star), (torch.from_numpy(X), torch.from_numpy(y)), rho, steps=60,
        loss_fn=_half_mse, progress=False,
    )  # fmt: skip
    expected = 0.5 * rho**2 * np.linalg.eigvalsh(A)[-1]
    assert res.value == pytest.approx(expected, rel=1e-9)
    # Every iterate lies in the ball, where 0 ≤ L(w* + ε) − L(w*) ≤ ½ ρ² λ_max.
    increases = np.array(res.trajectory) - res.base_loss
    assert increases.min() >= -1e-15 and increases.max() <= expected * (1 + 1e-9)
    assert len(res.trajectory) == 61 and increases[0] < 0.99 * expected  # the ascent climbed
    np.testing.assert_allclose(increases[-5:], expected, rtol=1e-9)  # and stayed at the top
    assert res.base_loss == pytest.approx(0.5 * np.mean((X @ w_star - y) ** 2), rel=1e-12)


@pytest.mark.parametrize("adaptive", [False, True])
def test_off_minimum_matches_trust_region_solution(adaptive):
    X, y, w_star = _least_squares()
    w = w_star + np.array([0.3, -0.2, 0.1, 0.05, -0.4])
    A, g = _quadratic_terms(X, y, w)
    rho, eta = 0.2, 0.01
    if adaptive:  # ε = T ε', ‖ε'‖ ≤ ρ: the same problem with A → TAT, g → Tg
        T = np.abs(w) + eta
        A, g = T[:, None] * A * T[None, :], T * g
    res = sharpness(
        _linear(w), (torch.from_numpy(X), torch.from_numpy(y)), rho, adaptive=adaptive,
        eta=eta, steps=80, restarts=2, loss_fn=_half_mse, progress=False,
    )  # fmt: skip
    assert res.value == pytest.approx(_ball_max(A, g, rho), rel=1e-9)


def test_m_sharpness_averages_chunk_maxima_and_cuts_across_batches():
    X, y, w_star = _least_squares()
    m = 16  # chunks of 16, 16, 8 examples, cut across loader batches of 12
    loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), batch_size=12)
    rho = 0.3
    res = sharpness(
        _linear(w_star), loader, rho, m=m, steps=80, restarts=8, loss_fn=_half_mse,
        progress=False,
    )  # fmt: skip
    chunks = [slice(0, 16), slice(16, 32), slice(32, 40)]
    expected = [_ball_max(*_quadratic_terms(X[c], y[c], w_star), rho) for c in chunks]
    assert res.chunk_sizes == (16, 16, 8)
    np.testing.assert_allclose(res.chunk_values, expected, rtol=1e-9)
    # The last chunk's quadratic has a local, non-global maximum on the sphere (at most one
    # exists, Martínez 1994); some starts end there, and keeping the best restart fixes it.
    last = res.trajectories[2]
    local = [max(p) - res.chunk_base_losses[2] for p in last]
    assert min(local) < 0.9 * expected[2] and max(local) == res.chunk_values[2]
    assert res.value == pytest.approx(np.dot([16, 16, 8], expected) / 40, rel=1e-9)
    assert res.base_loss == pytest.approx(0.5 * np.mean((X @ w_star - y) ** 2), rel=1e-12)
    spread = np.array([0.4, 0.4, 0.2]) ** 2 @ (np.array(expected) - res.value) ** 2
    assert res.value_se == pytest.approx(math.sqrt(1.5 * spread), rel=1e-6)
    whole = sharpness(
        _linear(w_star), loader, rho, m=None, steps=80, loss_fn=_half_mse, progress=False
    )
    assert len(whole.chunk_values) == 1 and math.isnan(whole.value_se)
    assert whole.value != pytest.approx(res.value, rel=1e-3)  # chunks really differ


def test_adaptive_is_invariant_to_layer_rescaling_plain_is_not():
    net = _relu_net()
    scaled = copy.deepcopy(net)
    c = 3.0
    with torch.no_grad():
        scaled[0].weight.mul_(c)
        scaled[0].bias.mul_(c)
        scaled[2].weight.div_(c)
    X, y = _class_data()
    torch.testing.assert_close(scaled(X), net(X), rtol=0, atol=1e-13)  # same function

    def value(model, **kw):
        return sharpness(model, (X, y), 0.5, steps=20, progress=False, **kw).value

    exact = value(net, adaptive=True, eta=0.0)
    assert exact > 1e-3
    assert value(scaled, adaptive=True, eta=0.0) == pytest.approx(exact, rel=1e-9)
    approx = value(net, adaptive=True)  # η = 0.01 breaks invariance by O(η/|w|)
    assert value(scaled, adaptive=True) == pytest.approx(approx, rel=0.1)
    plain, plain_scaled = value(net), value(scaled)
    assert abs(plain_scaled / plain - 1) > 1.0


# ---------------------------------------------------------------------------------------------
# Data, loss and trajectories
# ---------------------------------------------------------------------------------------------


def test_loss_over_all_data_and_trajectory_bookkeeping():
    net = _relu_net()
    X, y = _class_data(n=50)
    steps, restarts = 6, 3
    res = sharpness(net, (X, y), 0.2, steps=steps, restarts=restarts, batch_size=7, progress=False)
    with torch.no_grad():
        assert res.base_loss == pytest.approx(F.cross_entropy(net(X), y).item(), rel=1e-12)
    paths = res.trajectories[0]
    assert len(paths) == restarts and all(len(p) == steps + 1 for p in paths)
    best = max(max(p) for p in paths)
    assert res.value == pytest.approx(best - res.base_loss, abs=1e-15)
    assert max(res.trajectory) == best and res.n_examples == 50
    assert res.trajectory[-1] > res.trajectory[0]  # the ascent climbs
    per_example = sharpness(
        net, (X, y), 0.2, steps=steps, restarts=restarts, batch_size=7, progress=False,
        loss_fn=lambda out, t: F.cross_entropy(out, t, reduction="none"),
    )  # fmt: skip
    assert per_example.value == pytest.approx(res.value, rel=1e-10)


def test_recompute_bn_base_loss_matches_update_bn():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3))
    net = net.double()
    X, y = _class_data(n=48)
    reference = copy.deepcopy(net)
    torch.optim.swa_utils.update_bn(DataLoader(TensorDataset(X, y), batch_size=16), reference)
    reference.eval()
    with torch.no_grad():
        expected = F.cross_entropy(reference(X), y).item()
    res = sharpness(net, (X, y), 0.1, bn="recompute", batch_size=16, steps=3, progress=False)
    assert res.base_loss == pytest.approx(expected, rel=1e-12)
    res_eval = sharpness(net, (X, y), 0.1, steps=3, progress=False)
    assert res_eval.base_loss != pytest.approx(expected, rel=1e-6)  # the policy matters


# ---------------------------------------------------------------------------------------------
# Side effects and reproducibility
# ---------------------------------------------------------------------------------------------


def _bn_dropout_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.3), nn.Linear(12, 3)
    )
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(32, 6) * 2 + 0.5)
    return net


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize(("bn", "adaptive", "m"), [("eval", False, None), ("recompute", True, 9)])
def test_model_and_global_rng_unchanged(mode, bn, adaptive, m):
    net = _bn_dropout_net()
    net[4].weight.requires_grad_(False)
    net.train(mode == "train")
    net[3].train(mode != "train")
    modes = [mod.training for mod in net.modules()]
    flags = [p.requires_grad for p in net.parameters()]
    before = _state(net)
    X, y = _class_data(n=40)
    loader = DataLoader(TensorDataset(X.float(), y), batch_size=16, shuffle=True)
    rng_before = torch.get_rng_state()
    res = sharpness(
        net, loader, 0.1, adaptive=adaptive, m=m, bn=bn, steps=3, restarts=2, params="all",
        progress=False,
    )  # fmt: skip
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert _bitwise_equal(_state(net), before)
    assert [mod.training for mod in net.modules()] == modes
    assert net[1].momentum == 0.1
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(p.grad is None for p in net.parameters())
    assert res.n_parameters == sum(p.numel() for p in net.parameters())
    trainable = sharpness(net, loader, 0.1, steps=2, progress=False)
    assert trainable.n_parameters == res.n_parameters - net[4].weight.numel()


def test_same_seed_same_result_other_seed_differs():
    net = _relu_net()
    X, y = _class_data()
    kw = dict(steps=5, restarts=2, m=20, progress=False)
    a = sharpness(net, (X, y), 0.3, seed=4, **kw)
    b = sharpness(net, (X, y), 0.3, seed=4, **kw)
    c = sharpness(net, (X, y), 0.3, seed=5, **kw)
    assert _comparable(a) == _comparable(b)
    assert a.trajectories != c.trajectories


# ---------------------------------------------------------------------------------------------
# Arguments and serialization
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rho": 0.0}, "rho"),
        ({"rho": -1.0}, "rho"),
        ({"rho": math.inf}, "rho"),
        ({"rho": True}, "rho"),
        ({"eta": -0.1}, "eta"),
        ({"steps": 0}, "steps"),
        ({"steps": 2.0}, "steps"),
        ({"step_size": 0.0}, "step_size"),
        ({"m": 0}, "m"),
        ({"restarts": 0}, "restarts"),
        ({"adaptive": "yes"}, "adaptive"),
        ({"loss_fn": 3}, "loss_fn"),
        ({"bn": "train"}, "bn policy"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": -1}, "seed"),
        ({"params": "frozen"}, "params"),
        ({"subset": 0}, "subset"),
        ({"loss_fn": lambda out, y: out}, "loss_fn output shape"),
        ({"loss_fn": lambda out, y: (out.argmax(1) != y).double()}, "loss_fn"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, name):
    X, y = _class_data(n=16)
    args = {"rho": 0.1, "steps": 2, "progress": False} | kwargs
    rho = args.pop("rho")
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        sharpness(_relu_net(), (X, y), rho, **args)


@pytest.mark.parametrize(
    "data",
    [
        "not data",
        (torch.zeros(3, 6), torch.zeros(4)),
        (torch.zeros(0, 6), torch.zeros(0, dtype=torch.long)),
    ],
)
def test_bad_data_and_model_raise_value_error(data):
    with pytest.raises(ValueError, match="Invalid data"):
        sharpness(_relu_net(), data, 0.1, progress=False)
    with pytest.raises(ValueError, match="Invalid model"):
        sharpness(lambda x: x, _class_data(), 0.1, progress=False)


@pytest.mark.parametrize("m", [None, 20])
def test_json_round_trip(tmp_path, m):
    X, y = _class_data()
    res = sharpness(_relu_net(), (X, y), 0.2, steps=3, m=m, adaptive=True, progress=False)
    path = res.to_json(tmp_path / "s.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text)  # strict JSON
    back = Sharpness.from_json(path)
    assert back.to_dict() == res.to_dict()
    assert math.isnan(back.value_se) == (m is None)
    assert back.m == m and isinstance(back.trajectories[0][0], tuple)
    if m is not None:
        assert back == res  # no NaN inside: plain dataclass equality holds
    with pytest.raises(ValueError, match="Invalid result dict"):
        Sharpness.from_dict({"format": "something else"})
