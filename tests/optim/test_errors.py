"""Invalid inputs raise errors that name the bad parameter and change nothing."""

from __future__ import annotations

import copy

import pytest
import torch
from _problems import LinearModel, Stream, assert_state_equal, mse

from wideflat.optim import (
    SAM,
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
    # finite, but inf once cast into a float32 kernel (the float32 maximum is ~3.4e38)
    (esgd(lr=1e39), "lr"),
    (esgd(weight_decay=1e300), "weight_decay"),
    (esgd(gamma=1e300), "gamma"),
    (esgd(inner_lr=1e39, gamma=0.0), "inner_lr"),
    (esgd(noise=1e39), "noise"),
    (rsgd(lr=1e39), "lr"),
    (rsgd(gamma=1e300), "gamma"),
    (lambda model: SAM(model.parameters(), rho=1e39, lr=0.1), "rho"),
    # maximize concerns both eSGD loops: one switch, and both optimizers must support it
    (esgd(inner_kwargs={"maximize": True}), "inner_kwargs"),
    (esgd(outer_kwargs={"maximize": True}), "outer_kwargs"),
    (esgd(maximize=True, inner=torch.optim.LBFGS), "maximize"),
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


class Interrupted(Exception):
    """Stands for any error a closure may raise (a data error, a failed transform...)."""


def _esgd_run(model, **kw):
    return EntropySGD(
        model.parameters(),
        lr=0.5,
        inner_lr=0.05,
        inner_steps=4,
        gamma=0.1,
        momentum=0.9,
        noise=1e-2,
        seed=3,
        **kw,
    )


def _closure(model, batches, fail_at=None, exc=None):
    """Inner call k uses batches[k]; call ``fail_at`` (1-based) raises ``exc`` instead."""
    calls = iter(range(1, len(batches) + 1))

    def closure():
        k = next(calls)
        if k == fail_at:
            raise exc("the loader ran out")
        loss = mse(model, batches[k - 1])
        loss.backward()
        return loss

    return closure


@pytest.mark.parametrize("exc", [StopIteration, KeyboardInterrupt, Interrupted])
@pytest.mark.parametrize("fail_at", [1, 3, 4])  # L = 4: the first, a middle and the last call
def test_closure_exception_rolls_back_entropy_sgd_and_the_retry_is_uninterrupted(exc, fail_at):
    stream = Stream(0)
    batches = [[stream.batch() for _ in range(4)] for _ in range(3)]  # per outer step
    interrupted, reference = LinearModel(), LinearModel()
    opt, ref = _esgd_run(interrupted), _esgd_run(reference)
    for step in range(3):
        if step == 1:
            params = copy.deepcopy(interrupted.state_dict())
            state = copy.deepcopy(opt.state_dict())
            with pytest.raises(exc, match="loader ran out"):
                opt.step(_closure(interrupted, batches[step], fail_at, exc))
            for key, value in interrupted.state_dict().items():
                assert torch.equal(value, params[key]), key
            assert all(p.grad is None for p in interrupted.parameters())
            assert_state_equal(opt.state_dict(), state)
        opt.step(_closure(interrupted, batches[step]))
        ref.step(_closure(reference, batches[step]))
        for p, q in zip(interrupted.parameters(), reference.parameters(), strict=True):
            assert torch.equal(p, q), step
    assert_state_equal(opt.state_dict(), ref.state_dict())


@pytest.mark.parametrize("bad_call", [1, 4])  # L = 4: the last call's gradient too
def test_nan_gradient_with_a_finite_loss_rolls_back_entropy_sgd(bad_call):
    model = LinearModel()
    opt = _esgd_run(model)
    opt.step(_closure(model, [Stream(1).batch() for _ in range(4)]))  # some state first
    params = copy.deepcopy(model.state_dict())
    state = copy.deepcopy(opt.state_dict())
    stream, calls = Stream(2), []

    def closure():
        calls.append(1)
        loss = mse(model, stream.batch())
        loss.backward()
        if len(calls) == bad_call:
            model.weight.grad[0, 0] = float("nan")  # injected: the loss stays finite
        return loss

    with pytest.raises(NonFiniteLossError, match="non-finite"):
        opt.step(closure)
    for key, value in model.state_dict().items():
        assert torch.equal(value, params[key]), key
    assert_state_equal(opt.state_dict(), state)


def test_nan_gradient_on_the_last_inner_call_names_the_parameter():
    model = LinearModel()
    opt = _esgd_run(model)
    stream, calls = Stream(2), []

    def closure():
        calls.append(1)
        loss = mse(model, stream.batch())
        loss.backward()
        if len(calls) == 4:
            model.bias.grad[1] = float("inf")
        return loss

    with pytest.raises(NonFiniteLossError, match="param 1 after the 4 inner steps"):
        opt.step(closure)


def _sparse_problem():
    """Parameters [linear.weight, linear.bias, embedding.weight]; the embedding's grad is sparse."""
    emb, lin = torch.nn.Embedding(10, 3, sparse=True), torch.nn.Linear(3, 1)

    def closure():
        loss = lin(emb(torch.tensor([1, 2, 7]))).pow(2).mean()
        loss.backward()
        return loss

    return [*lin.parameters(), emb.weight], closure


@pytest.mark.parametrize("kind", ["esgd", "sam"])
def test_sparse_gradient_is_refused_naming_the_parameter_and_nothing_changes(kind):
    params, closure = _sparse_problem()
    if kind == "esgd":
        opt = EntropySGD(params, lr=0.1, inner_lr=0.1, momentum=0.9, seed=0)
    else:
        opt = SAM(params, rho=0.05, lr=0.1, momentum=0.9)
    before = [p.detach().clone() for p in params]
    with pytest.raises(ValueError, match="Invalid param 2: sparse gradients"):
        opt.step(closure)
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))


