"""Tests for wideflat.flatness.curvature (top eigenvalues and Hutchinson trace of the Hessian).

References used: the closed form H = (2/n) X̃ᵀX̃ of linear least squares (numpy.linalg.eigvalsh),
the exact variance 2 Σ_{i≠j} H_ij² of one Rademacher quadratic form, and for a small MLP (with
and without BatchNorm in eval mode) the full Hessian built by ``torch.autograd.functional
.hessian`` (double backward) of a forward pass written out by hand here.
"""

from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import ArpackNoConvergence
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from wideflat.flatness._energy_data import make_batches
from wideflat.flatness._model import perturbed_parameters
from wideflat.flatness.curvature import HessianSpectrum, hessian

# The module itself: once wideflat.flatness exports the function ``hessian``, the attribute
# ``wideflat.flatness.curvature`` (so ``import wideflat.flatness.curvature as hs``) is the function.
hs = importlib.import_module("wideflat.flatness.curvature")
F64 = torch.float64


def _mse(out, y):
    return ((out.squeeze(-1) - y) ** 2).mean()


def _regression(n: int = 50, d: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    # unequal column scales: a spread spectrum with clear gaps
    X = torch.randn(n, d, generator=g, dtype=F64) * torch.linspace(0.5, 2.0, d, dtype=F64)
    return X, torch.randn(n, generator=g, dtype=F64)


def _linear(d: int, bias: bool) -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(d, 1, bias=bias).double()


def _exact_least_squares(X: torch.Tensor, bias: bool) -> np.ndarray:
    """(2/n) X̃ᵀX̃ with X̃ = [X, 1] when the model has a bias."""
    A = X.numpy()
    if bias:
        A = np.hstack([A, np.ones((A.shape[0], 1))])
    return 2.0 / A.shape[0] * A.T @ A


def _unequal_loader(X, y, sizes=(5, 20, 13, 12)):
    assert sum(sizes) == len(X)
    bounds = np.cumsum((0, *sizes))
    batches = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return DataLoader(TensorDataset(X, y), batch_sampler=batches)


def _top(H: np.ndarray, k: int) -> np.ndarray:
    return np.linalg.eigvalsh(H)[::-1][:k]


# ---- linear least squares: H = (2/n) XᵀX ---------------------------------------------------


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("form", ["tuple", "tuple-batches", "loader-unequal"])
def test_least_squares_top_eigenvalues_equal_closed_form(bias, form):
    X, y = _regression()
    data = _unequal_loader(X, y) if form == "loader-unequal" else (X, y)
    batch_size = 7 if form == "tuple-batches" else 1024
    spec = hessian(
        _linear(X.shape[1], bias), data, top_k=3, trace=False, loss_fn=_mse, tol=0.0,
        batch_size=batch_size, progress=False,
    )  # fmt: skip
    exact = _top(_exact_least_squares(X, bias), 3)
    np.testing.assert_allclose(spec.eigenvalues, exact, rtol=1e-10, atol=0)
    assert spec.converged and spec.n_examples == 50 and spec.n_parameters == 6 + bias
    assert spec.n_hvp == spec.n_hvp_lanczos > 0 and spec.trace is None and spec.dtype == "float64"


def test_unequal_batches_are_weighted_by_size():
    """Averaging the four batch Hessians with equal weights gives other eigenvalues: the
    reference the test above passes is sensitive to the weighting."""
    X, y = _regression()
    sizes = (5, 20, 13, 12)
    bounds = np.cumsum((0, *sizes))
    unweighted = sum(
        _exact_least_squares(X[a:b], False) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ) / len(sizes)
    spec = hessian(
        _linear(6, False), _unequal_loader(X, y, sizes), top_k=1, trace=False, loss_fn=_mse,
        tol=0.0, progress=False,
    )  # fmt: skip
    assert abs(spec.eigenvalues[0] - _top(unweighted, 1)[0]) > 1e-3 * spec.eigenvalues[0]


def test_subset_indices_give_the_hessian_of_those_examples():
    X, y = _regression()
    idx = [3, 7, 8, 20, 21, 30, 41, 49, 0, 12]
    spec = hessian(
        _linear(6, True), (X, y), top_k=2, trace=False, loss_fn=_mse, tol=0.0, subset=idx,
        batch_size=4, progress=False,
    )  # fmt: skip
    np.testing.assert_allclose(spec.eigenvalues, _top(_exact_least_squares(X[idx], True), 2), 1e-10)
    assert spec.n_examples == 10


@pytest.mark.parametrize("bias", [False, True])
def test_least_squares_hutchinson_trace(bias):
    X, y = _regression()
    H = _exact_least_squares(X, bias)
    off = H - np.diag(np.diag(H))
    sd = math.sqrt(2.0 * (off**2).sum())  # exact std of one draw vᵀHv, v Rademacher
    spec = hessian(
        _linear(6, bias), _unequal_loader(X, y), top_k=0, trace_samples=64, loss_fn=_mse,
        progress=False,
    )  # fmt: skip
    assert abs(spec.trace - np.trace(H)) <= 4 * spec.trace_se
    assert 0.7 < spec.trace_se / (sd / 8) < 1.4  # the reported SE estimates the true one
    assert spec.trace == pytest.approx(np.mean(spec.trace_draws), rel=1e-12)
    assert spec.trace_samples == 64 and spec.n_hvp == 64 and spec.eigenvalues == ()

    many = hessian(
        _linear(6, bias), (X, y), top_k=0, trace_samples=1500, loss_fn=_mse, seed=3,
        progress=False,
    )  # fmt: skip
    true_se = sd / math.sqrt(1500)
    assert abs(many.trace - np.trace(H)) <= 4 * true_se
    assert abs(many.trace - np.trace(H)) < 0.05 * np.trace(H)


def test_rademacher_draws_are_exact_for_a_diagonal_hessian():
    """With orthogonal columns H is diagonal and vᵀHv = Σ H_ii v_i² = tr H for every ±1 vector
    (a Gaussian probe would scatter): each draw is the trace, the SE vanishes."""
    n, d = 40, 5
    Q, _ = torch.linalg.qr(torch.randn(n, d, generator=torch.Generator().manual_seed(4), dtype=F64))
    X = Q * math.sqrt(n / 2) * torch.arange(1, d + 1, dtype=F64)  # (2/n) XᵀX = diag(1, 4, ...)
    spec = hessian(
        _linear(d, False), (X, torch.zeros(n, dtype=F64)), top_k=2, trace_samples=8,
        loss_fn=_mse, tol=0.0, progress=False,
    )  # fmt: skip
    np.testing.assert_allclose(spec.trace_draws, [55.0] * 8, rtol=1e-12)
    assert spec.trace_se < 1e-12
    np.testing.assert_allclose(spec.eigenvalues, [25.0, 16.0], rtol=1e-10)


# ---- an MLP against a brute-force Hessian ----------------------------------------------------


def _mlp(bn: bool) -> nn.Module:
    torch.manual_seed(2)
    layers = [nn.Linear(3, 5)]
    if bn:
        layers.append(nn.BatchNorm1d(5))
    layers += [nn.Tanh(), nn.Dropout(0.5), nn.Linear(5, 2)]
    net = nn.Sequential(*layers).double()
    if bn:  # non-trivial running statistics
        with torch.no_grad():
            for _ in range(3):
                net(torch.randn(16, 3, dtype=F64) * 2 + 0.7)
    return net  # left in train mode: the measure must switch Dropout and BN to eval


def _class_data(n: int = 40, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=F64), torch.randint(0, 2, (n,), generator=g)


def _brute_hessian(net: nn.Module, X, y, stats=None) -> np.ndarray:
    """The full Hessian of the eval-mode mean cross-entropy, the forward written out by hand
    (BatchNorm with ``stats`` = (mean, var) or the layer's running statistics)."""
    named = list(net.named_parameters())
    shapes = [p.shape for _, p in named]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in named])
    bn = next((m for m in net if isinstance(m, nn.BatchNorm1d)), None)

    def loss(flat):
        parts, start = [], 0
        for s in shapes:
            parts.append(flat[start : start + s.numel()].reshape(s))
            start += s.numel()
        z = X @ parts[0].T + parts[1]
        if bn is not None:
            mean, var = stats or (bn.running_mean, bn.running_var)
            z = (z - mean) / torch.sqrt(var + bn.eps) * parts[2] + parts[3]
            parts = parts[2:]
        out = torch.tanh(z) @ parts[2].T + parts[3]
        return F.cross_entropy(out, y)

    return torch.autograd.functional.hessian(loss, flat0).numpy()


