"""Tests of the committee machine (wideflat.models.committee): output, ω-loss, gradient,
normalization, the module and its input checks."""

from __future__ import annotations

import math

import pytest
import torch

from wideflat.models.committee import (
    CommitteeMachine,
    committee_errors,
    committee_loss,
    committee_loss_and_grad,
    committee_output,
    init_committee_weights,
    normalize_units,
    omega_loss,
    omega_loss_grad,
)

F64 = torch.float64


def brute_force_output(w, X):
    """σ(w, x) for one network (K, N) by explicit loops over patterns and units."""
    k, n = w.shape
    outs = []
    for x in X.tolist():
        votes = 0
        for row in w.tolist():
            h = sum(a * b for a, b in zip(row, x, strict=True)) / math.sqrt(n)
            votes += 1 if h >= 0 else -1
        outs.append(1.0 if votes > 0 else -1.0)
    return torch.tensor(outs, dtype=F64)


def test_output_and_errors_match_brute_force_loop():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, 3, 5, 11, generator=g, dtype=F64)
    X = torch.randn(17, 11, generator=g, dtype=F64).sign()
    y = torch.randn(17, generator=g, dtype=F64).sign()
    out = committee_output(w, X)
    err = committee_errors(w, X, y)
    assert out.shape == (2, 3, 17) and err.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            ref = brute_force_output(w[i, j], X)
            assert torch.equal(out[i, j], ref)
            assert err[i, j].item() == pytest.approx((ref != y).double().mean().item(), abs=0)
    # One minibatch per network: X with leading dimensions.
    Xb = torch.randn(2, 3, 4, 11, generator=g, dtype=F64).sign()
    outb = committee_output(w, Xb)
    assert torch.equal(outb[1, 2], brute_force_output(w[1, 2], Xb[1, 2]))


def test_sign_zero_counts_as_plus_one():
    # Unit 0 has zero pre-activation on x (sign(0) = +1), units 1 and 2 disagree.
    w = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    x = torch.tensor([[1.0, 1.0]])
    assert committee_output(w, x).item() == 1.0


def test_omega_loss_formula_stability_and_gradient():
    x = torch.linspace(-3, 3, 13, dtype=F64)
    for omega in (0.3, 2.0):
        direct = -x / 2 + torch.log(2 * torch.cosh(omega * x)) / (2 * omega)
        torch.testing.assert_close(omega_loss(x, omega), direct, rtol=1e-13, atol=1e-15)
        xa = x.clone().requires_grad_(True)
        omega_loss(xa, omega).sum().backward()
        torch.testing.assert_close(omega_loss_grad(x, omega), xa.grad, rtol=1e-13, atol=1e-15)
        h = 1e-6
        fd = (omega_loss(x + h, omega) - omega_loss(x - h, omega)) / (2 * h)
        torch.testing.assert_close(omega_loss_grad(x, omega), fd, rtol=1e-7, atol=1e-9)
    # Large |ω x|: log(2 cosh) overflows in the naive form, the stable form does not.
    big = torch.tensor([-400.0, 400.0], dtype=F64)
    f = omega_loss(big, 5.0)
    assert torch.isfinite(f).all()
    assert f[0].item() == pytest.approx(400.0, rel=1e-12)  # f(x) → −x for x → −∞
    assert 0 <= f[1].item() < 1e-300
    assert torch.isfinite(omega_loss_grad(big, 5.0)).all()


