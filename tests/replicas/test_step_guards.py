"""What ReplicatedSGD refuses, and that a refused step changes nothing."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from wideflat.optim import NonFiniteLossError, ReplicatedSGD

Y = 3


def bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))


def data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g)


def make(engine: str, **kw) -> ReplicatedSGD:
    args = dict(lr=0.1, y=Y, gamma=0.1, momentum=0.9, seed=1, engine=engine)
    return ReplicatedSGD(bn_net(), **{**args, **kw})


def nan_grad_term(weight: torch.Tensor) -> torch.Tensor:
    """0 in value, NaN in gradient: d√u/du = ∞ at u = 0, times du/dw = 0."""
    return torch.sqrt(0.0 * weight.sum())


def closure_for(opt: ReplicatedSGD, bad: int | None = None, *, raise_on: int | None = None):
    """Each engine's closure on fixed data; replica ``bad`` gets a NaN gradient."""
    x, t = data()
    if opt.engine == "vmap":

        def closure():
            losses = opt.replicas.losses([(x, t)] * Y, nn.functional.cross_entropy)
            if raise_on is not None:
                raise RuntimeError("data error")
            if bad is not None:
                w = opt.replicas.stacked["0__weight"]
                zero = w.new_zeros(())
                extra = torch.stack([nan_grad_term(w[a]) if a == bad else zero for a in range(Y)])
                losses = losses + extra
            losses.sum().backward()
            return losses.detach()

        return closure

    def closure(a):
        loss = nn.functional.cross_entropy(opt.replicas[a](x), t)
        if a == raise_on:
            raise RuntimeError("data error")
        if a == bad:
            loss = loss + nan_grad_term(opt.replicas[a][0].weight)
        loss.backward()
        return loss

    return closure


def snapshot(opt: ReplicatedSGD):
    return (
        copy.deepcopy(opt.replicas.state_dict()),
        copy.deepcopy(opt.state_dict()),
        torch.get_rng_state(),
    )


def assert_unchanged(opt: ReplicatedSGD, before) -> None:
    params, state, rng = before
    for key, value in opt.replicas.state_dict().items():
        assert torch.equal(value, params[key]), key  # BatchNorm statistics included
    now = opt.state_dict()
    assert now["replicated_sgd"]["steps"] == state["replicated_sgd"]["steps"]
    for a, streams in state["replicated_sgd"]["rng_states"].items():
        for key, value in streams.items():
            assert torch.equal(now["replicated_sgd"]["rng_states"][a][key], value)
    for i, st in state["state"].items():
        for key, value in st.items():
            assert torch.equal(now["state"][i][key], value), (i, key)
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("engine", ["loop", "vmap"])
def test_nan_gradient_with_finite_loss_is_caught_and_nothing_is_updated(engine):
    """reliability F7: the loss is finite, replica 1's gradient is NaN."""
    opt = make(engine)
    opt.step(closure_for(opt))  # momentum state first
    twin = copy.deepcopy(opt)
    before = snapshot(opt)
    with pytest.raises(NonFiniteLossError, match=r"gradient.*replica\(s\) \[1\].*step 2"):
        opt.step(closure_for(opt, bad=1))
    assert_unchanged(opt, before)
    for _ in range(2):  # training goes on exactly as if the bad step never happened
        opt.step(closure_for(opt))
        twin.step(closure_for(twin))
    for p, q in zip(opt.replicas.parameters(), twin.replicas.parameters(), strict=True):
        assert torch.isfinite(p).all() and torch.equal(p, q)


@pytest.mark.parametrize("engine", ["loop", "vmap"])
def test_nan_gradient_without_closure_is_caught(engine):
    opt = make(engine)
    closure_for(opt, bad=2)(*([] if engine == "vmap" else [2]))  # fills .grad of replica 2
    before = snapshot(opt)
    with pytest.raises(NonFiniteLossError, match=r"replica\(s\) \[2\]"):
        opt.step()
    assert_unchanged(opt, before)