def _operator(net, data, batch_size=1024, loss_fn=F.cross_entropy):
    """The measure's own v ↦ Hv (internal), on an eval-mode model."""
    net.eval()
    named = perturbed_parameters(net, "trainable")
    saved = {name: p.detach().clone() for name, p in named}
    batches = make_batches(data, None, batch_size, 0, torch.device("cpu"))
    return hs._HessianOperator(net, named, saved, batches, loss_fn, tqdm(disable=True))


@pytest.mark.parametrize("bn", [False, True])
def test_mlp_hvp_and_eigenvalues_match_brute_force(bn):
    X, y = _class_data()
    H = _brute_hessian(_mlp(bn), X, y)
    op = _operator(_mlp(bn), _unequal_loader(X, y, (7, 13, 20)))
    rng = np.random.default_rng(0)
    for _ in range(3):
        v = rng.standard_normal(H.shape[0])
        np.testing.assert_allclose(op(v), H @ v, rtol=1e-9, atol=1e-12)
    spec = hessian(_mlp(bn), (X, y), top_k=2, trace_samples=32, tol=0.0, progress=False)
    np.testing.assert_allclose(spec.eigenvalues, _top(H, 2), rtol=1e-9)
    assert abs(spec.trace - np.trace(H)) <= 4 * spec.trace_se


