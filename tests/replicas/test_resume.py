"""Resuming ReplicatedSGD the usual torch way: model.state_dict() + opt.state_dict()."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from _engine_problem import BATCH, HYPER, SEED, Y, make_model, replica_state
from torch import nn

from wideflat.optim import ReplicatedSGD

ENGINES = ["loop", "vmap"]


def batches(steps: int, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    return [
        [(torch.randn(BATCH, 1, 8, 8, generator=g), torch.randint(0, 3, (BATCH,), generator=g))] * Y
        for _ in range(steps)
    ]


def save_and_load(obj):
    """torch.save then torch.load(weights_only=True), as from disk."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def other_model() -> nn.Module:
    """The same architecture with other weights (a fresh process would build this)."""
    model = make_model()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    return model


@pytest.mark.parametrize("engine", ENGINES)
def test_model_and_optimizer_state_dicts_resume_bit_identically(engine):
    """newcomer F1: replicas 1..y−1 (and, for vmap, all replicas) must come back from the
    optimizer's state dict, BatchNorm statistics included."""
    model = make_model()
    opt = ReplicatedSGD(model, y=Y, engine=engine, seed=SEED, **HYPER)
    data = batches(10)
    for b in data[:5]:
        opt.step_batches(b)
    ck = save_and_load({"model": model.state_dict(), "opt": opt.state_dict()})
    fresh = other_model()
    fresh.load_state_dict(ck["model"])
    resumed = ReplicatedSGD(fresh, y=Y, engine=engine, seed=SEED + 1, **HYPER)
    resumed.load_state_dict(ck["opt"])
    center, center2 = opt.center().state_dict(), resumed.center().state_dict()
    for key, value in center.items():
        assert torch.equal(center2[key], value), f"center {key} right after the load"
    for b in data[5:]:
        opt.step_batches(b)
        resumed.step_batches(b)
    for a in range(Y):
        ref, got = replica_state(opt, a), replica_state(resumed, a)
        for key, value in ref.items():
            assert torch.equal(got[key], value), f"replica {a} {key}"
    assert resumed.steps == opt.steps == 10


def test_state_dict_alone_restores_every_replica():
    """The optimizer's state dict carries every replica it owns: weights and buffers."""
    opt = ReplicatedSGD(make_model(), y=Y, engine="loop", seed=SEED, **HYPER)
    for b in batches(3):
        opt.step_batches(b)
    saved = save_and_load(opt.state_dict())
    twin = ReplicatedSGD(other_model(), y=Y, engine="loop", seed=SEED, **HYPER)
    twin.load_state_dict(saved)
    for a in range(Y):
        ref, got = replica_state(opt, a), replica_state(twin, a)
        assert set(got) == set(ref) and any("running_mean" in k for k in ref)
        for key, value in ref.items():
            assert torch.equal(got[key], value), f"replica {a} {key}"


def test_runner_style_separate_replica_save_still_works():
    """opt.replicas.state_dict() / load_state_dict() stay available and agree with it."""
    opt = ReplicatedSGD(make_model(), y=Y, engine="vmap", seed=SEED, **HYPER)
    for b in batches(3):
        opt.step_batches(b)
    payload = save_and_load({"model": opt.replicas.state_dict(), "opt": opt.state_dict()})
    twin = ReplicatedSGD(make_model(), y=Y, engine="vmap", seed=SEED, **HYPER)
    twin.replicas.load_state_dict(payload["model"])
    twin.load_state_dict(payload["opt"])
    for p, q in zip(opt.replicas.parameters(), twin.replicas.parameters(), strict=True):
        assert torch.equal(p, q)


def _unchanged(opt):
    return copy.deepcopy(opt.replicas.state_dict()), copy.deepcopy(opt.state_dict())


def _assert_same(opt, before):
    params, state = before
    for key, value in opt.replicas.state_dict().items():
        assert torch.equal(value, params[key]), key
    assert opt.steps == state["replicated_sgd"]["steps"]


def test_wrong_y_is_refused_before_anything_is_loaded():
    opt = ReplicatedSGD(make_model(), y=3, seed=SEED, **HYPER)
    opt.step_batches(batches(1)[0])
    other = ReplicatedSGD(make_model(), y=2, seed=SEED, **HYPER)
    before = _unchanged(other)
    with pytest.raises(ValueError, match="y=3.*y=2"):
        other.load_state_dict(opt.state_dict())
    _assert_same(other, before)


def test_wrong_shapes_are_refused_naming_the_tensor():
    """Same number of tensors, other shapes: a clear ValueError, nothing loaded."""

    def net(width):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2))

    opt = ReplicatedSGD(net(8), lr=0.1, y=2, momentum=0.9, seed=0)
    x, t = torch.randn(8, 4), torch.randint(0, 2, (8,))
    opt.step_batches([(x, t)] * 2)
    other = ReplicatedSGD(net(5), lr=0.1, y=2, momentum=0.9, seed=0)
    before = _unchanged(other)
    with pytest.raises(ValueError, match=r"replicas\.0\.0\.weight.*\(8, 4\).*\(5, 4\)"):
        other.load_state_dict(opt.state_dict())
    _assert_same(other, before)


def test_state_dict_of_another_engine_is_refused():
    opt = ReplicatedSGD(make_model(), y=Y, engine="loop", seed=SEED, **HYPER)
    other = ReplicatedSGD(make_model(), y=Y, engine="vmap", seed=SEED, **HYPER)
    with pytest.raises(ValueError, match="engine 'loop'.*'vmap'"):
        other.load_state_dict(opt.state_dict())


def test_state_dict_without_replicas_warns_and_loads_the_rest():
    """An older state dict (no replicas inside) loads, but says what it could not restore."""
    opt = ReplicatedSGD(make_model(), y=Y, seed=SEED, **HYPER)
    opt.step_batches(batches(1)[0])
    sd = copy.deepcopy(opt.state_dict())
    del sd["replicated_sgd"]["replicas"]
    twin = ReplicatedSGD(make_model(), y=Y, seed=SEED, **HYPER)
    with pytest.warns(UserWarning, match="replicas"):
        twin.load_state_dict(sd)
    assert twin.steps == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_groups_missing_base_optimizer_keys_are_filled_after_loading(engine):
    """A state dict from a torch without SGD's newer keys must not break the next step."""
    model = make_model()
    opt = ReplicatedSGD(model, y=Y, engine=engine, seed=SEED, **HYPER)
    data = batches(2)
    opt.step_batches(data[0])
    sd = copy.deepcopy(opt.state_dict())
    for group in sd["param_groups"]:
        for key in ("maximize", "foreach", "differentiable", "fused"):
            del group[key]
    twin = ReplicatedSGD(make_model(), y=Y, engine=engine, seed=SEED, **HYPER)
    twin.load_state_dict(sd)
    assert twin.param_groups[0]["maximize"] is False
    opt.step_batches(data[1])
    twin.step_batches(data[1])  # KeyError: 'maximize' before the fix
    for p, q in zip(opt.replicas.parameters(), twin.replicas.parameters(), strict=True):
        assert torch.equal(p, q)
