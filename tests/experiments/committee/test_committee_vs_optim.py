"""The committee trainer's batched eSGD and rSGD steps are the library optimizers' steps.

One restart, small N, float64: the committee's outer iterations (eSGD) and epochs (rSGD) are
replayed with :class:`wideflat.optim.EntropySGD` / :class:`wideflat.optim.ReplicatedSGD` on
the same weights, the same minibatches (the restart generator's draws, in the documented
order), the committee's loss gradient and its schedules (γ, β, ω per epoch), and the
committee's one addition, the per-unit renormalization after every step. They agree to 1e-12
after every outer iteration / epoch. (Not bit for bit: the committee's base step rounds
``w − η g`` twice where ``torch.optim.SGD`` may fuse it, and its center is the plain mean.)
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from wideflat.experiments.committee import _batched
from wideflat.experiments.committee.presets import committee_preset
from wideflat.experiments.committee.train import restart_generator
from wideflat.models.committee import (
    CommitteeMachine,
    committee_loss_and_grad,
    committee_output,
    init_committee_weights,
    normalize_units,
)
from wideflat.optim import EntropySGD, ReplicatedSGD
from wideflat.optim._esgd_noise import NoiseDraw

F64 = torch.float64
N, K, M, B, SEED = 21, 3, 60, 20, 4
S = M // B  # steps per epoch


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(3)
    X = (torch.randint(0, 2, (M, N), generator=g) * 2 - 1).to(F64)
    return X, committee_output(init_committee_weights(K, N, generator=g, dtype=F64), X)


def _committee(hp, X, y, rounds):
    """The committee trainer's own rounds for one restart; the weights after each."""
    pop = _batched.Population(None, [restart_generator(SEED, 0)], torch.arange(1))
    pop.w = normalize_units(torch.rand((1, hp.y, K, N), generator=pop.gens[0], dtype=F64) * 2 - 1)
    out, steps = [], 0
    for _ in range(rounds):
        if hp.kind == "esgd":
            mu = _batched.esgd_outer(pop, X, y, hp, steps)
            out.append((pop.w[0].clone(), mu[0].clone()))
            steps += hp.inner_steps
        else:
            _batched.sgd_epoch(pop, X, y, hp, steps // S, steps)
            out.append(pop.w[0].clone())
            steps += S
    return out


@pytest.mark.parametrize("engine", ["vmap", "loop"])
@pytest.mark.parametrize("coupling_every", [1, 2])
def test_rsgd_epochs_equal_replicated_sgd(data, engine, coupling_every):
    X, y = data
    hp = committee_preset("rsgd-fast", dict(
        lr=1.0, y=3, gamma0=0.05, gamma1=0.1, beta1=0.05, omega1=0.1, batch_size=B,
        coupling_every=coupling_every,
    ))  # fmt: skip
    expected = _committee(hp, X, y, rounds=4)

    gen = restart_generator(SEED, 0)  # replays the restart's draws: weights, then permutations
    w0 = normalize_units(torch.rand((hp.y, K, N), generator=gen, dtype=F64) * 2 - 1)
    opt = ReplicatedSGD(CommitteeMachine(N, K, dtype=F64), lr=hp.lr, y=hp.y, engine=engine,
                        gamma=hp.gamma0, coupling_every=hp.coupling_every, seed=0)  # fmt: skip
    params = opt.param_groups[0]["params"]  # vmap: one (y, K, N) tensor; loop: y (K, N) ones
    with torch.no_grad():
        for p, w in zip(params, [w0] if engine == "vmap" else list(w0), strict=True):
            p.copy_(w)

    def weights():
        return params[0] if engine == "vmap" else torch.stack(params)

    for epoch, want in enumerate(expected):
        opt.param_groups[0]["gamma"] = hp.gamma(epoch)  # γ(t), β(t), ω(t) per epoch
        perms = torch.stack([torch.randperm(M, generator=gen) for _ in range(hp.y)])
        for s in range(S):
            idx = perms[:, s * B : (s + 1) * B]
            losses, grads = committee_loss_and_grad(
                weights().detach(), X[idx], y[idx], beta=hp.beta(epoch), omega=hp.omega(epoch)
            )

            def closure(a=None, losses=losses, grads=grads):
                if a is None:
                    params[0].grad = grads.clone()
                    return losses
                params[a].grad = grads[a].clone()
                return losses[a]

            opt.step(closure)
            with torch.no_grad():  # the committee's renormalization after every step
                for p in params:
                    p.copy_(normalize_units(p))
        torch.testing.assert_close(weights(), want, rtol=0, atol=1e-12)
    assert not torch.allclose(expected[0], expected[-1])  # the weights did move


@pytest.mark.parametrize("noise", [0.0, 1e-2])
def test_esgd_outer_iterations_equal_entropy_sgd(data, noise, monkeypatch):
    X, y = data
    hp = committee_preset("esgd", dict(
        lr=0.7, inner_lr=0.5, noise=noise, inner_steps=4, alpha=0.6, gamma0=0.1,
        gamma1=0.2, beta1=0.05, omega1=0.1, batch_size=B,
    ))  # fmt: skip
    expected = _committee(hp, X, y, rounds=5)  # 20 inner steps: 6 2/3 epochs

    gen = restart_generator(SEED, 0)
    w = torch.nn.Parameter(
        normalize_units(torch.rand((1, K, N), generator=gen, dtype=F64) * 2 - 1)[0]
    )
    opt = EntropySGD([w], lr=hp.lr, inner_lr=hp.inner_lr, inner_steps=hp.inner_steps,
                     gamma=hp.gamma0, alpha=hp.alpha, noise=hp.noise, seed=0)  # fmt: skip
    state = SimpleNamespace(step=0, perm=None, noise_from=None)

    def closure():  # one inner step: the committee's minibatch stream and schedules
        epoch, pos = divmod(state.step, S)
        if pos == 0:
            state.perm = torch.randperm(M, generator=gen)
        idx = state.perm[pos * B : (pos + 1) * B]
        loss, w.grad = committee_loss_and_grad(
            w.detach(), X[idx], y[idx], beta=hp.beta(epoch), omega=hp.omega(epoch)
        )
        state.noise_from = gen.get_state()  # the committee's noise, drawn after ∇L
        torch.randn((1, K, N), generator=gen, dtype=F64)
        opt.param_groups[0]["gamma"] = hp.gamma(epoch)  # γ of this inner step's epoch
        state.step += 1
        return loss

    # EntropySGD's Langevin step drawing the committee's noise (its generator, in the state the
    # committee draws from after ∇L: whatever EntropySGD drew while the closure ran is
    # dropped), then the committee's renormalization of w' (before the running mean), as the
    # committee trainer does.
    real_add = NoiseDraw.add_

    def committee_add(draw, live):
        draw.settle()
        noise = torch.Generator()
        noise.set_state(state.noise_from)
        gens = SimpleNamespace(get=lambda device, stream=0: noise)  # K·N < BLOCK: one stream
        draw.gens, draw.layout, draw._states = gens, None, []
        real_add(draw, live)
        for p in draw.params:
            p.copy_(normalize_units(p))

    monkeypatch.setattr(NoiseDraw, "add_", committee_add)
    for want_w, want_mu in expected:
        opt.step(closure)
        with torch.no_grad():
            w.copy_(normalize_units(w))
        torch.testing.assert_close(opt.state[w]["mean"], want_mu[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(w.detach(), want_w[0], rtol=0, atol=1e-12)
    assert state.step == 5 * hp.inner_steps
    assert not torch.allclose(expected[0][0], expected[-1][0])
    assert math.isfinite(float(w.detach().sum()))