def test_mlp_bn_recompute_uses_full_data_statistics():
    X, y = _class_data()
    net = _mlp(True)
    z = (X @ net[0].weight.T + net[0].bias).detach()
    H = _brute_hessian(net, X, y, stats=(z.mean(0), z.var(0, unbiased=True)))
    spec = hessian(net, (X, y), top_k=1, trace=False, bn="recompute", tol=0.0, progress=False)
    np.testing.assert_allclose(spec.eigenvalues, _top(H, 1), rtol=1e-9)
    eval_top = _top(_brute_hessian(net, X, y), 1)[0]
    assert abs(spec.eigenvalues[0] - eval_top) > 1e-6  # the statistics did matter


def test_float32_model_runs_in_float32():
    X, y = _class_data()
    H = _brute_hessian(_mlp(False), X, y)
    spec = hessian(_mlp(False).float(), (X.float(), y), top_k=1, trace=False, progress=False)
    assert spec.dtype == "float32"
    np.testing.assert_allclose(spec.eigenvalues, _top(H, 1), rtol=1e-3)


def test_one_hvp_is_one_pass_over_the_batches():
    X, y = _regression()
    net = _linear(6, False)
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    spec = hessian(
        net, _unequal_loader(X, y), top_k=2, trace_samples=5, loss_fn=_mse, progress=False
    )
    assert spec.n_hvp == spec.n_hvp_lanczos + 5
    assert len(calls) == 4 * spec.n_hvp  # four batches per HVP, nothing else


# ---- side effects, determinism, arguments, results -------------------------------------------


def test_model_grads_flags_and_global_rng_are_left_unchanged():
    X, y = _class_data()
    net = _mlp(True)
    net[-1].bias.requires_grad_(False)  # frozen, yet differentiated with params="all"
    net[0].weight.grad = torch.randn_like(net[0].weight)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grad_before = net[0].weight.grad.clone()
    modes = [m.training for m in net.modules()]
    torch.manual_seed(123)
    np.random.seed(7)
    rng_torch, rng_np = torch.get_rng_state(), np.random.get_state()
    loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True)  # draws from torch
    spec = hessian(net, loader, top_k=1, trace_samples=4, bn="recompute", params="all",
                   progress=False)  # fmt: skip
    assert spec.n_parameters == sum(p.numel() for p in net.parameters())
    after = net.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert after[k].dtype == v.dtype and torch.equal(after[k], v), k
    assert [m.training for m in net.modules()] == modes
    assert torch.equal(net[0].weight.grad, grad_before)
    assert all(p.grad is None for name, p in net.named_parameters() if name != "0.weight")
    assert not net[-1].bias.requires_grad and net[0].weight.requires_grad
    assert torch.equal(torch.get_rng_state(), rng_torch)
    got = np.random.get_state()
    assert got[0] == rng_np[0] and np.array_equal(got[1], rng_np[1]) and got[2:] == rng_np[2:]


