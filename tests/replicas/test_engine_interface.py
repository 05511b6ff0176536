"""The written engine interface: every engine is a ReplicaEngine, and ``engine[a]`` is the live
module of replica a everywhere (reads, in-place writes, forward, gradients)."""

from __future__ import annotations

import copy
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
from torch import nn

from wideflat.replicas import (
    DistributedReplicas,
    ReplicaEngine,
    ReplicaIndexError,
    Replicas,
    StackedReplicas,
    make_replicas,
)

Y = 3


def bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))


@pytest.fixture
def world_of_one():
    """A one-process gloo group, so the distributed engine can be built in this process."""
    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{os.path.join(tmp, 'store')}"
        dist.init_process_group("gloo", init_method=init, rank=0, world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()


def engines(include_distributed: bool) -> list[ReplicaEngine]:
    out = [make_replicas(bn_net(), Y, "loop", seed=1), make_replicas(bn_net(), Y, "vmap", seed=1)]
    if include_distributed:
        out.append(make_replicas(bn_net(), engine="distributed", seed=1))
    return out


def test_every_engine_implements_the_protocol(world_of_one):
    loop, vec, distributed = engines(include_distributed=True)
    assert isinstance(loop, Replicas) and isinstance(vec, StackedReplicas)
    assert isinstance(distributed, DistributedReplicas)
    for engine, name in zip((loop, vec, distributed), ("loop", "vmap", "distributed"), strict=True):
        assert isinstance(engine, ReplicaEngine), name
        assert engine.engine == name
        assert engine.batched == (name == "vmap")
        assert engine.spans_processes == (name == "distributed")
    assert not isinstance(bn_net(), ReplicaEngine)  # a plain model is not an engine


def test_make_replicas_returns_an_engine_as_is_and_checks_y():
    loop = make_replicas(bn_net(), Y, "loop", seed=0)
    assert make_replicas(loop) is loop and make_replicas(loop, Y) is loop
    with pytest.raises(ValueError, match="Invalid y: 2 but the replicas hold 3"):
        make_replicas(loop, 2)
    with pytest.raises(ValueError, match="Invalid engine: 'gpu'"):
        make_replicas(bn_net(), Y, "gpu")
    with pytest.raises(ValueError, match="Invalid y: None"):
        make_replicas(bn_net(), engine="loop")
    assert make_replicas(bn_net(), Y).engine == "loop"  # "auto" on the CPU


@pytest.mark.parametrize("kind", ["loop", "vmap"])
def test_indexing_gives_a_live_module_of_a_local_replica(kind):
    engine = make_replicas(bn_net(), Y, kind, seed=1)
    x = torch.randn(5, 4)
    # reads: the module computes with replica a's weights (the center is their mean)
    weights = torch.stack([engine[a][0].weight.detach() for a in range(Y)])
    torch.testing.assert_close(engine.center()[0].weight, weights.mean(0))
    assert not torch.equal(weights[0], weights[1])  # independent replicas
    # in-place writes reach the engine
    with torch.no_grad():
        engine[1][0].weight.fill_(0.5)
    assert bool(engine[1][0].weight.eq(0.5).all()) and not bool(engine[2][0].weight.eq(0.5).all())
    assert float(engine.distances()[1]) > 0
    # negative indices count from y; iteration yields the local replicas in order
    assert torch.equal(engine[-2][0].weight, engine[1][0].weight)
    assert [m[0].weight[0, 0].item() for m in engine] == [
        engine[a][0].weight[0, 0].item() for a in engine.local_indices
    ]
    # gradients of engine[a]'s output accumulate where the optimizer reads them
    engine.train()
    engine[2](x).pow(2).sum().backward()
    params = engine.optimizer_params(list(range(len(engine.reference_parameters()))))
    grads = [p.grad for p in params]
    if kind == "loop":  # replica-major: y blocks of the model's parameters
        n = len(params) // Y
        assert all(g is None for g in grads[: 2 * n]) and all(g is not None for g in grads[2 * n :])
    else:  # stacked (y, ...): only row 2 holds a gradient
        assert all(g is not None for g in grads)
        assert all(bool(g[:2].eq(0).all()) and bool(g[2].ne(0).any()) for g in grads)
    # a training-mode forward updates replica a's BatchNorm statistics, and only them
    assert bool(engine[2][1].running_mean.ne(0).any())
    assert bool(engine[0][1].running_mean.eq(0).all())
    with pytest.raises(ReplicaIndexError, match="Invalid replica index: 3"):
        engine[Y]
    with pytest.raises(IndexError):  # also a ValueError, as before
        engine[-Y - 1]


def test_indexing_agrees_with_losses_in_every_engine():
    loop, vec = engines(include_distributed=False)  # same seed: the same replicas
    batches = [(torch.randn(5, 4), torch.randint(0, 2, (5,))) for _ in range(Y)]
    loss = nn.functional.cross_entropy
    for engine in (loop, vec):
        engine.eval()
        direct = torch.stack([loss(engine[a](x), t) for a, (x, t) in enumerate(batches)])
        torch.testing.assert_close(engine.losses(batches, loss), direct)
    torch.testing.assert_close(loop.losses(batches, loss), vec.losses(batches, loss))


def test_a_vmap_replica_is_a_view_not_a_copy():
    vec = make_replicas(bn_net(), Y, "vmap", seed=1)
    module = vec[1]
    assert module[0].weight.data_ptr() == vec.stacked["0__weight"][1].data_ptr()
    standalone = copy.deepcopy(vec[1])  # the documented way to get a copy
    with torch.no_grad():
        standalone[0].weight.zero_()
    assert not bool(vec[1][0].weight.eq(0).all())


def test_distributed_indexing_holds_only_this_ranks_replica(world_of_one):
    engine = make_replicas(bn_net(), engine="distributed", seed=1)
    assert engine.local_indices == [0] and engine[0] is engine.replica
    assert list(engine) == [engine.replica]
    with pytest.raises(ReplicaIndexError, match="holds replica \\[0\\]"):
        engine[1]
    assert engine.agree_on_failures([0]) == [0]
    x, t = torch.randn(5, 4), torch.randint(0, 2, (5,))
    engine.eval()
    torch.testing.assert_close(
        engine.losses([(x, t)], nn.functional.cross_entropy),
        nn.functional.cross_entropy(engine[0](x), t).reshape(1),
    )


@pytest.mark.parametrize("kind", ["loop", "vmap"])
def test_nonfinite_replicas_names_the_replica(kind):
    engine = make_replicas(bn_net(), Y, kind, seed=1)
    engine.train()
    bad = engine[1](torch.randn(5, 4)).sum() * float("nan")
    bad.backward()
    params = engine.optimizer_params(list(range(len(engine.reference_parameters()))))
    assert engine.nonfinite_replicas(params) == [1]
    assert engine.agree_on_failures([1]) == [1]


def test_replicated_sgd_drives_any_engine_through_the_interface():
    """A user's engine (here a loop engine that counts couplings) is used as given: the
    optimizer dispatches on the interface, not on the three classes it ships with."""
    import inspect

    import wideflat.optim.replicated_sgd as rsgd_module
    from wideflat.optim import ReplicatedSGD

    class Counting(Replicas):
        couplings = 0

        def couple_(self, params, strength):
            type(self).couplings += 1
            super().couple_(params, strength)

    engine = Counting(bn_net(), Y, seed=1)
    opt = ReplicatedSGD(engine, lr=0.1, gamma=0.1, coupling_every=2)
    assert opt.replicas is engine and opt.engine == "loop" and opt.y == Y
    batches = [(torch.randn(5, 4), torch.randint(0, 2, (5,))) for _ in range(Y)]
    for _ in range(4):
        opt.step_batches(batches)
    assert Counting.couplings == 2
    source = inspect.getsource(rsgd_module)
    for name in ("Replicas", "StackedReplicas", "DistributedReplicas"):
        assert f"isinstance(self.replicas, {name})" not in source
        assert f"import {name}" not in source
