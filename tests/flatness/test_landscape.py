"""Tests for wideflat.flatness.landscape (interpolate, plane, random directions) and its plots.

References used: each model's own loss from a direct forward pass; the closed form of the
squared loss of a linear model along a line or plane in weight space (a quadratic); the analytic
barrier of the model x ↦ w²x between w = −1 and w = +1; the plane's coordinates by Gram-Schmidt
in NumPy; filter norms recomputed here; a BatchNorm cumulative-average statistics pass written
here.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from torch.utils.data import DataLoader, TensorDataset

from wideflat.flatness.landscape import (
    Interpolation,
    Plane,
    interpolate,
    landscape_1d,
    landscape_2d,
    plane,
    random_directions,
)
from wideflat.flatness.landscape_plots import (
    plot_interpolation,
    plot_landscape_1d,
    plot_landscape_2d,
    plot_plane,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _mlp(seed: int = 0, width: int = 12, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, width), nn.Tanh(), nn.Linear(width, 3)).to(dtype)


def _bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3)
    )
    net.train()
    with torch.no_grad():  # non-trivial running statistics, different per seed
        for _ in range(3):
            net(torch.randn(32, 6) * (1.5 + seed) + seed)
    net.eval()
    return net


def _data(n: int = 64, seed: int = 1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g).to(dtype), torch.randint(0, 3, (n,), generator=g)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a
    )


def _own(model: nn.Module, X, y) -> tuple[float, float]:
    """The model's own mean cross-entropy and error, one direct forward pass in eval mode."""
    with torch.no_grad():
        out = model.eval()(X)
    return F.cross_entropy(out, y).item(), (out.argmax(1) != y).double().mean().item()


def _mse(out, y):
    return F.mse_loss(out.squeeze(-1), y)


def _abs_error(out, y):
    return ((out.squeeze(-1) - y).abs() > 1.0).double()


def _linear64(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(5, 1).double()


def _regression_data(n: int = 50):
    g = torch.Generator().manual_seed(3)
    X = torch.randn(n, 5, generator=g, dtype=torch.float64)
    return X, X @ torch.arange(1.0, 6.0, dtype=torch.float64) + 0.5


# ---------------------------------------------------------------------------------------------
# interpolate
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1024, 10])
def test_endpoints_equal_each_models_own_loss_and_error(batch_size):
    a, b = _mlp(0), _mlp(1)
    X, y = _data()
    r = interpolate(a, b, (X, y), 7, extend=0.25, batch_size=batch_size, progress=False)
    assert r.t == (-0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25)
    for (loss, err), (got_loss, got_err) in (
        (_own(a, X, y), (r.loss_a, r.error_a)),
        (_own(b, X, y), (r.loss_b, r.error_b)),
    ):
        assert got_loss == pytest.approx(loss, rel=1e-6, abs=0)
        assert got_err == err
    # the grid's t = 0 and t = 1 are the networks themselves, bitwise
    assert r.loss[1] == r.loss_a and r.loss[5] == r.loss_b
    assert r.error[1] == r.error_a and r.error[5] == r.error_b
    assert r.loss_a != r.loss_b
    assert r.n_examples == 64 and r.params == "all" and r.extend == 0.25
    assert r.n_parameters == sum(p.numel() for p in a.parameters())
    assert r.distance == pytest.approx(np.linalg.norm(_flat(b) - _flat(a)), rel=1e-6)


