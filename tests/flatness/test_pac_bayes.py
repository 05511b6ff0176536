"""Tests for wideflat.flatness.pac_bayes (pac_bayes_sigma).

Reference: for a single linear output f = wᵀx with ±1 labels and error = sign disagreement,
Gaussian weight noise gives the error probability at x in closed form,

    additive        w + σ z:      P(error | x) = Φ(−y wᵀx / (σ ‖x‖)),
    multiplicative  w + σ z ⊙ w:  P(error | x) = Φ(−y wᵀx / (σ ‖w ⊙ x‖)),

so with every point correctly classified the expected error increase is the mean of these,
and the σ where it equals the target is solved by scipy's brentq. Also: local_energy itself
(the evaluations must be its numbers, with the same draws at every σ), and the model's state.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from wideflat.flatness import local_energy
from wideflat.flatness.pac_bayes import PacBayesSigma, pac_bayes_sigma


def _sign_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (torch.sign(out.squeeze(-1)) != y).double()


def _separable(n: int = 256, d: int = 8, seed: int = 0):
    """A float64 linear model f = wᵀx and points it classifies correctly (y = sign wᵀx)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(d)
    X = rng.standard_normal((n, d))
    y = np.sign(X @ w)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(w)[None])
    return model, w, X, y


def _closed_form(w: np.ndarray, X: np.ndarray, y: np.ndarray, kind: str):
    margin = y * (X @ w)
    scale = np.linalg.norm(X if kind == "additive" else X * w, axis=1)
    return lambda sigma: float(norm.cdf(-margin / (sigma * scale)).mean())


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["additive", "multiplicative"])
def test_matches_closed_form_crossing(kind):
    model, w, X, y = _separable()
    target, tol, samples = 0.1, 0.01, 2000
    D = _closed_form(w, X, y, kind)
    assert D(1e-4) < 1e-6  # the range brackets the crossing
    sigma_star = brentq(lambda s: D(s) - target, 1e-4, 10.0, xtol=1e-14)
    res = pac_bayes_sigma(
        model, (torch.from_numpy(X), torch.from_numpy(y)), target=target, perturbation=kind,
        samples=samples, tol=tol, error_fn=_sign_error, progress=False,
    )  # fmt: skip
    assert res.status == "converged" and res.base_error == 0.0
    # Monte Carlo slack: 4 standard errors of D, turned into log σ by the slope dD/dlog σ.
    slope = (D(sigma_star * 1.01) - D(sigma_star / 1.01)) / (2 * math.log(1.01))
    se = res.delta_error_se
    assert 0 < se < 0.002
    slack = tol + 4 * se / slope
    assert abs(math.log(res.sigma / sigma_star)) <= slack
    assert math.log(res.sigma_high / res.sigma_low) <= tol
    assert res.sigma_low * math.exp(-slack) <= sigma_star <= res.sigma_high * math.exp(slack)
    assert res.delta_error == pytest.approx(D(res.sigma), abs=4 * se)
    assert res.measure == pytest.approx(1.0 / res.sigma**2, rel=1e-12)


def test_bisection_uses_local_energy_with_common_random_numbers():
    model, _, X, y = _separable(n=64)
    data = (torch.from_numpy(X), torch.from_numpy(y))
    res = pac_bayes_sigma(
        model, data, samples=16, tol=0.05, error_fn=_sign_error, seed=3, progress=False
    )
    expected_evals = 2 + math.ceil(math.log2(math.log(10.0 / 1e-4) / 0.05))
    assert res.n_evaluations == expected_evals
    assert res.evaluated_sigmas[:2] == (1e-4, 10.0)
    for sigma, d, se in zip(
        res.evaluated_sigmas, res.evaluated_delta_error, res.evaluated_delta_error_se, strict=True
    ):
        ref = local_energy(
            model, data, [sigma], 16, loss_fn=_sign_error, error_fn=_sign_error, seed=3,
            progress=False,
        )  # fmt: skip
        assert (d, se) == (ref.delta_error[0], ref.delta_error_se[0])
    pairs = list(zip(res.evaluated_sigmas, res.evaluated_delta_error, strict=True))
    below = [d for s, d in pairs if s <= res.sigma]
    above = [d for s, d in pairs if s > res.sigma]
    assert max(below) <= res.target < min(above)
    assert res.delta_error == res.evaluated_delta_error[res.evaluated_sigmas.index(res.sigma)]


