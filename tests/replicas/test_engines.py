"""The loop and vectorized engines give the same replicas; the vectorized one is batched."""

from __future__ import annotations

import copy

import pytest
import torch
from _engine_problem import HYPER, SEED, Y, make_model, replica_state, train

from wideflat.optim import ReplicatedSGD
from wideflat.replicas import Replicas, StackedReplicas, choose_engine


def assert_close_rel(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5, what: str = ""):
    if not a.is_floating_point():
        assert torch.equal(a, b), what
        return
    err = float((a - b).abs().max())
    scale = float(b.abs().max()) or 1.0
    assert err <= rtol * scale, f"{what}: max abs diff {err:.3g} vs scale {scale:.3g}"


def test_vmap_engine_equals_loop_engine_after_50_steps():
    loop, vec = train("loop"), train("vmap")
    assert loop.engine == "loop" and vec.engine == "vmap"
    for a in range(Y):
        ref, got = replica_state(loop, a), replica_state(vec, a)
        assert set(ref) == set(got)
        for key in ref:
            assert_close_rel(got[key], ref[key], what=f"replica {a} {key}")
    c_loop, c_vec = loop.center().state_dict(), vec.center().state_dict()
    for key in c_loop:
        assert_close_rel(c_vec[key], c_loop[key], what=f"center {key}")
    torch.testing.assert_close(
        vec.replicas.distances(), loop.replicas.distances(), rtol=1e-4, atol=0
    )


def test_engines_start_from_the_same_replicas():
    loop = Replicas(make_model(), Y, seed=SEED)
    vec = StackedReplicas(make_model(), Y, seed=SEED)
    for a in range(Y):
        for (name, p), q in zip(loop[a].named_parameters(), vec[a].parameters(), strict=True):
            assert torch.equal(p, q), name


def test_vmap_bn_statistics_are_per_replica_and_dropout_independent():
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2)
    )
    opt = ReplicatedSGD(model, lr=0.1, y=3, engine="vmap", init="copy", seed=0)
    x = torch.randn(16, 4)
    t = torch.randint(0, 2, (16,))
    x_per = [x + a for a in range(3)]  # different data per replica → different BN statistics
    opt.step_batches([(xa, t) for xa in x_per])
    means = opt.replicas._stacked_buffers()["1.running_mean"]
    assert not torch.allclose(means[0], means[1])
    # identical replicas and batches: only dropout differs, and it must
    opt2 = ReplicatedSGD(model, lr=0.1, y=3, engine="vmap", init="copy", seed=0)
    opt2.step_batches([(x, t)] * 3)
    w = opt2.replicas.stacked["0__weight"]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])


def test_vmap_engine_resume_is_bit_identical():
    opt = train("vmap", steps=5)
    twin = ReplicatedSGD(make_model(), y=Y, engine="vmap", seed=SEED, **HYPER)
    twin.replicas.load_state_dict(opt.replicas.state_dict())
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))  # (as from disk: no aliasing)
    batches = [(torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))) for _ in range(Y)]
    for _ in range(5):
        opt.step_batches(batches)
        twin.step_batches(batches)
    for p, q in zip(opt.replicas.parameters(), twin.replicas.parameters(), strict=True):
        assert torch.equal(p, q)


def test_engine_argument_errors():
    with pytest.raises(ValueError, match="Invalid engine"):
        ReplicatedSGD(make_model(), lr=0.1, y=2, engine="gpu")
    opt = ReplicatedSGD(make_model(), lr=0.1, y=2, engine="vmap")
    with pytest.raises(ValueError, match="Invalid batches"):
        opt.step_batches([(torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))])


def test_auto_engine_is_loop_on_cpu_and_for_custom_modules():
    assert ReplicatedSGD(make_model(), lr=0.1, y=2).engine == "loop"  # CPU
    assert choose_engine(make_model()) == "loop"

    class Custom(torch.nn.Module):
        def forward(self, x):
            return x

    assert choose_engine(torch.nn.Sequential(torch.nn.Linear(2, 2), Custom())) == "loop"