def test_same_seed_same_numbers_other_seed_other_draws():
    X, y = _class_data()
    kw = dict(top_k=2, trace_samples=6, progress=False)
    a = hessian(_mlp(False), (X, y), seed=11, **kw)
    b = hessian(_mlp(False), (X, y), seed=11, **kw)
    with torch.no_grad():  # the HVP does not depend on the caller's grad mode
        c = hessian(_mlp(False), (X, y), seed=11, **kw)
    d = hessian(_mlp(False), (X, y), seed=12, **kw)
    for other in (b, c):
        assert other.eigenvalues == a.eigenvalues and other.trace_draws == a.trace_draws
    assert d.trace_draws != a.trace_draws


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(top_k=-1), "top_k"),
        (dict(top_k=1.0), "top_k"),
        (dict(top_k=32), "top_k"),  # = P: Lanczos needs top_k < P
        (dict(top_k=0, trace=False), "top_k"),
        (dict(trace=1), "trace"),
        (dict(trace_samples=1), "trace_samples"),
        (dict(loss_fn="mse"), "loss_fn"),
        (dict(loss_fn=lambda out, t: out), "loss_fn output shape"),
        (dict(bn="train"), "bn policy"),
        (dict(subset=0), "subset"),
        (dict(batch_size=0), "batch_size"),
        (dict(seed=-1), "seed"),
        (dict(tol=-1e-3), "tol"),
        (dict(tol=float("nan")), "tol"),
        (dict(max_iter=0), "max_iter"),
        (dict(params="some"), "params"),
        (dict(progress="yes"), "progress"),
        (dict(model="net"), "model"),
        (dict(data=(torch.zeros(3, 3), torch.zeros(2))), "data"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    X, y = _class_data()
    call = dict(model=_mlp(False), data=(X, y), progress=False) | kwargs
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        hessian(call.pop("model"), call.pop("data"), **call)


def test_non_convergence_is_flagged_with_a_warning(monkeypatch):
    """Inject ARPACK's failure (two of three eigenvalues converged) into the Lanczos call."""

    def failing(*args, k, **kwargs):
        raise ArpackNoConvergence("No convergence", np.array([1.5, 4.0]), np.zeros((6, 2)))

    monkeypatch.setattr("scipy.sparse.linalg.eigsh", failing)
    X, y = _regression()
    with pytest.warns(RuntimeWarning, match="did not converge"):
        spec = hessian(_linear(6, False), (X, y), top_k=3, trace_samples=2, loss_fn=_mse,
                       progress=False)  # fmt: skip
    assert not spec.converged and spec.eigenvalues == (4.0, 1.5) and spec.trace is not None


@pytest.mark.parametrize("trace", [True, False])
def test_json_round_trip(tmp_path, trace):
    X, y = _class_data()
    spec = hessian(_mlp(True), (X, y), top_k=2, trace=trace, trace_samples=4, progress=False)
    path = spec.to_json(tmp_path / "spectrum.json")

    def no_constants(c):
        raise AssertionError(f"non-strict JSON constant {c}")

    data = json.loads(path.read_text(), parse_constant=no_constants)
    assert data["format"] == "wideflat.hessian_spectrum" and data["model"] == "Sequential"
    assert data["loss_fn"] == "cross_entropy" and data["n_examples"] == 40
    assert HessianSpectrum.from_json(path) == spec
    assert (spec.trace is None) is (not trace)
    with pytest.raises(ValueError, match="Invalid spectrum dict"):
        HessianSpectrum.from_dict({**data, "format": "other"})
