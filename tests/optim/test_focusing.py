"""Focusing schedules for γ and the paper's automatic γ0."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from _problems import LinearModel, Stream, mse
from torch import nn

from wideflat.optim import (
    ConstantGamma,
    CosineGamma,
    EntropySGD,
    ExponentialGamma,
    ReplicatedSGD,
    auto_gamma0_esgd,
    auto_gamma0_rsgd,
)
from wideflat.replicas import Replicas, StackedReplicas


def rsgd(gamma=1e-3, **kw):
    return ReplicatedSGD(LinearModel(), lr=0.01, y=3, gamma=gamma, seed=0, **kw)


def gammas(sched, n):
    out = [sched.optimizer.param_groups[0]["gamma"]]
    for _ in range(n):
        sched.step()
        out.append(sched.optimizer.param_groups[0]["gamma"])
    return out


def test_exponential_formula_and_growth_factor():
    opt = rsgd(gamma=2e-3)
    values = gammas(ExponentialGamma(opt, gamma1=0.1), 5)
    assert values == pytest.approx([2e-3 * 1.1**t for t in range(6)], rel=1e-12)
    opt = rsgd(gamma=1e-4)
    sched = ExponentialGamma(opt, growth=1e4, steps=50)
    values = gammas(sched, 50)
    assert values[-1] == pytest.approx(1e-4 * 1e4, rel=1e-10)
    assert sched.get_last_gamma() == [values[-1]]
    assert all(b > a for a, b in zip(values, values[1:], strict=False))


def test_exponential_gamma0_overrides_initial_gamma():
    opt = rsgd(gamma=0.5)
    ExponentialGamma(opt, gamma0=1e-3, gamma1=0.0)
    assert opt.param_groups[0]["gamma"] == 1e-3


def test_cosine_rises_from_zero_to_max_and_stays():
    opt = rsgd()
    values = gammas(CosineGamma(opt, gamma_max=0.1, steps=10), 14)
    assert values[0] == 0.0 and values[5] == pytest.approx(0.05, rel=1e-12)
    assert values[10] == pytest.approx(0.1, rel=1e-12) and values[14] == values[10]
    assert values[3] == pytest.approx(0.05 * (1 - math.cos(math.pi * 3 / 10)), rel=1e-12)


def test_constant():
    opt = rsgd(gamma=0.02)
    assert gammas(ConstantGamma(opt), 3) == [0.02] * 4
    assert gammas(ConstantGamma(opt, 0.5), 2) == [0.5] * 3


def test_every_group_is_written():
    model = LinearModel()
    opt = EntropySGD(
        [{"params": [model.weight], "gamma": 0.1}, {"params": [model.bias]}],
        lr=0.1,
        inner_lr=0.01,
        gamma=0.01,
    )
    sched = ExponentialGamma(opt, gamma1=1.0)
    sched.step()
    assert [g["gamma"] for g in opt.param_groups] == pytest.approx([0.2, 0.02])


@pytest.mark.parametrize(
    "make",
    [lambda o: ExponentialGamma(o, growth=10.0, steps=8), lambda o: CosineGamma(o, 0.3, 8)],
    ids=["exponential", "cosine"],
)
def test_state_dict_resumes_the_schedule(make):
    opt = rsgd()
    sched = make(opt)
    for _ in range(4):
        sched.step()
    saved = copy.deepcopy(sched.state_dict())
    opt2 = rsgd()
    sched2 = make(opt2)  # construct before load: construction writes γ_0 ...
    sched2.load_state_dict(saved)  # ... and loading restores γ_4
    assert opt2.param_groups[0]["gamma"] == opt.param_groups[0]["gamma"]
    assert gammas(sched2, 4) == gammas(sched, 4)
    assert "optimizer" not in saved


def test_overshoot_is_warned_with_the_number():
    opt = ReplicatedSGD(LinearModel(), lr=0.1, y=2, gamma=1.0, coupling_every=2, seed=0)
    sched = ExponentialGamma(opt, gamma1=1.0)
    with pytest.warns(RuntimeWarning, match="coupling step 1.6 >= 1"):
        for _ in range(3):
            sched.step()


def test_auto_gamma0_rsgd_balances_loss_and_distance():
    opt = rsgd()
    batch = Stream(0).batch()
    gamma0 = auto_gamma0_rsgd(opt, lambda m: mse(m, batch))
    losses = sum(float(mse(r, batch).detach()) for r in opt.replicas)
    center = [sum(ps) / 3 for ps in zip(*[list(r.parameters()) for r in opt.replicas], strict=True)]
    dist = sum(
        0.5 * float(((p - c) ** 2).sum().detach())
        for r in opt.replicas
        for p, c in zip(r.parameters(), center, strict=True)
    )
    assert gamma0 == pytest.approx(losses / dist, rel=1e-6)


@pytest.mark.parametrize(
    "container",
    [
        lambda: Replicas(LinearModel(), 3, seed=0),
        lambda: StackedReplicas(LinearModel(), 3, seed=0),
        lambda: ReplicatedSGD(LinearModel(), lr=0.01, y=3, engine="loop", seed=0),
        lambda: ReplicatedSGD(LinearModel(), lr=0.01, y=3, engine="vmap", seed=0),
    ],
    ids=["Replicas", "StackedReplicas", "ReplicatedSGD-loop", "ReplicatedSGD-vmap"],
)
def test_auto_gamma0_rsgd_accepts_every_container(container):
    """D4: a Replicas container raised AttributeError (its ModuleList has no distances)."""
    batch = Stream(0).batch()
    expected = auto_gamma0_rsgd(rsgd(), lambda m: mse(m, batch))  # the same replicas (seed 0)
    assert auto_gamma0_rsgd(container(), lambda m: mse(m, batch)) == pytest.approx(
        expected, rel=1e-6
    )


class BatchNormModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin, self.bn = nn.Linear(6, 3), nn.BatchNorm1d(3)

    def forward(self, x):
        return self.bn(self.lin(x))


@pytest.mark.parametrize(
    "container",
    [
        lambda m: Replicas(m, 3, seed=0),
        lambda m: StackedReplicas(m, 3, seed=0),
        lambda m: ReplicatedSGD(m, lr=0.01, y=3, engine="loop", seed=0),
        lambda m: ReplicatedSGD(m, lr=0.01, y=3, engine="vmap", seed=0),
    ],
    ids=["Replicas", "StackedReplicas", "ReplicatedSGD-loop", "ReplicatedSGD-vmap"],
)
def test_auto_gamma0_rsgd_leaves_batchnorm_statistics_as_they_were(container):
    """The loss is taken in train mode (batch statistics), but the running statistics the
    forward moves are put back: measuring γ0 changes nothing in the replicas."""
    torch.manual_seed(0)
    replicas = container(BatchNormModel())
    engine = replicas.replicas if isinstance(replicas, ReplicatedSGD) else replicas
    before = [copy.deepcopy(dict(engine[a].named_buffers())) for a in range(3)]
    batch = Stream(0).batch()
    gamma0 = auto_gamma0_rsgd(replicas, lambda m: mse(m, batch))
    for a in range(3):
        assert engine[a].training
        for name, value in engine[a].named_buffers():
            assert torch.equal(value, before[a][name]), (a, name)
    # the same γ0 as the loss taken on each replica by hand (train mode, fresh statistics)
    losses = sum(float(mse(engine[a], batch)) for a in range(3))
    assert gamma0 == pytest.approx(losses / float(engine.distances().sum()), rel=1e-6)


def test_auto_gamma0_rsgd_rejects_identical_replicas():
    opt = ReplicatedSGD(LinearModel(), lr=0.01, y=3, init="copy", seed=0)
    with pytest.raises(ValueError, match="coincide"):
        auto_gamma0_rsgd(opt, lambda m: mse(m, Stream(0).batch()))


def test_auto_gamma0_esgd_by_hand_and_without_side_effects():
    model = LinearModel()
    opt = EntropySGD(
        model.parameters(),
        lr=0.5,
        inner_lr=0.05,
        inner_steps=4,
        gamma=0.3,
        noise=0.0,
        momentum=0.9,
        seed=0,
    )
    stream = Stream(0)

    def closure():
        loss = mse(model, stream.batch())
        loss.backward()
        return loss

    opt.step(closure)
    before_params = copy.deepcopy(model.state_dict())
    before_state = copy.deepcopy(opt.state_dict())
    stream_state = stream.gen.get_state()
    gamma0 = auto_gamma0_esgd(opt, closure)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before_params[key])
    assert opt.param_groups[0]["gamma"] == 0.3
    # By hand: L inner SGD steps (momentum state as saved) with γ = 0 from w.
    ref_model = copy.deepcopy(model)
    inner = torch.optim.SGD(ref_model.parameters(), lr=0.05, momentum=0.9)
    inner.load_state_dict(before_state["inner"])
    stream.gen.set_state(stream_state)
    first = None
    for _ in range(4):
        inner.zero_grad()
        loss = mse(ref_model, stream.batch())
        loss.backward()
        inner.step()
        first = float(loss) if first is None else first
    dist = sum(
        0.5 * float(((p - q) ** 2).sum())
        for p, q in zip(ref_model.parameters(), model.parameters(), strict=True)
    )
    assert gamma0 == pytest.approx(first / dist, rel=1e-5)
