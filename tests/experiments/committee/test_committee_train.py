"""Tests of the batched committee trainer (wideflat.experiments.committee.train).

The central check replays every algorithm with an independent single-network reference loop
(autograd gradients of the textbook loss formula, Python loops over restarts and replicas,
the documented draw order of each restart's generator) and requires the batched program to
agree to 1e-6 in float64, with the same stop reasons and epochs.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from wideflat.experiments.committee import _batched
from wideflat.experiments.committee.presets import (
    ALGORITHMS,
    COMMITTEE_PRESETS,
    committee_preset,
    list_committee_algorithms,
)
from wideflat.experiments.committee.train import restart_generator, train_committee
from wideflat.models.committee import committee_errors, committee_output, init_committee_weights

F64 = torch.float64


def teacher_data(n=21, k=3, m=60, m_test=40, seed=3):
    """Random ±1 patterns labelled by a random teacher committee machine."""
    g = torch.Generator().manual_seed(seed)
    X = (torch.randint(0, 2, (m + m_test, n), generator=g) * 2 - 1).to(F64)
    teacher = init_committee_weights(k, n, generator=g, dtype=F64)
    y = committee_output(teacher, X)
    return X[:m], y[:m], X[m:], y[m:]


# --------------------------------------------------------------------------- reference loop


def reference_train(algorithm, X, y, *, restarts, seed, max_epochs, k, overrides):
    """Independent per-network implementation: one restart at a time, one replica at a time,
    autograd gradients, the textbook ω-loss, working in the hyper-parameters' coordinates."""
    hp = committee_preset(algorithm, overrides)
    m, n = X.shape
    c = n if hp.unit_norm == "one" else 1  # working coordinates u = w / √c
    unit = math.sqrt(n / c)  # norm of a hidden unit in working coordinates
    b, S = hp.batch_size, m // hp.batch_size
    kind = algorithm.split("-")[0]

    def clk(step):  # the schedules' t during step `step` (from 0)
        return step if hp.schedule_clock == "step" else step // S

    def norm(u):
        return torch.stack([row * (unit / row.norm()) for row in u])

    def soft_loss(u, Xb, yb, beta, omega, sum_loss=False, mask=None):
        h = Xb @ u.T / unit  # = w·x/√N in both coordinate systems
        votes = torch.tanh(beta * h) * (1 if mask is None else mask)
        marg = yb * votes.sum(1) / math.sqrt(k)
        per_pattern = -marg / 2 + torch.log(2 * torch.cosh(omega * marg)) / (2 * omega)
        return per_pattern.sum() if sum_loss else per_pattern.mean()

    def batch_loss(u, Xb, yb, beta, omega, mask=None):  # the minibatch loss of the convention
        return soft_loss(u, Xb, yb, beta, omega, hp.loss_reduction == "sum", mask)

    def grad(u, Xb, yb, beta, omega, mask=None):
        u = u.detach().clone().requires_grad_(True)
        batch_loss(u, Xb, yb, beta, omega, mask).backward()
        return u.grad

    def errors(u):
        h = X @ u.T
        votes = ((h >= 0).to(F64) * 2 - 1).sum(1)
        return ((votes > 0).to(F64) * 2 - 1 != y).to(F64).mean().item()

    def dist(a, bb):
        return 0.5 * ((a - bb) ** 2).sum().item()

    out = []
    for r in range(restarts):
        gen = restart_generator(seed, r)
        w0 = torch.rand((hp.y, k, n), generator=gen, dtype=F64) * 2 - 1
        reps = [norm(w0[a]) for a in range(hp.y)]
        steps, reason = 0, None
        while reason is None:
            if kind in ("sgd", "rsgd"):
                if kind == "rsgd" and hp.lr * hp.coupling_every * hp.gamma(clk(steps + S - 1)) >= 2:
                    reason = "unstable"
                    break
                perms = [torch.randperm(m, generator=gen) for _ in range(hp.y)]
                for s in range(S):
                    t = clk(steps)
                    beta, omega, gamma = hp.beta(t), hp.omega(t), hp.gamma(t)
                    center = sum(reps) / len(reps)
                    steps += 1
                    if hp.dropout:  # keep a hidden unit's vote with probability 1 − p
                        keep = torch.rand((hp.y, b, k), generator=gen, dtype=F64) >= hp.dropout
                        masks = keep.to(F64) / (1 - hp.dropout)
                    new = []
                    for a, u in enumerate(reps):
                        idx = perms[a][s * b : (s + 1) * b]
                        mask = masks[a] if hp.dropout else None
                        g = grad(u, X[idx], y[idx], beta, omega, mask)
                        if kind == "rsgd" and steps % hp.coupling_every == 0:
                            g = g + hp.coupling_every * gamma * (u - center)
                        new.append(norm(u - hp.lr * g))
                    reps = new
                center = sum(reps) / len(reps)
                net = norm(center) if kind == "rsgd" else reps[0]
                d = sum(dist(u, center) for u in reps) / len(reps)
            else:  # esgd
                L = hp.inner_steps
                if hp.inner_lr * hp.gamma(clk(steps + L - 1)) >= 2:
                    reason = "unstable"
                    break
                u = reps[0]
                up, mu = u.clone(), u.clone()
                for _ in range(L):
                    pos, t = steps % S, clk(steps)
                    if pos == 0:
                        perm = torch.randperm(m, generator=gen)
                    idx = perm[pos * b : (pos + 1) * b]
                    g = grad(up, X[idx], y[idx], hp.beta(t), hp.omega(t))
                    g = g + hp.gamma(t) * (up - u)
                    noise = torch.randn((1, k, n), generator=gen, dtype=F64)[0]
                    up = norm(up - hp.inner_lr * g + math.sqrt(hp.inner_lr) * hp.noise * noise)
                    mu = hp.alpha * mu + (1 - hp.alpha) * up
                    steps += 1
                u = norm(u - hp.lr * (u - mu))
                reps = [u]
                net = u
                d = dist(u, mu)
            last = clk(steps - 1)
            err = errors(net)
            loss = soft_loss(net, X, y, hp.beta(last), hp.omega(last)).item()
            if algorithm == "sgd-fast" and err == 0:
                reason = "zero-errors"
            elif algorithm == "sgd-slow" and loss < hp.stop_loss:
                reason = "loss"
            elif kind in ("rsgd", "esgd") and d < hp.stop_distance:
                reason = "distance"
            elif steps >= max_epochs * S:
                reason = "max-epochs"
        if reason == "unstable":
            center = sum(reps) / len(reps)
            net = norm(center) if kind == "rsgd" else reps[0]
            err = errors(net)
            last = clk(max(steps - 1, 0))
            loss = soft_loss(net, X, y, hp.beta(last), hp.omega(last)).item()
        out.append(
            dict(
                w=net * math.sqrt(c),
                reason=reason,
                epochs=steps / S,
                steps=steps,
                err=err,
                loss=loss,
            )
        )
    return out


