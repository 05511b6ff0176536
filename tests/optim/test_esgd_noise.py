"""Entropy-SGD's Langevin noise drawn on a worker thread while the closure runs.

The draw starts before the closure for the parameters that require a gradient; the bits must
be those of a draw after the closure for the parameters that got one, whatever the closure
did (left a parameter out, raised half-way), and whether or not the thread was used.
"""

from __future__ import annotations

import copy

import pytest
import torch
from _problems import Stream, assert_state_equal, mse
from torch import nn

from wideflat.optim import EntropySGD, _esgd_noise
from wideflat.optim._esgd_scratch import Scratch


class Wide(nn.Module):
    """Big enough (≈ 40k parameters) for the threaded path at its real threshold, with a
    second layer the closure may leave out (no gradient, no noise) and a frozen one."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Parameter(torch.randn(6, 6000, generator=g) / 50)
        self.head = nn.Parameter(torch.randn(6000, 3, generator=g) / 50)
        self.extra = nn.Parameter(torch.randn(5000, generator=g))
        self.frozen = nn.Parameter(torch.randn(7, generator=g), requires_grad=False)

    def forward(self, x, use_extra=True):
        out = torch.tanh(x @ self.a) @ self.head
        if use_extra:
            out = out + 1e-3 * self.extra.sum()
        return out


def _opt(model):
    return EntropySGD(
        [
            {"params": [model.a, model.head]},
            {"params": [model.extra], "noise": 3e-2},  # another scale: another foreach run
            {"params": [model.frozen], "noise": 0.0},
        ],
        lr=0.5,
        inner_lr=0.05,
        inner_steps=3,
        gamma=0.1,
        momentum=0.9,
        noise=1e-2,
        seed=7,
    )


def _closure(model, stream, calls, fail_at=None):
    def closure():
        calls.append(1)
        if len(calls) == fail_at:
            raise KeyboardInterrupt("stop")
        # every other call leaves `extra` out: the guess (all that require a gradient) is
        # then wrong and the draw must be redone for the parameters that got one
        loss = mse(lambda x: model(x, use_extra=len(calls) % 2 == 0), stream.batch())
        loss.backward()
        return loss

    return closure


def _train(threshold, monkeypatch, fail_at=None):
    """Four outer steps; with ``fail_at``, a step whose closure raises at that call (on other
    batches) comes before the last one and must leave no trace."""
    monkeypatch.setattr(_esgd_noise, "_THREAD_MIN", threshold)
    monkeypatch.setattr(_esgd_noise, "_spare_core", lambda: True)  # whatever torch's threads
    model, stream, calls = Wide(), Stream(1), []
    opt = _opt(model)
    for step in range(4):
        if step == 3 and fail_at is not None:
            before = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
            with pytest.raises(KeyboardInterrupt):
                opt.step(_closure(model, Stream(2), [], fail_at))
            for key, value in model.state_dict().items():
                assert torch.equal(value, before[0][key]), key
            assert_state_equal(opt.state_dict(), before[1])
        opt.step(_closure(model, stream, calls))
    return model, opt


@pytest.mark.parametrize("fail_at", [None, 1, 2])
def test_threaded_draw_gives_the_bits_of_a_draw_after_the_closure(monkeypatch, fail_at):
    real, never = _esgd_noise._THREAD_MIN, 10**12  # never: every draw after the closure
    want, want_opt = _train(never, monkeypatch)
    for threshold in (0, real):  # forced, and the real threshold
        got, got_opt = _train(threshold, monkeypatch, fail_at=fail_at)
        for (name, p), q in zip(got.named_parameters(), want.parameters(), strict=True):
            assert torch.equal(p, q), (threshold, name)
        assert_state_equal(got_opt.state_dict(), want_opt.state_dict())
    assert torch.equal(got.frozen, Wide().frozen)
    assert not torch.equal(got.extra, Wide().extra)


def test_noise_is_added_to_the_parameters_that_got_a_gradient_only(monkeypatch):
    """One inner step from zero gradients, noise only: w' − w is √η' ε ξ on the live
    parameter, ξ the first numbers of the generator, and 0 on the one left out."""
    monkeypatch.setattr(_esgd_noise, "_THREAD_MIN", 0)
    monkeypatch.setattr(_esgd_noise, "_spare_core", lambda: True)
    live, left_out = nn.Parameter(torch.zeros(40_000)), nn.Parameter(torch.zeros(10))
    opt = EntropySGD(
        [live, left_out], lr=1.0, inner_lr=0.04, inner_steps=1, gamma=0.0, alpha=0.0, noise=0.5,
        seed=11,
    )  # fmt: skip

    def closure():
        loss = (live * 0).sum()  # a zero gradient for `live`, none for `left_out`
        loss.backward()
        return loss

    opt.step(closure)  # α = 0: μ = w'; outer lr 1: w ← w − (w − μ) = w'
    xi = torch.randn(40_000, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(live.detach(), 0.2 * 0.5 * xi, rtol=0, atol=0)
    assert torch.equal(left_out.detach(), torch.zeros(10))


def test_the_worker_is_used_only_with_a_core_to_spare(monkeypatch):
    p = nn.Parameter(torch.zeros(1 << 17))
    p.grad = torch.zeros_like(p)
    groups = [{"params": [p], "inner_lr": 0.01, "noise": 1.0, "convention": "paper"}]
    gens = _esgd_noise._rng.DeviceGenerators(0)
    for spare in (True, False):
        monkeypatch.setattr(_esgd_noise, "_spare_core", lambda spare=spare: spare)
        draw = _esgd_noise.NoiseDraw(groups, [p], Scratch([p]), gens)
        assert (draw._future is not None) == spare
        with torch.no_grad():
            draw.add_([[0]])