@pytest.mark.parametrize("engine", ["loop", "vmap"])
def test_closure_that_raises_leaves_everything_unchanged(engine):
    opt = make(engine)
    opt.step(closure_for(opt))
    before = snapshot(opt)
    with pytest.raises(RuntimeError, match="data error"):
        opt.step(closure_for(opt, raise_on=2))
    assert_unchanged(opt, before)


def test_sparse_gradient_is_refused_naming_the_parameter():
    """reliability F14: nn.Embedding(sparse=True) gave add(sparse, dense) RuntimeError."""
    model = nn.Sequential(nn.Embedding(10, 3, sparse=True), nn.Flatten(), nn.Linear(6, 2))
    opt = ReplicatedSGD(model, lr=0.1, y=2, gamma=0.1, seed=0)
    x = torch.tensor([[1, 2], [3, 4]])
    before = copy.deepcopy(opt.replicas.state_dict())

    def closure(a):
        loss = opt.replicas[a](x).sum()
        loss.backward()
        return loss

    with pytest.raises(ValueError, match=r"replicas\.0\.0\.weight.*sparse"):
        opt.step(closure)
    for key, value in opt.replicas.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_meta_parameters_are_refused_naming_the_parameter():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(3, 2))
    for engine in ("loop", "vmap"):
        with pytest.raises(ValueError, match=r"'0\.weight'.*meta"):
            ReplicatedSGD(model, lr=0.1, y=2, engine=engine)


@pytest.mark.parametrize(
    "model",
    [nn.ReLU(), nn.Linear(2, 2).requires_grad_(False)],
    ids=["no-parameters", "all-frozen"],
)
@pytest.mark.parametrize("engine", ["loop", "vmap"])
def test_model_without_trainable_parameters_is_refused_as_torch_does(model, engine):
    with pytest.raises(ValueError, match="empty parameter list"):
        ReplicatedSGD(model, lr=0.1, y=2, engine=engine)


def test_groups_without_trainable_parameters_are_refused():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[0].requires_grad_(False)
    with pytest.raises(ValueError, match="empty parameter list"):
        ReplicatedSGD(model, lr=0.1, y=2, groups=[{"params": model[0].parameters()}])


def test_frozen_parameters_stay_frozen_in_every_engine():
    """A frozen layer is not trained by the vmap engine either (engines agree)."""
    x, t = data()
    finals = {}
    for engine in ("loop", "vmap"):
        model = bn_net()
        model[0].requires_grad_(False)
        opt = ReplicatedSGD(model, lr=0.1, y=2, gamma=0.1, seed=1, engine=engine)
        first = opt.replicas[1][0].weight.detach().clone()
        for _ in range(3):
            opt.step_batches([(x, t)] * 2)
        assert torch.equal(opt.replicas[1][0].weight, first), engine
        finals[engine] = opt.replicas[1][3].weight.detach().clone()
    torch.testing.assert_close(finals["vmap"], finals["loop"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(lr=1e39), "lr"),
        (dict(lr=0.0, gamma=1e300), "gamma"),
        (dict(momentum=1e39), "momentum"),
        (dict(weight_decay=1e300), "weight_decay"),
    ],
)
def test_hyperparameters_overflowing_float32_are_refused(kwargs, name):
    """reliability F10: lr=1e39 gave 'value cannot be converted to type float' at step 1."""
    args = {**dict(lr=0.1, y=2, seed=0), **kwargs}
    with pytest.raises(ValueError, match=rf"Invalid {name}\b"):
        ReplicatedSGD(nn.Linear(2, 2), **args)


def test_global_step_hooks_fire_once_per_step():
    opt = make("loop")
    seen = []
    pre = register_optimizer_step_pre_hook(lambda o, a, k: seen.append(("pre", type(o).__name__)))
    post = register_optimizer_step_post_hook(
        lambda o, a, k: seen.append(("post", type(o).__name__))
    )
    try:
        opt.step(closure_for(opt))
    finally:
        pre.remove()
        post.remove()
    assert seen == [("pre", "ReplicatedSGD"), ("post", "ReplicatedSGD")]
