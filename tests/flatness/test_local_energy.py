"""Tests for wideflat.flatness.energy (local_energy) and plot_local_energy.

References used: the model's own train loss, a Monte Carlo loop written here (plain per-draw
perturbation of a copy of the model), the closed-form expectation of the squared loss of a
linear model under Gaussian weight noise, torch.optim.swa_utils.update_bn for the BN-recompute
policy, and exact scale invariance of a bias-free ReLU network under multiplicative noise.
"""

from __future__ import annotations

import copy
import json
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import wideflat.flatness.energy as le
from wideflat.flatness import LocalEnergyProfile, local_energy
from wideflat.flatness.plots import plot_local_energy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3))


def _bn_dropout_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 8),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Linear(8, 3),
    )
    # give the BN layers non-trivial running statistics
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(32, 1, 8, 8) * 2 + 0.5)
    return net


def _data(n: int = 200, d: int = 10, k: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, k, (n,), generator=g)


def _image_data(n: int = 96, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a
    )


# ---------------------------------------------------------------------------------------------
# σ = 0, base loss, side effects
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vmap", [True, False])
@pytest.mark.parametrize("batch_size", [1024, 64])
def test_sigma_zero_and_base_equal_train_loss(vmap, batch_size):
    model = _mlp()
    X, y = _data()
    prof = local_energy(
        model, (X, y), [0.0, 0.3], 5, vmap=vmap, batch_size=batch_size, progress=False
    )
    with torch.no_grad():
        out = model(X)
    assert abs(prof.base_loss - F.cross_entropy(out, y).item()) <= 1e-7
    assert prof.base_error == (out.argmax(1) != y).double().mean().item()
    assert prof.delta_error[0] == 0.0 and prof.delta_loss[0] == 0.0
    assert prof.delta_error_se[0] == 0.0 and prof.delta_loss_se[0] == 0.0
    assert prof.n_examples == 200 and prof.samples == 5
    assert prof.delta_loss[1] != 0.0  # σ > 0 really perturbs


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize(("bn", "vmap"), [("eval", True), ("eval", False), ("recompute", "auto")])
def test_no_side_effects(mode, bn, vmap):
    model = _bn_dropout_net()
    model.train(mode == "train")
    model[3].train(mode != "train")  # a submodule with the opposite flag must keep it too
    modes = [m.training for m in model.modules()]
    momenta = [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = _state(model)
    X, y = _image_data()
    loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True)
    rng_before = torch.get_rng_state()
    prof = local_energy(
        model, loader, [0.0, 0.1, 0.3, 0.6, 1.0], 20, bn=bn, vmap=vmap, progress=False
    )
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert _bitwise_equal(_state(model), before)
    assert [m.training for m in model.modules()] == modes
    assert [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)] == momenta
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert prof.bn == bn and len(prof.sigmas) == 5