def test_linear_mse_loss_is_the_exact_quadratic_and_has_no_barrier():
    a, b = _linear64(0), _linear64(1)
    X, y = _regression_data()
    ts = np.linspace(-0.5, 1.5, 9)
    r = interpolate(
        a, b, (X, y), 9, extend=0.5, loss_fn=_mse, error_fn=_abs_error, batch_size=7,
        progress=False,
    )  # fmt: skip
    Xn, yn = X.numpy(), y.numpy()
    ra = Xn @ a.weight.detach().numpy()[0] + a.bias.item() - yn
    rb = Xn @ b.weight.detach().numpy()[0] + b.bias.item() - yn
    A, B, C = np.mean(ra * ra), np.mean(ra * rb), np.mean(rb * rb)
    expected = A * (1 - ts) ** 2 + 2 * B * ts * (1 - ts) + C * ts**2
    np.testing.assert_allclose(r.t, ts, rtol=0, atol=1e-15)
    np.testing.assert_allclose(r.loss, expected, rtol=1e-12)
    errors = [np.mean(np.abs((1 - t) * ra + t * rb) > 1.0) for t in ts]
    np.testing.assert_allclose(r.error, errors, rtol=0, atol=1e-15)
    # L(t) − chord = −t(1 − t) mean((r_a − r_b)²) ≤ 0: a convex path has no barrier
    assert r.barrier_loss == 0.0 and r.barrier_loss_t in (0.0, 1.0)


