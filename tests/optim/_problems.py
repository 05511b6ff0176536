"""Small deterministic problems shared by the optimizer tests."""

from __future__ import annotations

import torch
from torch import nn

N_DATA, N_IN, N_OUT, BATCH = 256, 6, 3, 32


class LinearModel(nn.Module):
    """f(x) = x W + b; W may be stored non-contiguously (a transposed view)."""

    def __init__(self, *, contiguous: bool = True, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        if contiguous:
            w = torch.randn(N_IN, N_OUT, generator=g)
        else:
            w = torch.randn(N_OUT, N_IN, generator=g).t()
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.randn(N_OUT, generator=g))

    def forward(self, x):
        return x @ self.weight + self.bias

    def reset_parameters(self):
        with torch.no_grad():
            self.weight.normal_()
            self.bias.normal_()


def dataset(seed: int = 123):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_DATA, N_IN, generator=g)
    teacher = torch.randn(N_IN, N_OUT, generator=g)
    t = x @ teacher + 0.1 * torch.randn(N_DATA, N_OUT, generator=g)
    return x, t


class Stream:
    """A reproducible minibatch stream over the fixed dataset (its own generator)."""

    def __init__(self, seed: int):
        self.x, self.t = dataset()
        self.gen = torch.Generator().manual_seed(seed)

    def batch(self):
        i = torch.randint(0, N_DATA, (BATCH,), generator=self.gen)
        return self.x[i], self.t[i]


def mse(model, batch):
    x, t = batch
    return ((model(x) - t) ** 2).mean()


def full_loss(model) -> float:
    x, t = dataset()
    with torch.no_grad():
        return float(mse(model, (x, t)))


def assert_state_equal(a, b, path="state_dict"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, path
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {set(a) ^ set(b)}"
        for k in a:
            assert_state_equal(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_state_equal(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
