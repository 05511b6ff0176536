"""Mixed precision on CUDA (skipped without CUDA): float16 autocast with torch.amp.GradScaler
and bfloat16 autocast, for EntropySGD and ReplicatedSGD. The CPU tests
(tests/optim/test_amp.py) hold the bit-for-bit checks; here the kernels are CUDA's."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from wideflat.optim import EntropySGD, ReplicatedSGD

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")
S = 2.0**12
N, D, C, BATCH = 512, 32, 10, 64


def make_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(D, 64), nn.ReLU(), nn.Linear(64, C)).to(CUDA)


class Batches:
    """A learnable problem (the label is the argmax of a fixed linear map), batch k."""

    def __init__(self, offset: int = 0):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(N, D, generator=g)
        self.t = (self.x @ torch.randn(D, C, generator=g)).argmax(1)
        self.x, self.t = self.x.to(CUDA), self.t.to(CUDA)
        self.k = offset

    def __call__(self):
        i = (torch.arange(BATCH, device=CUDA) + BATCH * self.k) % N
        self.k += 1
        return self.x[i], self.t[i]


def full_loss(model, batches) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(batches.x), batches.t))


def scaled_backward(loss, params, scaler, by_hand):
    if by_hand:  # GradScaler's arithmetic written out: (s L)' · float32(1/s)
        (loss * S).backward()
        inv = torch.full((), 1.0 / S, dtype=torch.float32, device=CUDA)
        for p in params:
            if p.grad is not None:
                p.grad.mul_(inv)
    else:
        scaler.scale(loss).backward()


def assert_same(a, b):
    """Bitwise equality of nested state dicts."""
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b, strict=True):
            assert_same(u, v)
    else:
        assert a == b


class ESGDRun:
    """EntropySGD on the learnable problem; ``scaler_mode``: None, "scaler" or "hand"."""

    def __init__(self, dtype, scaler_mode):
        self.model, self.batches = make_model(), Batches()
        self.opt = EntropySGD(
            self.model.parameters(), lr=0.5, inner_lr=0.05, inner_steps=3, gamma=0.03,
            momentum=0.9, noise=1e-4, seed=3,
        )  # fmt: skip
        self.scaler = torch.amp.GradScaler("cuda", init_scale=S, backoff_factor=0.25)
        self.dtype, self.mode, self.inject = dtype, scaler_mode, False
        self.start = full_loss(self.model, self.batches)

    def closure(self):
        x, t = self.batches()
        with torch.autocast("cuda", dtype=self.dtype, enabled=self.dtype is not None):
            loss = F.cross_entropy(self.model(x), t)
        if self.mode is None:
            loss.backward()
        else:
            scaled_backward(loss, list(self.model.parameters()), self.scaler, self.mode == "hand")
        if self.inject:
            self.model[0].weight.grad[0, 0] = math.inf
        return loss

    def steps(self, n: int) -> ESGDRun:
        for _ in range(n):
            if self.mode == "scaler":
                self.opt.step(self.closure, scaler=self.scaler)
                self.scaler.update()
            else:
                self.opt.step(self.closure)
        return self


def test_esgd_float16_autocast_with_gradscaler_trains_and_matches_hand_scaling():
    run = ESGDRun(torch.float16, "scaler").steps(30)
    assert full_loss(run.model, run.batches) < 0.8 * run.start
    assert {p.dtype for p in run.model.parameters()} == {torch.float32}
    assert run.opt.steps == 30 and run.scaler.get_scale() == S
    hand = ESGDRun(torch.float16, "hand").steps(30)
    for p, q in zip(run.model.parameters(), hand.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_esgd_gradscaler_overflow_on_cuda_skips_the_step():
    run = ESGDRun(torch.float16, "scaler").steps(2)
    before = copy.deepcopy(run.opt.state_dict())  # μ, both optimizers' states, noise RNG
    params = [p.detach().clone() for p in run.model.parameters()]
    run.inject = True  # every inner step's gradient overflows
    run.steps(1)
    assert run.opt.steps == 2 and run.scaler.get_scale() == S * 0.25
    assert_same(run.opt.state_dict(), before)
    assert_same(list(run.model.parameters()), params)
    run.inject = False
    run.steps(1)
    assert run.opt.steps == 3 and run.scaler.get_scale() == S * 0.25


def test_esgd_bfloat16_autocast_stays_close_to_float32():
    low, full = ESGDRun(torch.bfloat16, None).steps(30), ESGDRun(None, None).steps(30)
    assert full_loss(low.model, low.batches) < 0.8 * low.start
    for p, q in zip(low.model.parameters(), full.model.parameters(), strict=True):
        assert p.dtype == torch.float32
        assert float((p - q).detach().norm() / q.detach().norm()) < 2e-2


@pytest.mark.parametrize("engine", ["loop", "vmap"])
def test_rsgd_float16_autocast_with_gradscaler(engine):
    def run(scaler_mode, inject=False):
        opt = ReplicatedSGD(
            make_model(), lr=0.1, y=3, engine=engine, gamma=0.1, coupling_every=2,
            momentum=0.9, seed=5,
        )  # fmt: skip
        streams = [Batches(offset=5 * a) for a in range(3)]
        scaler = torch.amp.GradScaler("cuda", init_scale=S)
        for step in range(20):
            if engine == "vmap":
                with torch.autocast("cuda", dtype=torch.float16):
                    opt.step_batches([s() for s in streams], scaler=scaler)
            else:

                def closure(a, step=step):
                    x, t = streams[a]()
                    with torch.autocast("cuda", dtype=torch.float16):
                        loss = F.cross_entropy(opt.replicas[a](x), t)
                    scaled_backward(
                        loss, list(opt.replicas[a].parameters()), scaler, scaler_mode == "hand"
                    )
                    if inject and step == 10 and a == 1:
                        next(opt.replicas[a].parameters()).grad[0, 0] = math.inf
                    return loss

                if scaler_mode == "hand":
                    opt.step(closure)
                else:
                    opt.step(closure, scaler=scaler)
            if scaler_mode != "hand":
                scaler.update()
        return opt, scaler

    opt, scaler = run("scaler")
    assert opt.steps == 20 and scaler.get_scale() == S
    assert {p.dtype for p in opt.replicas.parameters()} == {torch.float32}
    center = opt.center()
    batches = Batches()
    assert full_loss(center, batches) < 0.9 * full_loss(make_model(), batches)
    if engine == "loop":
        hand, _ = run("hand")
        for p, q in zip(opt.replicas.parameters(), hand.replicas.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        skipped, scaler = run("scaler", inject=True)
        assert skipped.steps == 19 and scaler.get_scale() == S / 2