def test_larger_target_gives_larger_sigma():
    model, _, X, y = _separable(n=128)
    data = (torch.from_numpy(X), torch.from_numpy(y))
    sigmas = [
        pac_bayes_sigma(
            model, data, target=t, samples=200, tol=0.01, error_fn=_sign_error, progress=False
        ).sigma
        for t in (0.05, 0.1, 0.2)
    ]
    assert sigmas[0] < sigmas[1] < sigmas[2]


def test_out_of_range_crossings_warn_and_flag():
    model, _, X, y = _separable(n=64)
    data = (torch.from_numpy(X), torch.from_numpy(y))
    kw = dict(samples=32, error_fn=_sign_error, progress=False)
    with pytest.warns(RuntimeWarning, match="above sigma_max"):
        high = pac_bayes_sigma(model, data, sigma_min=1e-6, sigma_max=1e-5, **kw)
    assert high.status == "above_range" and high.sigma == 1e-5 and math.isnan(high.sigma_high)
    assert high.n_evaluations == 2
    with pytest.warns(RuntimeWarning, match="below sigma_min"):
        low = pac_bayes_sigma(model, data, sigma_min=50.0, sigma_max=100.0, **kw)
    assert low.status == "below_range" and math.isnan(low.sigma) and math.isnan(low.measure)
    assert (low.sigma_low, low.sigma_high, low.n_evaluations) == (0.0, 50.0, 1)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_model_and_global_rng_unchanged(mode):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.3), nn.Linear(12, 3)
    )
    net.train()
    with torch.no_grad():
        net(torch.randn(32, 6))
    X = torch.randn(48, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = net.eval()(X).argmax(1)  # labels the model fits: the error can rise by 0.1
    net.train(mode == "train")
    loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True)
    modes = [m.training for m in net.modules()]
    before = _state(net)
    rng_before = torch.get_rng_state()
    res = pac_bayes_sigma(net, loader, samples=4, tol=0.5, bn="recompute", progress=False)
    assert res.status == "converged" and res.bn == "recompute"
    assert torch.equal(torch.get_rng_state(), rng_before)
    state = _state(net)
    assert all(torch.equal(state[k], before[k]) for k in before)
    assert [m.training for m in net.modules()] == modes
    assert all(p.grad is None for p in net.parameters())
    assert res.n_parameters == sum(p.numel() for p in net.parameters()) and res.n_examples == 48


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"target": 0.0}, "target"),
        ({"target": 1.5}, "target"),
        ({"target": math.nan}, "target"),
        ({"perturbation": "gaussian"}, "perturbation"),
        ({"samples": 0}, "samples"),
        ({"sigma_min": 0.0}, "sigma_min"),
        ({"sigma_max": math.inf}, "sigma_max"),
        ({"sigma_min": 1.0, "sigma_max": 0.5}, "sigma_max"),
        ({"tol": 0}, "tol"),
        ({"error_fn": None}, "error_fn"),
        ({"bn": "train"}, "bn policy"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": -2}, "seed"),
        ({"params": "none"}, "params"),
        ({"subset": [0, 0]}, "subset"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, name):
    model, _, X, y = _separable(n=16)
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        pac_bayes_sigma(
            model, (torch.from_numpy(X), torch.from_numpy(y)),
            **({"error_fn": _sign_error, "progress": False} | kwargs),
        )  # fmt: skip
    with pytest.raises(ValueError, match="Invalid model"):
        pac_bayes_sigma("model", (torch.from_numpy(X), torch.from_numpy(y)), progress=False)
    with pytest.raises(ValueError, match="Invalid data"):
        pac_bayes_sigma(model, (torch.zeros(3, 8), torch.zeros(2)), progress=False)


@pytest.mark.filterwarnings("ignore:pac_bayes_sigma:RuntimeWarning")
@pytest.mark.parametrize("sigma_max", [10.0, 1e-5])
def test_json_round_trip(tmp_path, sigma_max):
    model, _, X, y = _separable(n=64)
    res = pac_bayes_sigma(
        model, (torch.from_numpy(X), torch.from_numpy(y)), samples=8, tol=0.1, sigma_min=1e-6,
        sigma_max=sigma_max, error_fn=_sign_error, progress=False,
    )  # fmt: skip
    path = res.to_json(tmp_path / "pb.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text)
    back = PacBayesSigma.from_json(path)
    assert back.to_dict() == res.to_dict()
    assert isinstance(back.evaluated_sigmas, tuple)
    if res.status == "converged":
        assert back == res
    else:
        assert math.isnan(back.sigma_high)
    with pytest.raises(ValueError, match="Invalid result file"):
        PacBayesSigma.from_json(tmp_path / "missing.json")