def test_loss_and_grad_match_autograd_and_finite_differences():
    g = torch.Generator().manual_seed(1)
    w = normalize_units(torch.randn(2, 3, 5, 13, generator=g, dtype=F64))
    X = torch.randn(20, 13, generator=g, dtype=F64).sign()
    y = torch.randn(20, generator=g, dtype=F64).sign()
    loss, grad = committee_loss_and_grad(w, X, y, beta=1.7, omega=0.8)
    wa = w.clone().requires_grad_(True)
    ref = committee_loss(wa, X, y, beta=1.7, omega=0.8)
    ref.sum().backward()
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-13, atol=0)
    torch.testing.assert_close(grad, wa.grad, rtol=1e-11, atol=1e-14)
    # Finite differences on a few coordinates of one network.
    for idx in [(0, 0, 0, 0), (1, 2, 4, 12), (0, 1, 2, 7)]:
        e = torch.zeros_like(w)
        e[idx] = 1e-6
        lp = committee_loss(w + e, X, y, beta=1.7, omega=0.8)[idx[:2]]
        lm = committee_loss(w - e, X, y, beta=1.7, omega=0.8)[idx[:2]]
        assert grad[idx].item() == pytest.approx(((lp - lm) / 2e-6).item(), rel=1e-6, abs=1e-10)
    # Per-network minibatches (leading dims on X and y).
    Xb = torch.randn(2, 3, 6, 13, generator=g, dtype=F64).sign()
    yb = torch.randn(2, 3, 6, generator=g, dtype=F64).sign()
    _, gb = committee_loss_and_grad(w, Xb, yb, beta=1.0, omega=0.5)
    w12 = w[1, 2].clone().requires_grad_(True)
    committee_loss(w12, Xb[1, 2], yb[1, 2], beta=1.0, omega=0.5).backward()
    torch.testing.assert_close(gb[1, 2], w12.grad, rtol=1e-11, atol=1e-14)


def test_normalization_invariants():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(4, 5, 9, generator=g, dtype=F64)
    wn = normalize_units(w)
    torch.testing.assert_close(wn.norm(dim=-1), torch.full((4, 5), 3.0, dtype=F64))
    # Same directions, idempotent.
    torch.testing.assert_close(wn / wn.norm(dim=-1, keepdim=True), w / w.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(normalize_units(wn), wn, rtol=1e-15, atol=1e-15)
    # The sign network is invariant under positive per-unit rescaling.
    X = torch.randn(30, 9, generator=g, dtype=F64).sign()
    scales = torch.rand(4, 5, 1, generator=g, dtype=F64) * 10 + 0.01
    assert torch.equal(committee_output(w * scales, X), committee_output(wn, X))
    # A zero unit stays zero (no NaN).
    z = wn.clone()
    z[0, 0] = 0
    assert torch.isfinite(normalize_units(z)).all() and normalize_units(z)[0, 0].abs().sum() == 0
    # Uniform init then normalization.
    w0 = init_committee_weights(3, 5, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(w0.norm(dim=-1), torch.full((3, 5), 4.0))


def test_committee_machine_module():
    g = torch.Generator().manual_seed(4)
    net = CommitteeMachine(12, 3, generator=g, dtype=F64)
    X, y = torch.randn(10, 12, generator=g, dtype=F64).sign(), torch.ones(10, dtype=F64)
    assert torch.equal(net(X), committee_output(net.weight.detach(), X))
    net.loss(X, y, beta=1.0, omega=0.5).backward()
    _, grad = committee_loss_and_grad(net.weight.detach(), X, y, beta=1.0, omega=0.5)
    torch.testing.assert_close(net.weight.grad, grad)
    with torch.no_grad():
        net.weight.mul_(3.0)
    net.normalize_()
    torch.testing.assert_close(net.weight.norm(dim=1), torch.full((3,), math.sqrt(12), dtype=F64))
    assert "num_hidden=3" in repr(net)


def test_model_bad_inputs():
    w = torch.randn(4, 10)
    X = torch.randn(5, 10).sign()
    with pytest.raises(ValueError, match="K=4"):
        committee_output(w, X)
    with pytest.raises(ValueError, match="Shape mismatch"):
        committee_output(torch.randn(3, 10), torch.randn(5, 11))
    with pytest.raises(ValueError, match="must be \\+1 or -1"):
        committee_errors(torch.randn(3, 10), X, torch.tensor([1.0, -1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="Invalid omega"):
        omega_loss(torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match="Invalid beta"):
        committee_loss(torch.randn(3, 10), X, torch.ones(5), beta=-1.0, omega=1.0)
    with pytest.raises(ValueError, match="num_hidden"):
        CommitteeMachine(10, 2)
