"""A small BatchNorm convnet problem shared by the engine tests and the torchrun worker."""

from __future__ import annotations

import torch
from torch import nn

from wideflat.data import replica_streams
from wideflat.optim import ReplicatedSGD

Y, STEPS, BATCH, SEED = 3, 50, 16, 7
HYPER = dict(lr=0.05, gamma=0.2, coupling_every=2, momentum=0.9, nesterov=True, weight_decay=1e-4)


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
    )


def make_data():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(96, 1, 8, 8, generator=g)
    t = torch.randint(0, 3, (96,), generator=g)
    return x, t


def train(engine: str, *, steps: int = STEPS, **overrides):
    """Train with ``engine`` (in this process, or this rank's replica); returns the optimizer."""
    opt = ReplicatedSGD(make_model(), y=Y, engine=engine, seed=SEED, **{**HYPER, **overrides})
    x, t = make_data()
    streams = replica_streams(x, t, BATCH, replicas=opt.replicas.local_indices, seed=SEED)
    for _ in range(steps):
        opt.step_batches([next(s) for s in streams])
    return opt


def replica_state(opt, a: int) -> dict[str, torch.Tensor]:
    """Parameters and buffers of replica a as a flat dict (any engine)."""
    module = opt.replicas[a]
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
