"""Reductions to known algorithms (bit-exact) and hand-computed float64 trajectories."""

from __future__ import annotations

import copy

import pytest
import torch
from _problems import LinearModel, Stream, assert_state_equal, mse

from wideflat.optim import EntropySGD, ReplicatedSGD, auto_gamma0_esgd

SGD_SETTINGS = [
    dict(momentum=0.0, weight_decay=0.0),
    dict(momentum=0.9, weight_decay=0.0),
    dict(momentum=0.9, nesterov=True, weight_decay=5e-4),
    dict(momentum=0.0, weight_decay=1e-2),
]


@pytest.mark.parametrize("settings", SGD_SETTINGS, ids=str)
def test_rsgd_with_one_replica_is_sgd(settings):
    model = LinearModel()
    reference = copy.deepcopy(model)
    opt = ReplicatedSGD(model, lr=0.05, y=1, gamma=0.3, seed=0, **settings)
    sgd = torch.optim.SGD(reference.parameters(), lr=0.05, **settings)
    s1, s2 = Stream(1), Stream(1)

    def closure(a):
        loss = mse(opt.replicas[a], s1.batch())
        loss.backward()
        return loss

    for step in range(50):
        opt.step(closure)
        sgd.zero_grad()
        mse(reference, s2.batch()).backward()
        sgd.step()
        for p, q in zip(model.parameters(), reference.parameters(), strict=True):
            assert torch.equal(p, q), f"step {step}"


@pytest.mark.parametrize("settings", SGD_SETTINGS, ids=str)
def test_rsgd_without_coupling_is_y_independent_sgds(settings):
    opt = ReplicatedSGD(LinearModel(), lr=0.05, y=3, gamma=0.0, seed=3, **settings)
    references = [copy.deepcopy(r) for r in opt.replicas]  # same (independent) inits
    sgds = [torch.optim.SGD(r.parameters(), lr=0.05, **settings) for r in references]
    streams, ref_streams = [Stream(a) for a in range(3)], [Stream(a) for a in range(3)]

    def closure(a):
        loss = mse(opt.replicas[a], streams[a].batch())
        loss.backward()
        return loss

    for _ in range(30):
        opt.step(closure)
        for ref, sgd, stream in zip(references, sgds, ref_streams, strict=True):
            sgd.zero_grad()
            mse(ref, stream.batch()).backward()
            sgd.step()
    for replica, ref in zip(opt.replicas, references, strict=True):
        for p, q in zip(replica.parameters(), ref.parameters(), strict=True):
            assert torch.equal(p, q)


@pytest.mark.parametrize("inner_momentum", [0.0, 0.9])
@pytest.mark.parametrize("inner_steps", [1, 3, 5])
def test_esgd_without_noise_mean_and_coupling_is_lookahead(inner_steps, inner_momentum):
    """ε = α = γ = 0: Lookahead with k = L fast steps and slow step size η (by hand)."""
    eta, fast_lr = 0.7, 0.05
    model = LinearModel()
    opt = EntropySGD(
        model.parameters(),
        lr=eta,
        inner_lr=fast_lr,
        inner_steps=inner_steps,
        gamma=0.0,
        alpha=0.0,
        noise=0.0,
        inner_kwargs=dict(momentum=inner_momentum),
    )
    stream = Stream(5)

    def closure():
        loss = mse(model, stream.batch())
        loss.backward()
        return loss

    # Lookahead written out: slow weights φ, fast weights θ with their own SGD.
    fast = copy.deepcopy(LinearModel())
    slow = [p.detach().clone() for p in fast.parameters()]
    fast_opt = torch.optim.SGD(fast.parameters(), lr=fast_lr, momentum=inner_momentum)
    ref_stream = Stream(5)
    for _ in range(15):
        opt.step(closure)
        with torch.no_grad():
            for p, phi in zip(fast.parameters(), slow, strict=True):
                p.copy_(phi)  # θ ← φ
        for _ in range(inner_steps):
            fast_opt.zero_grad()
            mse(fast, ref_stream.batch()).backward()
            fast_opt.step()
        with torch.no_grad():
            for p, phi in zip(fast.parameters(), slow, strict=True):
                phi.add_(phi - p, alpha=-eta)  # φ ← φ + η (θ − φ)
    for p, phi in zip(model.parameters(), slow, strict=True):
        assert torch.equal(p, phi)