REFERENCE_CASES = {
    "sgd-fast": ("sgd-fast", dict(lr=3.0, batch_size=20)),
    "sgd-slow": (
        "sgd-slow",
        dict(lr=3.0, batch_size=20, omega1=0.1, beta1=0.05, stop_loss=1e-3),
    ),
    "rsgd-fast": (
        "rsgd-fast",
        dict(lr=1.0, batch_size=20, y=3, gamma0=0.05, gamma1=0.1, stop_distance=1e-3),
    ),
    "rsgd-fast-period2": (
        "rsgd-fast",
        dict(
            lr=1.0,
            batch_size=20,
            y=3,
            gamma0=0.05,
            gamma1=0.1,
            stop_distance=1e-3,
            coupling_every=2,
        ),
    ),
    "rsgd-slow-unit-norm-one": (
        "rsgd-slow",
        dict(
            lr=0.02,
            batch_size=20,
            y=3,
            gamma0=0.5,
            gamma1=0.1,
            stop_distance=1e-4,
            unit_norm="one",
        ),
    ),
    "rsgd-sum-step-clock": (
        "rsgd-fast",
        dict(
            lr=0.05,
            batch_size=20,
            y=3,
            gamma0=0.05,
            gamma1=0.03,
            stop_distance=1e-3,
            loss_reduction="sum",
            schedule_clock="step",
        ),
    ),
    "sgd-slow-step-clock-one": (
        "sgd-slow",
        dict(
            lr=0.2,
            batch_size=20,
            omega1=0.03,
            beta1=0.02,
            stop_loss=1e-3,
            schedule_clock="step",
            unit_norm="one",
        ),
    ),
    "esgd-sum-step-clock": (
        "esgd",
        dict(
            lr=0.7,
            inner_lr=0.05,
            noise=1e-3,
            inner_steps=4,
            gamma0=0.1,
            gamma1=0.05,
            batch_size=20,
            stop_distance=1e-4,
            loss_reduction="sum",
            schedule_clock="step",
        ),
    ),
    "sgd-fast-dropout": ("sgd-fast", dict(lr=3.0, batch_size=20, dropout=0.3)),
    "rsgd-dropout": (
        "rsgd-fast",
        dict(lr=1.0, batch_size=20, y=3, gamma0=0.05, gamma1=0.1, stop_distance=1e-3, dropout=0.2),
    ),
    "rsgd-unstable": (
        "rsgd-fast",
        dict(lr=2.0, batch_size=20, y=3, gamma0=0.05, gamma1=0.1, stop_distance=1e-4),
    ),
    "esgd": (
        "esgd",
        dict(
            lr=0.7,
            inner_lr=1.0,
            noise=1e-3,
            inner_steps=4,
            gamma0=0.1,
            gamma1=0.1,
            batch_size=20,
            stop_distance=1e-4,
        ),
    ),
    "esgd-unit-norm-one": (
        "esgd",
        dict(
            lr=0.7,
            inner_lr=0.02,
            noise=1e-2,
            inner_steps=4,
            gamma0=0.5,
            gamma1=0.1,
            batch_size=20,
            stop_distance=1e-6,
            unit_norm="one",
        ),
    ),
}