def test_measuring_does_not_change_a_training_trajectory():
    """Training with dropout and a shuffling loader (both use the global RNG) is bitwise the
    same whether or not local energy is measured between epochs."""

    def train(measure: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(123)
        model = _bn_dropout_net(seed=5)
        X, y = _image_data()
        loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for _ in range(2):
            model.train()
            for xb, yb in loader:
                opt.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                opt.step()
            if measure:
                local_energy(model, loader, [0.2, 0.5], 4, progress=False)
        return _state(model)

    assert _bitwise_equal(train(True), train(False))


# ---------------------------------------------------------------------------------------------
# Randomness and engines
# ---------------------------------------------------------------------------------------------


def test_seed_reproducible_and_distinct():
    model = _mlp()
    data = _data()
    a = local_energy(model, data, [0.2, 0.5], 6, seed=7, progress=False)
    b = local_energy(model, data, [0.2, 0.5], 6, seed=7, progress=False)
    c = local_energy(model, data, [0.2, 0.5], 6, seed=8, progress=False)
    assert a.loss_draws == b.loss_draws and a.error_draws == b.error_draws
    assert a.loss_draws[0] != c.loss_draws[0] and a.loss_draws[1] != c.loss_draws[1]
    # each σ point is an independent estimate: a repeated σ gets fresh draws
    d = local_energy(model, data, [0.3, 0.3], 6, seed=7, progress=False)
    assert d.loss_draws[0] != d.loss_draws[1]


@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_vmap_equals_loop(net):
    if net == "mlp":
        model, data = _mlp(), _data()
    else:
        model, data = _bn_dropout_net(), _image_data()
    kw = dict(sigmas=[0.0, 0.1, 0.4], samples=7, batch_size=40, progress=False)
    pv = local_energy(model, data, vmap=True, chunk_size=3, **kw)
    pl = local_energy(model, data, vmap=False, **kw)
    pv16 = local_energy(model, data, vmap=True, chunk_size=16, **kw)
    assert (pv.engine, pl.engine) == ("vmap", "loop")
    assert pv.base_loss == pl.base_loss
    for p in (pv, pv16):
        np.testing.assert_allclose(p.loss_draws, pl.loss_draws, rtol=0, atol=2e-6)
        # the perturbed weights are bitwise equal; only float rounding of the batched
        # kernels differs, which cannot flip an argmax unless two logits nearly tie
        np.testing.assert_allclose(p.error_draws, pl.error_draws, rtol=0, atol=1.5 / 96)


class _NotVmappable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(10, 3)

    def forward(self, x):
        if self.lin.weight.abs().max().item() > 1e6:  # data-dependent Python control flow
            return x[:, :3]
        return self.lin(x)


def test_auto_engine_choice_and_fallback(monkeypatch):
    assert local_energy(_mlp(), _data(), [0.3], 2, progress=False).engine == "loop"  # CPU
    # on an accelerator "auto" tries vmap; simulate that choice to test the fallback on CPU
    monkeypatch.setattr(le, "_auto_prefers_vmap", lambda device: True)
    assert local_energy(_mlp(), _data(), [0.3], 2, progress=False).engine == "vmap"
    torch.manual_seed(0)
    model, data = _NotVmappable(), _data()
    with pytest.warns(RuntimeWarning, match="vmap engine unavailable") as caught:
        auto = local_energy(model, data, [0.3], 5, vmap="auto", progress=False)
    assert caught[0].filename == __file__  # the warning points at the caller's line
    loop = local_energy(model, data, [0.3], 5, vmap=False, progress=False)
    assert auto.engine == "loop" and auto.loss_draws == loop.loss_draws
    with pytest.raises(RuntimeError):
        local_energy(model, data, [0.3], 5, vmap=True, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        local_energy(_mlp(), data, [0.3], 5, vmap="auto", progress=False)


# ---------------------------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------------------------


def test_matches_hand_written_monte_carlo():
    """A plain Monte Carlo loop written here, with its own noise, agrees within 3 combined
    standard errors for the error and the loss."""
    model = _mlp(seed=3)
    X, y = _data(n=300)
    sigmas, n_draws = [0.25, 0.6], 150
    prof = local_energy(model, (X, y), sigmas, n_draws, seed=11, progress=False)
    with torch.no_grad():
        out = model(X)
        base_loss = F.cross_entropy(out, y).item()
        base_err = (out.argmax(1) != y).double().mean().item()
        g = torch.Generator().manual_seed(999)
        for i, sigma in enumerate(sigmas):
            d_loss, d_err = [], []
            for _ in range(n_draws):
                m = copy.deepcopy(model)
                for p in m.parameters():
                    p.mul_(1.0 + sigma * torch.randn(p.shape, generator=g))
                o = m(X)
                d_loss.append(F.cross_entropy(o, y).item() - base_loss)
                d_err.append((o.argmax(1) != y).double().mean().item() - base_err)
            for ref, mean, se in (
                (d_loss, prof.delta_loss[i], prof.delta_loss_se[i]),
                (d_err, prof.delta_error[i], prof.delta_error_se[i]),
            ):
                ref_mean = float(np.mean(ref))
                ref_se = float(np.std(ref, ddof=1) / math.sqrt(n_draws))
                assert abs(mean - ref_mean) <= 3 * math.hypot(se, ref_se), (sigma, mean, ref_mean)
                assert 0.5 < se / ref_se < 2.0  # the reported se is the right size
            assert prof.delta_loss[i] > 0  # noise on a fitted-ish model raises the loss


def _squared(out, t):
    return (out.squeeze(-1) - t) ** 2


def _far(out, t):
    return ((out.squeeze(-1) - t).abs() > 1.0).float()


@pytest.mark.parametrize("perturbation", ["additive", "multiplicative"])
def test_linear_squared_loss_closed_form(perturbation):
    """E_z[((w + σz)·x − t)^2] = (w·x − t)^2 + σ^2 |x|^2 (additive), and
    E_z[((w + σ z⊙w)·x − t)^2] = (w·x − t)^2 + σ^2 Σ_i w_i^2 x_i^2 (multiplicative)."""
    torch.manual_seed(4)
    d, n = 20, 60
    model = nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d) * 0.3)
    X, t = torch.randn(n, d), torch.randn(n)
    sigmas = [0.1, 0.5, 1.0]
    prof = local_energy(
        model,
        (X, t),
        sigmas,
        400,
        perturbation=perturbation,
        loss_fn=_squared,
        error_fn=_far,
        seed=3,
        progress=False,
    )
    w = model.weight.detach().double().squeeze(0)
    Xd = X.double()
    add = (Xd**2).sum(1).mean().item()
    mul = ((Xd * w) ** 2).sum(1).mean().item()
    for i, s in enumerate(sigmas):
        exact = s**2 * (add if perturbation == "additive" else mul)
        other = s**2 * (mul if perturbation == "additive" else add)
        assert abs(prof.delta_loss[i] - exact) <= 3 * prof.delta_loss_se[i], (s, exact)
        if s >= 0.5:  # the two noise models are told apart far beyond the error bars
            assert abs(prof.delta_loss[i] - other) > 10 * prof.delta_loss_se[i]