class _SquaredWeight(nn.Module):
    """x ↦ w² x: w = −1 and w = +1 fit y = x exactly, the line between them passes w = 0."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w], dtype=torch.float64))

    def forward(self, x):
        return self.w**2 * x


def test_barrier_of_a_known_non_convex_path():
    X = torch.linspace(-2.0, 2.0, 41, dtype=torch.float64).unsqueeze(1)
    a, b = _SquaredWeight(-1.0), _SquaredWeight(1.0)
    ts = [0.0, 0.25, 0.5, 0.75, 1.0]

    def err(out, y):
        return ((out - y).abs() > 0.5).double().squeeze(-1)

    r = interpolate(a, b, (X, X), ts, loss_fn=F.mse_loss, error_fn=err, progress=False)
    m = float((X**2).mean())
    w = [(1 - t) * -1.0 + t * 1.0 for t in ts]
    np.testing.assert_allclose(r.loss, [m * (wt**2 - 1) ** 2 for wt in w], rtol=1e-12, atol=0)
    assert r.loss_a == 0.0 and r.loss_b == 0.0
    assert r.barrier_loss == pytest.approx(m, rel=1e-12) and r.barrier_loss_t == 0.5
    x = X.squeeze(1).numpy()
    errors = [np.mean(np.abs((wt**2 - 1) * x) > 0.5) for wt in w]
    assert r.error == pytest.approx(errors, abs=1e-15)
    assert r.barrier_error == pytest.approx(max(errors), abs=1e-15)
    assert r.barrier_error_t == ts[int(np.argmax(errors))]


def test_identical_models_have_zero_barrier_and_a_flat_line():
    a = _mlp(0)
    b = copy.deepcopy(a)
    r = interpolate(a, b, _data(), 11, extend=0.2, progress=False)
    assert r.barrier_loss == 0.0 and r.barrier_error == 0.0
    assert set(r.loss) == {r.loss_a} and set(r.error) == {r.error_a}
    assert r.distance == 0.0


def test_bn_eval_interpolates_running_statistics():
    a, b = _bn_net(0), _bn_net(1)
    X, y = _data()
    t = 0.3
    a.train(), b.train()  # evaluated in eval mode all the same: no dropout, running statistics
    r = interpolate(a, b, (X, y), [t], progress=False)
    assert r.loss_a == pytest.approx(_own(a, X, y)[0], rel=1e-6)
    sa, sb = a.state_dict(), b.state_dict()
    mixed = copy.deepcopy(a)
    mixed.load_state_dict(
        {k: (1 - t) * v + t * sb[k] if v.is_floating_point() else v for k, v in sa.items()}
    )
    assert r.loss[0] == pytest.approx(_own(mixed, X, y)[0], rel=1e-5)
    # the running statistics matter here: holding them at a's gives another loss
    held = copy.deepcopy(mixed)
    held[1].running_mean.copy_(a[1].running_mean)
    held[1].running_var.copy_(a[1].running_var)
    assert abs(_own(held, X, y)[0] - r.loss[0]) > 1e-3


def _with_recomputed_bn(model: nn.Module, X, batch: int) -> nn.Module:
    """A copy whose BatchNorm statistics are the exact average over the batches of X (the
    cumulative-average pass written out: reset, momentum None, only BN in train mode)."""
    net = copy.deepcopy(model).eval()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        for start in range(0, X.shape[0], batch):
            net(X[start : start + batch])
    return net.eval()


def test_bn_recompute_matches_a_statistics_pass_at_each_t():
    a, b = _bn_net(0), _bn_net(1)
    X, y = _data()
    ts = [0.0, 0.4, 1.0]
    r = interpolate(a, b, (X, y), ts, bn="recompute", batch_size=16, progress=False)
    va, vb = parameters_to_vector(a.parameters()), parameters_to_vector(b.parameters())
    for t, loss, error in zip(ts, r.loss, r.error, strict=True):
        net = copy.deepcopy(a)
        vector_to_parameters((1 - t) * va + t * vb, net.parameters())
        ref_loss, ref_err = _own(_with_recomputed_bn(net, X, 16), X, y)
        assert loss == pytest.approx(ref_loss, rel=1e-5) and error == ref_err
    assert r.loss_a == r.loss[0] and r.loss_b == r.loss[2]
    assert r.loss_a != pytest.approx(_own(a, X, y)[0], rel=1e-3)  # not a's own statistics


def test_params_trainable_holds_frozen_parameters_at_model_a():
    a, b = _mlp(0), _mlp(1)
    a[0].weight.requires_grad_(False)
    X, y = _data()
    r = interpolate(a, b, (X, y), [0.5, 1.0], params="trainable", progress=False)
    ref = copy.deepcopy(b)
    ref[0].weight.data.copy_(a[0].weight)
    assert r.loss[1] == pytest.approx(_own(ref, X, y)[0], rel=1e-6)
    assert r.n_parameters == sum(p.numel() for p in a.parameters()) - 6 * 12


# ---------------------------------------------------------------------------------------------
# plane
# ---------------------------------------------------------------------------------------------


def _flat(model: nn.Module) -> np.ndarray:
    return parameters_to_vector(model.parameters()).detach().double().numpy()


def _geometry(nets):
    a, b, c = (_flat(n) for n in nets)
    u = b - a
    x_c = np.dot(c - a, u) / np.dot(u, u)
    v = c - a - x_c * u
    return a, u, v / np.linalg.norm(v), x_c, np.linalg.norm(v) / np.linalg.norm(u)


def test_plane_coordinates_and_the_three_models_at_theirs():
    nets = [_mlp(s, dtype=torch.float64) for s in (0, 1, 2)]
    X, y = _data(dtype=torch.float64)
    a, u, v_hat, x_c, y_c = _geometry(nets)
    xs, ys = [-0.3, 0.0, 1.0, x_c], [0.0, y_c, 1.1 * y_c]
    p = plane(nets, (X, y), grid=(xs, ys), progress=False)
    assert p.labels == ("a", "b", "c") and p.unit == pytest.approx(np.linalg.norm(u), rel=1e-12)
    assert p.coordinates[:2] == ((0.0, 0.0), (1.0, 0.0))
    assert p.coordinates[2] == pytest.approx((x_c, y_c), rel=1e-12)
    assert p.x == tuple(sorted(xs)) and p.y == tuple(ys)
    own = [_own(n, X, y) for n in nets]
    assert p.model_loss == pytest.approx([o[0] for o in own], rel=1e-12)
    assert p.model_error == tuple(o[1] for o in own)
    for (px, py), (loss, err) in zip(((0.0, 0.0), (1.0, 0.0), (x_c, y_c)), own, strict=True):
        i, j = p.x.index(px), p.y.index(py)
        assert p.loss[j][i] == pytest.approx(loss, rel=1e-10) and p.error[j][i] == err
    # a point off the three: w_a + x u + y ‖u‖ v̂ built here
    probe = copy.deepcopy(nets[0])
    x, yy = -0.3, 1.1 * y_c
    w = a + x * u + yy * np.linalg.norm(u) * v_hat
    vector_to_parameters(torch.from_numpy(w), probe.parameters())
    assert p.loss[2][0] == pytest.approx(_own(probe, X, y)[0], rel=1e-10)


def test_plane_default_grid_covers_the_points_with_the_margin():
    nets = {"sgd": _mlp(0), "esgd": _mlp(1), "rsgd": _mlp(2)}
    p = plane(nets, _data(), grid=5, margin=0.2, progress=False)
    assert p.labels == ("sgd", "esgd", "rsgd")
    x_c, y_c = p.coordinates[2]
    lo, hi = min(0.0, x_c), max(1.0, x_c)
    assert p.x[0] == pytest.approx(lo - 0.2 * (hi - lo)) and p.x[-1] == pytest.approx(
        hi + 0.2 * (hi - lo)
    )
    assert p.y[0] == pytest.approx(-0.2 * y_c) and p.y[-1] == pytest.approx(1.2 * y_c)
    assert len(p.x) == len(p.y) == 5 and len(p.loss) == 5 and all(len(r) == 5 for r in p.loss)
    assert np.all(np.diff(p.x) > 0) and np.all(np.diff(p.y) > 0)


def test_plane_refuses_degenerate_triples():
    a, b = _mlp(0), _mlp(1)
    c = copy.deepcopy(a)
    va, vb = parameters_to_vector(a.parameters()), parameters_to_vector(b.parameters())
    vector_to_parameters((va + 2.0 * (vb - va)).detach(), c.parameters())
    with pytest.raises(ValueError, match="lies on the line"):
        plane([a, b, c], _data(), grid=3, progress=False)
    with pytest.raises(ValueError, match="same parameters"):
        plane([a, copy.deepcopy(a), b], _data(), grid=3, progress=False)
    with pytest.raises(ValueError, match="exactly three"):
        plane([a, b], _data(), progress=False)


# ---------------------------------------------------------------------------------------------
# random directions and 1D / 2D landscapes
# ---------------------------------------------------------------------------------------------


def _conv_net(dtype=torch.float64) -> nn.Module:
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)
    ).to(dtype)
    with torch.no_grad():  # BatchNorm's affine parameters away from their 1 and 0 defaults
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-1.0, 1.0)
    return net


@pytest.mark.parametrize(("dtype", "rel"), [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_filter_normalization_and_zeroed_bias_bn(dtype, rel):
    net = _conv_net(dtype)
    with torch.no_grad():
        net[0].weight[2].zero_()  # a dead filter gets a zero direction
    (d,) = random_directions(net, seed=3)
    assert set(d) == {n for n, _ in net.named_parameters()}
    for name, w in net.named_parameters():
        assert d[name].shape == w.shape and d[name].dtype == dtype
        if w.dim() <= 1:
            assert torch.equal(d[name], torch.zeros_like(w)), name
            continue
        w_norm = w.detach().double().reshape(w.shape[0], -1).norm(dim=1)
        d_norm = d[name].double().reshape(w.shape[0], -1).norm(dim=1)
        np.testing.assert_allclose(d_norm.numpy(), w_norm.numpy(), rtol=rel, atol=0)
    assert torch.equal(d["0.weight"][2], torch.zeros_like(d["0.weight"][2]))
    assert not torch.equal(d["0.weight"], net[0].weight.detach())  # a direction, not w


def test_ignore_none_and_unnormalized_share_the_draws():
    net = _conv_net()
    (normalized,) = random_directions(net, seed=5)
    (with_bias,) = random_directions(net, seed=5, ignore=None)
    (raw,) = random_directions(net, seed=5, filter_normalize=False, ignore=None)
    for name, w in net.named_parameters():
        w = w.detach()
        if w.dim() <= 1:  # each entry its own filter: ±|w_i|
            assert torch.allclose(with_bias[name].abs(), w.abs(), rtol=1e-12, atol=0)
            assert torch.equal(torch.sign(with_bias[name]), torch.sign(raw[name]))
        else:
            assert torch.equal(with_bias[name], normalized[name])
        rows = 1 if w.dim() == 0 else w.shape[0]
        r2 = raw[name].reshape(rows, -1)
        scale = w.reshape(rows, -1).norm(dim=1) / r2.norm(dim=1)
        expect = (r2 * scale[:, None]).reshape(w.shape)
        assert torch.allclose(with_bias[name], expect, rtol=1e-12, atol=0)
    big = torch.cat([raw[n].reshape(-1) for n in raw])
    assert abs(float(big.std()) - 1.0) < 0.15 and abs(float(big.mean())) < 0.15


def test_directions_are_seeded_and_leave_the_rng_and_model_alone():
    net = _conv_net()
    before, rng = _state(net), torch.get_rng_state()
    one = random_directions(net, 1, seed=7)
    two = random_directions(net, 2, seed=7)
    again = random_directions(net, 2, seed=7)
    other = random_directions(net, 1, seed=8)
    assert torch.equal(torch.get_rng_state(), rng) and _bitwise_equal(_state(net), before)
    assert len(one) == 1 and len(two) == 2
    for name in one[0]:
        assert torch.equal(one[0][name], two[0][name]) and torch.equal(two[1][name], again[1][name])
    assert not torch.equal(two[0]["0.weight"], two[1]["0.weight"])
    assert not torch.equal(one[0]["0.weight"], other[0]["0.weight"])


def _linear_landscape_setup():
    net = _linear64(0)
    X, y = _regression_data()
    d1, d2 = random_directions(net, 2, seed=2, ignore=None)
    Xn, yn = X.numpy(), y.numpy()
    r = Xn @ net.weight.detach().numpy()[0] + net.bias.item() - yn
    s1 = Xn @ d1["weight"].numpy()[0] + d1["bias"].item()
    s2 = Xn @ d2["weight"].numpy()[0] + d2["bias"].item()
    return net, (X, y), (d1, d2), (r, s1, s2)


def test_landscape_1d_is_the_exact_quadratic():
    net, data, (d1, _), (r, s1, _) = _linear_landscape_setup()
    alphas = [-1.0, -0.5, 0.0, 0.5, 1.0, 2.0]
    res = landscape_1d(
        net, data, d1, alphas, loss_fn=_mse, error_fn=_abs_error, batch_size=9, progress=False
    )
    assert res.alphas == tuple(alphas)
    np.testing.assert_allclose(res.loss, [np.mean((r + a * s1) ** 2) for a in alphas], rtol=1e-12)
    errors = [np.mean(np.abs(r + a * s1) > 1.0) for a in alphas]
    np.testing.assert_allclose(res.error, errors, rtol=0, atol=1e-15)
    assert res.base_loss == pytest.approx(np.mean(r**2), rel=1e-12) and res.loss[2] == res.base_loss
    flat_d = torch.cat([d1["weight"].reshape(-1), d1["bias"]])
    assert res.direction_norm == pytest.approx(float(flat_d.norm()), rel=1e-12)
    assert res.weight_norm == pytest.approx(np.linalg.norm(_flat(net)), rel=1e-12)
    assert res.n_parameters == 6
    default = landscape_1d(net, data, d1, 5, loss_fn=_mse, error_fn=_abs_error, progress=False)
    assert default.alphas == (-1.0, -0.5, 0.0, 0.5, 1.0)


def test_landscape_2d_is_the_exact_quadratic_with_rows_along_beta():
    net, data, (d1, d2), (r, s1, s2) = _linear_landscape_setup()
    alphas, betas = [-1.0, 0.0, 1.0], [-0.5, 0.0, 0.5, 1.0]
    res = landscape_2d(
        net, data, [d1, d2], (alphas, betas), loss_fn=_mse, error_fn=_abs_error, progress=False
    )
    expected = [[np.mean((r + a * s1 + b * s2) ** 2) for a in alphas] for b in betas]
    np.testing.assert_allclose(res.loss, expected, rtol=1e-12)
    assert res.loss[1][1] == res.base_loss
    f1 = torch.cat([d1["weight"].reshape(-1), d1["bias"]]).numpy()
    f2 = torch.cat([d2["weight"].reshape(-1), d2["bias"]]).numpy()
    cos = np.dot(f1, f2) / (np.linalg.norm(f1) * np.linalg.norm(f2))
    assert res.direction_cosine == pytest.approx(cos, rel=1e-10)
    assert res.direction_norms == pytest.approx((np.linalg.norm(f1), np.linalg.norm(f2)))
    square = landscape_2d(net, data, [d1, d2], 3, loss_fn=_mse, error_fn=_abs_error, progress=False)
    assert square.alphas == square.betas == (-1.0, 0.0, 1.0)
    same = landscape_2d(
        net, data, [d1, d2], [0.0, 1.0], loss_fn=_mse, error_fn=_abs_error, progress=False
    )
    assert same.alphas == same.betas == (0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# side effects and validation
# ---------------------------------------------------------------------------------------------


def _run(which: str, a, b, c, loader, bn: str):
    if which == "interpolate":
        return interpolate(a, b, loader, 3, extend=0.1, bn=bn, progress=False)
    if which == "plane":
        return plane([a, b, c], loader, grid=2, bn=bn, progress=False)
    if which == "landscape_1d":
        (d,) = random_directions(a, seed=1)
        return landscape_1d(a, loader, d, 3, bn=bn, progress=False)
    if which == "landscape_2d":
        return landscape_2d(a, loader, random_directions(a, 2), 2, bn=bn, progress=False)
    return random_directions(a, 2, ignore=None)


@pytest.mark.parametrize("bn", ["eval", "recompute"])
@pytest.mark.parametrize(
    "which", ["interpolate", "plane", "landscape_1d", "landscape_2d", "random_directions"]
)
def test_models_rng_and_flags_unchanged(which, bn):
    a, b, c = _bn_net(0), _bn_net(1), _bn_net(2)
    a.train()
    a[3].eval()  # a submodule with the opposite flag keeps it too
    modes = [m.training for m in a.modules()]
    before = [_state(m) for m in (a, b, c)]
    loader = DataLoader(TensorDataset(*_data()), batch_size=16, shuffle=True)
    rng = torch.get_rng_state()
    _run(which, a, b, c, loader, bn)
    assert torch.equal(torch.get_rng_state(), rng)
    for m, s in zip((a, b, c), before, strict=True):
        assert _bitwise_equal(_state(m), s)
    assert [m.training for m in a.modules()] == modes and not b.training
    assert all(p.grad is None and p.requires_grad for p in a.parameters())


def test_mismatched_architectures_name_the_first_mismatch():
    data = _data()
    with pytest.raises(ValueError, match=r"model_b: parameter '0.weight' is \(13, 6\)"):
        interpolate(_mlp(0), _mlp(1, width=13), data, progress=False)
    deeper = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3), nn.Linear(3, 3))
    with pytest.raises(ValueError, match=r"model_b: it has a parameter '3.weight'"):
        interpolate(_mlp(0), deeper, data, progress=False)
    with pytest.raises(ValueError, match=r"model_b: it has no parameter '3.weight'"):
        interpolate(deeper, _mlp(0), data, progress=False)
    with pytest.raises(ValueError, match=r"model_b: parameter '0.weight' is .*float64"):
        interpolate(_mlp(0), _mlp(1, dtype=torch.float64), data, progress=False)
    untracked = copy.deepcopy(_bn_net(1))
    untracked[1] = nn.BatchNorm1d(8, track_running_stats=False)
    with pytest.raises(ValueError, match=r"Invalid model_b: it has no buffer '1.running_mean'"):
        interpolate(_bn_net(0), untracked, data, progress=False)
    nets = {"a": _mlp(0), "b": _mlp(1), "c": _mlp(2, width=13)}
    with pytest.raises(ValueError, match=r"Invalid c: parameter '0.weight' is \(13, 6\)"):
        plane(nets, data, progress=False)


def _interp(**kw):
    return lambda: interpolate(_mlp(0), _mlp(1), _data(), progress=False, **kw)


def _land1(direction=None, **kw):
    net = _mlp(0)
    d = random_directions(net)[0] if direction is None else direction(net)
    return lambda: landscape_1d(net, _data(), d, kw.pop("alphas", 3), progress=False, **kw)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (_interp(points=1), "Invalid points: 1"),
        (_interp(points=[]), "Invalid points: empty"),
        (_interp(points=[0.0, float("nan")]), "Invalid points: nan"),
        (_interp(points="abc"), "Invalid points"),
        (_interp(extend=-0.1), "Invalid extend: -0.1"),
        (_interp(points=[0.0, 1.0], extend=0.5), "Invalid extend: 0.5"),
        (_interp(bn="train"), "Invalid bn policy: 'train'"),
        (_interp(params="some"), "Invalid params: 'some'"),
        (_interp(batch_size=0), "Invalid batch_size: 0"),
        (_interp(seed=-1), "Invalid seed: -1"),
        (_interp(loss_fn=3), "Invalid loss_fn"),
        (lambda: interpolate("net", _mlp(1), _data()), "Invalid model_a"),
        (lambda: interpolate(_mlp(0), _mlp(1), (torch.zeros(0, 6), torch.zeros(0))), "empty"),
        (lambda: plane([_mlp(0), _mlp(1), _mlp(2)], _data(), grid=1), "Invalid grid: 1"),
        (lambda: plane([_mlp(0), _mlp(1), _mlp(2)], _data(), grid=(1, 2)), "Invalid grid"),
        (lambda: plane([_mlp(0), _mlp(1), _mlp(2)], _data(), margin=-1), "Invalid margin"),
        (lambda: plane("abc", _data()), "Invalid models"),
        (lambda: random_directions(_mlp(0), 3), "Invalid n: 3"),
        (lambda: random_directions(_mlp(0), True), "Invalid n: True"),
        (lambda: random_directions(_mlp(0), ignore="bias"), "Invalid ignore: 'bias'"),
        (lambda: random_directions(_mlp(0), filter_normalize=1), "Invalid filter_normalize"),
        (lambda: random_directions(_mlp(0), seed=-2), "Invalid seed: -2"),
        (_land1(alphas=1), "Invalid alphas: 1"),
        (_land1(alphas=[float("inf")]), "Invalid alphas: inf"),
        (_land1(lambda n: {"nope": torch.zeros(1)}), "'nope' is not a floating-point parameter"),
        (_land1(lambda n: {"0.bias": torch.zeros(3)}), r"entry '0.bias' is \(3,\)"),
        (_land1(lambda n: {"0.bias": torch.full((12,), math.nan)}), "not finite"),
        (_land1(lambda n: {}), "Invalid direction"),
        (
            lambda: landscape_2d(_mlp(0), _data(), random_directions(_mlp(0)), 3),
            "Invalid directions",
        ),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------------------
# JSON and plots
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results():
    a, b, c = _mlp(0), _mlp(1), _mlp(2)
    data = _data()
    d1, d2 = random_directions(a, 2)
    return {
        "interpolation": interpolate(a, b, data, 5, extend=0.2, progress=False),
        "plane": plane([a, b, c], data, grid=4, progress=False),
        "landscape_1d": landscape_1d(a, data, d1, 5, progress=False),
        "landscape_2d": landscape_2d(a, data, [d1, d2], 4, progress=False),
    }


@pytest.mark.parametrize("name", ["interpolation", "plane", "landscape_1d", "landscape_2d"])
def test_json_round_trip(results, name, tmp_path):
    r = results[name]
    path = r.to_json(tmp_path / f"{name}.json")

    def no_constants(token):
        raise AssertionError(f"non-strict JSON constant {token}")

    json.loads(path.read_text(), parse_constant=no_constants)
    back = type(r).from_json(path)
    assert back == r and type(back) is type(r)
    first_float = (
        "barrier_loss" if name == "interpolation" else ("unit" if name == "plane" else "base_loss")
    )
    with_nan = dataclasses.replace(r, **{first_float: math.nan})
    again = type(r).from_json(with_nan.to_json(tmp_path / "nan.json"))
    assert math.isnan(getattr(again, first_float))
    assert dataclasses.replace(again, **{first_float: 0.0}) == dataclasses.replace(
        r, **{first_float: 0.0}
    )
    with pytest.raises(ValueError, match="format"):
        type(r).from_dict({**r.to_dict(), "format": "other"})
    wrong = (Plane if name != "plane" else Interpolation).from_dict
    with pytest.raises(ValueError, match="format"):
        wrong(r.to_dict())


def _titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_plot_interpolation(results, tmp_path):
    fig = plot_interpolation(results["interpolation"], path=tmp_path / "line.png")
    assert (tmp_path / "line.png").read_bytes()[:8] == PNG_MAGIC
    assert len(fig.axes) == 2
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "error"]
    titles = _titles(fig)
    assert len(titles) == 2 and all("lower is better" in t for t in titles)
    assert "Loss" in titles[0] and "Error" in titles[1]
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith("barrier = ") for t in texts) and {"a", "b"} <= set(texts)
    nan = dataclasses.replace(results["interpolation"], barrier_loss=math.nan)
    assert len(plot_interpolation(nan).axes) == 2


def test_plot_plane(results, tmp_path):
    fig = plot_plane(results["plane"], path=tmp_path / "plane.png")
    assert (tmp_path / "plane.png").read_bytes()[:8] == PNG_MAGIC
    assert len(fig.axes) == 2  # the plane and its colorbar
    ax = fig.axes[0]
    assert "lower is better" in ax.get_title() and "Loss" in ax.get_title()
    assert {"a", "b", "c"} <= {t.get_text() for t in ax.texts}
    assert "units of" in ax.get_xlabel()
    err = plot_plane(results["plane"], metric="error", path=tmp_path / "plane.svg")
    assert "Error" in err.axes[0].get_title() and (tmp_path / "plane.svg").stat().st_size > 0


def test_plot_landscapes(results, tmp_path):
    fig1 = plot_landscape_1d(results["landscape_1d"], path=tmp_path / "l1.png")
    assert (tmp_path / "l1.png").read_bytes()[:8] == PNG_MAGIC
    assert [ax.get_xlabel()[:1] for ax in fig1.axes] == ["α", "α"]
    assert all("lower is better" in t for t in _titles(fig1)) and len(_titles(fig1)) == 2
    fig2 = plot_landscape_2d(results["landscape_2d"], path=tmp_path / "l2.png")
    assert (tmp_path / "l2.png").read_bytes()[:8] == PNG_MAGIC
    assert len(fig2.axes) == 2 and fig2.axes[0].get_ylabel().startswith("β")
    assert "lower is better" in fig2.axes[0].get_title()
    assert fig2.axes[0].collections  # the contours were drawn


def test_plots_refuse_bad_arguments(results, tmp_path):
    with pytest.raises(ValueError, match="expected a Interpolation|expected a Plane"):
        plot_interpolation(results["plane"])
    with pytest.raises(ValueError, match="Invalid result"):
        plot_landscape_2d(results["landscape_1d"])
    with pytest.raises(ValueError, match="Invalid metric"):
        plot_plane(results["plane"], metric="accuracy")
    with pytest.raises(ValueError, match="Invalid levels"):
        plot_landscape_2d(results["landscape_2d"], levels=1)
    with pytest.raises(ValueError, match="does not exist"):
        plot_landscape_1d(results["landscape_1d"], path=tmp_path / "missing" / "x.png")