@pytest.mark.parametrize("case", list(REFERENCE_CASES))
def test_batched_training_equals_per_network_reference(case):
    algorithm, overrides = REFERENCE_CASES[case]
    X, y, Xt, yt = teacher_data()
    kw = dict(restarts=3, seed=5, max_epochs=60, overrides=overrides)
    res = train_committee(algorithm, X, y, X_test=Xt, y_test=yt, progress=False, num_hidden=3, **kw)
    ref = reference_train(algorithm, X, y, k=3, **kw)
    assert res.weights.shape == (3, 3, X.shape[1])
    for r, rr in enumerate(ref):
        assert res.stop_reason[r] == rr["reason"], (r, res.stop_reason, rr["reason"])
        assert res.epochs[r].item() == pytest.approx(rr["epochs"], abs=1e-12)
        assert res.steps[r].item() == rr["steps"]
        torch.testing.assert_close(res.weights[r], rr["w"], rtol=0, atol=1e-6)
        assert res.train_error[r].item() == pytest.approx(rr["err"], abs=1e-12)
        assert res.train_loss[r].item() == pytest.approx(rr["loss"], rel=1e-9, abs=1e-15)
        torch.testing.assert_close(
            res.test_error[r], committee_errors(rr["w"], Xt, yt).double(), rtol=0, atol=1e-12
        )
    torch.testing.assert_close(
        res.weights.norm(dim=-1), torch.full((3, 3), math.sqrt(X.shape[1]), dtype=F64)
    )
    # The cases are chosen so that the stopping rule, not only the cap, is exercised.
    expected = {"sgd-fast": "zero-errors", "sgd-slow": "loss"}.get(algorithm, "distance")
    if case == "rsgd-unstable":
        expected = "unstable"
    assert expected in res.stop_reason


# --------------------------------------------------------------------------- stopping