def test_esgd_one_step_by_hand_float64():
    """L(w) = ½ a (w − c)²; one step with L = 1 and L = 2, ε = 0, wd in both loops."""
    a, c, w0 = 1.7, 0.4, 1.3
    eta, eta_in, gamma, alpha, wd = 0.6, 0.1, 0.8, 0.75, 0.05
    for n_inner in (1, 2):
        w = torch.nn.Parameter(torch.tensor([w0], dtype=torch.float64))
        opt = EntropySGD(
            [w],
            lr=eta,
            inner_lr=eta_in,
            inner_steps=n_inner,
            gamma=gamma,
            alpha=alpha,
            noise=0.0,
            weight_decay=wd,
        )

        def closure(w=w):
            loss = 0.5 * a * (w - c).pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        wp, mu = w0, w0
        for _ in range(n_inner):
            g = a * (wp - c) + gamma * (wp - w0) + wd * wp
            wp = wp - eta_in * g
            mu = alpha * mu + (1 - alpha) * wp
        expected = w0 - eta * ((w0 - mu) + wd * w0)
        assert abs(w.item() - expected) < 1e-12, (n_inner, w.item(), expected)


def test_esgd_noise_convention_sqrt_lr_times_eps():
    """With a zero loss, one inner step moves w' by exactly √η'·ε·ξ (ξ from the seeded stream)."""
    w = torch.nn.Parameter(torch.zeros(1000, dtype=torch.float64))
    eta_in, eps = 0.04, 0.5
    opt = EntropySGD(
        [w], lr=1.0, inner_lr=eta_in, inner_steps=1, gamma=0.0, alpha=0.0, noise=eps, seed=11
    )

    def closure():
        loss = (w * 0).sum()
        loss.backward()
        return loss

    opt.step(closure)  # lr = 1 with α = 0 lands exactly on w'
    xi = torch.randn(1000, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    torch.testing.assert_close(w.detach(), (eta_in**0.5) * eps * xi, rtol=1e-12, atol=0)


def test_rsgd_two_replicas_by_hand_float64():
    """y = 2 on 1-D quadratics (one per replica, standing for their minibatches), K = 2."""
    curv, centers, w_init = [1.5, 0.7], [0.3, -0.9], [1.0, -2.0]
    lr, gamma, k, wd, steps = 0.1, 0.9, 2, 0.01, 10

    class Scalar(torch.nn.Module):
        def __init__(self, v):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([v], dtype=torch.float64))

        def reset_parameters(self):
            pass

    model = Scalar(w_init[0])
    opt = ReplicatedSGD(
        model, lr=lr, y=2, gamma=gamma, coupling_every=k, weight_decay=wd, init="copy", seed=0
    )
    with torch.no_grad():
        opt.replicas[1].w.fill_(w_init[1])

    def closure(a):
        loss = 0.5 * curv[a] * (opt.replicas[a].w - centers[a]).pow(2).sum()
        loss.backward()
        return loss

    w = list(w_init)
    for t in range(1, steps + 1):
        opt.step(closure)
        center = (w[0] + w[1]) / 2
        grads = [curv[a] * (w[a] - centers[a]) for a in range(2)]
        if t % k == 0:
            grads = [grads[a] + k * gamma * (w[a] - center) for a in range(2)]
        w = [w[a] - lr * (grads[a] + wd * w[a]) for a in range(2)]
        for a in range(2):
            assert abs(opt.replicas[a].w.item() - w[a]) < 1e-12, (t, a)


def test_closure_called_exactly_l_times_and_return_type():
    for n_inner in (1, 4):
        model = LinearModel()
        opt = EntropySGD(model.parameters(), lr=0.1, inner_lr=0.01, inner_steps=n_inner)
        stream, calls = Stream(0), []

        def closure(model=model, stream=stream, calls=calls):
            calls.append(1)
            loss = mse(model, stream.batch())
            loss.backward()
            return float(loss.detach())

        out = opt.step(closure)
        assert len(calls) == n_inner and isinstance(out, float)
    opt = ReplicatedSGD(LinearModel(), lr=0.1, y=3, seed=0)
    seen = []

    def closure(a):
        seen.append(a)
        loss = mse(opt.replicas[a], Stream(a).batch())
        loss.backward()
        return float(loss.detach())

    assert isinstance(opt.step(closure), float) and seen == [0, 1, 2]