def test_multiplicative_is_scale_invariant_additive_is_not():
    """For a bias-free ReLU net, scaling the first layer by 4 (exact in float) scales the
    logits by 4: the multiplicative error profile is bitwise the same, the additive one not."""
    torch.manual_seed(6)
    a = nn.Sequential(nn.Linear(10, 12, bias=False), nn.ReLU(), nn.Linear(12, 3, bias=False))
    b = copy.deepcopy(a)
    with torch.no_grad():
        b[0].weight.mul_(4.0)
    data = _data()
    kw = dict(sigmas=[0.3, 0.8], samples=10, seed=2, progress=False)
    pa, pb = local_energy(a, data, **kw), local_energy(b, data, **kw)
    assert pa.error_draws == pb.error_draws and pa.base_error == pb.base_error
    qa = local_energy(a, data, perturbation="additive", **kw)
    qb = local_energy(b, data, perturbation="additive", **kw)
    assert qa.error_draws != qb.error_draws


def test_bn_recompute_matches_update_bn():
    """bn='recompute' evaluates the base model with statistics equal to those of
    torch.optim.swa_utils.update_bn (cumulative average) on the same data."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3)
    )
    X, y = _image_data()
    loader = DataLoader(TensorDataset(X, y), batch_size=32)
    ref = copy.deepcopy(model)
    torch.optim.swa_utils.update_bn(loader, ref)
    ref.eval()
    with torch.no_grad():
        ref_loss = F.cross_entropy(ref(X), y).item()
        stored_loss = F.cross_entropy(model.eval()(X), y).item()
    prof = local_energy(model, loader, [0.2], 3, bn="recompute", progress=False)
    assert abs(prof.base_loss - ref_loss) < 1e-6
    assert abs(prof.base_loss - stored_loss) > 1e-3  # stored stats really were replaced
    assert prof.engine == "loop"


def test_bn_recompute_keeps_dropout_off():
    """The statistics pass switches only BatchNorm layers to training mode: a Dropout layer
    stays off (as in the evaluation), so the profile equals that of the model without it and
    the global RNG is not consumed."""
    torch.manual_seed(0)
    body = [nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU()]
    with_dropout = nn.Sequential(*body, nn.Dropout(0.5), nn.Linear(16, 3))
    without = nn.Sequential(*copy.deepcopy(body), nn.Identity(), nn.Linear(16, 3))
    without.load_state_dict(with_dropout.state_dict())
    X, y = _image_data()
    kw = dict(sigmas=[0.0, 0.3], samples=3, bn="recompute", progress=False)
    state = torch.get_rng_state()
    a = local_energy(with_dropout, (X, y), **kw)
    assert torch.equal(torch.get_rng_state(), state)
    b = local_energy(without, (X, y), **kw)
    assert a.loss_draws == b.loss_draws and a.base_loss == b.base_loss


def test_pm1_outputs_with_custom_error_fn():
    torch.manual_seed(0)
    model = nn.Linear(10, 1)
    X = torch.randn(80, 10)
    y = torch.where(torch.randn(80) > 0, 1.0, -1.0)

    def sign_err(out, t):
        return (torch.sign(out.squeeze(-1)) != t).float()

    def hinge(out, t):
        return F.relu(1 - out.squeeze(-1) * t).mean()

    prof = local_energy(model, (X, y), [0.5], 8, loss_fn=hinge, error_fn=sign_err, progress=False)
    with torch.no_grad():
        out = model(X)
    assert prof.base_error == sign_err(out, y).double().mean().item()
    assert abs(prof.base_loss - hinge(out, y).item()) < 1e-7


# ---------------------------------------------------------------------------------------------
# Data handling
# ---------------------------------------------------------------------------------------------


def test_subset_and_loader_equal_tensors():
    model = _mlp()
    X, y = _data()
    kw = dict(sigmas=[0.4], samples=5, seed=1, batch_size=50, progress=False)
    idx = [3, 17, 40, 41, 99, 150, 199]
    by_index = local_energy(model, (X, y), subset=idx, **kw)
    by_hand = local_energy(model, (X[idx], y[idx]), **kw)
    from_loader = local_energy(
        model, DataLoader(TensorDataset(X, y), batch_size=8), subset=idx, **kw
    )
    assert by_index.n_examples == 7
    assert by_index.loss_draws == by_hand.loss_draws == from_loader.loss_draws
    full_t = local_energy(model, (X, y), **kw)
    full_l = local_energy(model, DataLoader(TensorDataset(X, y), batch_size=50), **kw)
    assert full_t.loss_draws == full_l.loss_draws and full_t.base_loss == full_l.base_loss
    r1 = local_energy(model, (X, y), subset=50, **kw)
    r2 = local_energy(model, (X, y), subset=50, **kw)
    assert r1.n_examples == 50 and r1.loss_draws == r2.loss_draws


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

_X, _Y = _data(n=20)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(sigmas=[0.1, -0.1]), r"sigma: -0\.1"),
        (dict(sigmas=[float("nan")]), r"sigma: nan"),
        (dict(sigmas=[0.1, float("inf")]), r"sigma: inf"),
        (dict(sigmas=[]), r"sigmas: empty"),
        (dict(sigmas="0.1"), r"sigmas: '0\.1'"),
        (dict(samples=0), r"samples: 0"),
        (dict(samples=2.5), r"samples: 2\.5"),
        (dict(samples=True), r"samples: True"),
        (dict(data=(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long))), r"0 examples"),
        (dict(data=(_X, _Y[:-1])), r"len\(X\) = 20 != len\(y\) = 19"),
        (dict(data=[_X]), r"Invalid data"),
        (dict(data=DataLoader(TensorDataset(_X[:0], _Y[:0]))), r"dataset is empty"),
        (dict(perturbation="gaussian"), r"perturbation: 'gaussian'"),
        (dict(bn="train"), r"bn policy: 'train'"),
        (dict(params="some"), r"params: 'some'"),
        (dict(vmap="yes"), r"vmap: 'yes'"),
        (dict(vmap=True, bn="recompute"), r"vmap: True with bn='recompute'"),
        (dict(subset=0), r"subset: 0"),
        (dict(subset=21), r"subset: 21"),
        (dict(subset=[1, 1]), r"repeated"),
        (dict(subset=[25]), r"subset index: 25"),
        (dict(batch_size=0), r"batch_size: 0"),
        (dict(chunk_size=0), r"chunk_size: 0"),
        (dict(seed=-1), r"seed: -1"),
        (dict(model="net"), r"model: expected an nn.Module, got str"),
        (dict(model=nn.ReLU()), r"no trainable parameters"),
        (dict(loss_fn=lambda o, t: o), r"loss_fn output shape: \(20, 3\)"),
        (dict(error_fn=None), r"error_fn: None"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = dict(model=_mlp(), data=(_X, _Y), sigmas=[0.1], samples=2, progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        local_energy(**args)


# ---------------------------------------------------------------------------------------------
# Serialization and plots
# ---------------------------------------------------------------------------------------------


def _nan_equal(a, b) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_nan_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def test_json_round_trip(tmp_path):
    prof = local_energy(_mlp(), _data(), [0.0, 0.2, 0.7], 1, progress=False)  # se = NaN
    assert math.isnan(prof.delta_loss_se[1])
    path = prof.to_json(tmp_path / "p.json")
    text = path.read_text()
    assert "NaN" not in text and json.loads(text)["delta_loss_se"][1] is None
    back = LocalEnergyProfile.from_json(path)
    for f in prof.__dataclass_fields__:
        assert _nan_equal(getattr(prof, f), getattr(back, f)), f
    prof2 = local_energy(_mlp(), _data(), [0.2], 3, progress=False)
    assert LocalEnergyProfile.from_dict(json.loads(json.dumps(prof2.to_dict()))) == prof2
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        LocalEnergyProfile.from_json(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="format"):
        LocalEnergyProfile.from_dict({"sigmas": [0.1]})


def _profile(sigmas, means, ses, model="m"):
    n = len(sigmas)
    return LocalEnergyProfile(
        sigmas=tuple(sigmas),
        delta_error=tuple(means),
        delta_error_se=tuple(ses),
        delta_loss=tuple(means),
        delta_loss_se=tuple(ses),
        error_draws=((0.0,),) * n,
        loss_draws=((0.0,),) * n,
        base_error=0.0,
        base_loss=0.0,
        samples=1,
        n_examples=10,
        model=model,
    )


def test_plot_writes_png_with_nan_and_degenerate_profiles(tmp_path, capsys):
    nan = float("nan")
    real = local_energy(_mlp(), _data(), [0.0, 0.3, 0.6], 4, progress=False)
    profiles = {
        "real": real,
        "with nan": _profile([0.0, 0.5, 1.0], [0.0, nan, 0.2], [0.0, 0.01, nan]),
        "one point": _profile([0.5], [0.1], [nan]),
        "empty": _profile([], [], []),
        "all nan": _profile([0.5, 1.0], [nan, nan], [nan, nan]),
    }
    for metric in ("error", "loss"):
        out = plot_local_energy(profiles, tmp_path / f"le_{metric}.png", metric=metric)
        assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 1000
    printed = capsys.readouterr().out.splitlines()
    assert sum("skipping 'empty'" in line for line in printed) == 2
    assert sum("skipping 'all nan'" in line for line in printed) == 2
    out = plot_local_energy([real, real], tmp_path / "list.png", title="two")
    assert out.read_bytes()[:8] == PNG_MAGIC
    out = plot_local_energy({"e": _profile([], [], [])}, tmp_path / "none.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert "nothing to draw" in capsys.readouterr().out
    with pytest.raises(ValueError, match="metric: 'accuracy'"):
        plot_local_energy(profiles, tmp_path / "x.png", metric="accuracy")
    with pytest.raises(ValueError, match="is not a LocalEnergyProfile"):
        plot_local_energy([real, 3], tmp_path / "x.png")
    with pytest.raises(ValueError, match="does not exist"):
        plot_local_energy([real], tmp_path / "no" / "x.png")
