"""Entropy-SGD's Langevin noise: per-block streams, drawn by a worker during the closure or by
torch's OpenMP team after it.

On CPU block j of the flat noise (``BLOCK`` numbers) comes from stream j. With a core to spare
the draw starts before the closure for the parameters that require a gradient; the bits must
be those of a serial draw after the closure for the parameters that got one, whatever the
closure did (left a parameter out, raised half-way), whichever threads drew the blocks.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from _problems import Stream, assert_state_equal, mse
from torch import nn

from wideflat.optim import EntropySGD, _esgd_noise
from wideflat.optim._esgd_scratch import Scratch

BLOCK = _esgd_noise.BLOCK


@pytest.fixture
def threads():
    """Set torch's intra-op threads for one test (the suite may run with one)."""
    saved = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(saved)


class Wide(nn.Module):
    """Big enough (≈ 113k parameters: two noise blocks) for the threaded paths at their real
    threshold, with a second layer the closure may leave out (no gradient, no noise) and a
    frozen one."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Parameter(torch.randn(6, 12000, generator=g) / 50)
        self.head = nn.Parameter(torch.randn(12000, 3, generator=g) / 50)
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


def _train(threshold, monkeypatch, fail_at=None, spare=True):
    """Four outer steps; with ``fail_at``, a step whose closure raises at that call (on other
    batches) comes before the last one and must leave no trace. ``spare``: whether the
    worker may draw during the closure (else the draw comes after it)."""
    monkeypatch.setattr(_esgd_noise, "_THREAD_MIN", threshold)
    monkeypatch.setattr(_esgd_noise, "_spare_core", lambda: spare)  # whatever torch's threads
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
def test_threaded_draws_give_the_bits_of_a_serial_draw_after_the_closure(
    monkeypatch, threads, fail_at
):
    real, never = _esgd_noise._THREAD_MIN, 10**12  # never: every draw serial, after the closure
    # the worker during the closure (forced, real threshold); after it on torch's OpenMP
    # team (3 threads) or, where there is none, serially. The reference runs on as many
    # threads (the gradient's own rounding may depend on them).
    for threshold, spare, n in ((0, True, 1), (real, True, 1), (real, False, 3)):
        threads(n)
        want, want_opt = _train(never, monkeypatch)
        assert "cpu#1" in want_opt.state_dict()["entropy_sgd"]["noise_rng"]["states"]
        got, got_opt = _train(threshold, monkeypatch, fail_at=fail_at, spare=spare)
        for (name, p), q in zip(got.named_parameters(), want.parameters(), strict=True):
            assert torch.equal(p, q), (threshold, spare, name)
        assert_state_equal(got_opt.state_dict(), want_opt.state_dict())
    assert torch.equal(got.frozen, Wide().frozen)
    assert not torch.equal(got.extra, Wide().extra)


def _stream_seed(seed: int, j: int) -> int:
    """Stream j's seed as documented (wideflat._rng.DeviceGenerators), computed here with
    NumPy: the top 63 bits of SeedSequence([seed, 0x5EED, j])'s first 64-bit word."""
    if j == 0:
        return seed
    return int(np.random.SeedSequence([seed, 0x5EED, j]).generate_state(1, np.uint64)[0] >> 1)


