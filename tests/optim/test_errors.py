"""Invalid inputs raise errors that name the bad parameter and change nothing."""

from __future__ import annotations

import copy

import pytest
import torch
from _problems import LinearModel, Stream, mse
from test_contract import assert_state_equal

from wideflat.optim import (
    EntropySGD,
    ExponentialGamma,
    MissingClosureError,
    NonFiniteLossError,
    ReplicatedSGD,
)


def esgd(**kw):
    args = dict(lr=0.1, inner_lr=0.01, inner_steps=3, gamma=0.1)
    args.update(kw)
    return lambda model: EntropySGD(model.parameters(), **args)


def rsgd(**kw):
    args = dict(lr=0.1, y=3, gamma=0.1, coupling_every=2)
    args.update(kw)
    return lambda model: ReplicatedSGD(model, **args)


ERROR_TABLE = [
    (esgd(lr=-0.1), "lr"),
    (esgd(inner_lr=-1.0), "inner_lr"),
    (esgd(gamma=-0.5), "gamma"),
    (esgd(noise=-1e-4), "noise"),
    (esgd(weight_decay=-1e-4), "weight_decay"),
    (esgd(momentum=-0.9), "momentum"),
    (esgd(alpha=-0.1), "alpha"),
    (esgd(alpha=1.5), "alpha"),
    (esgd(inner_steps=0), "inner_steps"),
    (esgd(inner_steps=2.5), "inner_steps"),
    (esgd(nesterov=True), "nesterov"),
    (esgd(lr=float("nan")), "lr"),
    (esgd(inner_lr=0.5, gamma=4.0), "inner_lr * gamma"),
    (esgd(outer=dict), "outer"),
    (esgd(inner_kwargs={"betas": (0.9, 0.99)}), None),  # TypeError from SGD itself is fine
    (rsgd(lr=-0.1), "lr"),
    (rsgd(gamma=-1.0), "gamma"),
    (rsgd(weight_decay=-1e-3), "weight_decay"),
    (rsgd(y=0), "y"),
    (rsgd(y=2.0), "y"),
    (rsgd(coupling_every=0), "coupling_every"),
    (rsgd(nesterov=True, momentum=0.0), "nesterov"),
    (rsgd(lr=0.5, gamma=1.0, coupling_every=2), "lr * coupling_every * gamma"),
    (rsgd(base=torch.optim.Adam, momentum=0.9), "momentum"),
    (lambda model: ReplicatedSGD([model.weight], lr=0.1, y=2), "replicas"),
]


@pytest.mark.parametrize("factory, name", ERROR_TABLE, ids=[str(n) for _, n in ERROR_TABLE])
def test_invalid_hyperparameter_names_it_and_leaves_model_unchanged(factory, name):
    model = LinearModel()
    before = copy.deepcopy(model.state_dict())
    if name is None:
        with pytest.raises(TypeError):
            factory(model)
        return
    with pytest.raises(ValueError) as info:
        factory(model)
    assert f"Invalid {name}" in str(info.value)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_invalid_schedule_arguments():
    opt = rsgd()(LinearModel())
    with pytest.raises(ValueError, match="growth"):
        ExponentialGamma(opt, growth=0.0, steps=10)
    with pytest.raises(ValueError, match="steps"):
        ExponentialGamma(opt, growth=10.0, steps=0)
    with pytest.raises(ValueError, match="gamma0"):
        ExponentialGamma(opt, gamma0=-1.0, gamma1=0.1)
    with pytest.raises(ValueError, match="gamma1"):
        ExponentialGamma(opt)


def test_complex_param_is_rejected_with_its_index():
    params = [
        torch.nn.Parameter(torch.zeros(2)),
        torch.nn.Parameter(torch.zeros(2, dtype=torch.cfloat)),
    ]
    with pytest.raises(ValueError, match="param 1"):
        EntropySGD(params, lr=0.1, inner_lr=0.1)


def test_missing_closure():
    model = LinearModel()
    opt = esgd()(model)
    with pytest.raises(MissingClosureError, match="closure") as info:
        opt.step()
    assert isinstance(info.value, ValueError)


def _nan_on_call(n, loss_fn):
    calls = [0]

    def closure(*args):
        calls[0] += 1
        loss = loss_fn(*args)
        loss.backward()
        return loss * float("nan") if calls[0] == n else loss

    return closure


@pytest.mark.parametrize("bad_call", [1, 3, 5])
def test_non_finite_loss_rolls_back_entropy_sgd(bad_call):
    model = LinearModel()
    opt = EntropySGD(
        model.parameters(), lr=0.5, inner_lr=0.05, inner_steps=3, gamma=0.1, momentum=0.9, seed=1
    )
    stream = Stream(0)
    good = _nan_on_call(-1, lambda: mse(model, stream.batch()))
    opt.step(good)  # some state first
    params = copy.deepcopy(model.state_dict())
    state = copy.deepcopy(opt.state_dict())
    bad = _nan_on_call(bad_call, lambda: mse(model, stream.batch()))
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        for _ in range(2):  # calls 1..6 over two steps; the bad one is in one of them
            opt.step(bad)
            params = copy.deepcopy(model.state_dict())
            state = copy.deepcopy(opt.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(value, params[key])
    assert_state_equal(opt.state_dict(), state)


def test_non_finite_loss_names_the_replica_and_changes_nothing():
    opt = ReplicatedSGD(LinearModel(), lr=0.1, y=3, gamma=0.1, momentum=0.9, seed=2)
    streams = [Stream(a) for a in range(3)]
    opt.step(_nan_on_call(-1, lambda a: mse(opt.replicas[a], streams[a].batch())))
    params = copy.deepcopy(opt.replicas.state_dict())
    state = copy.deepcopy(opt.state_dict())
    with pytest.raises(NonFiniteLossError, match=r"replica\(s\) \[1\]"):
        opt.step(_nan_on_call(2, lambda a: mse(opt.replicas[a], streams[a].batch())))
    for key, value in opt.replicas.state_dict().items():
        assert torch.equal(value, params[key])
    assert_state_equal(opt.state_dict(), state)