def test_step_post_hook_fires_once_per_outer_step():
    model = LinearModel()
    opt = EntropySGD(model.parameters(), lr=0.1, inner_lr=0.01, inner_steps=5)
    order = []
    pre = opt.register_step_pre_hook(lambda *_: order.append("pre"))
    post = opt.register_step_post_hook(lambda *_: order.append("post"))
    stream = Stream(0)

    def closure():
        loss = mse(model, stream.batch())
        loss.backward()
        return loss

    opt.step(closure)
    assert order == ["pre", "post"]
    pre.remove()
    post.remove()
    opt.step(closure)
    assert order == ["pre", "post"]


def test_two_param_groups_equal_two_optimizers():
    """Separable loss ‖xW − t‖² + ‖b − c‖²: groups (W, lr1, wd1), (b, lr2) vs two optimizers."""
    c = torch.tensor([0.5, -1.0, 2.0])

    def loss_of(model, batch):
        x, t = batch
        return ((x @ model.weight - t) ** 2).mean() + ((model.bias - c) ** 2).sum()

    g1 = dict(lr=0.3, weight_decay=1e-2)
    g2 = dict(lr=0.1, weight_decay=0.0)
    common = dict(inner_lr=0.05, inner_steps=3, gamma=0.2, noise=0.0, momentum=0.5)
    both, one, two = LinearModel(), LinearModel(), LinearModel()
    opt = EntropySGD(
        [{"params": [both.weight], **g1}, {"params": [both.bias], **g2}], lr=1.0, **common
    )
    opt_w = EntropySGD([one.weight], **g1, **common)
    opt_b = EntropySGD([two.bias], **g2, **common)
    streams = [Stream(9), Stream(9), Stream(9)]
    for _ in range(20):
        for o, m, s in (
            (opt, both, streams[0]),
            (opt_w, one, streams[1]),
            (opt_b, two, streams[2]),
        ):

            def closure(m=m, s=s):
                loss = loss_of(m, s.batch())
                loss.backward()
                return loss

            o.step(closure)
    assert torch.equal(both.weight, one.weight) and torch.equal(both.bias, two.bias)

    # rSGD: the same with gradients computed outside (step() without a closure).
    rs = [
        ReplicatedSGD(LinearModel(), lr=0.1, y=3, gamma=0.5, momentum=0.9, seed=4) for _ in range(2)
    ]
    rep_a, rep_b = rs[0].replicas, rs[1].replicas
    opt = ReplicatedSGD(
        rep_a,
        lr=0.1,
        gamma=0.5,
        momentum=0.9,
        groups=[{"params": [rep_a[0].weight], **g1}, {"params": [rep_a[0].bias], **g2}],
    )
    opt_w = ReplicatedSGD(
        rep_b, lr=0.1, gamma=0.5, momentum=0.9, groups=[{"params": [rep_b[0].weight], **g1}]
    )
    opt_b = ReplicatedSGD(
        rep_b, lr=0.1, gamma=0.5, momentum=0.9, groups=[{"params": [rep_b[0].bias], **g2}]
    )
    sa, sb = [Stream(a) for a in range(3)], [Stream(a) for a in range(3)]
    for _ in range(20):
        for reps, streams, opts in ((rep_a, sa, [opt]), (rep_b, sb, [opt_w, opt_b])):
            for o in opts:
                o.zero_grad()
            sum(loss_of(r, s.batch()) for r, s in zip(reps, streams, strict=True)).backward()
            for o in opts:
                o.step()
    for ra, rb in zip(rep_a, rep_b, strict=True):
        assert torch.equal(ra.weight, rb.weight) and torch.equal(ra.bias, rb.bias)