def test_stopped_restart_stays_frozen_and_cap_is_reported():
    X, y, _, _ = teacher_data()
    ov = dict(lr=3.0, batch_size=20)
    short = train_committee(
        "sgd-fast", X, y, restarts=4, seed=0, max_epochs=55, progress=False, overrides=ov,
        num_hidden=3,
    )  # fmt: skip
    long = train_committee(
        "sgd-fast", X, y, restarts=4, seed=0, max_epochs=80, progress=False, overrides=ov,
        num_hidden=3,
    )  # fmt: skip
    assert "zero-errors" in short.stop_reason and "max-epochs" in short.stop_reason
    for r in range(4):
        if short.stop_reason[r] == "zero-errors":
            # Stopped before the cap: identical in a longer run (frozen while others trained).
            assert long.stop_reason[r] == "zero-errors"
            assert long.epochs[r] == short.epochs[r] < 55
            assert torch.equal(long.weights[r], short.weights[r])
            assert short.train_error[r] == 0
        else:
            assert short.stop_reason[r] == "max-epochs" and short.epochs[r] == 55
            assert short.train_error[r] > 0
            assert long.epochs[r] > 55
    # The paper's SGD-fast step size makes no progress in 2 epochs: every restart is capped.
    capped = train_committee("sgd-fast", X, y, restarts=2, seed=0, max_epochs=2, progress=False,
                             overrides={"batch_size": 20}, num_hidden=3)  # fmt: skip
    assert capped.stop_reason == ("max-epochs", "max-epochs")
    assert capped.epochs.tolist() == [2.0, 2.0] and capped.steps.tolist() == [6, 6]


def test_restart_is_independent_of_batch_and_seeded():
    X, y, _, _ = teacher_data()
    ov = dict(lr=1.0, batch_size=20, y=3, gamma0=0.05, gamma1=0.1, stop_distance=1e-3)
    kw = dict(seed=9, max_epochs=6, progress=False, overrides=ov, num_hidden=3)
    three = train_committee("rsgd-fast", X, y, restarts=3, **kw)
    one = train_committee("rsgd-fast", X, y, restarts=1, **kw)
    torch.testing.assert_close(one.weights[0], three.weights[0], rtol=0, atol=1e-12)
    again = train_committee("rsgd-fast", X, y, restarts=3, **kw)
    assert torch.equal(again.weights, three.weights)
    other = train_committee("rsgd-fast", X, y, restarts=3, **{**kw, "seed": 10})
    assert not torch.allclose(other.weights, three.weights)
    assert not torch.allclose(three.weights[0], three.weights[1])


