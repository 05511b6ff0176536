"""Names that moved keep working; typed errors carry data; the eSGD probe is public."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from _problems import LinearModel, Stream, mse

from wideflat.optim import EntropySGD, NonFiniteLossError, ReplicatedSGD, auto_gamma0_rsgd
from wideflat.optim.entropy_sgd import auto_gamma0_esgd


@pytest.mark.parametrize(
    "old, name, new",
    [
        ("wideflat.optim.focusing", "auto_gamma0_esgd", "wideflat.optim.entropy_sgd"),
        ("wideflat.optim.replicated_sgd", "choose_engine", "wideflat.replicas"),
        ("wideflat.optim.replicated_sgd", "ENGINES", "wideflat.replicas"),
    ],
)
def test_moved_names_still_import_with_a_deprecation_warning(old, name, new):
    import importlib

    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to {new}\.{name}"):
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(new), name)


def test_optim_package_exports_the_moved_auto_gamma0_esgd():
    import wideflat.optim

    assert wideflat.optim.auto_gamma0_esgd is auto_gamma0_esgd


def _nan_closure(opt, bad: int, streams):
    def closure(a):
        loss = mse(opt.replicas[a], streams[a].batch())
        if a == bad:
            loss = loss * float("nan")
        loss.backward()
        return loss

    return closure


def test_non_finite_loss_error_carries_the_replicas_and_the_step():
    opt = ReplicatedSGD(LinearModel(), lr=0.1, y=3, gamma=0.1, seed=0)
    streams = [Stream(a) for a in range(3)]
    opt.step(lambda a: _backward(mse(opt.replicas[a], streams[a].batch())))
    with pytest.raises(NonFiniteLossError) as caught:
        opt.step(_nan_closure(opt, 2, streams))
    assert caught.value.replicas == [2] and caught.value.step == 2
    again = pickle.loads(pickle.dumps(caught.value))  # e.g. from a worker process
    assert again.replicas == [2] and again.step == 2 and str(again) == str(caught.value)


def test_entropy_sgd_error_carries_the_outer_step_and_no_replicas():
    model = LinearModel()
    opt = EntropySGD(model.parameters(), lr=0.1, inner_lr=0.01, inner_steps=2, seed=0)
    stream = Stream(0)

    def closure(nan=False):
        loss = mse(model, stream.batch()) * (float("nan") if nan else 1.0)
        loss.backward()
        return loss

    opt.step(closure)
    with pytest.raises(NonFiniteLossError) as caught:
        opt.step(lambda: closure(nan=True))
    assert caught.value.step == 2 and caught.value.replicas is None


def _backward(loss):
    loss.backward()
    return loss


def test_probe_inner_loop_returns_loss_and_distance_and_changes_nothing():
    model = LinearModel()
    opt = EntropySGD(
        model.parameters(), lr=0.5, inner_lr=0.05, inner_steps=3, gamma=0.3, noise=1e-3, seed=0
    )
    stream = Stream(0)

    def closure():
        return _backward(mse(model, stream.batch()))

    opt.step(closure)
    params, state = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    batches = stream.gen.get_state()
    loss, distance = opt.probe_inner_loop(closure, gamma=0.0)
    assert loss > 0 and distance > 0 and opt.steps == 1
    for key, value in model.state_dict().items():
        assert torch.equal(value, params[key])
    for key in ("outer", "inner", "entropy_sgd"):  # momenta, step count, noise stream
        assert repr(opt.state_dict()[key]) == repr(state[key])
    # restored state + the same batches: the same numbers, so auto_gamma0_esgd is their ratio
    stream.gen.set_state(batches)
    assert auto_gamma0_esgd(opt, closure) == loss / distance
    with pytest.raises(ValueError, match="Invalid gamma"):
        opt.probe_inner_loop(closure, gamma=-1.0)
    with pytest.raises(ValueError, match="is not an EntropySGD"):
        auto_gamma0_esgd(torch.optim.SGD(model.parameters(), lr=0.1), closure)


def test_auto_gamma0_rsgd_refuses_what_is_not_an_engine():
    with pytest.raises(ValueError, match="expected a ReplicatedSGD or a replica engine"):
        auto_gamma0_rsgd(torch.optim.SGD(LinearModel().parameters(), lr=0.1), lambda m: 0.0)
    with pytest.raises(ValueError, match="expected a ReplicatedSGD or a replica engine"):
        auto_gamma0_rsgd(LinearModel(), lambda m: 0.0)


def test_the_optimizers_validators_are_the_shared_ones():
    import wideflat._validate as shared
    import wideflat.optim._validate as old

    for name in ("non_negative", "positive_int", "sgd_settings", "all_finite", "coupling_step"):
        assert getattr(old, name) is getattr(shared, name)
