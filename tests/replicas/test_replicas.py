"""The Replicas container: initialization, center, distances, BatchNorm statistics."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from wideflat.optim import ReplicatedSGD
from wideflat.replicas import Replicas, recompute_bn


def bn_net():
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def test_replica_zero_is_the_model_and_init_policies():
    model = bn_net()
    reps = Replicas(model, 3, seed=0)
    assert reps[0] is model and len(reps) == 3
    assert not torch.equal(reps[1][0].weight, reps[2][0].weight)
    again = Replicas(copy.deepcopy(model), 3, seed=0)
    assert torch.equal(reps[2][0].weight, again[2][0].weight)  # seeded
    same = Replicas(bn_net(), 3, init="copy", seed=0)
    assert torch.equal(same[1][0].weight, same[0][0].weight)
    assert float(same.distances().sum()) == 0.0


def test_center_and_distances_by_hand():
    reps = Replicas(bn_net(), 3, seed=1)
    center = reps.center()
    for name, p in center.named_parameters():
        ps = [dict(r.named_parameters())[name] for r in reps]
        torch.testing.assert_close(p, (ps[0] + ps[1] + ps[2]) / 3)
    cparams = dict(center.named_parameters())
    by_hand = [
        sum(0.5 * float(((p - cparams[n]) ** 2).sum()) for n, p in r.named_parameters())
        for r in reps
    ]
    torch.testing.assert_close(reps.distances(), torch.tensor(by_hand, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="replica"):
        reps(torch.zeros(1, 5))


def test_center_bn_statistics_recomputed_from_data():
    torch.manual_seed(0)
    opt = ReplicatedSGD(bn_net(), lr=0.05, y=3, gamma=0.1, seed=0)
    x = torch.randn(96, 5) * 3 + 1
    t = torch.randint(0, 2, (96,))
    for _ in range(5):

        def closure(a):
            i = torch.randint(0, 96, (16,))
            loss = nn.functional.cross_entropy(opt.replicas[a](x[i]), t[i])
            loss.backward()
            return loss

        opt.step(closure)
    replica_buffers = [copy.deepcopy(dict(r.named_buffers())) for r in opt.replicas]
    center = opt.center()
    batches = [x[i : i + 32] for i in range(0, 96, 32)]
    recompute_bn(center, batches)
    with torch.no_grad():
        h = center[0](x)
    bn = center[1]
    torch.testing.assert_close(bn.running_mean, h.mean(0), rtol=1e-5, atol=1e-5)
    # update_bn averages per-batch unbiased variances (equal batch sizes here).
    var = torch.stack([h[i : i + 32].var(0, unbiased=True) for i in range(0, 96, 32)]).mean(0)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-5)
    assert bn.momentum == 0.1 and center.training  # layer settings and mode restored
    for r, saved in zip(opt.replicas, replica_buffers, strict=True):
        for name, b in r.named_buffers():
            assert torch.equal(b, saved[name])


def test_per_replica_rng_streams_make_identical_replicas_diverge():
    model = nn.Sequential(nn.Linear(5, 16), nn.Dropout(0.5), nn.Linear(16, 1))
    opt = ReplicatedSGD(model, lr=0.05, y=3, init="copy", seed=0)
    x, t = torch.randn(32, 5), torch.randn(32, 1)

    def closure(a):  # the same batch for every replica: only dropout differs
        loss = nn.functional.mse_loss(opt.replicas[a](x), t)
        loss.backward()
        return loss

    global_state = torch.get_rng_state()
    opt.step(closure)
    assert torch.equal(torch.get_rng_state(), global_state)  # streams are private
    w = [r[0].weight for r in opt.replicas]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])


def test_invalid_arguments():
    with pytest.raises(ValueError, match="Invalid y"):
        Replicas(bn_net(), 0)
    with pytest.raises(ValueError, match="Invalid init"):
        Replicas(bn_net(), 2, init="random")
    with pytest.raises(ValueError, match="Invalid model"):
        Replicas([1, 2], 2)