@pytest.mark.parametrize("algorithm", ["rsgd-fast", "esgd"])
def test_cpu_blocking_over_restarts_gives_the_same_result(monkeypatch, algorithm):
    X, y, _, _ = teacher_data()
    ov = dict(batch_size=20, lr=0.5, gamma0=0.05, stop_distance=1e-3)
    ov.update(y=3) if algorithm == "rsgd-fast" else ov.update(inner_steps=4, inner_lr=0.5)
    kw = dict(restarts=5, seed=2, max_epochs=5, progress=False, overrides=ov, num_hidden=3)
    whole = train_committee(algorithm, X, y, **kw)
    ny = 3 if algorithm == "rsgd-fast" else 1
    # Budget for the gathered minibatches (ny, B=20, N=21) of 2 restarts in float64.
    monkeypatch.setattr(_batched, "CPU_BLOCK_BYTES", 2 * ny * 20 * 21 * 8)
    assert _batched.block_restarts(torch.zeros(5, ny, 3, 21, dtype=F64), 20) == 2
    blocked = train_committee(algorithm, X, y, **kw)
    torch.testing.assert_close(blocked.weights, whole.weights, rtol=0, atol=1e-12)
    assert blocked.stop_reason == whole.stop_reason


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_weights_are_reported(monkeypatch, bad):
    # Inject the non-finite value deterministically (not by overflowing a matmul, whose result
    # depends on how the BLAS kernel accumulates): after the 2nd epoch, restart 1 gets one
    # non-finite weight. It stops there with "non-finite"; restart 0 is unaffected.
    real_epoch, calls = _batched.sgd_epoch, []

    def poisoned_epoch(pop, *args, **kwargs):
        real_epoch(pop, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            row = (pop.ids == 1).nonzero().flatten()
            pop.w[row, 0, 0, 0] = bad

    monkeypatch.setattr(_batched, "sgd_epoch", poisoned_epoch)
    X, y, _, _ = teacher_data()
    res = train_committee("sgd-fast", X, y, restarts=2, seed=0, max_epochs=5, progress=False,
                          overrides={"batch_size": 20, "lr": 1e-4}, num_hidden=3)  # fmt: skip
    assert res.stop_reason[1] == "non-finite" and res.epochs[1] == 2.0
    assert res.stop_reason[0] != "non-finite" and bool(torch.isfinite(res.weights[0]).all())


def test_presets_progress_bar_and_summary(capsys):
    assert list_committee_algorithms() == list(ALGORITHMS) == list(COMMITTEE_PRESETS)
    hp = COMMITTEE_PRESETS["esgd"]
    assert (hp.lr, hp.inner_lr, hp.noise, hp.inner_steps, hp.gamma0, hp.gamma1) == (
        1e-3, 5e-3, 1e-6, 20, 10.0, 5e-5,
    )  # fmt: skip
    assert COMMITTEE_PRESETS["rsgd-fast"].y == 10
    assert hp.gamma(2) == pytest.approx(10.0 * (1 + 5e-5) ** 2)
    X, y, Xt, yt = teacher_data()
    res = train_committee("esgd", X, y, restarts=2, seed=0, max_epochs=3, X_test=Xt,
                          y_test=yt, progress=True,
                          overrides={"batch_size": 20, "inner_steps": 2})  # fmt: skip
    err = capsys.readouterr().err
    assert "esgd" in err and "active=" in err and "train_err=" in err
    summary = json.loads(json.dumps(res.summary()))
    assert summary["stop_reason"] == ["max-epochs", "max-epochs"]
    assert summary["epochs"] == [pytest.approx(10 / 3)] * 2  # whole outer iterations
    assert summary["hparams"]["inner_steps"] == 2 and len(summary["test_error"]) == 2
    assert res.wall_time > 0


# --------------------------------------------------------------------------- bad inputs


def test_trainer_bad_inputs():
    X, y, Xt, yt = teacher_data()
    kw = dict(restarts=1, seed=0, max_epochs=1, progress=False, num_hidden=3)
    with pytest.raises(ValueError, match="known algorithms: sgd-fast, sgd-slow, rsgd-fast"):
        train_committee("adam", X, y, **kw)
    with pytest.raises(ValueError, match="K=4"):
        train_committee("sgd-fast", X, y, **{**kw, "num_hidden": 4})
    y_bad = y.clone()
    y_bad[3] = 0.0
    with pytest.raises(ValueError, match="must be \\+1 or -1, found 0.0"):
        train_committee("sgd-fast", X, y_bad, **kw)
    with pytest.raises(ValueError, match="Shape mismatch"):
        train_committee("sgd-fast", X, y[:-1], **kw)
    with pytest.raises(ValueError, match="Shape mismatch: X_test"):
        train_committee("sgd-fast", X, y, X_test=Xt[:, :-1], y_test=yt, **kw)
    with pytest.raises(ValueError, match="together"):
        train_committee("sgd-fast", X, y, X_test=Xt, **kw)
    with pytest.raises(ValueError, match="Unknown hyper-parameter"):
        train_committee("sgd-fast", X, y, overrides={"momentum": 0.9}, **kw)
    with pytest.raises(ValueError, match="Invalid lr"):
        train_committee("sgd-fast", X, y, overrides={"lr": -1.0}, **kw)
    with pytest.raises(ValueError, match="Invalid y"):
        train_committee("sgd-fast", X, y, overrides={"y": 3}, **kw)
    with pytest.raises(ValueError, match="only SGD and rSGD"):
        train_committee("esgd", X, y, overrides={"dropout": 0.1}, **kw)
    for bad in (1.0, -0.1, "0.2", True):
        with pytest.raises(ValueError, match="Invalid dropout"):
            train_committee("sgd-fast", X, y, overrides={"dropout": bad}, **kw)
    with pytest.raises(ValueError, match="Invalid unit_norm"):
        train_committee("esgd", X, y, overrides={"unit_norm": "two"}, **kw)
    with pytest.raises(ValueError, match="batch_size"):
        train_committee("sgd-fast", X, y, **kw)  # preset minibatch 100 > M = 60
    with pytest.raises(ValueError, match="Invalid restarts"):
        train_committee("sgd-fast", X, y, **{**kw, "restarts": 0})
    with pytest.raises(ValueError, match="Invalid seed"):
        train_committee("sgd-fast", X, y, **{**kw, "seed": -1})
    with pytest.raises(ValueError, match="Invalid max_epochs"):
        train_committee("sgd-fast", X, y, **{**kw, "max_epochs": 0})
    with pytest.raises(ValueError, match="NaN"):
        train_committee("sgd-fast", X * float("nan"), y, **kw)


def test_first_restart_trains_the_same_networks_as_a_full_run():
    X, y, _, _ = teacher_data()
    ov = dict(lr=1.0, batch_size=20, y=3, gamma0=0.05, gamma1=0.1, stop_distance=1e-3)
    kw = dict(seed=4, max_epochs=5, progress=False, overrides=ov, num_hidden=3)
    full = train_committee("rsgd-fast", X, y, restarts=4, **kw)
    tail = train_committee("rsgd-fast", X, y, restarts=2, first_restart=2, **kw)
    assert torch.equal(tail.weights, full.weights[2:])
    assert tail.stop_reason == full.stop_reason[2:]
    with pytest.raises(ValueError, match="first_restart"):
        train_committee("rsgd-fast", X, y, restarts=1, first_restart=-1, **kw)


def test_summed_loss_is_the_mean_loss_with_the_coupling_b_times_weaker():
    """loss_reduction="sum" multiplies only the loss term by B: rSGD with (η, γ) and a summed
    loss is rSGD with (η B, γ / B) and a mean loss (same ηγ, loss step ×B)."""
    X, y, _, _ = teacher_data()
    b = 20
    base = dict(batch_size=b, y=3, gamma1=0.1, stop_distance=1e-3)
    kw = dict(restarts=2, seed=1, max_epochs=8, progress=False, num_hidden=3)
    summed = train_committee(
        "rsgd-fast", X, y, overrides={**base, "lr": 0.05, "gamma0": 0.04,
                                      "loss_reduction": "sum"}, **kw
    )  # fmt: skip
    mean = train_committee(
        "rsgd-fast", X, y, overrides={**base, "lr": 0.05 * b, "gamma0": 0.04 / b}, **kw
    )
    torch.testing.assert_close(summed.weights, mean.weights, rtol=0, atol=1e-10)
    plain = train_committee("rsgd-fast", X, y, overrides={**base, "lr": 0.05, "gamma0": 0.04}, **kw)
    assert not torch.allclose(plain.weights, summed.weights)


def test_step_clock_with_one_step_per_epoch_is_the_epoch_clock():
    X, y, _, _ = teacher_data()
    ov = dict(lr=1.0, batch_size=X.shape[0], y=3, gamma0=0.05, gamma1=0.1, beta1=0.05,
              omega1=0.05, stop_distance=1e-3)  # fmt: skip
    kw = dict(restarts=2, seed=2, max_epochs=10, progress=False, num_hidden=3)
    a = train_committee("rsgd-fast", X, y, overrides=ov, **kw)
    b = train_committee("rsgd-fast", X, y, overrides={**ov, "schedule_clock": "step"}, **kw)
    assert torch.equal(a.weights, b.weights)
    c = train_committee(
        "rsgd-fast", X, y, overrides={**ov, "batch_size": 20, "schedule_clock": "step"}, **kw
    )
    d = train_committee("rsgd-fast", X, y, overrides={**ov, "batch_size": 20}, **kw)
    assert not torch.allclose(c.weights, d.weights)