@pytest.mark.parametrize("kind", ["rsgd", "esgd"])
def test_degenerate_params_stay_unchanged(kind):
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scalar = torch.nn.Parameter(torch.empty(()).fill_(0.5))
            self.empty = torch.nn.Parameter(torch.empty(0))
            self.unused = torch.nn.Parameter(torch.ones(3))
            self.zero_grad_param = torch.nn.Parameter(torch.ones(4))

        def forward(self):
            return (self.scalar * 0) + (self.zero_grad_param * 0).sum() + self.empty.sum()

    model = Odd()
    before = copy.deepcopy(model.state_dict())
    if kind == "rsgd":
        opt = ReplicatedSGD(model, lr=0.1, y=1, gamma=0.0, momentum=0.9)
        closure_fn = lambda a: opt.replicas[a]()  # noqa: E731
    else:
        opt = EntropySGD(model.parameters(), lr=0.1, inner_lr=0.1, noise=0.0, momentum=0.9)
        closure_fn = lambda: model()  # noqa: E731

    def closure(*args):
        loss = closure_fn(*args)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
        assert not torch.isnan(value).any()


def test_progressive_unfreezing_with_add_param_group_equals_a_group_frozen_until_then():
    """A group added after 2 steps (own lr) trains as if it had been there, frozen."""
    common = dict(lr=0.5, inner_lr=0.05, inner_steps=3, gamma=0.1, momentum=0.9, seed=5)
    early, late = LinearModel(), LinearModel()
    early.bias.requires_grad_(False)
    opt_early = EntropySGD(
        [{"params": [early.weight]}, {"params": [early.bias], "lr": 0.2}], **common
    )
    opt_late = EntropySGD([late.weight], **common)
    streams = [Stream(8), Stream(8)]
    for step in range(5):
        if step == 2:
            early.bias.requires_grad_(True)
            opt_late.add_param_group({"params": [late.bias], "lr": 0.2})
        for opt, model, stream in ((opt_early, early, streams[0]), (opt_late, late, streams[1])):

            def closure(model=model, stream=stream):
                loss = mse(model, stream.batch())
                loss.backward()
                return loss

            opt.step(closure)
        assert torch.equal(early.weight, late.weight) and torch.equal(early.bias, late.bias)
    assert opt_late.param_groups[1]["lr"] == 0.2 and opt_late.inner.param_groups[1]["lr"] == 0.05


@pytest.mark.parametrize("settings", SGD_SETTINGS, ids=str)
def test_esgd_maximize_is_minimizing_the_negated_loss_bit_for_bit(settings):
    """maximize=True on L ≡ EntropySGD on −L: the coupling still attracts w' to w."""
    common = dict(lr=0.5, inner_lr=0.05, inner_steps=3, gamma=0.2, noise=1e-2, seed=2)
    up, down = LinearModel(), LinearModel()
    opt_up = EntropySGD(up.parameters(), maximize=True, **common, **settings)
    opt_down = EntropySGD(down.parameters(), **common, **settings)
    streams = [Stream(4), Stream(4)]
    for _ in range(6):
        for opt, model, stream, sign in (
            (opt_up, up, streams[0], 1),
            (opt_down, down, streams[1], -1),
        ):

            def closure(model=model, stream=stream, sign=sign):
                loss = sign * mse(model, stream.batch())
                loss.backward()
                return loss

            opt.step(closure)
    for p, q in zip(up.parameters(), down.parameters(), strict=True):
        assert torch.equal(p, q)


def test_auto_gamma0_esgd_with_langevin_noise_leaves_everything_as_it_was():
    """The probe inner loop runs outside step() (grad mode on) and must still be no-grad."""
    model = LinearModel()
    opt = EntropySGD(
        model.parameters(), lr=0.5, inner_lr=0.05, inner_steps=3, momentum=0.9, noise=1e-2, seed=1
    )
    stream = Stream(3)

    def closure():
        loss = mse(model, stream.batch())
        loss.backward()
        return loss

    opt.step(closure)
    params = copy.deepcopy(model.state_dict())
    state = copy.deepcopy(opt.state_dict())
    gamma0 = auto_gamma0_esgd(opt, closure)
    assert gamma0 > 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, params[key]), key
    assert_state_equal(opt.state_dict(), state)