@pytest.mark.parametrize("kind", ["esgd", "sam"])
def test_meta_device_parameters_are_refused_naming_the_parameter(kind):
    params = [
        torch.nn.Parameter(torch.zeros(2)),
        *torch.nn.Linear(3, 1, device="meta").parameters(),
    ]
    with pytest.raises(ValueError, match="Invalid param 1: a meta-device tensor"):
        if kind == "esgd":
            EntropySGD(params, lr=0.1, inner_lr=0.1)
        else:
            SAM(params, lr=0.1)


@pytest.mark.parametrize("kind", ["esgd", "sam"])
def test_a_bad_parameter_in_a_later_group_is_named_by_its_overall_index(kind):
    first = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    bad = torch.nn.Parameter(torch.zeros(2, device="meta"))
    opt = EntropySGD(first, lr=0.1, inner_lr=0.1) if kind == "esgd" else SAM(first, lr=0.1)
    with pytest.raises(ValueError, match="Invalid param 2: a meta-device tensor"):
        opt.add_param_group({"params": [bad]})
    with pytest.raises(ValueError, match="Invalid param 2: a meta-device tensor"):
        if kind == "esgd":
            EntropySGD([{"params": first}, {"params": [bad]}], lr=0.1, inner_lr=0.1)
        else:
            SAM([{"params": first}, {"params": [bad]}], lr=0.1)


def test_huge_but_finite_parameters_are_not_reported_as_non_finite():
    """‖w‖₂ overflows float32 here (the fast check's inf), yet every entry is finite."""
    w = torch.nn.Parameter(torch.full((4,), 1e30))
    opt = EntropySGD([w], lr=0.1, inner_lr=0.1, inner_steps=2, noise=0.0)

    def closure():
        loss = (w * 0).sum()
        loss.backward()
        return loss

    assert not torch.isfinite(torch.linalg.vector_norm(w.detach()))
    opt.step(closure)
    assert torch.equal(w.detach(), torch.full((4,), 1e30))