@pytest.mark.parametrize("n_threads, spare", [(1, False), (1, True), (2, False), (3, False)])
def test_block_j_of_the_noise_comes_from_stream_j(monkeypatch, threads, n_threads, spare):
    """One inner step from a zero gradient, noise only, on 3.05 blocks: w' − w is √η' ε ξ,
    ξ block by block from generators seeded by hand, whichever threads drew it."""
    threads(n_threads)
    monkeypatch.setattr(_esgd_noise, "_spare_core", lambda: spare)
    n = 3 * BLOCK + 3392
    p = nn.Parameter(torch.zeros(n))
    opt = EntropySGD([p], lr=1.0, inner_lr=0.04, inner_steps=1, gamma=0.0, alpha=0.0,
                     noise=0.5, seed=11)  # fmt: skip

    def closure():
        loss = (p * 0).sum()
        loss.backward()
        return loss

    opt.step(closure)  # α = 0: μ = w'; outer lr 1: w ← w − (w − μ) = w'
    xi = torch.cat([
        torch.randn(min(BLOCK, n - j * BLOCK), generator=torch.Generator().manual_seed(
            _stream_seed(11, j)))
        for j in range(4)
    ])  # fmt: skip
    torch.testing.assert_close(p.detach(), 0.2 * 0.5 * xi, rtol=0, atol=0)
    # the blocks are statistically apart: no block repeats another's numbers
    blocks = xi.split(BLOCK)
    assert len({float(b[0]) for b in blocks}) == 4


def test_a_state_dict_resumes_every_stream(threads):
    """torch.save/torch.load of model and optimizer mid-run, into fresh objects: the next
    steps are those of an uninterrupted run, the numbered streams included."""
    threads(2)
    stream, calls = Stream(1), []
    model = Wide()
    opt = _opt(model)
    for _ in range(2):
        opt.step(_closure(model, stream, calls))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    for _ in range(2):
        opt.step(_closure(model, stream, calls))
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = Wide()
    resumed.load_state_dict(saved["model"])
    resumed_opt = _opt(resumed)
    resumed_opt.load_state_dict(saved["opt"])
    stream2, calls2 = Stream(1), []
    for _ in range(2 * 3):  # the batches of the first 2 steps of 3 inner steps, skipped
        _closure(Wide(), stream2, calls2)()
    for _ in range(2):
        resumed_opt.step(_closure(resumed, stream2, calls2))
    for p, q in zip(resumed.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_state_saved_before_numbered_streams_still_loads():
    gens = _esgd_noise._rng.DeviceGenerators(5)
    old = {"seed": 5, "states": {"cpu": torch.Generator().manual_seed(9).get_state()}}
    gens.load_state_dict(old)
    assert torch.equal(torch.randn(3, generator=gens.get(torch.device("cpu"))),
                       torch.randn(3, generator=torch.Generator().manual_seed(9)))  # fmt: skip
    fresh = torch.Generator().manual_seed(_stream_seed(5, 1))
    assert torch.equal(torch.randn(3, generator=gens.get(torch.device("cpu"), 1)),
                       torch.randn(3, generator=fresh))  # fmt: skip


team = pytest.mark.skipif(
    _esgd_noise.team() is None, reason="torch does not run on the GNU OpenMP runtime here"
)


@team
def test_after_the_closure_the_blocks_are_drawn_by_torchs_openmp_team(monkeypatch, threads):
    seen = []
    real = _esgd_noise._TeamDraw.__call__

    def spy(self, tasks, n):
        seen.append((len(tasks), n))
        real(self, tasks, n)

    monkeypatch.setattr(_esgd_noise._TeamDraw, "__call__", spy)
    monkeypatch.setattr(_esgd_noise, "_spare_core", lambda: False)
    for n in (1, 2, 4):
        threads(n)
        _train(_esgd_noise._THREAD_MIN, monkeypatch, spare=False)
    # 4 outer steps × 3 inner steps, two blocks each, with 2 and 4 threads (2 used: 2 blocks)
    assert seen == [(2, 2)] * 24


@team
def test_an_error_in_a_team_thread_is_raised_after_the_region(threads):
    threads(2)
    good = [torch.zeros(1000) for _ in range(3)]
    gens = [torch.Generator().manual_seed(j) for j in range(4)]
    tasks = [(good[0], gens[0]), (torch.zeros(5, dtype=torch.int64), gens[1]),
             (good[1], gens[2]), (good[2], gens[3])]  # fmt: skip
    with pytest.raises(RuntimeError, match="Long"):
        _esgd_noise.team()(tasks, 2)
    # the other thread keeps drawing after one thread's error; that thread stops
    assert sum(bool(g.any()) for g in good) >= 1


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
